//! Frames: sequence numbers from 1, the IV is the sequence number left-padded to 12
//! bytes, the AAD is message id | content string | sequence number | content length
//! (u64). A regular frame is seq | IV | frame-length bytes | tag; the final frame is
//! 0xFFFFFFFF | seq | IV | length (u32) | bytes | tag, and may be shorter than a frame.

/// Marks the final frame.
pub(crate) const FINAL_MARK: u32 = 0xFFFF_FFFF;
pub(crate) const FRAME_AAD: &[u8] = b"AWSKMSEncryptionClient Frame";
pub(crate) const FINAL_AAD: &[u8] = b"AWSKMSEncryptionClient Final Frame";
/// The content string of a non-framed body (IV | u64 length | ciphertext | tag).
pub(crate) const SINGLE_BLOCK_AAD: &[u8] = b"AWSKMSEncryptionClient Single Block";

/// The IV the SDKs write for frame `seq`.
pub(crate) fn frame_iv(seq: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[8..].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// The longest body AAD: message id, the longest content string, sequence number,
/// content length.
const AAD_MAX: usize = 32 + SINGLE_BLOCK_AAD.len() + 4 + 8;

/// A frame's AAD, built on the stack: one is needed per frame, and a heap allocation
/// per frame shows at small frame lengths.
pub(crate) struct BodyAad {
    bytes: [u8; AAD_MAX],
    len: usize,
}

impl BodyAad {
    fn push(&mut self, part: &[u8]) {
        let end = self.len + part.len();
        debug_assert!(end <= AAD_MAX, "the content strings fit AAD_MAX");
        if let Some(dst) = self.bytes.get_mut(self.len..end) {
            dst.copy_from_slice(part);
            self.len = end;
        }
    }
}

impl AsRef<[u8]> for BodyAad {
    fn as_ref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// The AAD of frame `seq` with `len` content bytes.
pub(crate) fn frame_aad(message_id: &[u8; 32], is_final: bool, seq: u32, len: u64) -> BodyAad {
    let content = if is_final { FINAL_AAD } else { FRAME_AAD };
    body_aad(message_id, content, seq, len)
}

/// The AAD of a non-framed body of `len` bytes (its sequence number is always 1).
pub(crate) fn single_block_aad(message_id: &[u8; 32], len: u64) -> BodyAad {
    body_aad(message_id, SINGLE_BLOCK_AAD, 1, len)
}

fn body_aad(message_id: &[u8; 32], content: &[u8], seq: u32, len: u64) -> BodyAad {
    let mut aad = BodyAad {
        bytes: [0; AAD_MAX],
        len: 0,
    };
    aad.push(message_id);
    aad.push(content);
    aad.push(&seq.to_be_bytes());
    aad.push(&len.to_be_bytes());
    aad
}

/// The sequence number after `seq`, if the format has one (0xFFFFFFFF is the mark).
pub(crate) fn next_seq(seq: u32) -> Option<u32> {
    seq.checked_add(1).filter(|s| *s != FINAL_MARK)
}
