//! The raw AES keyring: wraps data keys with a local AES-256-GCM key (offline use and
//! interop tests). Provider info = key name || tag length in bits (u32) || IV length
//! (u32) || IV; the wrapped key is ciphertext || tag; the AAD is the serialized context.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::{random_data_key, Keyring};
use crate::client::envelope::{
    serialize_context, BoxFuture, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials,
    EnvelopeError,
};
use crate::domain::Plaintext;

/// A raw AES-256-GCM keyring.
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    key: LessSafeKey,
}

impl RawAesKeyring {
    /// A keyring over a 32-byte wrapping key. The namespace "aws-kms" is reserved.
    pub fn new(namespace: &str, name: &str, wrapping_key: &[u8]) -> Result<Self, EnvelopeError> {
        if namespace == "aws-kms" {
            return Err(EnvelopeError::BadKeyring(
                "the namespace aws-kms is reserved",
            ));
        }
        let key = UnboundKey::new(&AES_256_GCM, wrapping_key)
            .map_err(|_| EnvelopeError::BadKeyring("a wrapping key is 32 bytes"))?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: LessSafeKey::new(key),
        })
    }

    fn info(&self, iv: &[u8; 12]) -> Vec<u8> {
        let mut info = self.name.as_bytes().to_vec();
        info.extend_from_slice(&128u32.to_be_bytes());
        info.extend_from_slice(&12u32.to_be_bytes());
        info.extend_from_slice(iv);
        info
    }

    fn wrap(
        &self,
        data_key: &Plaintext,
        context: &BTreeMap<String, String>,
    ) -> Result<EncryptedDataKey, EnvelopeError> {
        let mut iv = [0u8; 12];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| EnvelopeError::Random)?;
        let aad = serialize_context(context)?;
        // Wiped if sealing fails while it still holds the data key.
        let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(data_key.len() + 16));
        buf.extend_from_slice(data_key.expose());
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut *buf)
            .map_err(|_| EnvelopeError::Crypto)?;
        Ok(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info: self.info(&iv),
            ciphertext: std::mem::take(&mut *buf),
        })
    }

    fn unwrap(
        &self,
        edks: &[EncryptedDataKey],
        context: &BTreeMap<String, String>,
    ) -> Result<Option<Plaintext>, EnvelopeError> {
        let aad = serialize_context(context)?;
        let prefix_len = self.name.len();
        for e in edks.iter().filter(|e| e.provider_id == self.namespace) {
            let info = &e.provider_info;
            if info.len() != prefix_len + 20 || info.get(..prefix_len) != Some(self.name.as_bytes())
            {
                continue;
            }
            if info.get(prefix_len..prefix_len + 8) != Some(&[0, 0, 0, 128, 0, 0, 0, 12][..]) {
                continue;
            }
            let Some(iv) = info
                .get(prefix_len + 8..)
                .and_then(|s| <[u8; 12]>::try_from(s).ok())
            else {
                continue;
            };
            let mut buf = zeroize::Zeroizing::new(e.ciphertext.clone());
            if let Ok(pt) = self.key.open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(aad.as_slice()),
                &mut buf,
            ) {
                return Ok(Some(Plaintext::new(pt.to_vec())));
            }
        }
        Ok(None)
    }
}

impl Keyring for RawAesKeyring {
    fn on_encrypt(
        &self,
        mut materials: EncryptionMaterials,
    ) -> BoxFuture<'_, Result<EncryptionMaterials, EnvelopeError>> {
        Box::pin(async move {
            let key = match materials.data_key.take() {
                Some(k) => k,
                None => random_data_key()?,
            };
            let edk = self.wrap(&key, &materials.context)?;
            materials.data_key = Some(key);
            materials.edks.push(edk);
            Ok(materials)
        })
    }

    fn on_decrypt<'a>(
        &'a self,
        mut materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> BoxFuture<'a, Result<DecryptionMaterials, EnvelopeError>> {
        Box::pin(async move {
            if materials.data_key.is_none() {
                materials.data_key = self.unwrap(edks, &materials.context)?;
            }
            Ok(materials)
        })
    }
}
