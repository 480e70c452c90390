//! p11kms keys from another language: the official AWS Encryption SDK for Python with a
//! small master key provider that calls the daemon over gRPC and mTLS
//! (tests/interop/esdk_p11kms.py, stubs compiled from proto/ by grpcio-tools). Messages
//! go Python to Python under each of two keys, and both ways between Python and
//! `p11kms encrypt-file` / `decrypt-file`, in both suites.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use p11kms::DevDir;

use crate::harness::*;

/// Empty, one byte, and several 4096-byte frames with a partial last one (Python writes
/// 4096-byte frames here).
const SIZES: [usize; 3] = [0, 1, 10_000];

/// Runs the Python script as the dev admin against `d`.
fn python(d: &Daemon, dir: &TestDir, args: &[&str], input: &[u8]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/esdk_p11kms.py");
    let identity = DevDir::at(dir.path()).admin_identity();
    let mut child = Command::new(python_bin())
        .arg(script)
        .args(args)
        .arg("--endpoint")
        .arg(d.endpoint())
        .arg("--identity")
        .arg(identity)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("a Python with aws-encryption-sdk and grpcio (scripts/python-deps.sh)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// A message from Python under `keys` (the first makes the data key) with the context
/// app=py.
fn python_encrypt(d: &Daemon, dir: &TestDir, keys: &[&str], signed: bool, pt: &[u8]) -> Vec<u8> {
    let mut args = vec!["encrypt", "--context", "app=py", "--frame-length", "4096"];
    for key in keys {
        args.extend(["--key-id", *key]);
    }
    if signed {
        args.push("--signed");
    }
    ok(python(d, dir, &args, pt), "python encrypt")
}

#[track_caller]
fn ok(o: Output, what: &str) -> Vec<u8> {
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 256) as u8).collect()
}

/// A daemon with two keys; their ARNs.
async fn two_keys(dir: &TestDir) -> (Daemon, String, String) {
    let d = Daemon::start(dir);
    let mut admin = d.admin().await;
    let a = create_key(&mut admin).await.arn;
    let b = create_key(&mut admin).await.arn;
    (d, a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn python_messages_under_two_keys_decrypt_in_python_with_each_key_alone() {
    let dir = TestDir::new();
    let (d, a, b) = two_keys(&dir).await;
    for signed in [false, true] {
        for size in SIZES {
            let pt = data(size);
            let msg = python_encrypt(&d, &dir, &[&a, &b], signed, &pt);
            for key in [&a, &b] {
                let out = python(
                    &d,
                    &dir,
                    &["decrypt", "--key-id", key, "--context", "app=py"],
                    &msg,
                );
                assert_eq!(
                    ok(out, "python decrypt"),
                    pt,
                    "signed {signed} size {size} key {key}"
                );
            }
            // Discovery (no --key-id) finds the keys itself...
            let out = python(&d, &dir, &["decrypt", "--context", "app=py"], &msg);
            assert_eq!(ok(out, "python decrypt, discovery"), pt);
            // ...but not a context the message lacks, with or without a key named.
            for key in [None, Some(a.as_str())] {
                let mut args = vec!["decrypt", "--context", "app=other"];
                if let Some(key) = key {
                    args.extend(["--key-id", key]);
                }
                let wrong = python(&d, &dir, &args, &msg);
                assert!(!wrong.status.success(), "a context the message lacks");
                assert!(wrong.stdout.is_empty(), "no plaintext for a wrong context");
                let err = String::from_utf8_lossy(&wrong.stderr);
                assert!(err.contains("app=other"), "{err}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_messages_decrypt_with_the_cli() {
    let dir = TestDir::new();
    let (d, a, b) = two_keys(&dir).await;
    for signed in [false, true] {
        for size in SIZES {
            let pt = data(size);
            let msg = python_encrypt(&d, &dir, &[&a, &b], signed, &pt);
            let out = run_cli(
                dir.path(),
                &["decrypt-file", "--context", "app=py", "-", "-"],
                &msg,
            );
            assert_eq!(ok(out, "decrypt-file"), pt, "signed {signed} size {size}");
            let wrong = run_cli(
                dir.path(),
                &["decrypt-file", "--context", "app=other", "-", "-"],
                &msg,
            );
            assert!(!wrong.status.success(), "a context the message lacks");
            assert!(wrong.stdout.is_empty(), "no plaintext for a wrong context");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_messages_decrypt_in_python_with_each_key() {
    let dir = TestDir::new();
    let (d, a, b) = two_keys(&dir).await;
    for suite in [None, Some("signed")] {
        // The CLI's own frame length: 100_000 bytes is several frames whether that is
        // 4096 or 65536.
        for size in [0, 1, 10_000, 100_000] {
            let pt = data(size);
            let mut args = vec![
                "encrypt-file",
                "--key-id",
                &a,
                "--key-id",
                &b,
                "--context",
                "app=rust",
            ];
            if let Some(suite) = suite {
                args.extend(["--suite", suite]);
            }
            args.extend(["-", "-"]);
            let msg = ok(run_cli(dir.path(), &args, &pt), "encrypt-file");
            for key in [&a, &b] {
                let out = python(
                    &d,
                    &dir,
                    &["decrypt", "--key-id", key, "--context", "app=rust"],
                    &msg,
                );
                assert_eq!(
                    ok(out, "python decrypt"),
                    pt,
                    "{suite:?} size {size} key {key}"
                );
            }
            let wrong = python(&d, &dir, &["decrypt", "--context", "app=py"], &msg);
            assert!(!wrong.status.success(), "a context the message lacks");
            assert!(wrong.stdout.is_empty(), "no plaintext for a wrong context");
        }
    }
}
