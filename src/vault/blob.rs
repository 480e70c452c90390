//! The ciphertext blob, format version 1 (docs/ciphertext-format.md):
//!
//! ```text
//! offset  size  field
//!      0     3  magic "p11"
//!      3     1  format version, 0x01
//!      4    16  key id (UUID bytes)
//!     20     4  material version, u32 big-endian
//!     24    12  AES-GCM IV
//!     36     n  ciphertext, n >= 1
//!   36+n    16  AES-GCM tag
//! ```
//!
//! The 24-byte header is part of the GCM additional data, followed by the canonical
//! encryption context, so that no header field can be changed without the tag failing.

use crate::domain::{KeyId, MaterialVersion};

const MAGIC: &[u8; 3] = b"p11";
/// The only format version written and read today.
pub(crate) const FORMAT_V1: u8 = 1;
/// Bytes before the IV.
pub(crate) const HEADER_LEN: usize = 24;
/// AES-GCM IV length (96 bits, the length NIST SP 800-38D recommends).
pub(crate) const IV_LEN: usize = 12;
/// AES-GCM tag length (128 bits).
pub(crate) const TAG_LEN: usize = 16;
/// Header + IV + tag: the size of a blob beyond its ciphertext.
#[cfg(test)]
const OVERHEAD: usize = HEADER_LEN + IV_LEN + TAG_LEN;
/// AWS KMS accepts CiphertextBlob values of up to 6144 bytes.
pub(crate) const MAX_BLOB_LEN: usize = 6144;

/// A parsed blob. Borrowing: it points into the caller's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Blob<'a> {
    /// The key that encrypted it.
    pub key_id: KeyId,
    /// Which of the key's material versions.
    pub version: MaterialVersion,
    /// The header bytes, authenticated as the first part of the AAD.
    pub header: &'a [u8],
    /// The GCM IV.
    pub iv: &'a [u8],
    /// Ciphertext followed by the tag, as PKCS#11 C_Decrypt wants it.
    pub ciphertext_and_tag: &'a [u8],
}

/// Why bytes are not a blob of ours. All of them become InvalidCiphertextException.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Shorter than the smallest possible blob.
    #[error("the ciphertext blob is truncated")]
    Truncated,
    /// Longer than any blob we write.
    #[error("the ciphertext blob is longer than {MAX_BLOB_LEN} bytes")]
    TooLong,
    /// Does not start with our magic.
    #[error("the ciphertext blob was not produced by p11kms")]
    Foreign,
    /// A version this build cannot read.
    #[error("the ciphertext blob has an unsupported format version")]
    UnsupportedVersion,
    /// Material version 0 is never written.
    #[error("the ciphertext blob names no valid key material")]
    BadMaterialVersion,
}

/// The header for a new blob.
pub(crate) fn header(key_id: &KeyId, version: MaterialVersion) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let (magic, rest) = h.split_at_mut(3);
    magic.copy_from_slice(MAGIC);
    let (ver, rest) = rest.split_at_mut(1);
    ver.copy_from_slice(&[FORMAT_V1]);
    let (id, rest) = rest.split_at_mut(16);
    id.copy_from_slice(key_id.as_bytes());
    rest.copy_from_slice(&version.0.to_be_bytes());
    h
}

/// Assembles header, IV and the HSM's ciphertext||tag into one blob.
pub(crate) fn assemble(
    header: &[u8; HEADER_LEN],
    iv: &[u8; IV_LEN],
    ciphertext_and_tag: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + IV_LEN + ciphertext_and_tag.len());
    out.extend_from_slice(header);
    out.extend_from_slice(iv);
    out.extend_from_slice(ciphertext_and_tag);
    out
}

/// Parses a blob without trusting any of its bytes.
pub fn parse(bytes: &[u8]) -> Result<Blob<'_>, BlobError> {
    if bytes.len() > MAX_BLOB_LEN {
        return Err(BlobError::TooLong);
    }
    // Look at the magic before the length so that a short foreign blob says "foreign".
    let magic = bytes.get(..3).ok_or(BlobError::Truncated)?;
    if magic != MAGIC {
        return Err(BlobError::Foreign);
    }
    let (header, rest) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or(BlobError::Truncated)?;
    if header.get(3) != Some(&FORMAT_V1) {
        return Err(BlobError::UnsupportedVersion);
    }
    let id: [u8; 16] = header
        .get(4..20)
        .and_then(|s| s.try_into().ok())
        .ok_or(BlobError::Truncated)?;
    let ver: [u8; 4] = header
        .get(20..24)
        .and_then(|s| s.try_into().ok())
        .ok_or(BlobError::Truncated)?;
    let version = u32::from_be_bytes(ver);
    if version == 0 {
        return Err(BlobError::BadMaterialVersion);
    }
    let (iv, ciphertext_and_tag) = rest.split_at_checked(IV_LEN).ok_or(BlobError::Truncated)?;
    // At least one byte of ciphertext: nothing we write is empty.
    if ciphertext_and_tag.len() <= TAG_LEN {
        return Err(BlobError::Truncated);
    }
    Ok(Blob {
        key_id: KeyId::from_bytes(id),
        version: MaterialVersion(version),
        header,
        iv,
        ciphertext_and_tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let id = KeyId::generate();
        let h = header(&id, MaterialVersion(7));
        assemble(&h, &[9u8; IV_LEN], &[1u8; 20])
    }

    #[test]
    fn assembled_blob_parses_back() {
        let id = KeyId::generate();
        let h = header(&id, MaterialVersion(3));
        let b = assemble(&h, &[5u8; IV_LEN], &[7u8; 40]);
        let p = parse(&b).unwrap();
        assert_eq!(p.key_id, id);
        assert_eq!(p.version, MaterialVersion(3));
        assert_eq!(p.iv, &[5u8; IV_LEN]);
        assert_eq!(p.ciphertext_and_tag.len(), 40);
        assert_eq!(p.header, &h);
    }

    #[test]
    fn every_truncation_is_refused() {
        let b = sample();
        for n in 0..=OVERHEAD {
            assert!(parse(&b[..n]).is_err(), "length {n}");
        }
    }

    #[test]
    fn foreign_and_versioned_blobs_are_refused() {
        let mut b = sample();
        b[0] = b'x';
        assert_eq!(parse(&b), Err(BlobError::Foreign));
        let mut b = sample();
        b[3] = 2;
        assert_eq!(parse(&b), Err(BlobError::UnsupportedVersion));
        let mut b = sample();
        b[20..24].copy_from_slice(&[0; 4]);
        assert_eq!(parse(&b), Err(BlobError::BadMaterialVersion));
        assert_eq!(
            parse(&vec![b'p'; MAX_BLOB_LEN + 1]),
            Err(BlobError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..7000)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parser_never_panics_on_near_valid_blobs(
            tail in proptest::collection::vec(any::<u8>(), 0..100),
            version in any::<u8>(),
        ) {
            let mut b = b"p11".to_vec();
            b.push(version);
            b.extend_from_slice(&tail);
            if let Ok(p) = parse(&b) {
                prop_assert_eq!(p.header.len() + p.iv.len() + p.ciphertext_and_tag.len(), b.len());
            }
        }
    }
}
