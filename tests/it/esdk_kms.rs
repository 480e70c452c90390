//! p11kms keys from another language: the official AWS Encryption SDK for Python with a
//! small master key provider that calls the daemon over gRPC and mTLS
//! (tests/interop/esdk_p11kms.py, stubs compiled from proto/ by grpcio-tools). Messages
//! go both ways between it and `p11kms encrypt-file` / `decrypt-file`, in both suites.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use p11kms::dev::DevDir;

use crate::harness::*;

/// The Python with the SDK and grpcio: P11KMS_PYTHON (scripts/test.sh sets it), else the
/// virtualenv scripts/python-deps.sh makes, else python3.
fn python_bin() -> String {
    let venv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/interop-venv/bin/python"
    );
    std::env::var("P11KMS_PYTHON")
        .ok()
        .or_else(|| Path::new(venv).exists().then(|| venv.to_owned()))
        .unwrap_or_else(|| "python3".into())
}

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

fn cli(dir: &TestDir, args: &[&str], input: &[u8]) -> Output {
    run_cli(dir.path(), args, input)
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

#[tokio::test(flavor = "multi_thread")]
async fn python_messages_under_two_keys_decrypt_with_each_key_and_in_the_cli() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let a = create_key(&mut admin).await.arn;
    let b = create_key(&mut admin).await.arn;
    for signed in [false, true] {
        for size in [0usize, 1, 10_000] {
            let pt = data(size);
            let mut args = vec![
                "encrypt",
                "--key-id",
                &a,
                "--key-id",
                &b,
                "--context",
                "app=py",
                "--frame-length",
                "4096",
            ];
            if signed {
                args.push("--signed");
            }
            let msg = ok(python(&d, &dir, &args, &pt), "python encrypt");
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
            let wrong = python(&d, &dir, &["decrypt", "--context", "app=other"], &msg);
            assert!(!wrong.status.success(), "a context the message lacks");
            // The Rust CLI reads what Python wrote.
            let out = cli(
                &dir,
                &["decrypt-file", "-", "-", "--context", "app=py"],
                &msg,
            );
            assert_eq!(ok(out, "decrypt-file"), pt, "signed {signed} size {size}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_messages_decrypt_in_python_through_the_grpc_provider() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let a = create_key(&mut admin).await.arn;
    let b = create_key(&mut admin).await.arn;
    for suite in ["committing", "signed"] {
        for size in [0usize, 1, 4095, 4096, 4097, 100_000] {
            let pt = data(size);
            let msg = ok(
                cli(
                    &dir,
                    &[
                        "encrypt-file",
                        "-",
                        "-",
                        "--key-id",
                        &a,
                        "--key-id",
                        &b,
                        "--context",
                        "app=rust",
                        "--suite",
                        suite,
                        "--frame-length",
                        "4096",
                    ],
                    &pt,
                ),
                "encrypt-file",
            );
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
                    "{suite} size {size} key {key}"
                );
            }
        }
    }
}
