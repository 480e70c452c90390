//! What the daemon learns of its token instead of assuming SoftHSM2's answers: the code
//! the token gives a damaged AES-GCM tag (learnt at start-up; only that code, besides
//! the standard's own, is bad ciphertext), and a token that refuses C_CopyObject (told
//! once in the log, counted in the metrics, the token object used instead). Runs on
//! both test tokens (`P11KMS_TEST_TOKEN`).

use crate::harness::*;
use crate::metrics::scrape_async;

const PLAINTEXT: &[u8] = b"what the token answers";
const CONTEXT: &[(&str, &str)] = &[("purpose", "token answers")];
const LEARNT: &str = "the token reports a damaged AES-GCM tag with this code";
const REFUSED: &str = "the token refuses C_CopyObject";

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

/// Encrypts and decrypts under each key from `clients` clients at once, so that several
/// workers use each key.
async fn round_trips(d: &Daemon, keys: &[String], clients: usize) {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut c = d.admin().await;
        let keys = keys.to_vec();
        tasks.push(tokio::spawn(async move {
            for _ in 0..4 {
                for key in &keys {
                    let blob = encrypt(&mut c, key, PLAINTEXT, CONTEXT).await;
                    assert_eq!(decrypt(&mut c, &blob, CONTEXT).await, PLAINTEXT);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_refuses_copies_is_told_once_counted_and_still_used() {
    let dir = TestDir::new();
    let control = dir.use_shim(0);
    control
        .set("fail C_CopyObject CKR_FUNCTION_NOT_SUPPORTED\n")
        .unwrap();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let keys = [
        create_key(&mut c).await.key_id,
        create_key(&mut c).await.key_id,
    ];
    round_trips(&d, &keys, 6).await;

    let refused = scrape_async(d.metrics_url())
        .await
        .value("p11kms_hsm_copy_refused_total", &[]);
    let log = d.log();
    // Each worker tries once per key, and every refusal is counted.
    let injected = log
        .matches("p11shim: C_CopyObject fails with 0x54 (injected)")
        .count();
    assert!(injected >= keys.len(), "{injected} refusals:\n{log}");
    assert_eq!(refused, injected as f64);
    // Told once, with the token's answer.
    let told: Vec<&str> = log.lines().filter(|l| l.contains(REFUSED)).collect();
    assert_eq!(told.len(), 1, "{log}");
    assert!(
        told[0].contains("CKR_FUNCTION_NOT_SUPPORTED"),
        "{}",
        told[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_test_tokens_make_session_copies() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let keys = [create_key(&mut c).await.key_id];
    round_trips(&d, &keys, 3).await;
    let scrape = scrape_async(d.metrics_url()).await;
    assert!(scrape.has("p11kms_hsm_copy_refused_total"));
    assert_eq!(scrape.value("p11kms_hsm_copy_refused_total", &[]), 0.0);
    assert!(!d.log().contains(REFUSED), "{}", d.log());
}
