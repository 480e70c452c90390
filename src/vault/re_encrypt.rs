//! ReEncrypt: decrypt under the source key and encrypt under the destination key without
//! the plaintext leaving the daemon. Needs kms:ReEncryptFrom on the source and
//! kms:ReEncryptTo on the destination.

use super::authorize::Authz;
use super::{validate, Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{EncryptionContext, KeyArn};

/// ReEncrypt parameters.
#[derive(Debug)]
pub struct ReEncryptInput {
    /// The blob to move.
    pub ciphertext_blob: Vec<u8>,
    /// Its current context.
    pub source_context: EncryptionContext,
    /// Optional expected source key.
    pub source_key_id: String,
    /// Where to move it (required).
    pub destination_key_id: String,
    /// The context for the new blob.
    pub destination_context: EncryptionContext,
    /// "" or SYMMETRIC_DEFAULT; RSAES_OAEP_SHA_1 or _SHA_256 for an RSA source key.
    pub source_algorithm: String,
    /// "" or SYMMETRIC_DEFAULT; RSAES_OAEP_SHA_1 or _SHA_256 for an RSA destination key.
    pub destination_algorithm: String,
    /// Accepted for API compatibility.
    pub grant_tokens: Vec<String>,
}

/// ReEncrypt's result.
#[derive(Debug)]
pub struct ReEncryptOutput {
    /// The new blob.
    pub ciphertext_blob: Vec<u8>,
    /// The key that decrypted the old blob.
    pub source_key_arn: KeyArn,
    /// The key that encrypted the new blob.
    pub key_arn: KeyArn,
    /// The algorithm that decrypted the old blob.
    pub source_algorithm: &'static str,
    /// The algorithm that encrypted the new blob.
    pub destination_algorithm: &'static str,
}

impl Vault {
    /// ReEncrypt.
    pub async fn re_encrypt(
        &self,
        caller: &Caller,
        input: ReEncryptInput,
    ) -> Result<ReEncryptOutput, KmsError> {
        self.check_grant_tokens(&input.grant_tokens)?;
        let oaep = |a: &str| super::rsa_oaep::oaep_algorithm(a).is_some();
        if oaep(&input.source_algorithm) || oaep(&input.destination_algorithm) {
            return self.re_encrypt_rsa(caller, input).await;
        }
        let source_algorithm =
            validate::symmetric_algorithm("SourceEncryptionAlgorithm", &input.source_algorithm)?;
        let destination_algorithm = validate::symmetric_algorithm(
            "DestinationEncryptionAlgorithm",
            &input.destination_algorithm,
        )?;
        if input.destination_key_id.is_empty() {
            return Err(KmsError::validation("DestinationKeyId is required"));
        }
        // Resolve the destination first so that a bad destination costs no HSM call.
        let dest = self.resolve(caller, &input.destination_key_id).await?;
        let dest_arn = self.arn_of(&dest);
        // kms:ReEncryptOnSameKey needs the source key before the blob is opened; a blob
        // that does not parse is refused by open_blob below, after this check.
        let same_key =
            super::blob::parse(&input.ciphertext_blob).is_ok_and(|b| b.key_id == dest.key_id());
        self.authorize(
            caller,
            Authz::key(Action::RE_ENCRYPT_TO, &dest)
                .requested_as(&input.destination_key_id)
                .with_context(&input.destination_context)
                .with("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT")
                .with("kms:ReEncryptOnSameKey", same_key.to_string()),
        )
        .await?;
        dest.check_usable(&dest_arn)?;
        dest.check_symmetric_encryption(&dest_arn)?;
        let (source, plaintext) = self
            .open_blob(
                caller,
                Action::RE_ENCRYPT_FROM,
                &input.ciphertext_blob,
                &input.source_key_id,
                &input.source_context,
                Some(dest.key_id()),
            )
            .await?;
        let ciphertext_blob = self
            .seal(&dest, &input.destination_context, plaintext)
            .await?;
        Ok(ReEncryptOutput {
            ciphertext_blob,
            source_key_arn: self.arn_of(&source),
            key_arn: dest_arn,
            source_algorithm,
            destination_algorithm,
        })
    }
}

impl Vault {
    /// ReEncrypt from or to an RSA key: the source opened as Decrypt opens it (an RSA
    /// source needs SourceKeyId and its algorithm, as AWS), the plaintext sealed under
    /// the destination as Encrypt seals it; kms:ReEncryptFrom and kms:ReEncryptTo as for
    /// symmetric keys.
    async fn re_encrypt_rsa(
        &self,
        caller: &Caller,
        input: ReEncryptInput,
    ) -> Result<ReEncryptOutput, KmsError> {
        use super::rsa_oaep::oaep_algorithm;
        if input.destination_key_id.is_empty() {
            return Err(KmsError::validation("DestinationKeyId is required"));
        }
        let (plaintext, source_key_arn, source_algorithm) =
            match oaep_algorithm(&input.source_algorithm) {
                Some(oaep) => {
                    let (p, arn) = self
                        .oaep_open(
                            caller,
                            Action::RE_ENCRYPT_FROM,
                            "SourceKeyId",
                            &input.source_key_id,
                            oaep,
                            !input.source_context.is_empty(),
                            input.ciphertext_blob,
                        )
                        .await?;
                    (p, arn, oaep.1)
                }
                None => {
                    let alg = validate::symmetric_algorithm(
                        "SourceEncryptionAlgorithm",
                        &input.source_algorithm,
                    )?;
                    let (key, p) = self
                        .open_blob(
                            caller,
                            Action::RE_ENCRYPT_FROM,
                            &input.ciphertext_blob,
                            &input.source_key_id,
                            &input.source_context,
                            None,
                        )
                        .await?;
                    (p, self.arn_of(&key), alg)
                }
            };
        let (ciphertext_blob, key_arn, destination_algorithm) =
            match oaep_algorithm(&input.destination_algorithm) {
                Some(oaep) => {
                    let (c, arn) = self
                        .oaep_seal(
                            caller,
                            Action::RE_ENCRYPT_TO,
                            &input.destination_key_id,
                            oaep,
                            !input.destination_context.is_empty(),
                            plaintext,
                        )
                        .await?;
                    (c, arn, oaep.1)
                }
                None => {
                    let alg = validate::symmetric_algorithm(
                        "DestinationEncryptionAlgorithm",
                        &input.destination_algorithm,
                    )?;
                    let dest = self.resolve(caller, &input.destination_key_id).await?;
                    let arn = self.arn_of(&dest);
                    // An RSA source is never the symmetric destination.
                    self.authorize(
                        caller,
                        Authz::key(Action::RE_ENCRYPT_TO, &dest)
                            .requested_as(&input.destination_key_id)
                            .with_context(&input.destination_context)
                            .with("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT")
                            .with("kms:ReEncryptOnSameKey", "false"),
                    )
                    .await?;
                    dest.check_usable(&arn)?;
                    dest.check_symmetric_encryption(&arn)?;
                    let c = self
                        .seal(&dest, &input.destination_context, plaintext)
                        .await?;
                    (c, arn, alg)
                }
            };
        Ok(ReEncryptOutput {
            ciphertext_blob,
            source_key_arn,
            key_arn,
            source_algorithm,
            destination_algorithm,
        })
    }
}
