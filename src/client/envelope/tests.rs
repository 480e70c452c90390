//! Round trips across frame boundaries for both suites, every mutation refused with no
//! plaintext of a damaged frame released, keyrings and the cache, no panics.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::client::cache::{CacheLimits, Clock};

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("p11kms-test", "wrapping-key-1", &[0x11; 32]).unwrap()
}

fn ctx() -> BTreeMap<String, String> {
    [("purpose", "test"), ("app", "p11kms")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn opts(suite: Suite, frame_length: u32) -> EncryptOptions {
    EncryptOptions {
        suite,
        frame_length,
    }
}

/// Runs a future that needs no runtime services (raw keyrings are ready at once).
fn now<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn enc(pt: &[u8], suite: Suite, frame: u32) -> Vec<u8> {
    now(encrypt(pt, &keyring(), &ctx(), &opts(suite, frame))).unwrap()
}

fn dec(msg: &[u8]) -> Result<(crate::domain::Plaintext, BTreeMap<String, String>), EnvelopeError> {
    now(decrypt(msg, &keyring(), &DecryptOptions::default()))
}

const SUITES: [Suite; 2] = [Suite::Committing, Suite::CommittingSigned];

#[test]
fn round_trips_across_frame_boundaries_for_each_suite() {
    let frame = 64u32;
    for suite in SUITES {
        for size in [0usize, 1, 63, 64, 65, 64 * 7, 64 * 7 + 13] {
            let pt: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let msg = enc(&pt, suite, frame);
            let (out, c) = dec(&msg).unwrap();
            assert_eq!(out.expose(), &pt[..], "{suite:?} size {size}");
            let mut expected = ctx();
            if suite.is_signed() {
                assert!(c.contains_key(PUBLIC_KEY_FIELD));
                expected.insert(PUBLIC_KEY_FIELD.into(), c[PUBLIC_KEY_FIELD].clone());
            }
            assert_eq!(c, expected);
        }
    }
}

#[test]
fn streaming_writes_of_any_size_make_the_same_frames() {
    for suite in SUITES {
        let pt: Vec<u8> = (0..1000).map(|i| (i * 7 % 256) as u8).collect();
        for chunk in [1usize, 7, 64, 65, 999] {
            let m = now(keyring().encryption_materials(EncryptionRequest {
                context: &ctx(),
                suite,
                plaintext_length: None,
            }))
            .unwrap();
            let mut e = Encryptor::new(Vec::new(), m, 64).unwrap();
            for c in pt.chunks(chunk) {
                e.write_all(c).unwrap();
            }
            let msg = e.finish().unwrap();
            assert_eq!(dec(&msg).unwrap().0.expose(), &pt[..], "chunk {chunk}");
            // Read back in small pieces too.
            let head = MessageHeader::read(&msg[..], &DecryptOptions::default()).unwrap();
            assert_eq!(head.header().frame_length, 64);
            let dm = now(keyring().decryption_materials(head.request())).unwrap();
            let mut d = head.into_decryptor(dm).unwrap();
            let mut out = Vec::new();
            let mut piece = [0u8; 5];
            loop {
                let n = d.read(&mut piece).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&piece[..n]);
            }
            assert_eq!(out, pt);
        }
    }
}

#[test]
fn every_byte_flip_and_truncation_is_refused() {
    for suite in SUITES {
        let msg = enc(b"a secret spanning frames......", suite, 8);
        for i in 0..msg.len() {
            let mut m = msg.clone();
            m[i] ^= 0x01;
            assert!(dec(&m).is_err(), "{suite:?} flip at {i}");
        }
        for n in 0..msg.len() {
            assert!(dec(&msg[..n]).is_err(), "{suite:?} truncated to {n}");
        }
        let mut longer = msg.clone();
        longer.push(0);
        assert_eq!(dec(&longer).err(), Some(EnvelopeError::TrailingData));
    }
}

/// Where each frame starts: (offset, length) of the frames of an unsigned message with
/// `frames` regular frames of `frame` bytes and a final frame of `last` bytes.
fn frame_spans(msg_len: usize, frame: usize, frames: usize, last: usize) -> Vec<(usize, usize)> {
    let regular = 4 + 12 + frame + 16;
    let final_len = 4 + 4 + 12 + 4 + last + 16;
    let body = regular * frames + final_len;
    let start = msg_len - body;
    let mut spans: Vec<(usize, usize)> = (0..frames)
        .map(|i| (start + i * regular, regular))
        .collect();
    spans.push((start + frames * regular, final_len));
    spans
}

/// Decrypts through the streaming reader in 3-byte reads; returns what it released and
/// the error.
fn stream_dec(msg: &[u8]) -> (Vec<u8>, Option<EnvelopeError>) {
    stream_dec_with(msg, 3)
}

/// The same with reads of `chunk` bytes (a chunk of a frame or more takes the path that
/// decrypts straight into the caller's buffer).
fn stream_dec_with(msg: &[u8], chunk: usize) -> (Vec<u8>, Option<EnvelopeError>) {
    let head = match MessageHeader::read(msg, &DecryptOptions::default()) {
        Ok(h) => h,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let dm = match now(keyring().decryption_materials(head.request())) {
        Ok(m) => m,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut d = match head.into_decryptor(dm) {
        Ok(d) => d,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        buf.iter_mut().for_each(|b| *b = 0);
        match d.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => {
                // The buffer was zeroed before the read; a failed read leaves nothing
                // in it (the direct path wipes what it decrypted into it).
                assert!(
                    buf.iter().all(|b| *b == 0),
                    "a failed read left bytes behind"
                );
                return (out, super::error::envelope_cause(&e));
            }
        }
    }
}

#[test]
fn a_damaged_frame_releases_nothing_of_itself_or_after_it() {
    for chunk in [3usize, 16, 64] {
        damaged_frames_refused(chunk);
    }
}

fn damaged_frames_refused(chunk: usize) {
    let stream_dec = |m: &[u8]| stream_dec_with(m, chunk);
    let frame = 16usize;
    let pt: Vec<u8> = (0..(16 * 3 + 5)).map(|i| i as u8).collect();
    let msg = enc(&pt, Suite::Committing, frame as u32);
    let spans = frame_spans(msg.len(), frame, 3, 5);
    for (k, (off, len)) in spans.iter().enumerate() {
        // Each byte of frame k flipped: at most the frames before k come out.
        for i in *off..off + len {
            let mut m = msg.clone();
            m[i] ^= 0x80;
            let (released, err) = stream_dec(&m);
            assert!(err.is_some(), "flip at {i} in frame {k}");
            assert!(
                released.len() <= k * frame && pt.starts_with(&released),
                "frame {k}: released {} bytes",
                released.len()
            );
        }
    }
    // Frames 1 and 2 swapped: refused at frame 2's position, frame 1 only released.
    let (a, b) = (spans[1], spans[2]);
    let mut swapped = msg[..a.0].to_vec();
    swapped.extend_from_slice(&msg[b.0..b.0 + b.1]);
    swapped.extend_from_slice(&msg[a.0..a.0 + a.1]);
    swapped.extend_from_slice(&msg[b.0 + b.1..]);
    let (released, err) = stream_dec(&swapped);
    assert_eq!(err, Some(EnvelopeError::BadFrame(2)));
    assert_eq!(released, pt[..frame]);
    // The final frame removed: the message is truncated; the regular frames are
    // authentic and come out, but the stream never reports its end.
    let (last_off, _) = spans[3];
    let (released, err) = stream_dec(&msg[..last_off]);
    assert_eq!(err, Some(EnvelopeError::Truncated));
    assert_eq!(released, pt[..3 * frame]);
    assert!(dec(&msg[..last_off]).is_err());
    // A frame dropped from the middle.
    let mut dropped = msg[..spans[1].0].to_vec();
    dropped.extend_from_slice(&msg[spans[2].0..]);
    let (released, err) = stream_dec(&dropped);
    assert_eq!(err, Some(EnvelopeError::BadFrame(2)));
    assert_eq!(released, pt[..frame]);
}

#[test]
fn a_signed_message_releases_its_last_frame_only_after_the_signature_verifies() {
    let pt = b"one frame only".to_vec();
    let msg = enc(&pt, Suite::CommittingSigned, 64);
    // Flip a byte of the signature: the single frame authenticates under the data key,
    // but nothing is released.
    let mut m = msg.clone();
    let last = m.len() - 1;
    m[last] ^= 1;
    let (released, err) = stream_dec(&m);
    assert!(released.is_empty());
    assert_eq!(err, Some(EnvelopeError::BadSignature));
    // Footer removed entirely.
    // The DER signature is 102..=104 bytes; its u16 length precedes it.
    let sig_len = (100..=104usize)
        .find(|l| {
            let at = msg.len() - 2 - l;
            usize::from(u16::from_be_bytes([msg[at], msg[at + 1]])) == *l
        })
        .unwrap();
    let (released, err) = stream_dec(&msg[..msg.len() - 2 - sig_len]);
    assert!(released.is_empty(), "{sig_len}");
    assert_eq!(err, Some(EnvelopeError::BadSignature));
}

#[test]
fn header_fields_each_refused_with_a_clear_error() {
    let msg = enc(b"x", Suite::Committing, 64);
    let set = |i: usize, b: u8| {
        let mut m = msg.clone();
        m[i] = b;
        dec(&m).err()
    };
    assert_eq!(set(0, 0x01), Some(EnvelopeError::UnsupportedVersion));
    // 0x0178 is AES_256_GCM_IV12_TAG16_HKDF_SHA256: not committing.
    assert_eq!(set(1, 0x01), Some(EnvelopeError::UnsupportedSuite));
    // Message id: the commitment no longer matches.
    assert_eq!(set(3, msg[3] ^ 1), Some(EnvelopeError::CommitmentMismatch));
    let opts = DecryptOptions {
        expected_context: [("purpose".to_string(), "other".to_string())].into(),
        ..DecryptOptions::default()
    };
    assert_eq!(
        now(decrypt(&msg, &keyring(), &opts)).err(),
        Some(EnvelopeError::ContextMismatch("purpose".into()))
    );
    let opts = DecryptOptions {
        expected_context: [("purpose".to_string(), "test".to_string())].into(),
        ..DecryptOptions::default()
    };
    assert!(now(decrypt(&msg, &keyring(), &opts)).is_ok());
}

#[test]
fn reserved_context_keys_and_wrong_keys_are_refused() {
    let mut c = ctx();
    c.insert("aws-crypto-anything".into(), "x".into());
    assert_eq!(
        now(encrypt(b"x", &keyring(), &c, &EncryptOptions::default())).err(),
        Some(EnvelopeError::ReservedContextKey)
    );
    let msg = enc(b"x", Suite::Committing, 64);
    let other = RawAesKeyring::new("p11kms-test", "wrapping-key-1", &[0x22; 32]).unwrap();
    assert_eq!(
        now(decrypt(&msg, &other, &DecryptOptions::default())).err(),
        Some(EnvelopeError::NoDecryptableKey)
    );
}

#[test]
fn a_multi_keyring_wraps_for_every_child_and_any_one_decrypts() {
    let k = |b: u8, name: &str| RawAesKeyring::new("site", name, &[b; 32]).unwrap();
    let multi = MultiKeyring::new(
        Some(Box::new(k(1, "a"))),
        vec![Box::new(k(2, "b")), Box::new(k(3, "c"))],
    );
    let msg = now(encrypt(
        b"both sites",
        &multi,
        &ctx(),
        &EncryptOptions::default(),
    ))
    .unwrap();
    let head = MessageHeader::read(&msg[..], &DecryptOptions::default()).unwrap();
    assert_eq!(head.header().edks.len(), 3);
    for (b, name) in [(1, "a"), (2, "b"), (3, "c")] {
        let (pt, _) = now(decrypt(&msg, &k(b, name), &DecryptOptions::default())).unwrap();
        assert_eq!(pt.expose(), b"both sites");
    }
    let only_children = MultiKeyring::new(None, vec![Box::new(k(9, "z")), Box::new(k(3, "c"))]);
    let (pt, _) = now(decrypt(&msg, &only_children, &DecryptOptions::default())).unwrap();
    assert_eq!(pt.expose(), b"both sites");
    // Without a generator and without a data key, nothing to wrap.
    assert!(matches!(
        now(encrypt(
            b"x",
            &only_children,
            &ctx(),
            &EncryptOptions::default()
        )),
        Err(EnvelopeError::BadKeyring(_))
    ));
}

#[test]
fn the_edk_limit_is_checked_before_any_keyring() {
    let k = |n: u8| -> Box<dyn Keyring> {
        Box::new(RawAesKeyring::new("site", &format!("k{n}"), &[n; 32]).unwrap())
    };
    let multi = MultiKeyring::new(Some(k(0)), (1..=3).map(k).collect());
    let msg = now(encrypt(b"x", &multi, &ctx(), &EncryptOptions::default())).unwrap();
    let opts = DecryptOptions {
        max_edks: 3,
        ..DecryptOptions::default()
    };
    assert_eq!(
        now(decrypt(&msg, &keyring(), &opts)).err(),
        Some(EnvelopeError::TooManyEdks(3))
    );
}

/// Counts the keyring calls behind a cache.
struct Counting {
    inner: RawAesKeyring,
    encrypts: AtomicUsize,
    decrypts: AtomicUsize,
}

impl Keyring for Counting {
    fn on_encrypt(
        &self,
        m: EncryptionMaterials,
    ) -> BoxFuture<'_, Result<EncryptionMaterials, EnvelopeError>> {
        self.encrypts.fetch_add(1, Ordering::SeqCst);
        self.inner.on_encrypt(m)
    }
    fn on_decrypt<'a>(
        &'a self,
        m: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> BoxFuture<'a, Result<DecryptionMaterials, EnvelopeError>> {
        self.decrypts.fetch_add(1, Ordering::SeqCst);
        self.inner.on_decrypt(m, edks)
    }
}

