//! Every public policy vector through `p11kms policy eval -`, as an outside tool would
//! run it; failures are collected by name.

use std::io::Write;
use std::process::{Command, Stdio};

fn vectors() -> Vec<serde_json::Value> {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(here.join("tests/policy-vectors/vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_public_vector_through_the_cli() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 56);
    let mut failures = Vec::new();
    for v in &vectors {
        let id = v["id"].as_str().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_p11kms"))
            .args(["policy", "eval", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(v.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
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
