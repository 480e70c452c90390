//! The envelope format against the official AWS Encryption SDK for Python (provided by
//! scripts/python-deps.sh, which scripts/test.sh runs), both directions, raw AES keys on
//! both sides.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use p11kms::client::envelope::{decrypt, encrypt, RawAesKeyring, MAX_EDKS};

fn python(mode: &str, input: &[u8]) -> Vec<u8> {
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
        .args([script, mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the interop tests");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("p11kms-test", "wrapping-key-1", &[0x11; 32]).unwrap()
}

#[test]
fn messages_written_here_decrypt_with_the_official_sdk() {
    let ctx: BTreeMap<String, String> = [("purpose".to_string(), "interop".to_string())]
        .into_iter()
        .collect();
    for size in [0usize, 1, 63, 64, 65, 1000] {
        let pt: Vec<u8> = (0..size).map(|i| (i * 13 % 256) as u8).collect();
        let msg = encrypt(&pt, &keyring(), &ctx, 64).unwrap();
        assert_eq!(python("decrypt", &msg), pt, "size {size}");
    }
}

#[test]
fn messages_from_the_official_sdk_decrypt_here() {
    for size in [0usize, 1, 127, 128, 129, 1000] {
        let pt: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
        let msg = python("encrypt", &pt);
        let (out, ctx) = decrypt(&msg, &keyring(), MAX_EDKS).unwrap();
        assert_eq!(out.expose(), &pt[..], "size {size}");
        assert_eq!(ctx.get("purpose").map(String::as_str), Some("interop"));
        assert_eq!(ctx.get("app").map(String::as_str), Some("p11kms"));
    }
}
