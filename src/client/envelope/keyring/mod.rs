//! Keyrings: each makes, wraps or unwraps data keys in its own way.

mod kms;
mod multi;
mod raw_aes;

pub use kms::{KmsKeyring, PROVIDER_ID as KMS_PROVIDER_ID};
pub use multi::MultiKeyring;
pub use raw_aes::RawAesKeyring;

use super::{BoxFuture, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials, EnvelopeError};

/// Makes and unwraps data keys. On encrypt, a keyring makes the data key when the
/// materials have none (if it can generate) and adds its encrypted copy; on decrypt, it
/// fills in the data key from one of the message's encrypted data keys it can open, or
/// leaves the materials as they are.
pub trait Keyring: Send + Sync {
    /// Adds a data key (if none yet) and this keyring's encrypted copy of it.
    fn on_encrypt(
        &self,
        materials: EncryptionMaterials,
    ) -> BoxFuture<'_, Result<EncryptionMaterials, EnvelopeError>>;
    /// Unwraps one of `edks`, if this keyring can and no data key is there yet.
    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> BoxFuture<'a, Result<DecryptionMaterials, EnvelopeError>>;
}

/// A fresh random data key.
pub(crate) fn random_data_key() -> Result<crate::domain::Plaintext, EnvelopeError> {
    let mut key = vec![0u8; super::suite::DATA_KEY_LEN];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| EnvelopeError::Random)?;
    Ok(crate::domain::Plaintext::new(key))
}
