//! HSM faults survived by the daemon itself, made by the PKCS#11 shim (tests/shim) in
//! front of SoftHSM2, or by SoftHSM2's own tool: a call that hangs, a burst of device
//! errors, a removed device (the module re-initialised without a restart), a token
//! wiped under the running daemon. Each under load from concurrent clients: no wrong
//! answer, no success reported for work that did not happen, and service back by
//! itself once the token is; the recovery time is printed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::metrics::{get, scrape_async};
use crate::p11shim;
use p11kms::client::error_name;

const PLAINTEXT: &[u8] = b"through a faulty token";
const CONTEXT: &[(&str, &str)] = &[("purpose", "faults")];

/// The call deadline of these daemons, in ms.
const CALL_TIMEOUT_MS: i64 = 400;

/// A daemon behind the shim with a short call deadline and a quick health check, its
/// admin client and a key.
async fn faulty_daemon(
    inline_sessions: i64,
) -> (
    TestDir,
    p11shim::Control,
    Daemon,
    p11kms::client::KmsClient,
    String,
) {
    let dir = TestDir::new();
    let control = dir.use_shim(0);
    dir.edit_config(|t| {
        let hsm = t["hsm"].as_table_mut().unwrap();
        hsm.insert("call_timeout_ms".into(), CALL_TIMEOUT_MS.into());
        hsm.insert("health_check_ms".into(), 200.into());
        hsm.insert("inline_sessions".into(), inline_sessions.into());
    });
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await.key_id;
    (dir, control, d, c, key)
}

