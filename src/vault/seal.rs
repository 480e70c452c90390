//! Sealing and opening blobs: the one place that puts header, IV, AAD and the HSM's
//! AES-GCM output together.

use super::blob::{self, Blob, HEADER_LEN, IV_LEN};
use super::keys::KeyEntry;
use super::{KmsError, Vault};
use crate::domain::{EncryptionContext, MaterialVersion, Plaintext};
use crate::hsm::MaterialRef;

struct Sealing {
    material: MaterialRef,
    header: [u8; HEADER_LEN],
    iv: [u8; IV_LEN],
    aad: Vec<u8>,
}

/// AAD = blob header || canonical context: binds key id, material version and context.
fn aad(header: &[u8], ctx: &EncryptionContext) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(&ctx.canonical_bytes());
    aad
}

impl Vault {
    async fn prepare(&self, key: &KeyEntry, ctx: &EncryptionContext) -> Result<Sealing, KmsError> {
        let version: MaterialVersion = self.take_invocation(key).await?;
        let header = blob::header(&key.key_id(), version);
        // A fresh random 96-bit IV from the daemon's CSPRNG for every invocation; the IV
        // budget above keeps the count per material under the NIST bound.
        let mut iv = [0u8; IV_LEN];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| KmsError::internal(RandomFailed))?;
        Ok(Sealing {
            material: key.material_ref(version),
            aad: aad(&header, ctx),
            header,
            iv,
        })
    }

    /// Encrypts `plaintext` under the key's current material.
    pub(crate) async fn seal(
        &self,
        key: &KeyEntry,
        ctx: &EncryptionContext,
        plaintext: Plaintext,
    ) -> Result<Vec<u8>, KmsError> {
        let s = self.prepare(key, ctx).await?;
        let ct = self.hsm.encrypt(s.material, s.iv, s.aad, plaintext).await?;
        Ok(blob::assemble(&s.header, &s.iv, &ct))
    }

    /// A new data key of `len` bytes from the HSM, and its blob.
    pub(crate) async fn seal_new_data_key(
        &self,
        key: &KeyEntry,
        ctx: &EncryptionContext,
        len: usize,
    ) -> Result<(Plaintext, Vec<u8>), KmsError> {
        let s = self.prepare(key, ctx).await?;
        let (dk, ct) = self
            .hsm
            .generate_data_key(s.material, s.iv, s.aad, len)
            .await?;
        Ok((dk, blob::assemble(&s.header, &s.iv, &ct)))
    }

    /// Decrypts a parsed blob whose key has been resolved and authorized.
    pub(crate) async fn open(
        &self,
        blob: &Blob<'_>,
        key: &KeyEntry,
        ctx: &EncryptionContext,
    ) -> Result<Plaintext, KmsError> {
        if !key.has_version(blob.version) {
            return Err(KmsError::InvalidCiphertext(
                "the ciphertext refers to key material that this key does not have".into(),
            ));
        }
        let iv: [u8; IV_LEN] = blob
            .iv
            .try_into()
            .map_err(|_| KmsError::InvalidCiphertext("the ciphertext blob is truncated".into()))?;
        Ok(self
            .hsm
            .decrypt(
                key.material_ref(blob.version),
                iv,
                aad(blob.header, ctx),
                blob.ciphertext_and_tag.to_vec(),
            )
            .await?)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
struct RandomFailed;
