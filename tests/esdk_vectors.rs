//! The published message-format v2 vectors of the AWS Encryption SDK (see
//! tests/vectors/esdk/README.md): every message decrypts to its plaintext and context,
//! and every message that must fail its key commitment fails with CommitmentMismatch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use base64::Engine as _;
use p11kms::client::envelope::{
    decrypt, BoxFuture, DecryptOptions, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials,
    EnvelopeError, Keyring,
};
use p11kms::Plaintext;

/// A keyring that knows the one data key of a vector.
struct Static(Vec<u8>);

impl Keyring for Static {
    fn on_encrypt(
        &self,
        _: EncryptionMaterials,
    ) -> BoxFuture<'_, Result<EncryptionMaterials, EnvelopeError>> {
        Box::pin(async { Err(EnvelopeError::BadKeyring("decrypt only")) })
    }
    fn on_decrypt<'a>(
        &'a self,
        mut m: DecryptionMaterials,
        _: &'a [EncryptedDataKey],
    ) -> BoxFuture<'a, Result<DecryptionMaterials, EnvelopeError>> {
        m.data_key = Some(Plaintext::new(self.0.clone()));
        Box::pin(async { Ok(m) })
    }
}

#[tokio::test]
async fn published_v2_vectors_decrypt_or_fail_as_published() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = include_str!("vectors/esdk/commitment-test-vectors.json");
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    let tests = doc["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 46);
    let mut failures = Vec::new();
    for t in tests {
        let name = t["comment"].as_str().unwrap();
        let msg = b64.decode(t["ciphertext"].as_str().unwrap()).unwrap();
        let dek = b64.decode(t["decrypted-dek"].as_str().unwrap()).unwrap();
        let result = decrypt(&msg, &Static(dek), &DecryptOptions::default()).await;
        let ok = t["status"].as_bool().unwrap();
        match (ok, result) {
            (true, Ok((pt, ctx))) => {
                let expected: Vec<u8> = t["plaintext-frames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|f| f.as_str().unwrap().as_bytes().to_vec())
                    .collect();
                let want: BTreeMap<String, String> =
                    serde_json::from_value(t["encryption-context"].clone()).unwrap();
                if pt.expose() != expected.as_slice() || ctx != want {
                    failures.push(format!("{name}: wrong plaintext or context"));
                }
            }
            (false, Err(EnvelopeError::CommitmentMismatch)) => {}
            (true, Err(e)) => failures.push(format!("{name}: {e}")),
            (false, other) => failures.push(format!(
                "{name}: expected a commitment failure, got {other:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_non_framed_body_over_the_limit_is_refused_before_it_is_read() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("vectors/esdk/commitment-test-vectors.json")).unwrap();
    let t = doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["comment"].as_str().unwrap().contains("unframed"))
        .unwrap();
    let msg = b64.decode(t["ciphertext"].as_str().unwrap()).unwrap();
    let dek = b64.decode(t["decrypted-dek"].as_str().unwrap()).unwrap();
    let opts = DecryptOptions {
        max_unframed_length: 4,
        ..DecryptOptions::default()
    };
    assert_eq!(
        decrypt(&msg, &Static(dek), &opts).await.err(),
        Some(EnvelopeError::UnframedTooLarge(4))
    );
}
