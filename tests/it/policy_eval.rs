//! Every public policy vector through `p11kms policy eval -`, as an outside tool would
//! run it; failures are collected by name.

use std::io::Write;
use std::process::{Command, Stdio};

fn vectors(file: &str) -> Vec<serde_json::Value> {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(here.join("tests/policy-vectors").join(file)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn eval_cli(case: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_p11kms"))
        .args(["policy", "eval", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(case).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn every_public_vector_through_the_cli() {
    run_all(&vectors("vectors.json"), 56);
}

/// Our own cases in the same format: the cross-account table (every operation, both
/// outcomes) and policy variables without a value or with a default.
#[test]
fn every_hardening_vector_through_the_cli() {
    let vectors = vectors("hardening.json");
    run_all(&vectors, 97);
    // A refused cross-account case says why.
    let refused = vectors
        .iter()
        .find(|v| v["id"] == "xacct-table-put-key-policy-refused")
        .unwrap();
    let out = eval_cli(refused.to_string().as_bytes());
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        got["reason"]
            .as_str()
            .unwrap()
            .contains("kms:PutKeyPolicy is not available across accounts"),
        "{got}"
    );
}

#[test]
fn a_case_with_a_duplicate_key_is_malformed() {
    let case = br#"{"key_policy":{"Statement":[{"Effect":"Deny","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]},
        "request":{"principal":"arn:aws:iam::111122223333:root","principal_account":"111122223333","action":"kms:Decrypt",
        "resource":"arn:aws:kms:us-east-1:111122223333:key/k","key_account":"111122223333"}}"#;
    let out = eval_cli(case);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MalformedPolicyDocumentException")
            && err.contains("duplicate key \"Effect\""),
        "{err}"
    );
}

fn run_all(vectors: &[serde_json::Value], expected_len: usize) {
    assert_eq!(vectors.len(), expected_len);
    let mut failures = Vec::new();
    for v in vectors {
        let id = v["id"].as_str().unwrap();
        let out = eval_cli(v.to_string().as_bytes());
        if !out.status.success() {
            failures.push(format!(
                "{id}: exit {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            got["reason"].is_string() && got["matched"].is_array(),
            "{id}: {got}"
        );
        if got["decision"] != v["expected"] {
            failures.push(format!(
                "{id}: expected {}, got {} ({})",
                v["expected"], got["decision"], got["reason"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
