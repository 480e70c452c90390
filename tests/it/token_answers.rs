//! What the daemon learns of its token instead of assuming SoftHSM2's answers: the code
//! the token gives a damaged AES-GCM tag (learnt at start-up; only that code, besides
//! the standard's own, is bad ciphertext). Runs on both test tokens
//! (`P11KMS_TEST_TOKEN`).

use crate::harness::*;

const PLAINTEXT: &[u8] = b"what the token answers";
const CONTEXT: &[(&str, &str)] = &[("purpose", "token answers")];
const LEARNT: &str = "the token reports a damaged AES-GCM tag with this code";

/// The code the daemon's start-up probe learnt, from its log line.
fn learnt(d: &Daemon) -> String {
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains(LEARNT))
        .unwrap_or_else(|| panic!("no line about the tag probe:\n{log}"));
    let at = line.find("CKR_").unwrap_or_else(|| panic!("{line}"));
    line[at..]
        .chars()
        .take_while(|c| c.is_ascii_uppercase() || *c == '_')
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_learns_how_its_token_reports_a_damaged_tag() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let answer = learnt(&d);
    assert_eq!(answer, test_token().bad_tag_answer());

    let mut c = d.admin().await;
    let key = create_key(&mut c).await.key_id;
    let mut blob = encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
    // The tag ends the blob.
    *blob.last_mut().unwrap() ^= 0x01;
    let r = c.decrypt(decrypt_req(&blob, CONTEXT)).await;
    assert_kms_error(r, "InvalidCiphertextException");
}

#[tokio::test(flavor = "multi_thread")]
async fn general_error_from_decrypt_is_a_fault_on_a_token_that_reports_a_bad_tag_otherwise() {
    let dir = TestDir::new();
    let control = dir.use_shim(0);
    // The start-up probe's decryption meets CKR_ENCRYPTED_DATA_INVALID (what kryoptic
    // answers; SoftHSM2 would say CKR_GENERAL_ERROR), so that is this token's answer.
    control
        .set("fail_next C_Decrypt 1 CKR_ENCRYPTED_DATA_INVALID\n")
        .unwrap();
    // No health probe decrypts while the test counts C_Decrypt failures.
    dir.edit_config(|t| {
        t["hsm"]
            .as_table_mut()
            .unwrap()
            .insert("health_check_ms".into(), 600_000.into());
    });
    let d = Daemon::start(&dir);
    assert_eq!(learnt(&d), "CKR_ENCRYPTED_DATA_INVALID");
    let mut c = d.admin().await;
    let key = create_key(&mut c).await.key_id;
    let blob = encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;

    // On this token CKR_GENERAL_ERROR is a fault of the device, not the caller's bad
    // ciphertext: KMSInternalException, and counted towards the token's health.
    control
        .set("fail_next C_Decrypt 1 CKR_GENERAL_ERROR\n")
        .unwrap();
    let r = c.decrypt(decrypt_req(&blob, CONTEXT)).await;
    assert_kms_error(r, "KMSInternalException");
    assert_eq!(
        d.log()
            .matches("p11shim: C_Decrypt fails with 0x5 (injected)")
            .count(),
        1,
        "{}",
        d.log()
    );
    // The standard's own code stays bad ciphertext on every token.
    control
        .set("fail_next C_Decrypt 1 CKR_ENCRYPTED_DATA_INVALID\n")
        .unwrap();
    let r = c.decrypt(decrypt_req(&blob, CONTEXT)).await;
    assert_kms_error(r, "InvalidCiphertextException");
    // The counts are spent: the blob decrypts.
    assert_eq!(decrypt(&mut c, &blob, CONTEXT).await, PLAINTEXT);
}
