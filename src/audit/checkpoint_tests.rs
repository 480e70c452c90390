//! The verifier against trails built with real checkpoints (signed in software here;
//! the integration tests sign in the token), each tampered with as an attacker who can
//! rewrite the files, and so recompute the unkeyed hash chain, would.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::Value;

use super::*;
use crate::audit::verify::{check_end, verify, VerifyError};

/// A checkpoint key in memory, for tests of the trail without a token.
pub(in crate::audit) struct SoftSigner(EcdsaKeyPair);

impl SoftSigner {
    pub(in crate::audit) fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap())
    }
}

impl CheckpointSigner for SoftSigner {
    fn public_point(&self) -> Vec<u8> {
        self.0.public_key().as_ref().to_vec()
    }
    fn sign(&mut self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(self
            .0
            .sign(&SystemRandom::new(), message)?
            .as_ref()
            .to_vec())
    }
}

/// A trail: `spec` is a string of `r` (a record) and `c`/`f` (a periodic or final
/// checkpoint), signed by `signer`.
fn build(dir: &Path, spec: &str, signer: SoftSigner) -> (Vec<String>, CheckpointPublicKey) {
    let settings = CheckpointSettings {
        every_records: 1000,
        every: Duration::from_secs(60),
        public_key_file: dir.join(PUBLIC_KEY_FILE),
    };
    let mut cp = Checkpointer::new(Box::new(signer), &settings, TrailState::default()).unwrap();
    let mut head = String::new();
    let mut lines = Vec::new();
    for (i, c) in spec.chars().enumerate() {
        let line = match c {
            'r' => {
                let l = format!(r#"{{"eventName":"Encrypt","n":{i},"previousHash":"{head}"}}"#);
                cp.appended(1);
                l
            }
            _ => {
                let reason = if c == 'f' {
                    Reason::Shutdown
                } else {
                    Reason::Records
                };
                let l = String::from_utf8(cp.line(&head, reason).unwrap()).unwrap();
                cp.written(reason);
                l
            }
        };
        head = line_hash(line.as_bytes());
        lines.push(line);
    }
    (
        lines,
        CheckpointPublicKey::read(&settings.public_key_file).unwrap(),
    )
}

/// Recomputes every previousHash, as an attacker would after an edit.
fn rechain(lines: &[String]) -> Vec<String> {
    let mut head = String::new();
    lines
        .iter()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["previousHash"] = Value::String(head.clone());
            let out = serde_json::to_string(&v).unwrap();
            head = line_hash(out.as_bytes());
            out
        })
        .collect()
}

fn write(dir: &Path, lines: &[String]) -> Vec<PathBuf> {
    let p = dir.join("t.jsonl");
    fs::write(&p, lines.join("\n") + "\n").unwrap();
    vec![p]
}

fn broken(dir: &Path, lines: &[String], key: &CheckpointPublicKey) -> (u64, String) {
    match verify(&write(dir, lines), Some(key)) {
        Err(VerifyError::Broken { record, why, .. }) => (record, why),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_closed_trail_verifies_with_its_key_and_each_tampering_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, key) = build(tmp.path(), "rrcrrcrrf", SoftSigner::new());
    let v = verify(&write(tmp.path(), &good), Some(&key)).unwrap();
    assert_eq!((v.lines, v.checkpoints, v.records()), (9, 3, 6));
    assert!(v.closed && v.signatures_checked && v.unsigned_tail == 0);
    check_end(&v, false).unwrap();

    // An edited record, the chain recomputed: the checkpoint after it no longer signs
    // the head, and the records it covers are named.
    let mut edited = good.clone();
    edited[3] = edited[3].replace("Encrypt", "Decrypt");
    let (record, why) = broken(tmp.path(), &rechain(&edited), &key);
    assert_eq!(record, 6, "{why}");
    assert!(
        why.contains("another chain head") && why.contains("records 4 to 5"),
        "{why}"
    );

    // A removed record, rechained: the count no longer matches.
    let mut removed = good.clone();
    removed.remove(4);
    let (record, why) = broken(tmp.path(), &rechain(&removed), &key);
    assert_eq!(record, 5);
    assert!(why.contains("covers 5 lines, but 4 come before"), "{why}");

    // An inserted record, rechained.
    let mut inserted = good.clone();
    inserted.insert(1, good[0].clone());
    assert_eq!(broken(tmp.path(), &rechain(&inserted), &key).0, 4);

    // Reordered records, rechained.
    let mut reordered = good.clone();
    reordered.swap(3, 4);
    assert_eq!(broken(tmp.path(), &rechain(&reordered), &key).0, 6);

    // A removed checkpoint, rechained: the next one says one is missing.
    let mut no_cp = good.clone();
    no_cp.remove(2);
    let (record, why) = broken(tmp.path(), &rechain(&no_cp), &key);
    assert_eq!(record, 5);
    assert!(why.contains("a checkpoint was removed"), "{why}");

    // A forged signature: one byte of it changed.
    let mut forged = good.clone();
    let mut v: Value = serde_json::from_str(&forged[5]).unwrap();
    let sig = v["checkpoint"]["signature"].as_str().unwrap().to_owned();
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .unwrap();
    let last = der.len() - 1;
    der[last] ^= 1;
    v["checkpoint"]["signature"] = base64::engine::general_purpose::STANDARD.encode(der).into();
    forged[5] = serde_json::to_string(&v).unwrap();
    let (record, why) = broken(tmp.path(), &rechain(&forged), &key);
    assert_eq!(record, 6);
    assert!(why.contains("does not verify"), "{why}");
}

