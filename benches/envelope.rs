//! Envelope throughput on one core: a 1 GiB in-memory message at 64 KiB frames, made by
//! `encrypt_to_vec` and by the streaming Encryptor, read by the streaming Decryptor,
//! next to raw AES-256-GCM from the same crypto crate (aws-lc-rs) sealing and opening
//! the same 64 KiB chunks in place, in the same run. Output buffers are reused between
//! rounds, as the raw loop reuses its buffer, so page faults are not measured. Prints
//! GB/s and the ratio; asserts nothing.
//!
//! Run: `cargo bench --bench envelope` (BENCH_MIB=1024 by default).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Instant;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use p11kms::client::envelope::{
    encrypt_to_vec, DecryptOptions, EncryptionMaterials, EncryptionRequest, Encryptor,
    MaterialsManager, MessageHeader, RawAesKeyring, Suite,
};

const FRAME: usize = 64 << 10;

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

/// Best of three, to keep one scheduler hiccup out of the figure.
fn best(mut f: impl FnMut() -> f64) -> f64 {
    (0..3).map(|_| f()).fold(f64::MAX, f64::min)
}

fn main() {
    let mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let keyring = RawAesKeyring::new("bench", "k", &[7; 32]).unwrap();
    let context: BTreeMap<String, String> = [("bench".to_string(), "1".to_string())].into();

    // Raw AES-256-GCM over the same chunks, in place: the limit.
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9; 32]).unwrap());
    let mut raw = plaintext.clone();
    let mut tags = Vec::with_capacity(size / FRAME + 1);
    let raw_seal = best(|| {
        tags.clear();
        let t = Instant::now();
        for (i, chunk) in raw.chunks_mut(FRAME).enumerate() {
            let mut iv = [0u8; 12];
            iv[8..].copy_from_slice(&(i as u32).to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(&[][..]),
                    chunk,
                )
                .unwrap();
            tags.push(tag);
        }
        let s = t.elapsed().as_secs_f64();
        // Open again so the next round seals plaintext.
        for (i, chunk) in raw.chunks_mut(FRAME).enumerate() {
            let mut iv = [0u8; 12];
            iv[8..].copy_from_slice(&(i as u32).to_be_bytes());
            let mut with_tag = chunk.to_vec();
            with_tag.extend_from_slice(tags[i].as_ref());
            let pt = key
                .open_in_place(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(&[][..]),
                    &mut with_tag,
                )
                .unwrap();
            chunk.copy_from_slice(pt);
        }
        s
    });
    // Raw open: chunks with their tags, in place.
    let mut sealed: Vec<Vec<u8>> = plaintext
        .chunks(FRAME)
        .enumerate()
        .map(|(i, c)| {
            let mut iv = [0u8; 12];
            iv[8..].copy_from_slice(&(i as u32).to_be_bytes());
            let mut v = c.to_vec();
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&[][..]),
                &mut v,
            )
            .unwrap();
            v
        })
        .collect();
    let raw_open = best(|| {
        let mut copies: Vec<Vec<u8>> = sealed.clone();
        let t = Instant::now();
        for (i, v) in copies.iter_mut().enumerate() {
            let mut iv = [0u8; 12];
            iv[8..].copy_from_slice(&(i as u32).to_be_bytes());
            key.open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(&[][..]), v)
                .unwrap();
        }
        t.elapsed().as_secs_f64()
    });
    sealed.clear();

    // The envelope: a whole message into a Vec, in memory and through the stream writer.
    let materials = || -> EncryptionMaterials {
        rt.block_on(keyring.encryption_materials(EncryptionRequest {
            context: &context,
            suite: Suite::Committing,
            plaintext_length: None,
        }))
        .unwrap()
    };
    let mut message = Vec::with_capacity(size + size / FRAME * 40 + 4096);
    let env_stream = best(|| {
        message.clear();
        let m = materials();
        let t = Instant::now();
        let mut enc = Encryptor::new(&mut message, m, FRAME as u32).unwrap();
        enc.write_all(&plaintext).unwrap();
        enc.finish().unwrap();
        t.elapsed().as_secs_f64()
    });
    let env_seal = best(|| {
        message.clear();
        let m = materials();
        let t = Instant::now();
        encrypt_to_vec(m, &plaintext, FRAME as u32, &mut message).unwrap();
        t.elapsed().as_secs_f64()
    });
    let mut out = vec![0u8; size];
    let env_open = best(|| {
        let head = MessageHeader::read(&message[..], &DecryptOptions::default()).unwrap();
        let dm = rt
            .block_on(keyring.decryption_materials(head.request()))
            .unwrap();
        let t = Instant::now();
        let mut dec = head.into_decryptor(dm).unwrap();
        dec.read_exact(&mut out).unwrap();
        assert_eq!(dec.read(&mut [0u8; 1]).unwrap(), 0);
        t.elapsed().as_secs_f64()
    });
    assert!(out == plaintext, "round trip");

    println!(
        "envelope, {mib} MiB in memory, {} KiB frames, one core:",
        FRAME >> 10
    );
    println!("| measurement | GB/s | of raw |");
    println!("|---|---|---|");
    println!(
        "| raw AES-256-GCM seal (aws-lc-rs, in place) | {:.2} | 100% |",
        gbps(size, raw_seal)
    );
    println!(
        "| envelope encrypt in memory (encrypt_to_vec) | {:.2} | {:.0}% |",
        gbps(size, env_seal),
        100.0 * raw_seal / env_seal
    );
    println!(
        "| envelope encrypt streaming (Encryptor into a Vec) | {:.2} | {:.0}% |",
        gbps(size, env_stream),
        100.0 * raw_seal / env_stream
    );
    println!(
        "| raw AES-256-GCM open (aws-lc-rs, in place) | {:.2} | 100% |",
        gbps(size, raw_open)
    );
    println!(
        "| envelope decrypt streaming (Decryptor into a buffer) | {:.2} | {:.0}% |",
        gbps(size, env_open),
        100.0 * raw_open / env_open
    );
}
