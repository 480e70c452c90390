//! The ImportToken of GetParametersForImport: which key, which wrapping key, algorithm
//! and spec, and until when, sealed under the token's secret-sealing key so that it
//! can be neither forged nor edited. Format: `0x01 || IV (12) || AES-256-GCM output`
//! of `key id (16) || wrapping key id (16) || algorithm (1) || spec (1) || valid to
//! (u64 seconds, big-endian)`, with its own AAD so that no other sealed value of the
//! daemon's opens as one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{KmsError, Vault};
use crate::domain::{KeyId, Plaintext, RandomFailed, WrappingAlgorithm, WrappingKeySpec};

const FORMAT_V1: u8 = 1;
const IV_LEN: usize = 12;
const AAD: &[u8] = b"p11kms-import-token/1";
const BODY_LEN: usize = 16 + 16 + 1 + 1 + 8;

/// What an import token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ImportToken {
    /// The key it may import into.
    pub(super) key_id: KeyId,
    /// The wrapping key's id in the token.
    pub(super) wrapping_key: [u8; 16],
    /// How the material must be wrapped.
    pub(super) algorithm: WrappingAlgorithm,
    /// The wrapping key's size.
    pub(super) spec: WrappingKeySpec,
    /// When it stops being valid (whole seconds).
    pub(super) valid_to: SystemTime,
}

impl ImportToken {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BODY_LEN);
        out.extend_from_slice(self.key_id.as_bytes());
        out.extend_from_slice(&self.wrapping_key);
        out.push(index_of(WrappingAlgorithm::ALL, self.algorithm));
        out.push(index_of(WrappingKeySpec::ALL, self.spec));
        let secs = self
            .valid_to
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        out.extend_from_slice(&secs.to_be_bytes());
        out
    }

    fn decode(body: &[u8]) -> Option<Self> {
        if body.len() != BODY_LEN {
            return None;
        }
        let (key, rest) = body.split_first_chunk::<16>()?;
        let (wrapping_key, rest) = rest.split_first_chunk::<16>()?;
        let (&[alg, spec], rest) = rest.split_first_chunk::<2>()?;
        let secs = u64::from_be_bytes(rest.try_into().ok()?);
        Some(Self {
            key_id: KeyId::from_bytes(*key),
            wrapping_key: *wrapping_key,
            algorithm: *WrappingAlgorithm::ALL.get(usize::from(alg))?,
            spec: *WrappingKeySpec::ALL.get(usize::from(spec))?,
            valid_to: UNIX_EPOCH + Duration::from_secs(secs),
        })
    }
}

fn index_of<T: PartialEq>(all: &[T], v: T) -> u8 {
    all.iter()
        .position(|x| *x == v)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

fn invalid() -> KmsError {
    KmsError::InvalidImportToken(
        "the import token is not one this service issued, or it was altered".into(),
    )
}

impl Vault {
    /// Seals `token` for the caller.
    pub(super) async fn seal_import_token(&self, token: &ImportToken) -> Result<Vec<u8>, KmsError> {
        let mut iv = [0u8; IV_LEN];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| KmsError::internal(RandomFailed))?;
        let sealed = self
            .hsm
            .seal_secret(iv, AAD.to_vec(), Plaintext::new(token.encode()))
            .await?;
        let mut out = Vec::with_capacity(1 + IV_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens an import token: InvalidImportTokenException for anything this daemon (or
    /// another on the same token) did not seal.
    pub(super) async fn open_import_token(&self, bytes: &[u8]) -> Result<ImportToken, KmsError> {
        let (format, rest) = bytes.split_first().ok_or_else(invalid)?;
        let (iv, sealed) = rest.split_first_chunk::<IV_LEN>().ok_or_else(invalid)?;
        if *format != FORMAT_V1 || sealed.len() != BODY_LEN + 16 {
            return Err(invalid());
        }
        let body = self
            .hsm
            .open_secret(*iv, AAD.to_vec(), sealed.to_vec())
            .await
            .map_err(|e| match e {
                crate::hsm::HsmError::TagMismatch => invalid(),
                e => KmsError::from(e),
            })?;
        ImportToken::decode(body.expose()).ok_or_else(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the bytes (an opened token is authenticated, but the decoder must
        /// not trust even that), decoding never panics, and what decodes encodes back
        /// to the same bytes.
        #[test]
        fn any_body_decodes_or_not_without_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(t) = ImportToken::decode(&body) {
                prop_assert_eq!(t.encode(), body);
            }
        }
    }

    #[test]
    fn bodies_round_trip_and_other_bytes_do_not_decode() {
        let t = ImportToken {
            key_id: KeyId::generate(),
            wrapping_key: [7; 16],
            algorithm: WrappingAlgorithm::RsaAesKeyWrapSha256,
            spec: WrappingKeySpec::Rsa4096,
            valid_to: UNIX_EPOCH + Duration::from_secs(1_900_000_000),
        };
        let body = t.encode();
        assert_eq!(body.len(), BODY_LEN);
        assert_eq!(ImportToken::decode(&body), Some(t));
        assert_eq!(ImportToken::decode(&body[1..]), None);
        let mut bad = body.clone();
        bad[32] = 200;
        assert_eq!(ImportToken::decode(&bad), None, "unknown algorithm");
        let mut bad = body;
        bad[33] = 9;
        assert_eq!(ImportToken::decode(&bad), None, "unknown spec");
    }
}
