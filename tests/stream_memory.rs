//! A 4 GiB stream through encrypt and decrypt keeps this process's peak memory under
//! 64 MiB: the encryptor writes into a pipe on one thread, the decryptor reads it on
//! another, and the plaintext is generated and checked on the fly. The only test in
//! this binary, so that the peak (VmHWM) is its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};

use p11kms::client::envelope::{
    DecryptOptions, EncryptionRequest, Encryptor, MaterialsManager, MessageHeader, RawAesKeyring,
    Suite,
};

const TOTAL: u64 = 4 << 30;
const FRAME: u32 = 64 << 10;
/// A prime length, so the pattern never lines up with frames or buffers.
const PATTERN_LEN: usize = 1_048_573;

fn pattern() -> Vec<u8> {
    let mut p = vec![0u8; PATTERN_LEN];
    fill(&mut p);
    p
}

fn fill(buf: &mut [u8]) {
    // Any bytes do; a simple generator keeps the test free of extra dependencies.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// Yields `TOTAL` bytes of the repeating pattern.
struct Source {
    pattern: std::sync::Arc<Vec<u8>>,
    pos: u64,
}

impl Read for Source {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let left = TOTAL - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let at = (self.pos % PATTERN_LEN as u64) as usize;
        let n = out.len().min(PATTERN_LEN - at).min(left as usize);
        out[..n].copy_from_slice(&self.pattern[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_4_gib_stream_encrypts_and_decrypts_in_under_64_mib() {
    let keyring = RawAesKeyring::new("p11kms-test", "wrapping-key-1", &[0x11; 32]).unwrap();
    let context: BTreeMap<String, String> = [("test".to_string(), "4gib".to_string())].into();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let materials = rt
        .block_on(keyring.encryption_materials(EncryptionRequest {
            context: &context,
            suite: Suite::Committing,
            plaintext_length: None,
        }))
        .unwrap();
    let pattern = std::sync::Arc::new(pattern());
    let (pipe_r, pipe_w) = std::io::pipe().unwrap();

    let src = pattern.clone();
    let writer = std::thread::spawn(move || {
        let mut source = Source {
            pattern: src,
            pos: 0,
        };
        let mut enc =
            Encryptor::new(BufWriter::with_capacity(1 << 16, pipe_w), materials, FRAME).unwrap();
        let n = std::io::copy(&mut source, &mut enc).unwrap();
        enc.finish().unwrap().flush().unwrap();
        n
    });

    let head = MessageHeader::read(
        BufReader::with_capacity(1 << 16, pipe_r),
        &DecryptOptions::default(),
    )
    .unwrap();
    let dm = rt
        .block_on(keyring.decryption_materials(head.request()))
        .unwrap();
    let mut dec = head.into_decryptor(dm).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut pos: u64 = 0;
    loop {
        let n = dec.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        // Compare with the pattern at this position, piece by piece across its wrap.
        let mut got = &buf[..n];
        while !got.is_empty() {
            let at = (pos % PATTERN_LEN as u64) as usize;
            let m = got.len().min(PATTERN_LEN - at);
            assert!(
                got[..m] == pattern[at..at + m],
                "plaintext differs at {pos}"
            );
            got = &got[m..];
            pos += m as u64;
        }
    }
    assert_eq!(writer.join().unwrap(), TOTAL);
    assert_eq!(pos, TOTAL, "decrypted length");
    let peak = peak_rss_kib();
    eprintln!("4 GiB round trip: peak RSS {} MiB", peak / 1024);
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}
