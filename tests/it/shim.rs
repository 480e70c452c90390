//! The PKCS#11 shim (tests/shim) in front of a real daemon: its delay, injected failures
//! and holds, and what the daemon makes of them. Also that the shim's own PKCS#11
//! declarations match the standard header.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use p11kms::proto;

use crate::harness::*;
use crate::p11shim;

const PLAINTEXT: &[u8] = b"through the shim";
const CONTEXT: &[(&str, &str)] = &[("purpose", "shim")];

/// The directory holding cryptoki-sys's copy of the standard pkcs11.h: the version
/// Cargo.lock names, in the Cargo registry (or a `cargo vendor` directory).
/// P11SHIM_HEADER_DIR overrides the search.
fn pkcs11_header_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("P11SHIM_HEADER_DIR") {
        return d.into();
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock = std::fs::read_to_string(manifest.join("Cargo.lock")).unwrap();
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"cryptoki-sys\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("Cargo.lock names cryptoki-sys");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let mut candidates = vec![manifest.join("vendor/cryptoki-sys/vendor")];
    if let Ok(registries) = std::fs::read_dir(cargo_home.join("registry/src")) {
        for r in registries.flatten() {
            candidates.push(r.path().join(format!("cryptoki-sys-{version}/vendor")));
        }
    }
    candidates
        .iter()
        .find(|d| d.join("pkcs11.h").exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no pkcs11.h of cryptoki-sys {version} in {candidates:?}; set P11SHIM_HEADER_DIR"
            )
        })
}

#[test]
fn shim_declarations_match_the_standard_header() {
    let include = pkcs11_header_dir();
    p11shim::check_against_header(Path::new(p11shim::SOURCE), &include)
        .unwrap_or_else(|e| panic!("the shim disagrees with {}:\n{e}", include.display()));

    // The check bites: two functions swapped in the list are caught.
    let source = std::fs::read_to_string(p11shim::SOURCE).unwrap();
    let seed = source.find("    X(C_SeedRandom").unwrap();
    let random = source.find("    X(C_GenerateRandom").unwrap();
    let after = source.find("    X(C_GetFunctionStatus").unwrap();
    let swapped = format!(
        "{}{}{}{}",
        &source[..seed],
        &source[random..after],
        &source[seed..random],
        &source[after..]
    );
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("swapped.c");
    std::fs::write(&bad, swapped).unwrap();
    let err = p11shim::check_against_header(&bad, &include).unwrap_err();
    assert!(err.contains("C_GenerateRandom is out of order"), "{err}");
}

/// A daemon whose token is behind the shim, its admin client and a key.
async fn daemon_behind_shim(
    delay_us: u64,
    edit: impl FnOnce(&TestDir),
) -> (
    TestDir,
    p11shim::Control,
    Daemon,
    p11kms::client::KmsClient,
    String,
) {
    let dir = TestDir::new();
    let control = dir.use_shim(delay_us);
    edit(&dir);
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await.key_id;
    (dir, control, d, c, key)
}