struct ManualClock(Mutex<Instant>);

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

fn counting() -> Arc<Counting> {
    Arc::new(Counting {
        inner: keyring(),
        encrypts: AtomicUsize::new(0),
        decrypts: AtomicUsize::new(0),
    })
}

#[test]
fn the_cache_reuses_data_keys_within_each_limit() {
    let limits = CacheLimits {
        capacity: 10,
        max_age: Duration::from_secs(60),
        max_messages: 3,
        max_bytes: 100,
    };
    let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
    let inner = counting();
    let cache = CachingMaterialsManager::with_clock(inner.clone(), "svc", limits, clock.clone());
    let e = |pt: &[u8], c: &BTreeMap<String, String>| {
        now(encrypt(pt, &cache, c, &EncryptOptions::default())).unwrap()
    };
    // Messages: three per data key.
    for _ in 0..3 {
        e(b"0123456789", &ctx());
    }
    assert_eq!(inner.encrypts.load(Ordering::SeqCst), 1);
    e(b"0123456789", &ctx());
    assert_eq!(inner.encrypts.load(Ordering::SeqCst), 2, "max messages");
    // Another context is another partition.
    let mut other = ctx();
    other.insert("tenant".into(), "b".into());
    e(b"x", &other);
    assert_eq!(inner.encrypts.load(Ordering::SeqCst), 3, "partition");
    // Bytes: 10 + 95 > 100.
    e(&[0u8; 95], &ctx());
    assert_eq!(inner.encrypts.load(Ordering::SeqCst), 4, "max bytes");
    // Age.
    e(b"x", &other);
    assert_eq!(
        inner.encrypts.load(Ordering::SeqCst),
        4,
        "hit before expiry"
    );
    *clock.0.lock().unwrap() += Duration::from_secs(61);
    e(b"x", &other);
    assert_eq!(inner.encrypts.load(Ordering::SeqCst), 5, "max age");
    let stats = cache.encrypt_stats();
    assert_eq!((stats.hits, stats.misses), (3, 5));
    // Signed messages never share a data key (each needs its own signing key).
    for _ in 0..2 {
        now(encrypt(
            b"x",
            &cache,
            &ctx(),
            &opts(Suite::CommittingSigned, 64),
        ))
        .unwrap();
    }
    assert_eq!(inner.encrypts.load(Ordering::SeqCst), 7);
    // Decryption: one unwrap per distinct message header.
    let msg = enc(b"cached", Suite::Committing, 64);
    for _ in 0..3 {
        let (pt, _) = now(decrypt(&msg, &cache, &DecryptOptions::default())).unwrap();
        assert_eq!(pt.expose(), b"cached");
    }
    assert_eq!(inner.decrypts.load(Ordering::SeqCst), 1);
    assert_eq!(cache.decrypt_stats().hits, 2);
}

