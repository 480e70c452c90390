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

/// One use of an RSA key for RSAES-OAEP, as authorized: the operation (Encrypt, Decrypt,
/// or a half of ReEncrypt), the key named, the algorithm, whether the request carried
/// an encryption context (AWS allows none with asymmetric keys), and for ReEncrypt
/// whether source and destination are one key (kms:ReEncryptOnSameKey).
pub(crate) struct OaepUse<'a> {
    pub(crate) action: Action,
    pub(crate) key_id: &'a str,
    pub(crate) oaep: (OaepHash, &'static str),
    pub(crate) has_context: bool,
    pub(crate) same_key: Option<bool>,
}

/// An RSA ENCRYPT_DECRYPT key, authorized for one use.
pub(crate) struct OaepKey {
    key: std::sync::Arc<super::keys::KeyEntry>,
    pub(crate) arn: KeyArn,
    bits: usize,
    oaep: (OaepHash, &'static str),
}

impl Vault {
    /// The RSA ENCRYPT_DECRYPT key `u` names, authorized, usable.
    pub(crate) async fn oaep_key(
        &self,
        caller: &Caller,
        u: OaepUse<'_>,
    ) -> Result<OaepKey, KmsError> {
        let alg = u.oaep.1;
        let key = self.resolve(caller, u.key_id).await?;
        let arn = self.arn_of(&key);
        let mut a = Authz::key(u.action, &key)
            .requested_as(u.key_id)
            .with("kms:EncryptionAlgorithm", alg);
        if let Some(same) = u.same_key {
            a = a.with("kms:ReEncryptOnSameKey", same.to_string());
        }
        self.authorize(caller, a).await?;
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
        if u.has_context {
            return Err(KmsError::validation(
                "EncryptionContext is not supported with asymmetric KMS keys",
            ));
        }
        Ok(OaepKey {
            key,
            arn,
            bits,
            oaep: u.oaep,
        })
    }

    /// RSAES-OAEP encryption under an authorized key, within the plaintext limit.
    pub(crate) async fn oaep_seal(
        &self,
        k: &OaepKey,
        plaintext: Plaintext,
    ) -> Result<Vec<u8>, KmsError> {
        let ((hash, alg), bits) = (k.oaep, k.bits);
        let max = max_plaintext(bits, hash);
        if plaintext.len() > max {
            return Err(KmsError::validation(format!(
                "Plaintext must be at most {max} bytes for {alg} with this {bits}-bit key"
            )));
        }
        Ok(self
            .hsm
            .rsa_encrypt(k.key.material_ref(k.key.current_version()), hash, plaintext)
            .await?)
    }

    /// RSAES-OAEP decryption with an authorized key.
    pub(crate) async fn oaep_open(
        &self,
        k: &OaepKey,
        ciphertext: Vec<u8>,
    ) -> Result<Plaintext, KmsError> {
        let ((hash, alg), bits) = (k.oaep, k.bits);
        if ciphertext.len() != bits / 8 {
            return Err(KmsError::InvalidCiphertext(format!(
                "an {alg} ciphertext of this {bits}-bit key is {} bytes",
                bits / 8
            )));
        }
        self.hsm
            .rsa_decrypt(
                k.key.material_ref(k.key.current_version()),
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
            })
    }

    /// Encrypt under the public half of an RSA key.
    pub(crate) async fn rsa_encrypt(
        &self,
        caller: &Caller,
        input: EncryptInput,
        oaep: (OaepHash, &'static str),
    ) -> Result<EncryptOutput, KmsError> {
        let use_ = OaepUse {
            action: Action::ENCRYPT,
            key_id: &input.key_id,
            oaep,
            has_context: !input.context.is_empty(),
            same_key: None,
        };
        let k = self.oaep_key(caller, use_).await?;
        let ciphertext_blob = self.oaep_seal(&k, input.plaintext).await?;
        Ok(EncryptOutput {
            ciphertext_blob,
            key_arn: k.arn,
            encryption_algorithm: oaep.1,
        })
    }

    /// Decrypt with the private half of an RSA key; KeyId is required, as AWS.
    pub(crate) async fn rsa_decrypt(
        &self,
        caller: &Caller,
        input: DecryptInput,
        oaep: (OaepHash, &'static str),
    ) -> Result<DecryptOutput, KmsError> {
        check_blob_len("CiphertextBlob", &input.ciphertext_blob)?;
        if input.key_id.is_empty() {
            return Err(KmsError::validation(format!(
                "KeyId is required to decrypt with {}",
                oaep.1
            )));
        }
        let use_ = OaepUse {
            action: Action::DECRYPT,
            key_id: &input.key_id,
            oaep,
            has_context: !input.context.is_empty(),
            same_key: None,
        };
        let k = self.oaep_key(caller, use_).await?;
        let plaintext = self.oaep_open(&k, input.ciphertext_blob).await?;
        Ok(DecryptOutput {
            key_arn: k.arn,
            plaintext,
            encryption_algorithm: oaep.1,
        })
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
