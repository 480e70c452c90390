//! Key material lives in the token as non-extractable, sensitive token objects.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn key_material_is_a_sensitive_non_extractable_token_object() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let objects = dir.token_objects();
    let id = format!("{}00000001", key.key_id.replace('-', ""));
    let o = objects
        .iter()
        .find(|o| o["id"] == id.as_str())
        .expect("material found by CKA_ID");
    assert_eq!(o["label"], format!("p11kms/{}/v1", key.key_id).as_str());
    assert_eq!(o["token"], true);
    assert_eq!(o["sensitive"], true);
    assert_eq!(o["extractable"], false);
    assert_eq!(o["private"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_checkpoint_key_is_a_sensitive_non_extractable_token_object() {
    let dir = TestDir::new();
    Daemon::start(&dir).stop();
    let objects = dir.token_objects();
    let hex: String = b"p11kms-audit-checkpoint-v1"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let keys: Vec<_> = objects.iter().filter(|o| o["id"] == hex.as_str()).collect();
    assert_eq!(keys.len(), 1, "{objects:?}");
    let o = keys[0];
    assert_eq!(o["class"], "private-key");
    assert_eq!(o["label"], "p11kms/audit-checkpoint");
    assert_eq!(o["token"], true);
    assert_eq!(o["sensitive"], true);
    assert_eq!(o["extractable"], false);
    assert_eq!(o["private"], true);
    // A restart finds the same key instead of making another.
    Daemon::start(&dir).stop();
    assert_eq!(dir.token_objects(), objects);
}