#[test]
fn async_streams_round_trip() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pt: Vec<u8> = (0..100_000).map(|i| (i % 253) as u8).collect();
        let o = opts(Suite::CommittingSigned, 4096);
        let msg = encrypt_stream(
            std::io::Cursor::new(pt.clone()),
            Vec::new(),
            &keyring(),
            &ctx(),
            &o,
        )
        .await
        .unwrap();
        let (out, c) = decrypt_stream(
            std::io::Cursor::new(msg),
            Vec::new(),
            &keyring(),
            &DecryptOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(out, pt);
        assert_eq!(c["purpose"], "test");
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decrypt_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = dec(&bytes);
    }

    #[test]
    fn decrypt_never_panics_on_mutated_messages(
        size in 0usize..200,
        signed in any::<bool>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let suite = if signed { Suite::CommittingSigned } else { Suite::Committing };
        let pt = vec![7u8; size];
        let mut msg = enc(&pt, suite, 32);
        // One change per position (two at the same one could cancel out).
        let mut seen = std::collections::HashSet::new();
        for (i, b) in &edits {
            let i = i % msg.len();
            if seen.insert(i) {
                msg[i] ^= b | 1;
            }
        }
        if let Some(c) = cut {
            msg.truncate(c % (msg.len() + 1));
        }
        prop_assert!(dec(&msg).is_err());
    }
}