/// Clients encrypting and decrypting in a loop until stopped. Every success must be
/// right (a ciphertext that decrypts to what was sent, a plaintext that is the one
/// encrypted); every failure (counted, Encrypt or Decrypt) must carry
/// KeyUnavailableException or KMSInternalException.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(c: &p11kms::client::KmsClient, key: &str, known: Vec<u8>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let tasks = (0..4)
            .map(|_| {
                let (mut c, key, known) = (c.clone(), key.to_owned(), known.clone());
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match c.encrypt(encrypt_req(&key, PLAINTEXT, CONTEXT)).await {
                            Ok(r) => {
                                let blob = r.into_inner().ciphertext_blob;
                                // A success must be real: the blob decrypts (retrying
                                // while the token is down) to what was sent.
                                let plain = loop {
                                    match c.decrypt(decrypt_req(&blob, CONTEXT)).await {
                                        Ok(r) => {
                                            break std::mem::take(&mut r.into_inner().plaintext)
                                        }
                                        Err(s) => {
                                            assert_retryable(&s);
                                            failed.fetch_add(1, Ordering::Relaxed);
                                            tokio::time::sleep(Duration::from_millis(50)).await;
                                        }
                                    }
                                };
                                assert_eq!(plain, PLAINTEXT, "a wrong answer");
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(s) => {
                                assert_retryable(&s);
                                failed.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                        if let Ok(r) = c.decrypt(decrypt_req(&known, CONTEXT)).await {
                            let mut r = r.into_inner();
                            assert_eq!(
                                std::mem::take(&mut r.plaintext),
                                PLAINTEXT,
                                "a wrong answer"
                            );
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let counts = (self.ok(), self.failed());
        for t in self.tasks {
            t.await.expect("a load task found a wrong answer");
        }
        counts
    }
}

fn assert_retryable(s: &tonic::Status) {
    let name = error_name(s).unwrap_or_default();
    assert!(
        name == "KeyUnavailableException" || name == "KMSInternalException",
        "unexpected error {name:?}: {s:?}"
    );
}

async fn fault_events(d: &Daemon, event: &str) -> f64 {
    scrape_async(d.metrics_url())
        .await
        .value("p11kms_hsm_fault_events_total", &[("event", event)])
}

/// `/readyz` names the token as failed.
async fn assert_token_unready(d: &Daemon) {
    let (status, body) = get(d.metrics_url(), "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("token: failed"), "{body}");
}

/// Clears the shim's rules under load and waits for service; prints and bounds the
/// recovery time, and returns the load's good and failed round trips.
async fn recover_under_load(
    what: &str,
    control: &p11shim::Control,
    c: &mut p11kms::client::KmsClient,
    key: &str,
    known: &[u8],
) -> (usize, usize) {
    let load = Load::start(c, key, known.to_vec());
    control.clear().unwrap();
    let recovered = time_to_recover(c, key).await;
    println!("{what}: service back {recovered:?} after the token answered again");
    assert!(recovered < Duration::from_secs(10), "{recovered:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = load.finish().await;
    println!("{what}: load saw {ok} good round trips, {failed} retryable failures");
    assert!(ok > 0);
    (ok, failed)
}

/// Waits until Encrypt works again, and returns how long that took.
async fn time_to_recover(c: &mut p11kms::client::KmsClient, key: &str) -> Duration {
    let started = Instant::now();
    loop {
        match c.encrypt(encrypt_req(key, PLAINTEXT, CONTEXT)).await {
            Ok(_) => return started.elapsed(),
            Err(s) => {
                assert_retryable(&s);
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "no recovery within 30 s: {s:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_call_fails_its_request_its_worker_is_replaced_and_service_resumes() {
    // Every call on the workers, so that the hang holds a worker, never a runtime thread.
    let (_dir, control, d, mut c, key) = faulty_daemon(0).await;
    let known = encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
    let mut other = c.clone();

    control.set("hang C_Encrypt\n").unwrap();
    let started = Instant::now();
    let r = c.encrypt(encrypt_req(&key, PLAINTEXT, CONTEXT)).await;
    let took = started.elapsed();
    assert_kms_error(r, "KMSInternalException");
    assert!(
        took >= Duration::from_millis(CALL_TIMEOUT_MS as u64) && took < Duration::from_secs(5),
        "the hung call answered after {took:?}"
    );
    eventually("the hung worker is replaced", || async {
        fault_events(&d, "worker_replaced").await >= 1.0
    })
    .await;
    // Down now: Encrypt fails fast, retryable; calls that need no token go on; /readyz
    // names the token.
    let started = Instant::now();
    let r = c.encrypt(encrypt_req(&key, PLAINTEXT, CONTEXT)).await;
    assert_kms_error(r, "KeyUnavailableException");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    other
        .describe_key(p11kms::proto::DescribeKeyRequest {
            key_id: key.clone(),
            ..Default::default()
        })
        .await
        .expect("DescribeKey needs no token");
    assert_token_unready(&d).await;
    recover_under_load("hung call", &control, &mut c, &key, &known).await;
    assert_eq!(decrypt(&mut c, &known, CONTEXT).await, PLAINTEXT);
    assert!(fault_events(&d, "recovered").await >= 1.0);
    assert_eq!(get(d.metrics_url(), "/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_pair_slower_than_the_call_deadline_is_made_and_the_token_stays_up() {
    let (_dir, control, d, mut c, key) = faulty_daemon(0).await;
    // Key-pair generation takes 1.5 s, far past the 400 ms deadline of other calls, and
    // meanwhile the token keeps the health probe waiting (kryoptic did, making an
    // RSA-4096 key): the probe draws random bytes first.
    let slow = "delay_us C_GenerateKeyPair 1500000\n";
    control
        .set(&format!("{slow}hang C_GenerateRandom\n"))
        .unwrap();
    let mut maker = c.clone();
    let started = Instant::now();
    let made = tokio::spawn(async move {
        let r = p11kms::proto::CreateKeyRequest {
            key_spec: "RSA_2048".into(),
            key_usage: "SIGN_VERIFY".into(),
            ..Default::default()
        };
        maker.create_key(r).await
    });
    // The probe has waited past the deadline more than once by now (one every 200 ms).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    control.set(slow).unwrap();
    let made = made.await.unwrap().expect("the slow key pair is made");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the delay did not apply: {:?}",
        started.elapsed()
    );
    let id = made.into_inner().key_metadata.unwrap().key_id;
    assert!(!id.is_empty());
    for event in ["timeout", "worker_replaced", "marked_down"] {
        assert_eq!(fault_events(&d, event).await, 0.0, "{event}");
    }
    assert_eq!(get(d.metrics_url(), "/readyz").await.0, 200);
    let ct = encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
    assert_eq!(decrypt(&mut c, &ct, CONTEXT).await, PLAINTEXT);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_device_errors_opens_the_breaker_and_calls_fail_fast_until_the_token_is_back() {
    let (_dir, control, d, mut c, key) = faulty_daemon(2).await;
    let known = encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
    control.set("fail C_Encrypt CKR_DEVICE_ERROR\n").unwrap();
    for _ in 0..3 {
        let r = c.encrypt(encrypt_req(&key, PLAINTEXT, CONTEXT)).await;
        assert_kms_error(r, "KeyUnavailableException");
    }
    eventually("the token is marked down", || async {
        fault_events(&d, "marked_down").await >= 1.0
    })
    .await;
    // Open: 50 calls fail at once, and hardly any reach the token (the supervisor's
    // probes do, a few per second).
    let reached = d
        .log()
        .matches("C_Encrypt fails with 0x30 (injected)")
        .count();
    let started = Instant::now();
    for _ in 0..50 {
        let r = c.encrypt(encrypt_req(&key, PLAINTEXT, CONTEXT)).await;
        assert_kms_error(r, "KeyUnavailableException");
    }
    let took = started.elapsed();
    let reached = d
        .log()
        .matches("C_Encrypt fails with 0x30 (injected)")
        .count()
        - reached;
    println!("breaker open: 50 calls answered in {took:?}; {reached} C_Encrypt reached the token");
    assert!(
        reached < 25,
        "{reached} calls reached the token while it was down"
    );
    assert_token_unready(&d).await;
    recover_under_load("device errors", &control, &mut c, &key, &known).await;
    assert_eq!(get(d.metrics_url(), "/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_device_is_reinitialised_without_a_restart() {
    let (_dir, control, d, mut c, key) = faulty_daemon(2).await;
    let known = encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
    // A key never used since it was made: its first use needs the token itself.
    let cold = create_key(&mut c).await.key_id;
    let load = Load::start(&c, &key, known.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every call, C_Initialize included, as if the device were unplugged.
    control.set("fail * CKR_DEVICE_REMOVED\n").unwrap();
    eventually("the token is marked down", || async {
        fault_events(&d, "marked_down").await >= 1.0
    })
    .await;
    let r = c.encrypt(encrypt_req(&key, PLAINTEXT, CONTEXT)).await;
    assert_kms_error(r, "KeyUnavailableException");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    control.clear().unwrap();
    let recovered = time_to_recover(&mut c, &key).await;
    println!("removed device: service back {recovered:?} after it returned");
    assert!(recovered < Duration::from_secs(10), "{recovered:?}");
    assert!(fault_events(&d, "reinitialized").await >= 1.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = load.finish().await;
    println!("removed device: load saw {ok} good round trips, {failed} retryable failures");
    assert!(failed > 0, "the fault was never seen");
    let blob = encrypt(&mut c, &cold, PLAINTEXT, CONTEXT).await;
    assert_eq!(decrypt(&mut c, &blob, CONTEXT).await, PLAINTEXT);
    assert_eq!(decrypt(&mut c, &known, CONTEXT).await, PLAINTEXT);
    // A new key is made in the token again.
    let fresh = create_key(&mut c).await.key_id;
    encrypt(&mut c, &fresh, PLAINTEXT, CONTEXT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_wiped_under_the_daemon_stops_the_keys_it_held() {
    let dir = TestDir::new();
    dir.prepare();
    dir.edit_config(|t| {
        let hsm = t["hsm"].as_table_mut().unwrap();
        hsm.insert("health_check_ms".into(), 200.into());
    });
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await.key_id;
    // Warm: every session holds a copy of the key.
    for _ in 0..20 {
        encrypt(&mut c, &key, PLAINTEXT, CONTEXT).await;
    }
    let read = |name: &str| {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let out = std::process::Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", dir.dev().softhsm_conf())
        .args([
            "--init-token",
            "--token",
            "p11kms-dev",
            "--label",
            "p11kms-dev",
        ])
        .args(["--so-pin", &read("so.pin"), "--pin", &read("user.pin")])
        .output()
        .expect("softhsm2-util runs");
    assert!(out.status.success(), "{out:?}");

    // Noticed within a few health checks.
    let started = Instant::now();
    loop {
        match c.encrypt(encrypt_req(&key, PLAINTEXT, CONTEXT)).await {
            Err(s) if error_name(&s) == Some("KeyUnavailableException") => break,
            _ => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the wipe went unnoticed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    println!("wiped token: noticed after {:?}", started.elapsed());
    // From then on, no ciphertext is made under a key the token no longer holds.
    for _ in 0..20 {
        let r = c.encrypt(encrypt_req(&key, PLAINTEXT, CONTEXT)).await;
        assert_kms_error(r, "KeyUnavailableException");
    }
    let (status, body) = get(d.metrics_url(), "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("wiped or replaced"), "{body}");
}