/// How many times the shim said it failed `function` with `rv` (its stderr is in the
/// daemon's log).
fn injected(d: &Daemon, function: &str, rv: &str) -> usize {
    d.log()
        .matches(&format!("p11shim: {function} fails with {rv} (injected)"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_token_slows_each_cryptographic_call_and_still_works() {
    const DELAY: Duration = Duration::from_millis(20);
    let (_dir, _control, _d, mut c, key) =
        daemon_behind_shim(DELAY.as_micros() as u64, |_| {}).await;
    // Several rounds, so that calls on warm workers (key handles cached) are measured too.
    for _ in 0..4 {
        let started = Instant::now();
        let blob = encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
        assert!(
            started.elapsed() >= DELAY,
            "Encrypt took {:?}",
            started.elapsed()
        );

        let started = Instant::now();
        assert_eq!(decrypt(&mut c, &blob, CONTEXT).await, PLAINTEXT);
        assert!(
            started.elapsed() >= DELAY,
            "Decrypt took {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let random = c
        .generate_random(proto::GenerateRandomRequest {
            number_of_bytes: Some(32),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(random.plaintext.len(), 32);
    assert!(
        started.elapsed() >= DELAY,
        "GenerateRandom took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_c_encrypt_makes_the_key_unavailable_until_it_recovers() {
    let (dir, control, d, mut c, key) = daemon_behind_shim(0, |_| {}).await;
    let before = encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
    // Another process on the same token (`p11kms dev token-objects`) goes through the
    // shim too, and sees the key's material.
    assert_eq!(dir.objects_of(&key), 1);

    control.set("fail C_Encrypt CKR_DEVICE_ERROR\n").unwrap();
    // CKR_DEVICE_ERROR counts as a lost session: the pool reopens it and retries, fails
    // again, and the caller is told the key is unavailable (retryable), not that the
    // service broke. (How many attempts is the pool's business; at least the retry.)
    let r = c.encrypt(encrypt_req(&key, PLAINTEXT, CONTEXT)).await;
    assert_kms_error(r, "KeyUnavailableException");
    let failed = injected(&d, "C_Encrypt", "0x30");
    assert!(failed >= 2, "{failed} failed calls:\n{}", d.log());
    // Only C_Encrypt fails: decryption goes on.
    assert_eq!(decrypt(&mut c, &before, CONTEXT).await, PLAINTEXT);

    control.clear().unwrap();
    let after = encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
    assert_eq!(decrypt(&mut c, &after, CONTEXT).await, PLAINTEXT);
    assert_eq!(injected(&d, "C_Encrypt", "0x30"), failed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_session_is_reopened_and_the_call_retried() {
    let (_dir, control, d, mut c, key) = daemon_behind_shim(0, |_| {}).await;
    control
        .set("fail_next C_Encrypt 1 CKR_SESSION_HANDLE_INVALID\n")
        .unwrap();
    let blob = encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
    assert_eq!(injected(&d, "C_Encrypt", "0xb3"), 1, "{}", d.log());
    assert!(
        d.log().contains("PKCS#11 session lost; reopening"),
        "{}",
        d.log()
    );
    assert_eq!(decrypt(&mut c, &blob, CONTEXT).await, PLAINTEXT);
    // The count is spent: the next call is not failed.
    encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
    assert_eq!(injected(&d, "C_Encrypt", "0xb3"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_call_ends_the_tokens_operation_as_a_real_failure_would() {
    // One session, so that the next Encrypt runs on the session that saw the failure.
    let (_dir, control, d, mut c, key) = daemon_behind_shim(0, |dir| {
        dir.edit_config(|t| {
            t["hsm"]
                .as_table_mut()
                .unwrap()
                .insert("sessions".into(), 1.into());
        });
    })
    .await;
    control
        .set("fail_next C_Encrypt 1 CKR_FUNCTION_FAILED\n")
        .unwrap();
    let r = c.encrypt(encrypt_req(&key, PLAINTEXT, CONTEXT)).await;
    assert_kms_error(r, "KMSInternalException");
    assert_eq!(injected(&d, "C_Encrypt", "0x6"), 1, "{}", d.log());
    // Not a lost session: no reopen. Had the shim left SoftHSM2's encryption open, this
    // C_EncryptInit would meet CKR_OPERATION_ACTIVE.
    let blob = encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
    assert_eq!(decrypt(&mut c, &blob, CONTEXT).await, PLAINTEXT);
    assert!(!d.log().contains("reopening"), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_call_waits_until_the_rule_is_removed() {
    let (_dir, control, d, c, key) = daemon_behind_shim(0, |_| {}).await;
    // A misspelt rule is reported and ignored; the rest of the file applies.
    control
        .set("hang C_Encrypt\nfial C_Decrypt CKR_DEVICE_ERROR\n")
        .unwrap();
    let mut c2 = c.clone();
    let key2 = key.clone();
    let call =
        tokio::spawn(async move { c2.encrypt(encrypt_req(&key2, PLAINTEXT, CONTEXT)).await });
    eventually("the shim holds C_Encrypt", || async {
        d.log().contains("p11shim: C_Encrypt held by a hang rule")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "the call did not wait");
    assert!(
        d.log()
            .contains("not a rule, ignored: fial C_Decrypt CKR_DEVICE_ERROR"),
        "{}",
        d.log()
    );

    control.clear().unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the call ends once the rule is gone")
        .unwrap();
    assert!(!r.unwrap().into_inner().ciphertext_blob.is_empty());
    assert!(d.log().contains("p11shim: C_Encrypt released"));
}

/// SoftHSM2 answers C_GenerateKey now and then with CKR_TEMPLATE_INCONSISTENT (0xD1) or
/// CKR_GENERAL_ERROR while other sessions read the token, and makes the key on the next
/// attempt: CreateKey and RotateKeyOnDemand try again, a bounded number of times.
#[tokio::test(flavor = "multi_thread")]
async fn transient_key_generation_failures_are_retried_a_bounded_number_of_times() {
    let (_dir, control, d, mut c, key) = daemon_behind_shim(0, |_| {}).await;
    control.set("fail_next C_GenerateKey 2 0xD1\n").unwrap();
    let made = create_key(&mut c).await;
    assert_eq!(injected(&d, "C_GenerateKey", "0xd1"), 2);
    let blob = encrypt(&mut c, &made.key_id, PLAINTEXT, CONTEXT).await;
    assert_eq!(decrypt(&mut c, &blob, CONTEXT).await, PLAINTEXT);

    control
        .set("fail_next C_GenerateKey 2 CKR_GENERAL_ERROR\n")
        .unwrap();
    c.rotate_key_on_demand(proto::RotateKeyOnDemandRequest {
        key_id: key.clone(),
    })
    .await
    .unwrap();
    assert_eq!(injected(&d, "C_GenerateKey", "0x5"), 2);

    // A token that refuses every time: five attempts, then the caller hears of it.
    control.set("fail C_GenerateKey 0xD1\n").unwrap();
    assert_kms_error(
        c.create_key(proto::CreateKeyRequest::default()).await,
        "KMSInternalException",
    );
    control.clear().unwrap();
    assert_eq!(injected(&d, "C_GenerateKey", "0xd1"), 2 + 5);
    create_key(&mut c).await;
}
