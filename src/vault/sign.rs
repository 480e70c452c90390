//! Sign and Verify with the private and public halves of an asymmetric key in the HSM:
//! a message of up to 4096 bytes hashed in the token, or a digest of it.

use super::authorize::Authz;
use super::keys::KeyEntry;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{KeyArn, KeyUsage, MaterialKind, MessageType, SigningAlgorithm};
use crate::hsm::Signed;

/// AWS: Message is 1 to 4096 bytes.
pub(crate) const MAX_MESSAGE: usize = 4096;

/// AWS: a Verify signature is 1 to 6144 bytes.
pub(crate) const MAX_SIGNATURE: usize = 6144;

/// Sign parameters (and Verify's, with the signature). Debug shows the message's
/// length only: what is signed may be confidential.
#[derive(Default)]
pub struct SignInput {
    /// Key id, key ARN, alias name or alias ARN.
    pub key_id: String,
    /// The message, or its digest (MessageType DIGEST).
    pub message: Vec<u8>,
    /// "" (RAW), RAW or DIGEST.
    pub message_type: String,
    /// One of the key's SigningAlgorithms.
    pub signing_algorithm: String,
    /// Tokens of grants the caller relies on.
    pub grant_tokens: Vec<String>,
}

impl std::fmt::Debug for SignInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInput")
            .field("key_id", &self.key_id)
            .field("message", &format_args!("<{} bytes>", self.message.len()))
            .field("message_type", &self.message_type)
            .field("signing_algorithm", &self.signing_algorithm)
            .field("grant_tokens", &self.grant_tokens.len())
            .finish()
    }
}

/// Sign's result.
#[derive(Debug)]
pub struct SignOutput {
    /// The key that signed.
    pub key_arn: KeyArn,
    /// The signature (DER for ECDSA, as AWS).
    pub signature: Vec<u8>,
    /// The algorithm used.
    pub signing_algorithm: SigningAlgorithm,
}

/// Verify's result: only a valid signature gets one (an invalid one is
/// KMSInvalidSignatureException).
#[derive(Debug)]
pub struct VerifyOutput {
    /// The key that verified.
    pub key_arn: KeyArn,
    /// The algorithm used.
    pub signing_algorithm: SigningAlgorithm,
}

/// The checked request, before the key is known.
struct Checked {
    algorithm: SigningAlgorithm,
    message_type: MessageType,
}

fn check(input: &SignInput) -> Result<Checked, KmsError> {
    if input.message.is_empty() || input.message.len() > MAX_MESSAGE {
        return Err(KmsError::validation(format!(
            "Message must be between 1 and {MAX_MESSAGE} bytes"
        )));
    }
    let message_type = match input.message_type.as_str() {
        "" => MessageType::Raw,
        t => MessageType::parse(t)
            .ok_or_else(|| KmsError::validation("MessageType must be RAW or DIGEST"))?,
    };
    if input.signing_algorithm.is_empty() {
        return Err(KmsError::validation("SigningAlgorithm is required"));
    }
    let algorithm = SigningAlgorithm::parse(&input.signing_algorithm).ok_or_else(|| {
        KmsError::validation("SigningAlgorithm is not a signing algorithm AWS KMS knows")
    })?;
    if message_type == MessageType::Digest && input.message.len() != algorithm.hash().len() {
        return Err(KmsError::validation(format!(
            "a DIGEST message for {} must be {} bytes long",
            algorithm.as_str(),
            algorithm.hash().len()
        )));
    }
    Ok(Checked {
        algorithm,
        message_type,
    })
}

impl Vault {
    /// The key a Sign or Verify request names, authorized for `action`, usable, and
    /// able to sign with the algorithm.
    async fn signing_key(
        &self,
        caller: &Caller,
        action: Action,
        input: &SignInput,
        checked: &Checked,
    ) -> Result<(std::sync::Arc<KeyEntry>, KeyArn), KmsError> {
        self.check_grant_tokens(&input.grant_tokens)?;
        let key = self.resolve(caller, &input.key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(
            caller,
            Authz::key(action, &key)
                .requested_as(&input.key_id)
                .with("kms:SigningAlgorithm", checked.algorithm.as_str())
                .with("kms:MessageType", checked.message_type.as_str()),
        )
        .await?;
        key.check_usable(&arn)?;
        let (spec, usage, _) = key.kind();
        if usage != KeyUsage::SignVerify {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{arn} has KeyUsage {}; signing needs SIGN_VERIFY",
                usage.as_str()
            )));
        }
        if !spec.signing_algorithms(usage).contains(&checked.algorithm) {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{arn} ({}) does not support {}",
                spec.as_str(),
                checked.algorithm.as_str()
            )));
        }
        Ok((key, arn))
    }

    /// Sign.
    pub async fn sign(&self, caller: &Caller, input: SignInput) -> Result<SignOutput, KmsError> {
        let checked = check(&input)?;
        let (key, arn) = self
            .signing_key(caller, Action::SIGN, &input, &checked)
            .await?;
        let signature = self
            .hsm
            .sign(
                key.material_ref(key.current_version()),
                checked.algorithm,
                signed(checked.message_type),
                input.message,
            )
            .await?;
        Ok(SignOutput {
            key_arn: arn,
            signature,
            signing_algorithm: checked.algorithm,
        })
    }

    /// Verify: with the public key, inside the HSM.
    pub async fn verify(
        &self,
        caller: &Caller,
        input: SignInput,
        signature: Vec<u8>,
    ) -> Result<VerifyOutput, KmsError> {
        let checked = check(&input)?;
        if signature.is_empty() || signature.len() > MAX_SIGNATURE {
            return Err(KmsError::validation(format!(
                "Signature must be between 1 and {MAX_SIGNATURE} bytes"
            )));
        }
        let (key, arn) = self
            .signing_key(caller, Action::VERIFY, &input, &checked)
            .await?;
        let curve = match key.kind().0.material() {
            MaterialKind::Ec(c) => Some(c),
            _ => None,
        };
        let valid = self
            .hsm
            .verify(
                key.material_ref(key.current_version()),
                checked.algorithm,
                curve,
                signed(checked.message_type),
                input.message,
                signature,
            )
            .await?;
        if !valid {
            return Err(KmsError::KmsInvalidSignature(
                "the signature does not verify for this key, signing algorithm and message".into(),
            ));
        }
        Ok(VerifyOutput {
            key_arn: arn,
            signing_algorithm: checked.algorithm,
        })
    }
}

fn signed(t: MessageType) -> Signed {
    match t {
        MessageType::Raw => Signed::Message,
        MessageType::Digest => Signed::Digest,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_shows_the_message_length_only() {
        let input = super::SignInput {
            message: b"CONFIDENTIAL-DOCUMENT".to_vec(),
            ..Default::default()
        };
        let shown = format!("{input:?}");
        assert!(!shown.contains("67, 79, 78"), "{shown}"); // "CON" as a byte list
        assert!(shown.contains("<21 bytes>"), "{shown}");
    }
}
