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
use std::io::Write;
use std::process::{Command, Stdio};

use p11kms::client::envelope::{
    decrypt, encrypt, DecryptOptions, EncryptOptions, RawAesKeyring, Suite, PUBLIC_KEY_FIELD,
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
            assert_eq!(ctx.get("purpose").map(String::as_str), Some("interop"));
            assert_eq!(ctx.get("app").map(String::as_str), Some("p11kms"));
            assert_eq!(ctx.contains_key(PUBLIC_KEY_FIELD), signed);
        }
    }
}
