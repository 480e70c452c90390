//! Encrypt: up to 4096 bytes under a KMS key, inside the HSM.

use super::authorize::Authz;
use super::{validate, Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{EncryptionContext, KeyArn, Plaintext};

/// AWS: Encrypt takes 1 to 4096 bytes of plaintext.
pub(crate) const MAX_PLAINTEXT: usize = 4096;

/// Encrypt parameters.
#[derive(Debug)]
pub struct EncryptInput {
    /// Key id or key ARN.
    pub key_id: String,
    /// What to encrypt.
    pub plaintext: Plaintext,
    /// Bound to the ciphertext; needed again to decrypt.
    pub context: EncryptionContext,
    /// Accepted for API compatibility.
    pub grant_tokens: Vec<String>,
    /// "" or SYMMETRIC_DEFAULT; RSAES_OAEP_SHA_1 or _SHA_256 for an RSA key.
    pub algorithm: String,
}

/// Encrypt's result.
#[derive(Debug)]
pub struct EncryptOutput {
    /// The blob (docs/ciphertext-format.md).
    pub ciphertext_blob: Vec<u8>,
    /// The key that encrypted it.
    pub key_arn: KeyArn,
    /// The algorithm used (the default when the request named none).
    pub encryption_algorithm: &'static str,
}

impl Vault {
    /// Encrypt.
    pub async fn encrypt(
        &self,
        caller: &Caller,
        input: EncryptInput,
    ) -> Result<EncryptOutput, KmsError> {
        if input.plaintext.is_empty() || input.plaintext.len() > MAX_PLAINTEXT {
            return Err(KmsError::validation(format!(
                "Plaintext must be between 1 and {MAX_PLAINTEXT} bytes"
            )));
        }
        self.check_grant_tokens(&input.grant_tokens)?;
        if let Some(oaep) = super::rsa_oaep::oaep_algorithm(&input.algorithm) {
            return self.rsa_encrypt(caller, input, oaep).await;
        }
        let encryption_algorithm =
            validate::symmetric_algorithm("EncryptionAlgorithm", &input.algorithm)?;
        let key = self.resolve(caller, &input.key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(
            caller,
            Authz::key(Action::ENCRYPT, &key)
                .requested_as(&input.key_id)
                .with_context(&input.context)
                .with("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT"),
        )
        .await?;
        key.check_usable(&arn)?;
        key.check_symmetric_encryption(&arn)?;
        let ciphertext_blob = self.seal(&key, &input.context, input.plaintext).await?;
        Ok(EncryptOutput {
            ciphertext_blob,
            key_arn: arn,
            encryption_algorithm,
        })
    }
}
