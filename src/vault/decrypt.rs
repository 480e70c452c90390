//! Decrypt: the blob names its key; a KeyId parameter, when given, must agree.

use std::sync::Arc;

use super::authorize::Authz;
use super::blob::{self, MAX_BLOB_LEN};
use super::keys::KeyEntry;
use super::{validate, Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{EncryptionContext, KeyArn, KeyId, Plaintext};

/// Decrypt parameters.
#[derive(Debug)]
pub struct DecryptInput {
    /// The blob.
    pub ciphertext_blob: Vec<u8>,
    /// The context it was encrypted with.
    pub context: EncryptionContext,
    /// Accepted for API compatibility.
    pub grant_tokens: Vec<String>,
    /// Optional: "" or the key id / ARN that must have encrypted the blob.
    pub key_id: String,
    /// "" or SYMMETRIC_DEFAULT; RSAES_OAEP_SHA_1 or _SHA_256 for an RSA key.
    pub algorithm: String,
}

/// Decrypt's result.
#[derive(Debug)]
pub struct DecryptOutput {
    /// The key that decrypted it.
    pub key_arn: KeyArn,
    /// The plaintext.
    pub plaintext: Plaintext,
    /// The algorithm used (the default when the request named none).
    pub encryption_algorithm: &'static str,
}

/// Checks CiphertextBlob's length as AWS does (1..6144 bytes).
pub(crate) fn check_blob_len(field: &str, b: &[u8]) -> Result<(), KmsError> {
    if b.is_empty() || b.len() > MAX_BLOB_LEN {
        return Err(KmsError::validation(format!(
            "{field} must be between 1 and {MAX_BLOB_LEN} bytes"
        )));
    }
    Ok(())
}

impl Vault {
    /// Decrypt.
    pub async fn decrypt(
        &self,
        caller: &Caller,
        input: DecryptInput,
    ) -> Result<DecryptOutput, KmsError> {
        self.check_grant_tokens(&input.grant_tokens)?;
        if let Some(oaep) = super::rsa_oaep::oaep_algorithm(&input.algorithm) {
            return self.rsa_decrypt(caller, input, oaep).await;
        }
        let encryption_algorithm =
            validate::symmetric_algorithm("EncryptionAlgorithm", &input.algorithm)?;
        let (key, plaintext) = self
            .open_blob(
                caller,
                Action::DECRYPT,
                &input.ciphertext_blob,
                &input.key_id,
                &input.context,
                None,
            )
            .await?;
        Ok(DecryptOutput {
            key_arn: self.arn_of(&key),
            plaintext,
            encryption_algorithm,
        })
    }

    /// Shared by Decrypt and ReEncrypt: parse, find the key, check an expected KeyId,
    /// authorize `action`, check state, decrypt. `re_encrypt_to` is ReEncrypt's
    /// destination key, for kms:ReEncryptOnSameKey.
    pub(crate) async fn open_blob(
        &self,
        caller: &Caller,
        action: Action,
        bytes: &[u8],
        expected_key: &str,
        ctx: &EncryptionContext,
        re_encrypt_to: Option<KeyId>,
    ) -> Result<(Arc<KeyEntry>, Plaintext), KmsError> {
        check_blob_len("CiphertextBlob", bytes)?;
        let parsed = blob::parse(bytes).map_err(|e| KmsError::InvalidCiphertext(e.to_string()))?;
        if !expected_key.is_empty() {
            let expected = self.resolve(caller, expected_key).await?;
            if expected.key_id() != parsed.key_id {
                return Err(KmsError::IncorrectKey(
                    "the key specified by KeyId is not the key that was used to encrypt the ciphertext".into(),
                ));
            }
        }
        let key = self.key_of_blob(parsed.key_id).await?;
        let arn = self.arn_of(&key);
        let mut a = Authz::key(action, &key)
            .requested_as(expected_key)
            .with_context(ctx)
            .with("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT");
        if let Some(dest) = re_encrypt_to {
            a = a.with("kms:ReEncryptOnSameKey", (dest == key.key_id()).to_string());
        }
        self.authorize(caller, a).await?;
        key.check_usable(&arn)?;
        key.check_symmetric_encryption(&arn)?;
        let plaintext = self.open(&parsed, &key, ctx).await?;
        Ok((key, plaintext))
    }
}
