//! Encrypt and Decrypt with an RSA ENCRYPT_DECRYPT key: RSAES-OAEP in the HSM, the
//! ciphertext the raw OAEP output as AWS returns it (no p11kms blob around it), so that
//! anyone holding the public key can encrypt for the key without calling p11kms.

use super::authorize::Authz;
use super::decrypt::{check_blob_len, DecryptInput, DecryptOutput};
use super::encrypt::{EncryptInput, EncryptOutput};
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{KeyArn, KeyUsage, MaterialKind, Plaintext};
use crate::hsm::OaepHash;

/// The OAEP hash an EncryptionAlgorithm names, with AWS's spelling; None for any
/// other algorithm.
pub(crate) fn oaep_algorithm(alg: &str) -> Option<(OaepHash, &'static str)> {
    match alg {
        "RSAES_OAEP_SHA_1" => Some((OaepHash::Sha1, "RSAES_OAEP_SHA_1")),
        "RSAES_OAEP_SHA_256" => Some((OaepHash::Sha256, "RSAES_OAEP_SHA_256")),
        _ => None,
    }
}

/// The most plaintext bytes RSAES-OAEP takes under a `bits`-bit modulus (RFC 8017
/// 7.1.1): the modulus length less two hashes and two bytes.
pub(crate) fn max_plaintext(bits: usize, hash: OaepHash) -> usize {
    (bits / 8).saturating_sub(2 * hash.len() + 2)
}

impl Vault {
    /// The RSA ENCRYPT_DECRYPT key `key_id` names, authorized for `action` with `alg`,
    /// usable; its modulus size.
    async fn oaep_key(
        &self,
        caller: &Caller,
        action: Action,
        key_id: &str,
        alg: &'static str,
        has_context: bool,
    ) -> Result<(std::sync::Arc<super::keys::KeyEntry>, KeyArn, usize), KmsError> {
        let key = self.resolve(caller, key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(
            caller,
            Authz::key(action, &key)
                .requested_as(key_id)
                .with("kms:EncryptionAlgorithm", alg),
        )
        .await?;
        key.check_usable(&arn)?;
        let (spec, usage, _) = key.kind();
        let bits = match (spec.material(), usage) {
            (MaterialKind::Rsa(bits), KeyUsage::EncryptDecrypt) => bits,
            _ => {
                return Err(KmsError::InvalidKeyUsage(format!(
                    "{arn} is a {} key with KeyUsage {}; {alg} needs an RSA key with KeyUsage ENCRYPT_DECRYPT",
                    spec.as_str(),
                    usage.as_str()
                )))
            }
        };
        if has_context {
            return Err(KmsError::validation(
                "EncryptionContext is not supported with asymmetric KMS keys",
            ));
        }
        Ok((key, arn, bits))
    }

    /// Encrypt under the public half of an RSA key.
    pub(crate) async fn rsa_encrypt(
        &self,
        caller: &Caller,
        input: EncryptInput,
        oaep: (OaepHash, &'static str),
    ) -> Result<EncryptOutput, KmsError> {
        let (ciphertext_blob, key_arn) = self
            .oaep_seal(
                caller,
                Action::ENCRYPT,
                &input.key_id,
                oaep,
                !input.context.is_empty(),
                input.plaintext,
            )
            .await?;
        Ok(EncryptOutput {
            ciphertext_blob,
            key_arn,
            encryption_algorithm: oaep.1,
        })
    }

    /// RSAES-OAEP encryption of `plaintext` under `key_id`, authorized for `action`
    /// (Encrypt, or ReEncrypt's destination).
    pub(crate) async fn oaep_seal(
        &self,
        caller: &Caller,
        action: Action,
        key_id: &str,
        (hash, alg): (OaepHash, &'static str),
        has_context: bool,
        plaintext: Plaintext,
    ) -> Result<(Vec<u8>, KeyArn), KmsError> {
        let (key, arn, bits) = self
            .oaep_key(caller, action, key_id, alg, has_context)
            .await?;
        let max = max_plaintext(bits, hash);
        if plaintext.len() > max {
            return Err(KmsError::validation(format!(
                "Plaintext must be at most {max} bytes for {alg} with this {bits}-bit key"
            )));
        }
        let ciphertext = self
            .hsm
            .rsa_encrypt(key.material_ref(key.current_version()), hash, plaintext)
            .await?;
        Ok((ciphertext, arn))
    }

    /// Decrypt with the private half of an RSA key; KeyId is required, as AWS.
    pub(crate) async fn rsa_decrypt(
        &self,
        caller: &Caller,
        input: DecryptInput,
        oaep: (OaepHash, &'static str),
    ) -> Result<DecryptOutput, KmsError> {
        let (plaintext, key_arn) = self
            .oaep_open(
                caller,
                Action::DECRYPT,
                "KeyId",
                &input.key_id,
                oaep,
                !input.context.is_empty(),
                input.ciphertext_blob,
            )
            .await?;
        Ok(DecryptOutput {
            key_arn,
            plaintext,
            encryption_algorithm: oaep.1,
        })
    }

    /// RSAES-OAEP decryption of `ciphertext` with `key_id` (named by `field`, which
    /// must be given), authorized for `action` (Decrypt, or ReEncrypt's source).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn oaep_open(
        &self,
        caller: &Caller,
        action: Action,
        field: &str,
        key_id: &str,
        (hash, alg): (OaepHash, &'static str),
        has_context: bool,
        ciphertext: Vec<u8>,
    ) -> Result<(Plaintext, KeyArn), KmsError> {
        check_blob_len("CiphertextBlob", &ciphertext)?;
        if key_id.is_empty() {
            return Err(KmsError::validation(format!(
                "{field} is required to decrypt with {alg}"
            )));
        }
        let (key, arn, bits) = self
            .oaep_key(caller, action, key_id, alg, has_context)
            .await?;
        if ciphertext.len() != bits / 8 {
            return Err(KmsError::InvalidCiphertext(format!(
                "an {alg} ciphertext of this {bits}-bit key is {} bytes",
                bits / 8
            )));
        }
        let plaintext = self
            .hsm
            .rsa_decrypt(
                key.material_ref(key.current_version()),
                hash,
                bits / 8,
                ciphertext,
            )
            .await
            .map_err(|e| match e {
                crate::hsm::HsmError::BadInput(_) => KmsError::InvalidCiphertext(
                    "the ciphertext is not an RSAES-OAEP ciphertext of this key and algorithm"
                        .into(),
                ),
                other => other.into(),
            })?;
        Ok((plaintext, arn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oaep_limits_are_awss() {
        assert_eq!(max_plaintext(2048, OaepHash::Sha1), 214);
        assert_eq!(max_plaintext(3072, OaepHash::Sha1), 342);
        assert_eq!(max_plaintext(4096, OaepHash::Sha1), 470);
        assert_eq!(max_plaintext(2048, OaepHash::Sha256), 190);
        assert_eq!(max_plaintext(3072, OaepHash::Sha256), 318);
        assert_eq!(max_plaintext(4096, OaepHash::Sha256), 446);
    }
}
