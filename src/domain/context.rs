//! The encryption context and its canonical encoding, which is authenticated as
//! additional data so that decryption needs the same pairs in any order.

use std::collections::BTreeMap;

/// Upper bound on the canonical encoding of a context. AWS publishes no number; 8 KiB
/// leaves room for every context we have seen while keeping a request's AAD small.
pub(crate) const MAX_CONTEXT_BYTES: usize = 8192;

/// Non-secret key/value pairs bound to a ciphertext. Order-independent: the pairs are
/// kept sorted by key bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

/// Why a context was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the encryption context is larger than {MAX_CONTEXT_BYTES} bytes when encoded")]
pub struct ContextTooLarge;

impl EncryptionContext {
    /// Builds a context, refusing one whose canonical encoding exceeds the limit.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, ContextTooLarge> {
        let ctx = Self(pairs.into_iter().collect());
        if ctx.encoded_len() > MAX_CONTEXT_BYTES {
            return Err(ContextTooLarge);
        }
        Ok(ctx)
    }

    /// The pairs, sorted by key.
    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn encoded_len(&self) -> usize {
        2 + self
            .0
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum::<usize>()
    }

    /// Canonical encoding: pair count (u16 BE), then per pair in key-byte order the key
    /// and the value, each as u16 BE length and UTF-8 bytes. Every length fits in u16
    /// because the constructor bounds the total.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Bounded by MAX_CONTEXT_BYTES (< u16::MAX) at construction, so never None.
        encode_pairs(&self.0).unwrap_or_default()
    }
}

/// The canonical encoding of any sorted pairs (the AWS Encryption SDK serializes its
/// message context the same way): None when the count or a length does not fit a u16.
pub(crate) fn encode_pairs(pairs: &BTreeMap<String, String>) -> Option<Vec<u8>> {
    let len = |n: usize| u16::try_from(n).ok().map(u16::to_be_bytes);
    let total = 2 + pairs
        .iter()
        .map(|(k, v)| 4 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&len(pairs.len())?);
    for (k, v) in pairs {
        out.extend_from_slice(&len(k.len())?);
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&len(v.len())?);
        out.extend_from_slice(v.as_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        EncryptionContext::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn encoding_is_independent_of_insertion_order() {
        let a = ctx(&[("b", "2"), ("a", "1")]);
        let b = ctx(&[("a", "1"), ("b", "2")]);
        assert_eq!(a.canonical_bytes(), b.canonical_bytes());
    }

    #[test]
    fn encoding_is_length_prefixed_so_pairs_cannot_be_shifted() {
        let a = ctx(&[("ab", "c")]);
        let b = ctx(&[("a", "bc")]);
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        assert_eq!(
            a.canonical_bytes(),
            vec![0, 1, 0, 2, b'a', b'b', 0, 1, b'c']
        );
    }

    #[test]
    fn empty_context_encodes_as_zero_count() {
        assert_eq!(EncryptionContext::default().canonical_bytes(), vec![0, 0]);
    }

    #[test]
    fn oversized_context_is_refused() {
        let big = "x".repeat(MAX_CONTEXT_BYTES);
        assert_eq!(
            EncryptionContext::new([("k".to_string(), big)]),
            Err(ContextTooLarge)
        );
    }
}
