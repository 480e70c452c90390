//! Envelope throughput on one core: a 1 GiB in-memory message at 64 KiB frames, made by
//! `encrypt_to_vec` and through the generic `io::Write` path (`Encryptor::new`, in one
//! write and in 8 KiB writes), read back through `io::Read` (the `Decryptor`, in reads
//! of the whole and of 8 KiB), next to raw AES-256-GCM from the same crypto crate
//! (aws-lc-rs) sealing and opening the same 64 KiB chunks in place, in the same run.
//!
//! More rows separate the encryptor's own cost from the writer's: the same writes into
//! `io::sink()`, and raw AES-256-GCM doing the least any `io::Write` encryptor can do
//! into the `Vec` (seal each chunk out of place into a buffer, hand it to `write_all`,
//! which copies it). The copy into a 1 GiB `Vec` goes to DRAM, where an in-place seal
//! writes back the lines it has just read: that copy, not the encryptor, is most of the
//! gap. One row writes 4 KiB frames (the default) to an unbuffered `File` on /dev/null,
//! next to raw AES-256-GCM over 4 KiB chunks: there each `write` is a system call.
//!
//! Each round runs every measurement once, raw first, so that a busy neighbour slows a
//! round's raw and envelope figures alike; the table gives the median GB/s over the
//! rounds and the median of each round's envelope/raw ratio. Output buffers are
//! allocated and touched once and reused, as the raw loop reuses its buffer, so page
//! faults are not measured. Prints the table; asserts only that the round trip holds.
//!
//! Run: `cargo bench --bench envelope`. `BENCH_MIB` (1024; 2 fits in cache),
//! `BENCH_ROUNDS` (5), and `BENCH_ONLY=write,read8k,...` (the keys in `ROWS`) to run
//! only some, e.g. under `perf record`.

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
const TAG: usize = 16;
/// std::io::copy's buffer: the write and read size of a typical streaming caller.
const SMALL: usize = 8 << 10;
/// The default frame length (`DEFAULT_FRAME_LENGTH`), where the number of writes each
/// frame costs shows most.
const SMALL_FRAME: usize = 4 << 10;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn iv(i: usize, round: usize) -> Nonce {
    let mut iv = [0u8; 12];
    iv[..4].copy_from_slice(&(round as u32).to_be_bytes());
    iv[8..].copy_from_slice(&(i as u32).to_be_bytes());
    Nonce::assume_unique_for_key(iv)
}

fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// What each round measures: a key for `BENCH_ONLY`, the table's label, and the raw
/// measurement it is compared with (None: it is one).
const ROWS: &[(&str, &str, Option<&str>)] = &[
    (
        "raw_seal",
        "raw AES-256-GCM seal (aws-lc-rs, in place)",
        None,
    ),
    (
        "vec",
        "envelope encrypt in memory (encrypt_to_vec)",
        Some("raw_seal"),
    ),
    (
        "write",
        "envelope encrypt, io::Write (Encryptor::new), one write_all",
        Some("raw_seal"),
    ),
    (
        "write8k",
        "envelope encrypt, io::Write (Encryptor::new), 8 KiB writes",
        Some("raw_seal"),
    ),
    (
        "write_sink",
        "envelope encrypt, io::Write into io::sink(), one write_all",
        Some("raw_seal"),
    ),
    (
        "write8k_sink",
        "envelope encrypt, io::Write into io::sink(), 8 KiB writes",
        Some("raw_seal"),
    ),
    (
        "raw_write",
        "raw AES-256-GCM seal into a frame buffer, then one write_all into the Vec",
        Some("raw_seal"),
    ),
    (
        "raw_seal4k",
        "raw AES-256-GCM seal, 4 KiB chunks (in place)",
        None,
    ),
    (
        "file4k",
        "envelope encrypt, io::Write into an unbuffered File (/dev/null), 4 KiB frames",
        Some("raw_seal4k"),
    ),
    (
        "raw_open",
        "raw AES-256-GCM open (aws-lc-rs, in place)",
        None,
    ),
    (
        "read",
        "envelope decrypt, io::Read (Decryptor), one read_exact",
        Some("raw_open"),
    ),
    (
        "read8k",
        "envelope decrypt, io::Read (Decryptor), 8 KiB reads",
        Some("raw_open"),
    ),
];

