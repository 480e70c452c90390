//! SHA-256 as lowercase hex: the audit chain's link and SigV4's hashes are both this.

use aws_lc_rs::digest::{digest, SHA256};

/// The SHA-256 of `bytes`, as 64 lowercase hex digits.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    for b in digest(&SHA256, bytes).as_ref() {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}