/// A writer that takes at most `max` bytes per call, as pipes and sockets may.
struct ShortWriter {
    out: Vec<u8>,
    max: usize,
}

impl Write for ShortWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(self.max);
        self.out.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encrypts through `io::Write` in writes of the given sizes (cycled; 0 is an empty
/// write) into a writer that takes at most `sink_max` bytes per call.
fn enc_written(pt: &[u8], suite: Suite, frame: u32, writes: &[usize], sink_max: usize) -> Vec<u8> {
    let m = now(keyring().encryption_materials(EncryptionRequest {
        context: &ctx(),
        suite,
        plaintext_length: None,
    }))
    .unwrap();
    let sink = ShortWriter {
        out: Vec::new(),
        max: sink_max,
    };
    let mut e = Encryptor::new(sink, m, frame).unwrap();
    let mut rest = pt;
    for n in writes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        // A write of nothing is made as asked, then one byte: writes that were all
        // empty would otherwise never reach the end (the test hung one run in ~20).
        if *n == 0 {
            e.write_all(&[]).unwrap();
        }
        let (now, later) = rest.split_at((*n).max(1).min(rest.len()));
        e.write_all(now).unwrap();
        rest = later;
    }
    e.finish().unwrap().out
}

/// Decrypts through `io::Read` over a reader buffer of `reader_buf` bytes, in reads of
/// the given sizes (cycled).
fn dec_read(msg: &[u8], reader_buf: usize, reads: &[usize]) -> Vec<u8> {
    let input = std::io::BufReader::with_capacity(reader_buf, msg);
    let head = MessageHeader::read(input, &DecryptOptions::default()).unwrap();
    let dm = now(keyring().decryption_materials(head.request())).unwrap();
    let mut d = head.into_decryptor(dm).unwrap();
    let mut out = Vec::new();
    for n in reads.iter().cycle() {
        let mut piece = vec![0u8; *n];
        match d.read(&mut piece).unwrap() {
            0 => return out,
            got => out.extend_from_slice(&piece[..got]),
        }
    }
    unreachable!("reads cycle until the end of the message")
}