#[test]
fn a_checkpoint_signed_by_another_key_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, key) = build(tmp.path(), "rrf", SoftSigner::new());
    let other = tempfile::tempdir().unwrap();
    let (theirs, _) = build(other.path(), "rrf", SoftSigner::new());
    let (record, why) = broken(tmp.path(), &theirs, &key);
    assert_eq!(record, 3);
    assert!(why.contains("signed by key sha256:"), "{why}");
    // Claiming the right key's fingerprint does not help: the signature fails.
    let mut claimed: Value = serde_json::from_str(&theirs[2]).unwrap();
    claimed["checkpoint"]["keyFingerprint"] = key.fingerprint().into();
    let mut lines = theirs.clone();
    lines[2] = serde_json::to_string(&claimed).unwrap();
    let (_, why) = broken(tmp.path(), &lines, &key);
    assert!(why.contains("does not verify"), "{why}");
}

#[test]
fn a_cut_tail_is_found_unless_a_daemon_is_writing_the_trail() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, key) = build(tmp.path(), "rrcrrf", SoftSigner::new());
    // The final checkpoint and a record before it removed.
    let cut = &good[..4];
    let v = verify(&write(tmp.path(), cut), Some(&key)).unwrap();
    assert_eq!(
        (v.unsigned_tail, v.last_checkpoint, v.closed),
        (1, Some(3), false)
    );
    let err = check_end(&v, false).unwrap_err().to_string();
    assert!(
        err.contains("1 records after the checkpoint at record 3"),
        "{err}"
    );
    check_end(&v, true).unwrap();
    // Cut right after a periodic checkpoint: still not a clean end.
    let v = verify(&write(tmp.path(), &good[..3]), Some(&key)).unwrap();
    assert!(check_end(&v, false).is_err());
}

#[test]
fn the_writer_state_is_found_again_from_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, _) = build(tmp.path(), "rrcrrfrr", SoftSigner::new());
    let files = write(tmp.path(), &good);
    assert_eq!(
        scan(&files).unwrap(),
        TrailState {
            lines: 8,
            sequence: 2,
            unsigned: 2,
            closed: false
        }
    );
    let files = write(tmp.path(), &good[..6]);
    assert_eq!(
        scan(&files).unwrap(),
        TrailState {
            lines: 6,
            sequence: 2,
            unsigned: 0,
            closed: true
        }
    );
}

#[test]
fn the_public_key_file_round_trips_and_a_different_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, key) = build(tmp.path(), "r", SoftSigner::new());
    assert_eq!(
        CheckpointPublicKey::from_pem(key.to_pem().as_bytes()),
        Some(key.clone())
    );
    let other = SoftSigner::new();
    let other = CheckpointPublicKey::from_point(&other.public_point()).unwrap();
    let err = install_public_key(&tmp.path().join(PUBLIC_KEY_FILE), &other).unwrap_err();
    assert!(matches!(err, CheckpointError::OtherKey(_)), "{err}");
    install_public_key(&tmp.path().join(PUBLIC_KEY_FILE), &key).unwrap();
}

#[test]
fn der_signatures_are_minimal_integers() {
    let mut rs = [0u8; 64];
    rs[31] = 1;
    rs[32] = 0x80;
    assert_eq!(
        der_signature(&rs).unwrap()[..8],
        [0x30, 0x26, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00]
    );
    assert!(der_signature(&rs[..63]).is_none());
}
