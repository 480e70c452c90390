//! Envelope encryption in the AWS Encryption SDK message format, version 2, with the
//! key-committing suite AES_256_GCM_HKDF_SHA512_COMMIT_KEY (0x0478). Bulk data is
//! encrypted here, with a data key from a keyring; only the data key ever meets p11kms.
//!
//! This first cut encrypts and decrypts whole messages in memory, and is checked only
//! against itself and the specification so far: the interop tests against the official
//! SDK for Python, streaming, the p11kms keyring, the signed suite and the caching
//! layer's wiring are the next steps.

mod format;
mod raw_aes;

pub use format::{decrypt, encrypt, EnvelopeError, DEFAULT_FRAME_LENGTH, MAX_EDKS};
pub use raw_aes::RawAesKeyring;

use std::collections::BTreeMap;

use crate::domain::Plaintext;

/// An encrypted data key as the message header carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedDataKey {
    /// Who can decrypt it (e.g. a raw keyring's namespace).
    pub provider_id: String,
    /// Provider-specific (e.g. key name and IV).
    pub provider_info: Vec<u8>,
    /// The wrapped data key.
    pub ciphertext: Vec<u8>,
}

/// Something that makes and unwraps data keys.
pub trait Keyring {
    /// Wraps `data_key` for this keyring.
    fn wrap(
        &self,
        data_key: &Plaintext,
        context: &BTreeMap<String, String>,
    ) -> Result<EncryptedDataKey, EnvelopeError>;
    /// Unwraps one of `edks` that belongs to this keyring, if any.
    fn unwrap(
        &self,
        edks: &[EncryptedDataKey],
        context: &BTreeMap<String, String>,
    ) -> Result<Option<Plaintext>, EnvelopeError>;
}

/// The ESDK serialization of an encryption context: pair count, then per pair (sorted by
/// key bytes) key and value with u16 lengths; empty for an empty context.
pub(crate) fn serialize_context(ctx: &BTreeMap<String, String>) -> Result<Vec<u8>, EnvelopeError> {
    if ctx.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let n = u16::try_from(ctx.len()).map_err(|_| EnvelopeError::ContextTooLarge)?;
    out.extend_from_slice(&n.to_be_bytes());
    for (k, v) in ctx {
        for s in [k, v] {
            let len = u16::try_from(s.len()).map_err(|_| EnvelopeError::ContextTooLarge)?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    if out.len() > usize::from(u16::MAX) {
        return Err(EnvelopeError::ContextTooLarge);
    }
    Ok(out)
}
