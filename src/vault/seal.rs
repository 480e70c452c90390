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

#[cfg(test)]
mod tests {
    //! A committed v1 blob that must keep decrypting: the format and the AAD layout are
    //! frozen for every blob ever written. Software AES-GCM with a known key stands in
    //! for the HSM, which does the same AES-256-GCM.

    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

    use super::aad;
    use crate::domain::{EncryptionContext, KeyId, MaterialVersion};
    use crate::vault::blob;

    const KEY: [u8; 32] = [0x42; 32];
    const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
    const IV: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    const PLAINTEXT: &[u8] = b"p11kms v1 golden blob";
    const GOLDEN_HEX: &str = "703131011234abcd12ab34cd56ef1234567890ab000000010102030405060708090a0b0cc5cb172720006975bdfad6a726ed0ba2b0ddafa96572038d0d9016bea0e39c1f2728679085";

    fn context() -> EncryptionContext {
        EncryptionContext::new([
            ("purpose".to_string(), "golden".to_string()),
            ("app".to_string(), "p11kms".to_string()),
        ])
        .unwrap()
    }

    fn key() -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).unwrap())
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn the_v1_format_is_frozen() {
        let id: KeyId = KEY_ID.parse().unwrap();
        let header = blob::header(&id, MaterialVersion(1));
        let mut body = PLAINTEXT.to_vec();
        key()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(IV),
                Aad::from(aad(&header, &context())),
                &mut body,
            )
            .unwrap();
        let written = blob::assemble(&header, &IV, &body);
        assert_eq!(hex(&written), GOLDEN_HEX, "the v1 layout or AAD changed");
    }

    #[test]
    fn the_committed_v1_blob_still_decrypts() {
        let bytes: Vec<u8> = (0..GOLDEN_HEX.len() / 2)
            .map(|i| u8::from_str_radix(&GOLDEN_HEX[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let parsed = blob::parse(&bytes).unwrap();
        assert_eq!(parsed.key_id.to_string(), KEY_ID);
        assert_eq!(parsed.version, MaterialVersion(1));
        let mut ct = parsed.ciphertext_and_tag.to_vec();
        let iv: [u8; 12] = parsed.iv.try_into().unwrap();
        let pt = key()
            .open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(aad(parsed.header, &context())),
                &mut ct,
            )
            .unwrap();
        assert_eq!(pt, PLAINTEXT);
    }
}
