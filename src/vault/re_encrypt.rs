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
        self.symmetric_destination(caller, &dest, &input, same_key)
            .await?;
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
    /// A symmetric destination, authorized for kms:ReEncryptTo and usable.
    async fn symmetric_destination(
        &self,
        caller: &Caller,
        dest: &super::keys::KeyEntry,
        input: &ReEncryptInput,
        same_key: bool,
    ) -> Result<(), KmsError> {
        let arn = self.arn_of(dest);
        self.authorize(
            caller,
            Authz::key(Action::RE_ENCRYPT_TO, dest)
                .requested_as(&input.destination_key_id)
                .with_context(&input.destination_context)
                .with("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT")
                .with("kms:ReEncryptOnSameKey", same_key.to_string()),
        )
        .await?;
        dest.check_usable(&arn)?;
        dest.check_symmetric_encryption(&arn)
    }

    /// ReEncrypt from or to an RSA key, in the symmetric path's order: the destination
    /// is authorized first (kms:ReEncryptTo), then the source (kms:ReEncryptFrom), each
    /// with kms:ReEncryptOnSameKey; an RSA source needs SourceKeyId and its algorithm, as
    /// AWS. The source opens as Decrypt opens it, the destination seals as Encrypt.
    async fn re_encrypt_rsa(
        &self,
        caller: &Caller,
        input: ReEncryptInput,
    ) -> Result<ReEncryptOutput, KmsError> {
        use super::decrypt::check_blob_len;
        use super::rsa_oaep::{oaep_algorithm, OaepUse};
        check_blob_len("CiphertextBlob", &input.ciphertext_blob)?;
        if input.destination_key_id.is_empty() {
            return Err(KmsError::validation("DestinationKeyId is required"));
        }
        let source_oaep = oaep_algorithm(&input.source_algorithm);
        let dest_oaep = oaep_algorithm(&input.destination_algorithm);
        let source_algorithm = match source_oaep {
            Some((_, a)) => a,
            None => {
                validate::symmetric_algorithm("SourceEncryptionAlgorithm", &input.source_algorithm)?
            }
        };
        let destination_algorithm = match dest_oaep {
            Some((_, a)) => a,
            None => validate::symmetric_algorithm(
                "DestinationEncryptionAlgorithm",
                &input.destination_algorithm,
            )?,
        };
        // Which key the source is, for kms:ReEncryptOnSameKey: named (RSA), or in the
        // blob's header (symmetric; a blob that does not parse is refused below).
        let source_id = match source_oaep {
            Some((_, alg)) => {
                if input.source_key_id.is_empty() {
                    return Err(KmsError::validation(format!(
                        "SourceKeyId is required to decrypt with {alg}"
                    )));
                }
                Some(self.resolve(caller, &input.source_key_id).await?.key_id())
            }
            None => super::blob::parse(&input.ciphertext_blob)
                .ok()
                .map(|b| b.key_id),
        };
        let dest = self.resolve(caller, &input.destination_key_id).await?;
        let same_key = source_id == Some(dest.key_id());
        let dest_rsa = match dest_oaep {
            Some(oaep) => Some(
                self.oaep_key(
                    caller,
                    OaepUse {
                        action: Action::RE_ENCRYPT_TO,
                        key_id: &input.destination_key_id,
                        oaep,
                        has_context: !input.destination_context.is_empty(),
                        same_key: Some(same_key),
                    },
                )
                .await?,
            ),
            None => {
                self.symmetric_destination(caller, &dest, &input, same_key)
                    .await?;
                None
            }
        };
        let (plaintext, source_key_arn) = match source_oaep {
            Some(oaep) => {
                let k = self
                    .oaep_key(
                        caller,
                        OaepUse {
                            action: Action::RE_ENCRYPT_FROM,
                            key_id: &input.source_key_id,
                            oaep,
                            has_context: !input.source_context.is_empty(),
                            same_key: Some(same_key),
                        },
                    )
                    .await?;
                let p = self.oaep_open(&k, input.ciphertext_blob).await?;
                (p, k.arn)
            }
            None => {
                let (key, p) = self
                    .open_blob(
                        caller,
                        Action::RE_ENCRYPT_FROM,
                        &input.ciphertext_blob,
                        &input.source_key_id,
                        &input.source_context,
                        Some(dest.key_id()),
                    )
                    .await?;
                (p, self.arn_of(&key))
            }
        };
        let (ciphertext_blob, key_arn) = match &dest_rsa {
            Some(k) => (self.oaep_seal(k, plaintext).await?, k.arn.clone()),
            None => (
                self.seal(&dest, &input.destination_context, plaintext)
                    .await?,
                self.arn_of(&dest),
            ),
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