/// Counts the writes it is handed.
struct CountingWriter {
    out: Vec<u8>,
    writes: usize,
}

impl Write for CountingWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.writes += 1;
        self.out.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn each_frame_reaches_the_writer_in_one_write() {
    // 10 regular frames and a final one of 36 bytes, written in one go and in pieces
    // shorter than a frame: one write for the header, one per frame, one for the
    // signature.
    let pt = vec![5u8; 64 * 10 + 36];
    for suite in SUITES {
        for piece in [pt.len(), 64 * 3 + 1, 10] {
            let m = now(keyring().encryption_materials(EncryptionRequest {
                context: &ctx(),
                suite,
                plaintext_length: None,
            }))
            .unwrap();
            let sink = CountingWriter {
                out: Vec::new(),
                writes: 0,
            };
            let mut e = Encryptor::new(sink, m, 64).unwrap();
            for c in pt.chunks(piece) {
                e.write_all(c).unwrap();
            }
            let sink = e.finish().unwrap();
            let footer = usize::from(suite.is_signed());
            assert_eq!(sink.writes, 1 + 11 + footer, "{suite:?} pieces of {piece}");
            assert_eq!(dec(&sink.out).unwrap().0.expose(), &pt[..]);
        }
    }
}

/// Writes of nothing between the bytes (the property below draws them) change nothing.
#[test]
fn empty_writes_change_nothing() {
    let pt = b"a few bytes";
    let written = enc_written(pt, Suite::Committing, 4, &[0], 5);
    assert_eq!(dec(&written).unwrap().0.expose(), &pt[..]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A message written through `io::Write`, however the writes fall, is one the
    /// in-memory path decrypts; a message from the in-memory path reads back through
    /// `io::Read`, however the reads fall and whether or not the reader's buffer holds
    /// whole frames; and each path reads the other's messages the same way.
    #[test]
    fn the_io_write_and_vec_paths_read_each_others_messages(
        len in 0usize..1500,
        frame in 1u32..260,
        signed in any::<bool>(),
        writes in proptest::collection::vec(0usize..600, 1..6),
        sink_max in 1usize..5000,
        reads in proptest::collection::vec(1usize..600, 1..6),
        reader_buf in 1usize..1200,
    ) {
        let suite = if signed { Suite::CommittingSigned } else { Suite::Committing };
        let pt: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
        let written = enc_written(&pt, suite, frame, &writes, sink_max);
        let in_memory = enc(&pt, suite, frame);
        if !signed {
            // Same frames, same length (a DER signature's length varies by a byte or two).
            prop_assert_eq!(written.len(), in_memory.len());
        }
        for msg in [&written, &in_memory] {
            let (got, _) = dec(msg).unwrap();
            prop_assert_eq!(got.expose(), &pt[..]);
            prop_assert_eq!(dec_read(msg, reader_buf, &reads), pt.clone());
        }
    }
}
