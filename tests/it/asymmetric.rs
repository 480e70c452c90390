//! Asymmetric and HMAC keys over the AWS JSON protocol, through boto3, with every
//! signature, public key and shared secret checked by Python `cryptography` and OpenSSL
//! (tests/interop/aws_asymmetric.py), on a real SoftHSM2 token.

use crate::aws_sdk::{aws_script, creds_for, ok};
use crate::harness::*;

const ROOT: &str = "arn:aws:iam::111122223333:root";

#[tokio::test(flavor = "multi_thread")]
async fn every_spec_signs_verifies_macs_and_agrees_as_outside_code_checks() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let root = creds_for(&mut admin, ROOT).await;
    let run = aws_script(&d, &root, "aws_asymmetric.py", &["all"], b"");
    if !run.status.success() {
        eprintln!("daemon log:\n{}", d.log());
    }
    let out = ok(run, "asymmetric keys through boto3");
    assert_eq!(String::from_utf8_lossy(&out).trim(), "ok");
}

#[track_caller]
fn json_of(o: &std::process::Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn b64(s: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap()
}

/// OpenSSL, run in `dir`; its stdout when it succeeds.
#[track_caller]
fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let o = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_signs_macs_and_agrees_over_grpc_and_openssl_checks_the_results() {
    let dir = TestDir::new();
    let _d = Daemon::start(&dir);
    let p = dir.path();
    let cli = |args: &[&str], stdin: &[u8]| run_cli(p, args, stdin);

    // ECDSA: signed through the CLI, verified by OpenSSL with the PEM the CLI wrote.
    let key = json_of(&cli(
        &[
            "key",
            "create",
            "--key-spec",
            "ECC_NIST_P384",
            "--key-usage",
            "SIGN_VERIFY",
        ],
        b"",
    ));
    assert_eq!(
        key["KeyMetadata"]["SigningAlgorithms"],
        serde_json::json!(["ECDSA_SHA_384"])
    );
    let id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let message = b"signed through the p11kms CLI";
    let signed = json_of(&cli(
        &[
            "sign",
            "--key-id",
            &id,
            "--signing-algorithm",
            "ECDSA_SHA_384",
        ],
        message,
    ));
    std::fs::write(p.join("msg"), message).unwrap();
    std::fs::write(p.join("sig.der"), b64(&signed["Signature"])).unwrap();
    let pem = p.join("pub.pem");
    let o = cli(
        &[
            "get-public-key",
            "--key-id",
            &id,
            "--pem-out",
            pem.to_str().unwrap(),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let verified = openssl(
        p,
        &[
            "dgst",
            "-sha384",
            "-verify",
            "pub.pem",
            "-signature",
            "sig.der",
            "msg",
        ],
    );
    assert!(String::from_utf8_lossy(&verified).contains("Verified OK"));
    let sig = signed["Signature"].as_str().unwrap();
    let ok = json_of(&cli(
        &[
            "verify",
            "--key-id",
            &id,
            "--signing-algorithm",
            "ECDSA_SHA_384",
            "--signature",
            sig,
        ],
        message,
    ));
    assert_eq!(ok["SignatureValid"], true);
    let bad = cli(
        &[
            "verify",
            "--key-id",
            &id,
            "--signing-algorithm",
            "ECDSA_SHA_384",
            "--signature",
            sig,
        ],
        b"another message",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("KMSInvalidSignatureException"));

    // HMAC: the MAC the CLI prints verifies, and only for its message.
    let key = json_of(&cli(
        &[
            "key",
            "create",
            "--key-spec",
            "HMAC_384",
            "--key-usage",
            "GENERATE_VERIFY_MAC",
        ],
        b"",
    ));
    let id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let mac = json_of(&cli(
        &[
            "generate-mac",
            "--key-id",
            &id,
            "--mac-algorithm",
            "HMAC_SHA_384",
        ],
        b"tagged",
    ));
    assert_eq!(b64(&mac["Mac"]).len(), 48);
    let m = mac["Mac"].as_str().unwrap();
    let args = [
        "verify-mac",
        "--key-id",
        &id,
        "--mac-algorithm",
        "HMAC_SHA_384",
        "--mac",
        m,
    ];
    assert_eq!(json_of(&cli(&args, b"tagged"))["MacValid"], true);
    let bad = cli(&args, b"tagged!");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("KMSInvalidMacException"));

    // ECDH: OpenSSL derives the same secret from its own key and p11kms's public key.
    let key = json_of(&cli(
        &[
            "key",
            "create",
            "--key-spec",
            "ECC_NIST_P256",
            "--key-usage",
            "KEY_AGREEMENT",
        ],
        b"",
    ));
    let id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let public = json_of(&cli(&["get-public-key", "--key-id", &id], b""));
    std::fs::write(p.join("kms.der"), b64(&public["PublicKey"])).unwrap();
    openssl(
        p,
        &[
            "pkey", "-pubin", "-inform", "DER", "-in", "kms.der", "-out", "kms.pem",
        ],
    );
    openssl(
        p,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "mine.pem",
        ],
    );
    openssl(
        p,
        &["pkey", "-in", "mine.pem", "-pubout", "-out", "mine.pub.pem"],
    );
    let want = openssl(
        p,
        &[
            "pkeyutl", "-derive", "-inkey", "mine.pem", "-peerkey", "kms.pem",
        ],
    );
    let mine_pub = p.join("mine.pub.pem");
    let got = json_of(&cli(
        &[
            "derive-shared-secret",
            "--key-id",
            &id,
            "--public-key",
            mine_pub.to_str().unwrap(),
        ],
        b"",
    ));
    assert_eq!(b64(&got["SharedSecret"]), want);
}
