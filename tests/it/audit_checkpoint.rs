//! Signed checkpoints over a real daemon: a clean stop ends the trail in a checkpoint
//! signed in the token, OpenSSL verifies it, a restart continues the chain and the
//! checkpoint sequence, and `p11kms audit verify` names a cut tail, a checkpoint signed
//! by another key and a forged signature in real files. `audit tail` and `audit query`
//! filter exactly.

use std::path::Path;
use std::process::Command;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::Engine as _;
use serde_json::Value;

use p11kms::proto;
use p11kms::{checkpoint_signed_parts, trail_files, trail_line_hash, CheckpointPublicKey};

use crate::audit::{audit_dir, lines, records};
use crate::harness::*;

fn verify_cli(dir: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let out = run_cli(dir, &args, b"");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The trail's only file, as lines.
fn file_lines(dir: &TestDir) -> (std::path::PathBuf, Vec<String>) {
    let files = trail_files(&audit_dir(dir)).unwrap();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    (files[0].clone(), text.lines().map(str::to_owned).collect())
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn is_checkpoint(line: &str) -> bool {
    serde_json::from_str::<Value>(line).unwrap()["eventType"] == "P11kmsCheckpoint"
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_stop_ends_the_trail_in_a_checkpoint_that_openssl_verifies() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    encrypt(&mut c, &key.key_id, b"x", &[]).await;
    // While the daemon runs, its unsigned records are expected.
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(ok, "{said}");
    assert!(said.contains("a daemon is writing this trail"), "{said}");
    d.stop();

    let all = lines(&audit_dir(&dir));
    let last = all.last().unwrap();
    assert_eq!(last["eventType"], "P11kmsCheckpoint", "{last}");
    assert_eq!(last["checkpoint"]["reason"], "shutdown");
    assert_eq!(last["checkpoint"]["sequence"], 1);
    assert_eq!(last["checkpoint"]["records"], 2);
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(ok, "{said}");
    assert!(
        said.contains("verified 2 records and 1 checkpoints")
            && said.contains("ends in the final checkpoint of a clean stop"),
        "{said}"
    );

    // OpenSSL, which p11kms did not write, reads the key and checks a signature.
    let pem = audit_dir(&dir).join("audit-checkpoint.pub.pem");
    let st = Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-in"])
        .arg(&pem)
        .status()
        .unwrap();
    assert!(st.success(), "openssl cannot read the public key");
    let (_, text) = file_lines(&dir);
    let (data, der) = checkpoint_signed_parts(text.last().unwrap().as_bytes()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("data"), &data).unwrap();
    std::fs::write(tmp.path().join("sig.der"), &der).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&pem)
        .arg("-signature")
        .arg(tmp.path().join("sig.der"))
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The signed text is what the checkpoint line says it is.
    assert!(data.starts_with("p11kms-audit-checkpoint/1\nsequence=1\nrecords=2\nhead="));
    let fingerprint = CheckpointPublicKey::read(&pem).unwrap().fingerprint();
    assert_eq!(last["checkpoint"]["keyFingerprint"], fingerprint);

    // A restart continues the chain with the same key and the next sequence number.
    let pem_before = std::fs::read(&pem).unwrap();
    let d = Daemon::start(&dir);
    encrypt(&mut d.admin().await, &key.key_id, b"y", &[]).await;
    d.stop();
    assert_eq!(std::fs::read(&pem).unwrap(), pem_before);
    let all = lines(&audit_dir(&dir));
    let last = all.last().unwrap();
    assert_eq!(last["checkpoint"]["sequence"], 2);
    assert_eq!(last["checkpoint"]["records"], 4);
    assert_eq!(records(&audit_dir(&dir)).len(), 3);
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(ok && said.contains("3 records and 2 checkpoints"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_come_every_n_records_and_every_t_seconds() {
    let dir = TestDir::new();
    dir.prepare();
    dir.edit_config(|c| {
        let a = c["audit"].as_table_mut().unwrap();
        a.insert("checkpoint_records".into(), 3.into());
        a.insert("checkpoint_secs".into(), 1.into());
    });
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    for _ in 0..4 {
        encrypt(&mut c, &key.key_id, b"x", &[]).await;
    }
    // Five records: a checkpoint after the third, and within a second one for the rest.
    let trail = audit_dir(&dir);
    eventually("an interval checkpoint", || {
        let n = lines(&trail)
            .iter()
            .filter(|l| l["checkpoint"]["reason"] == "interval")
            .count();
        async move { n >= 1 }
    })
    .await;
    let all = lines(&trail);
    let reasons: Vec<&str> = all
        .iter()
        .filter_map(|l| l["checkpoint"]["reason"].as_str())
        .collect();
    assert_eq!(reasons.first(), Some(&"records"), "{reasons:?}");
    assert_eq!(
        all.iter()
            .position(|l| l["checkpoint"]["reason"] == "records"),
        Some(3),
        "the first checkpoint follows the third record"
    );
    d.stop();
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(ok, "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_names_a_cut_tail_another_key_and_a_forged_signature() {
    let dir = TestDir::new();
    for _ in 0..2 {
        let d = Daemon::start(&dir);
        let mut c = d.admin().await;
        let key = create_key(&mut c).await;
        encrypt(&mut c, &key.key_id, b"x", &[]).await;
        d.stop();
    }
    let (path, good) = file_lines(&dir);
    // record, record, checkpoint 1, record, record, checkpoint 2.
    assert_eq!(good.len(), 6);
    assert!(is_checkpoint(&good[2]) && is_checkpoint(&good[5]));
    assert!(verify_cli(dir.path(), &[]).0);
    let pem = audit_dir(&dir).join("audit-checkpoint.pub.pem");

    // The tail cut: the final checkpoint and the record before it removed.
    write_lines(&path, &good[..4]);
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("does not end in the final checkpoint")
            && said.contains("1 records after the checkpoint at record 3"),
        "{said}"
    );

    // An edited record with the chain recomputed, as someone who can rewrite the file
    // would: the checkpoint after it no longer signs the head.
    let mut edited = good.clone();
    edited[4] = edited[4].replace("\"Encrypt\"", "\"Decrypt\"");
    assert_ne!(edited[4], good[4]);
    write_lines(&path, &rechain(&edited));
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(
        !ok && said.contains("record 6 is a checkpoint of another chain head"),
        "{said}"
    );

    // The last checkpoint re-signed with another key (its fingerprint named honestly).
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let other = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
    let (text, _) = checkpoint_signed_parts(good[5].as_bytes()).unwrap();
    let sig = other.sign(&rng, text.as_bytes()).unwrap();
    let mut cp: Value = serde_json::from_str(&good[5]).unwrap();
    cp["checkpoint"]["signature"] = base64::engine::general_purpose::STANDARD
        .encode(sig.as_ref())
        .into();
    let other_key = CheckpointPublicKey::from_point(other.public_key().as_ref()).unwrap();
    cp["checkpoint"]["keyFingerprint"] = other_key.fingerprint().into();
    let mut resigned = good.clone();
    resigned[5] = serde_json::to_string(&cp).unwrap();
    write_lines(&path, &resigned);
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(
        !ok && said.contains("record 6 is a checkpoint signed by key"),
        "{said}"
    );
    // ... and claiming the daemon's key instead does not help.
    cp["checkpoint"]["keyFingerprint"] = CheckpointPublicKey::read(&pem)
        .unwrap()
        .fingerprint()
        .into();
    resigned[5] = serde_json::to_string(&cp).unwrap();
    write_lines(&path, &resigned);
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(
        !ok && said.contains("record 6 is a checkpoint whose signature does not verify"),
        "{said}"
    );
    // With the other key given, the daemon's own first checkpoint is the one refused.
    let other_pem = dir.path().join("other.pub.pem");
    std::fs::write(&other_pem, other_key.to_pem()).unwrap();
    let (ok, said) = verify_cli(dir.path(), &["--public-key", other_pem.to_str().unwrap()]);
    assert!(
        !ok && said.contains("record 3 is a checkpoint signed by key"),
        "{said}"
    );

    // One byte of a signature changed.
    let mut forged = good.clone();
    let mut cp: Value = serde_json::from_str(&good[2]).unwrap();
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(cp["checkpoint"]["signature"].as_str().unwrap())
        .unwrap();
    der[10] ^= 0x01;
    cp["checkpoint"]["signature"] = base64::engine::general_purpose::STANDARD.encode(der).into();
    forged[2] = serde_json::to_string(&cp).unwrap();
    write_lines(&path, &rechain(&forged));
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(
        !ok && said.contains("record 3 is a checkpoint whose signature does not verify"),
        "{said}"
    );

    // An inserted record (a copy of the first), with the chain left as it was.
    let mut inserted = good.clone();
    inserted.insert(1, good[0].clone());
    write_lines(&path, &inserted);
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(
        !ok && said.contains(":2: record 2 does not follow"),
        "{said}"
    );

    write_lines(&path, &good);
    assert!(verify_cli(dir.path(), &[]).0);
}

/// Recomputes every previousHash (and nothing else).
fn rechain(lines: &[String]) -> Vec<String> {
    let mut head = String::new();
    lines
        .iter()
        .map(|l| {
            // Only the link's value changes: the rest of the line keeps its bytes.
            let v: Value = serde_json::from_str(l).unwrap();
            let old = format!(
                r#""previousHash":"{}""#,
                v["previousHash"].as_str().unwrap()
            );
            assert!(l.contains(&old), "{l}");
            let out = l.replacen(&old, &format!(r#""previousHash":"{head}""#), 1);
            head = trail_line_hash(out.as_bytes());
            out
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_tail_and_query_filter_exactly() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let other = create_key(&mut admin).await;
    let r = admin.encrypt(encrypt_req(&key.key_id, b"x", &[])).await;
    let enc = request_id(&r);
    r.unwrap();
    encrypt(&mut admin, &other.key_id, b"x", &[]).await;
    let app = role(ACCOUNT, "App");
    let r = d
        .client_as(&app)
        .await
        .encrypt(encrypt_req(&key.key_id, b"x", &[]))
        .await;
    let denied = request_id(&r);
    r.unwrap_err();

    // --follow prints a record written after it started.
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_p11kms"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "audit",
            "tail",
            "-n",
            "0",
            "--follow",
            "--operation",
            "ListKeys",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = admin.list_keys(proto::ListKeysRequest::default()).await;
    let listed = request_id(&r);
    r.unwrap();
    let stdout = follow.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line
    });
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), line)
        .await
        .expect("tail --follow printed nothing")
        .unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["requestID"], listed);
    d.stop();

    let query = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["audit", "query"];
        all.extend_from_slice(args);
        let out = run_cli(dir.path(), &all, b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let ids = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|r| r["requestID"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(query(&[]).len(), 7, "six records and the final checkpoint");
    assert_eq!(ids(&query(&["--principal", &app])), [denied.as_str()]);
    assert_eq!(ids(&query(&["--decision", "Deny"])), [denied.as_str()]);
    assert_eq!(
        ids(&query(&["--operation", "Encrypt", "--key-id", &key.key_id])),
        [enc.as_str(), denied.as_str()]
    );
    assert_eq!(
        ids(&query(&[
            "--operation",
            "Encrypt",
            "--key-id",
            &key.arn,
            "--decision",
            "Allow"
        ])),
        [enc.as_str()]
    );
    assert_eq!(
        query(&["--key-id", &other.key_id]).len(),
        2,
        "CreateKey and Encrypt"
    );
    assert!(query(&["--start-time", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(query(&["--end-time", "2999-01-01T00:00:00Z"]).len(), 7);

    let out = run_cli(dir.path(), &["audit", "tail", "-n", "2"], b"");
    let tail: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[0]["requestID"], listed);
    assert_eq!(tail[1]["eventType"], "P11kmsCheckpoint");
    let out = run_cli(dir.path(), &["audit", "tail", "--principal", &app], b"");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let out = run_cli(
        dir.path(),
        &["audit", "query", "--start-time", "yesterday"],
        b"",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_leaves_an_unsigned_tail_that_the_next_start_signs_late() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    d.crash();
    // No daemon holds the trail and no checkpoint covers its record.
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("1 records after the start of the trail are not signed"),
        "{said}"
    );
    let d = Daemon::start(&dir);
    encrypt(&mut d.admin().await, &key.key_id, b"x", &[]).await;
    d.stop();
    let reasons: Vec<String> = lines(&audit_dir(&dir))
        .iter()
        .map(|l| l["checkpoint"]["reason"].as_str().unwrap_or("-").to_owned())
        .collect();
    assert_eq!(reasons, ["-", "recovery", "-", "shutdown"]);
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(ok, "{said}");
    assert!(
        said.contains("the checkpoint at record 2 was written at a start after an unclean stop")
            && said.contains("the 1 records before it were signed late"),
        "{said}"
    );
}

/// A second daemon on the same trail is refused at start-up, naming the trail, and the
/// first one goes on serving and recording.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_cannot_write_the_same_trail() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    create_key(&mut c).await;
    let config = dir.path().join("second.toml");
    let text = std::fs::read_to_string(dir.dev().config_path()).unwrap();
    // Its own free metrics port, so that only the trail can stand in its way.
    let text = text.replace("127.0.0.1:7879", "127.0.0.1:0");
    std::fs::write(&config, text).unwrap();
    let softhsm = dir.dev().softhsm_conf().display().to_string();
    let err = Daemon::start_config(&config, dir.path(), &[("SOFTHSM2_CONF", &softhsm)])
        .err()
        .expect("a second daemon started on the same trail");
    assert!(
        err.contains("audit.dir") && err.contains("another process"),
        "{err}"
    );
    create_key(&mut c).await;
    d.stop();
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(ok, "{said}");
}

/// A checkpoint public key file that names another key stops the start, naming the
/// field (the trail it signed must stay verifiable, so it is never overwritten).
#[tokio::test(flavor = "multi_thread")]
async fn a_public_key_file_of_another_key_stops_the_start_naming_the_field() {
    let dir = TestDir::new();
    Daemon::start(&dir).stop();
    let pem = audit_dir(&dir).join("audit-checkpoint.pub.pem");
    let other = std::process::Command::new("sh")
        .arg("-c")
        .arg("openssl ecparam -name prime256v1 -genkey -noout | openssl ec -pubout 2>/dev/null")
        .output()
        .unwrap();
    assert!(other.status.success());
    std::fs::write(&pem, &other.stdout).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_p11kms"));
    let out = cmd
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--aws-api-listen", "127.0.0.1:0"])
        .args(["--xks-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("P11KMS_DEV_DIR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("audit.checkpoint_public_key") && err.contains("different public key"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&pem).unwrap(),
        other.stdout,
        "the file was changed"
    );
}

/// A daemon that records nothing between two clean stops adds no checkpoint (and no
/// signature in the token): the trail already ends in a final one, and still verifies.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_restart_adds_no_checkpoint() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    create_key(&mut d.admin().await).await;
    d.stop();
    let (_, before) = file_lines(&dir);
    Daemon::start(&dir).stop();
    let (_, after) = file_lines(&dir);
    assert_eq!(before, after);
    let (ok, said) = verify_cli(dir.path(), &[]);
    assert!(ok, "{said}");
}
