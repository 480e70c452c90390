//! Every test's audit trail is scanned when its `TestDir` goes away: no record of the
//! whole suite may hold a plaintext a test encrypted, the token's PINs, a field named
//! like a secret, or a request parameter outside the recorded set.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine;
use serde_json::Value;

/// Plaintexts the tests sent (through `encrypt_req`), long enough not to occur by chance.
static PLAINTEXTS: Mutex<BTreeSet<Vec<u8>>> = Mutex::new(BTreeSet::new());

/// The request parameters a record may carry: CloudTrail's names for what a policy may
/// see, nothing secret.
const RECORDED: &[&str] = &[
    "keyId",
    "encryptionContext",
    "sourceEncryptionContext",
    "destinationEncryptionContext",
    "granteePrincipal",
    "retiringPrincipal",
    "encryptionAlgorithm",
    "bypassPolicyLockoutSafetyCheck",
    "keySpec",
    "keyUsage",
    "signingAlgorithm",
    "messageType",
    "macAlgorithm",
    "keyAgreementAlgorithm",
    "keyPairSpec",
    // Imports: how the material was wrapped and its terms, never the token or material.
    "wrappingAlgorithm",
    "wrappingKeySpec",
    "expirationModel",
    "validTo",
    "operations",
    "tagKeys",
    "accessKeyId",
    "itemCount",
    // The external key store proxy's calls (src/xks): AWS KMS's requestMetadata and
    // the store and external key they named.
    "uriPath",
    "externalKeyId",
    "kmsRequestId",
    "kmsOperation",
    "awsPrincipalArn",
    "kmsKeyArn",
    "kmsViaService",
    "awsSourceVpc",
    "awsSourceVpce",
];

/// Field names no record may have, at any depth (compared without case).
const SECRET_FIELDS: &[&str] = &[
    "plaintext",
    "grantTokens",
    "grantToken",
    "pin",
    "ciphertextBlob",
    "secretAccessKey",
];

/// Remembers a plaintext a test sends, to look for it in every record later.
pub fn sent_plaintext(p: &[u8]) {
    if p.len() >= 12 {
        PLAINTEXTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(p.to_vec());
    }
}

/// Remembers a secret access key the daemon issued, to look for it in every record.
pub fn issued_secret(secret: &str) {
    sent_plaintext(secret.as_bytes());
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn check_fields(v: &Value, line: &str) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                assert!(
                    !SECRET_FIELDS.iter().any(|s| s.eq_ignore_ascii_case(k)),
                    "an audit record has a field named {k}: {line}"
                );
                check_fields(v, line);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| check_fields(i, line)),
        _ => {}
    }
}

/// Panics if any record under `data_dir/audit` holds a secret.
pub fn scan(data_dir: &Path) {
    let Ok(files) = p11kms::trail_files(&data_dir.join("audit")) else {
        return;
    };
    let pins: Vec<Vec<u8>> = ["user.pin", "so.pin"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(data_dir.join(f)).ok())
        .map(|p| p.trim().as_bytes().to_vec())
        .filter(|p| !p.is_empty())
        .collect();
    let plaintexts = PLAINTEXTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let b64 = base64::engine::general_purpose::STANDARD;
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(line);
            for pin in &pins {
                assert!(!contains(line, pin), "a PIN in an audit record: {text}");
            }
            for p in &plaintexts {
                assert!(
                    !contains(line, p) && !contains(line, b64.encode(p).as_bytes()),
                    "a plaintext ({}) in an audit record: {text}",
                    String::from_utf8_lossy(p)
                );
            }
            // A torn or foreign line is for the tests that make them to judge.
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            check_fields(&v, &text);
            if let Some(params) = v.get("requestParameters").and_then(Value::as_object) {
                for k in params.keys() {
                    assert!(
                        RECORDED.contains(&k.as_str()),
                        "an unexpected request parameter {k} in an audit record: {text}"
                    );
                }
            }
        }
    }
}

/// The scan finds each kind of leak in a trail made up for it.
#[test]
fn the_scan_finds_each_kind_of_leak() {
    let plaintext = b"SCAN-SELF-TEST-PLAINTEXT-31f9";
    sent_plaintext(plaintext);
    let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext);
    let leaks = [
        format!(
            r#"{{"requestParameters":{{"note":"{}"}}}}"#,
            "SCAN-SELF-TEST-PLAINTEXT-31f9"
        ),
        format!(r#"{{"p11kms":{{"x":"{b64}"}}}}"#),
        r#"{"requestParameters":{"keyId":"k","Plaintext":"x"}}"#.to_owned(),
        r#"{"requestParameters":{"GrantTokens":["t"]}}"#.to_owned(),
        r#"{"requestParameters":{"keyId":"k","description":"d"}}"#.to_owned(),
        r#"{"requestParameters":{"keyId":"0000-SELF-TEST-PIN"}}"#.to_owned(),
    ];
    for leak in leaks {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("audit")).unwrap();
        std::fs::write(dir.path().join("user.pin"), "0000-SELF-TEST-PIN\n").unwrap();
        std::fs::write(
            dir.path().join("audit/p11kms-audit-000001.jsonl"),
            format!("{{\"requestParameters\":{{\"keyId\":\"k\"}}}}\n{leak}\n"),
        )
        .unwrap();
        let found = std::panic::catch_unwind(|| scan(dir.path()));
        assert!(found.is_err(), "not found: {leak}");
    }
    let clean = tempfile::tempdir().unwrap();
    std::fs::create_dir(clean.path().join("audit")).unwrap();
    std::fs::write(
        clean.path().join("audit/p11kms-audit-000001.jsonl"),
        "{\"requestParameters\":{\"keyId\":\"k\",\"encryptionContext\":{\"a\":\"b\"}}}\n",
    )
    .unwrap();
    scan(clean.path());
}
