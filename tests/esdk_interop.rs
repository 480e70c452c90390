//! The envelope format against the official AWS Encryption SDK for Python (provided by
//! scripts/python-deps.sh, which scripts/test.sh runs), both directions, raw AES keys on
//! both sides, both suites.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::process::{Command, Stdio};

use p11kms::client::envelope::{
    decrypt, encrypt, DecryptOptions, EncryptOptions, EncryptionRequest, Encryptor,
    MaterialsManager, MessageHeader, RawAesKeyring, Suite, PUBLIC_KEY_FIELD,
};

fn python(args: &[&str], input: &[u8]) -> Vec<u8> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/esdk_raw.py");
    // scripts/test.sh points P11KMS_PYTHON at a Python that has the SDK; run directly,
    // the virtualenv that scripts/python-deps.sh makes is used when it exists.
    let venv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/interop-venv/bin/python"
    );
    let python = std::env::var("P11KMS_PYTHON")
        .ok()
        .or_else(|| std::path::Path::new(venv).exists().then(|| venv.to_owned()))
        .unwrap_or_else(|| "python3".into());
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the interop tests");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("p11kms-test", "wrapping-key-1", &[0x11; 32]).unwrap()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn messages_written_here_decrypt_with_the_official_sdk() {
    let ctx: BTreeMap<String, String> = [("purpose".to_string(), "interop".to_string())]
        .into_iter()
        .collect();
    for suite in [Suite::Committing, Suite::CommittingSigned] {
        let opts = EncryptOptions {
            suite,
            frame_length: 64,
        };
        for size in [0usize, 1, 63, 64, 65, 1000] {
            let pt: Vec<u8> = (0..size).map(|i| (i * 13 % 256) as u8).collect();
            let msg = block_on(encrypt(&pt, &keyring(), &ctx, &opts)).unwrap();
            assert_eq!(python(&["decrypt"], &msg), pt, "{suite:?} size {size}");
        }
    }
}

/// The generic `io::Write` path (`Encryptor::new`), in writes smaller than a frame
/// (collected and sealed in the encryptor's buffer) and larger (sealed straight from
/// the caller's slice), not only the in-memory path `encrypt` takes.
#[test]
fn messages_written_through_io_write_decrypt_with_the_official_sdk() {
    let ctx: BTreeMap<String, String> = [("purpose".to_string(), "interop".to_string())]
        .into_iter()
        .collect();
    let pt: Vec<u8> = (0..1000).map(|i| (i * 13 % 256) as u8).collect();
    for suite in [Suite::Committing, Suite::CommittingSigned] {
        for write in [7usize, 200] {
            let m = block_on(keyring().encryption_materials(EncryptionRequest {
                context: &ctx,
                suite,
                plaintext_length: None,
            }))
            .unwrap();
            let mut enc = Encryptor::new(Vec::new(), m, 64).unwrap();
            for c in pt.chunks(write) {
                enc.write_all(c).unwrap();
            }
            let msg = enc.finish().unwrap();
            assert_eq!(
                python(&["decrypt"], &msg),
                pt,
                "{suite:?} writes of {write}"
            );
        }
    }
}

/// Reads `msg` through the streaming `Decryptor` over a reader buffer of `reader_buf`
/// bytes, in reads of `read` bytes.
fn read_streaming(msg: &[u8], reader_buf: usize, read: usize) -> Vec<u8> {
    let head = MessageHeader::read(
        BufReader::with_capacity(reader_buf, msg),
        &DecryptOptions::default(),
    )
    .unwrap();
    let dm = block_on(keyring().decryption_materials(head.request())).unwrap();
    let mut dec = head.into_decryptor(dm).unwrap();
    let mut out = Vec::new();
    let mut piece = vec![0u8; read];
    loop {
        match dec.read(&mut piece).unwrap() {
            0 => return out,
            n => out.extend_from_slice(&piece[..n]),
        }
    }
}

#[test]
fn messages_from_the_official_sdk_decrypt_here() {
    for signed in [false, true] {
        let args: &[&str] = if signed {
            &["encrypt", "signed"]
        } else {
            &["encrypt"]
        };
        for size in [0usize, 1, 127, 128, 129, 1000] {
            let pt: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
            let msg = python(args, &pt);
            let (out, ctx) =
                block_on(decrypt(&msg, &keyring(), &DecryptOptions::default())).unwrap();
            assert_eq!(out.expose(), &pt[..], "signed {signed} size {size}");
            // And through `io::Read`: reads smaller and larger than the SDK's 128-byte
            // frames, from reader buffers that do and do not hold whole frames.
            for (reader_buf, read) in [(50, 7), (50, 300), (4096, 7), (4096, 300)] {
                assert_eq!(
                    read_streaming(&msg, reader_buf, read),
                    pt,
                    "signed {signed} size {size} reader {reader_buf} reads {read}"
                );
            }
            assert_eq!(ctx.get("purpose").map(String::as_str), Some("interop"));
            assert_eq!(ctx.get("app").map(String::as_str), Some("p11kms"));
            assert_eq!(ctx.contains_key(PUBLIC_KEY_FIELD), signed);
        }
    }
}