fn main() {
    let mib: usize = env("BENCH_MIB", 1024);
    let rounds: usize = env("BENCH_ROUNDS", 5).max(1);
    let only: String = env("BENCH_ONLY", String::new());
    let wanted = |key: &str| only.is_empty() || only.split(',').any(|k| k.trim() == key);
    let size = mib << 20;
    let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let keyring = RawAesKeyring::new("bench", "k", &[7; 32]).unwrap();
    let context: BTreeMap<String, String> = [("bench".to_string(), "1".to_string())].into();
    let materials = || -> EncryptionMaterials {
        rt.block_on(keyring.encryption_materials(EncryptionRequest {
            context: &context,
            suite: Suite::Committing,
            plaintext_length: None,
        }))
        .unwrap()
    };

    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9; 32]).unwrap());
    // Raw seal works on a copy of the plaintext, sealing it again each round (the speed
    // of AES-GCM does not depend on the bytes).
    let mut raw = plaintext.clone();
    // Raw open: frames of ciphertext and tag, opened in place, then sealed again
    // (untimed) for the next round.
    let mut sealed = vec![0u8; size + size.div_ceil(FRAME) * TAG];
    let reseal = |sealed: &mut Vec<u8>, round: usize| {
        for (i, f) in sealed.chunks_mut(FRAME + TAG).enumerate() {
            let (body, tag) = f.split_at_mut(f.len() - TAG);
            let t = key
                .seal_in_place_separate_tag(iv(i, round), Aad::empty(), body)
                .unwrap();
            tag.copy_from_slice(t.as_ref());
        }
    };
    let mut message = Vec::with_capacity(size + size / FRAME * 40 + 4096);
    // Written once, touching every page of `message` before anything is timed.
    encrypt_to_vec(materials(), &plaintext, FRAME as u32, &mut message).unwrap();
    // The message the decrypt measurements read.
    let to_read = message.clone();
    let mut out = vec![0u8; size];

    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut ratios: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        let mut this: BTreeMap<&str, f64> = BTreeMap::new();
        for &(name, _, _) in ROWS {
            if !wanted(name) {
                continue;
            }
            let secs = match name {
                "raw_seal" => timed(|| {
                    for (i, chunk) in raw.chunks_mut(FRAME).enumerate() {
                        let tag = key
                            .seal_in_place_separate_tag(iv(i, round), Aad::empty(), chunk)
                            .unwrap();
                        let _ = std::hint::black_box(tag);
                    }
                }),
                "raw_seal4k" => timed(|| {
                    for (i, chunk) in raw.chunks_mut(SMALL_FRAME).enumerate() {
                        let tag = key
                            .seal_in_place_separate_tag(iv(i, round), Aad::empty(), chunk)
                            .unwrap();
                        let _ = std::hint::black_box(tag);
                    }
                }),
                "file4k" => {
                    let m = materials();
                    let null = std::fs::OpenOptions::new()
                        .write(true)
                        .open("/dev/null")
                        .unwrap();
                    timed(|| {
                        let mut enc = Encryptor::new(null, m, SMALL_FRAME as u32).unwrap();
                        for c in plaintext.chunks(FRAME) {
                            enc.write_all(c).unwrap();
                        }
                        enc.finish().unwrap();
                    })
                }
                "raw_open" => {
                    reseal(&mut sealed, round);
                    timed(|| {
                        for (i, f) in sealed.chunks_mut(FRAME + TAG).enumerate() {
                            key.open_in_place(iv(i, round), Aad::empty(), f).unwrap();
                        }
                    })
                }
                "vec" => {
                    message.clear();
                    let m = materials();
                    timed(|| encrypt_to_vec(m, &plaintext, FRAME as u32, &mut message).unwrap())
                }
                "write" | "write8k" => {
                    message.clear();
                    let m = materials();
                    let chunk = if name == "write" { size.max(1) } else { SMALL };
                    timed(|| {
                        let mut enc = Encryptor::new(&mut message, m, FRAME as u32).unwrap();
                        for c in plaintext.chunks(chunk) {
                            enc.write_all(c).unwrap();
                        }
                        enc.finish().unwrap();
                    })
                }
                "write_sink" | "write8k_sink" => {
                    let m = materials();
                    let chunk = if name == "write_sink" {
                        size.max(1)
                    } else {
                        SMALL
                    };
                    timed(|| {
                        let mut enc = Encryptor::new(std::io::sink(), m, FRAME as u32).unwrap();
                        for c in plaintext.chunks(chunk) {
                            enc.write_all(c).unwrap();
                        }
                        enc.finish().unwrap();
                    })
                }
                "raw_write" => {
                    // The least any io::Write encryptor can do into this Vec: seal each
                    // frame out of place into a buffer of its own (the caller's slice is
                    // read-only), then hand it to the writer, which copies it.
                    message.clear();
                    let mut frame = vec![0u8; FRAME + TAG];
                    timed(|| {
                        for (i, chunk) in plaintext.chunks(FRAME).enumerate() {
                            let (body, tag) = frame.split_at_mut(chunk.len());
                            key.seal_out_of_place_scatter(
                                iv(i, round),
                                Aad::empty(),
                                chunk,
                                body,
                                &[],
                                &mut tag[..TAG],
                            )
                            .unwrap();
                            message.write_all(&frame[..chunk.len() + TAG]).unwrap();
                        }
                    })
                }
                "read" | "read8k" => {
                    let head =
                        MessageHeader::read(&to_read[..], &DecryptOptions::default()).unwrap();
                    let dm = rt
                        .block_on(keyring.decryption_materials(head.request()))
                        .unwrap();
                    out.fill(0);
                    let chunk = if name == "read" { size.max(1) } else { SMALL };
                    let secs = timed(|| {
                        let mut dec = head.into_decryptor(dm).unwrap();
                        for c in out.chunks_mut(chunk) {
                            dec.read_exact(c).unwrap();
                        }
                        assert_eq!(dec.read(&mut [0u8; 1]).unwrap(), 0);
                    });
                    assert!(out == plaintext, "round trip");
                    secs
                }
                _ => unreachable!(),
            };
            this.insert(name, secs);
            times.entry(name).or_default().push(secs);
        }
        for &(name, _, raw_name) in ROWS {
            if let (Some(t), Some(r)) = (this.get(name), raw_name.and_then(|r| this.get(r))) {
                ratios.entry(name).or_default().push(r / t);
            }
        }
    }

    println!(
        "envelope, {mib} MiB in memory, {} KiB frames, one core, median of {rounds} rounds:",
        FRAME >> 10
    );
    println!("| measurement | GB/s | of raw (median of per-round ratios) |");
    println!("|---|---|---|");
    for &(name, label, raw_name) in ROWS {
        let Some(t) = times.get(name) else { continue };
        let gbps = size as f64 / median(t.clone()) / 1e9;
        let of_raw = match (raw_name, ratios.get(name)) {
            (None, _) => "100% (reference)".to_string(),
            (Some(_), Some(r)) => format!("{:.0}%", 100.0 * median(r.clone())),
            (Some(r), None) => format!("({r} not run)"),
        };
        println!("| {label} | {gbps:.2} | {of_raw} |");
    }
}
