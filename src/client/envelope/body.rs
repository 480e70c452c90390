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

/// The AAD of frame `seq` with `len` content bytes.
pub(crate) fn frame_aad(message_id: &[u8; 32], is_final: bool, seq: u32, len: u64) -> Vec<u8> {
    let content = if is_final { FINAL_AAD } else { FRAME_AAD };
    body_aad(message_id, content, &seq.to_be_bytes(), len)
}

/// The AAD of a non-framed body of `len` bytes (its sequence number is always 1).
pub(crate) fn single_block_aad(message_id: &[u8; 32], len: u64) -> Vec<u8> {
    body_aad(message_id, SINGLE_BLOCK_AAD, &1u32.to_be_bytes(), len)
}

fn body_aad(message_id: &[u8; 32], content: &[u8], seq: &[u8; 4], len: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(message_id.len() + content.len() + 12);
    aad.extend_from_slice(message_id);
    aad.extend_from_slice(content);
    aad.extend_from_slice(seq);
    aad.extend_from_slice(&len.to_be_bytes());
    aad
}

/// The sequence number after `seq`, if the format has one (0xFFFFFFFF is the mark).
pub(crate) fn next_seq(seq: u32) -> Option<u32> {
    seq.checked_add(1).filter(|s| *s != FINAL_MARK)
}
