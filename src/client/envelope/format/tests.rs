//! Round trips across frame boundaries, every mutation refused, no panics.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::client::envelope::RawAesKeyring;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("p11kms-test", "wrapping-key-1", &[0x11; 32]).unwrap()
}

fn ctx() -> BTreeMap<String, String> {
    [
        ("purpose".to_string(), "test".to_string()),
        ("app".to_string(), "p11kms".to_string()),
    ]
    .into_iter()
    .collect()
}

#[test]
fn round_trips_across_frame_boundaries() {
    let frame = 64u32;
    for size in [0usize, 1, 63, 64, 65, 64 * 7, 64 * 7 + 13] {
        let pt: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let msg = encrypt(&pt, &keyring(), &ctx(), frame).unwrap();
        let (out, c) = decrypt(&msg, &keyring(), MAX_EDKS).unwrap();
        assert_eq!(out.expose(), &pt[..], "size {size}");
        assert_eq!(c, ctx());
    }
}

#[test]
fn every_byte_flip_and_truncation_is_refused() {
    let msg = encrypt(b"a secret spanning frames......", &keyring(), &ctx(), 8).unwrap();
    for i in 0..msg.len() {
        let mut m = msg.clone();
        m[i] ^= 0x01;
        assert!(decrypt(&m, &keyring(), MAX_EDKS).is_err(), "flip at {i}");
    }
    for n in 0..msg.len() {
        assert!(
            decrypt(&msg[..n], &keyring(), MAX_EDKS).is_err(),
            "truncated to {n}"
        );
    }
    let mut longer = msg.clone();
    longer.push(0);
    assert_eq!(
        decrypt(&longer, &keyring(), MAX_EDKS).err(),
        Some(EnvelopeError::TrailingData)
    );
}

#[test]
fn another_wrapping_key_cannot_decrypt_and_edk_limit_applies() {
    let msg = encrypt(b"x", &keyring(), &ctx(), 64).unwrap();
    let other = RawAesKeyring::new("p11kms-test", "wrapping-key-1", &[0x22; 32]).unwrap();
    assert_eq!(
        decrypt(&msg, &other, MAX_EDKS).err(),
        Some(EnvelopeError::NoDecryptableKey)
    );
    assert_eq!(
        decrypt(&msg, &keyring(), 0).err(),
        Some(EnvelopeError::TooManyEdks(0))
    );
}

proptest! {
    #[test]
    fn decrypt_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decrypt(&bytes, &keyring(), MAX_EDKS);
    }

    #[test]
    fn decrypt_never_panics_on_damaged_messages(pos in 0usize..200, byte in any::<u8>(), cut in 0usize..250) {
        let msg = encrypt(b"property", &keyring(), &ctx(), 4).unwrap();
        let mut m = msg.clone();
        if let Some(b) = m.get_mut(pos) { *b = byte; }
        m.truncate(cut.min(m.len()));
        let _ = decrypt(&m, &keyring(), MAX_EDKS);
    }
}

#[test]
fn frame_ivs_are_taken_as_written() {
    // Some published messages use IVs other than the sequence number; their tags still
    // authenticate, so they decrypt. Order is still enforced by the sequence numbers.
    let odd_iv = |seq: u32| {
        let mut iv = [0xA5u8; 12];
        iv[..4].copy_from_slice(&seq.to_be_bytes());
        iv
    };
    let pt = b"three frames of text, more or less".to_vec();
    let msg = super::encrypt_with_ivs(&pt, &keyring(), &ctx(), 16, &odd_iv).unwrap();
    assert_eq!(
        decrypt(&msg, &keyring(), MAX_EDKS).unwrap().0.expose(),
        &pt[..]
    );
}

#[test]
fn the_legacy_empty_context_encoding_is_read() {
    assert!(super::parse_context(&[0, 0]).unwrap().is_empty());
    assert!(super::parse_context(&[0, 0, 0]).is_err());
    assert!(super::parse_context(&[]).unwrap().is_empty());
}
