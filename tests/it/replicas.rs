//! Two daemons on one PostgreSQL database and one SoftHSM2 token: a call answered by
//! one daemon uses what the other made, and a change made through one (key disabled,
//! Deny added, grant revoked, alias moved, key scheduled for deletion) is enforced by
//! the other within a second, though it had the old state cached.

use std::time::{Duration, Instant};

use p11kms::proto;
use serde_json::json;

use crate::harness::*;
use crate::postgres::use_db;

use crate::testdb;

/// A second dev directory with `a`'s CA, identities, token and PINs.
fn replica_of(a: &TestDir) -> TestDir {
    let b = TestDir::new();
    for f in [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "softhsm2.conf",
        "so.pin",
        "user.pin",
    ] {
        std::fs::copy(a.path().join(f), b.path().join(f)).unwrap();
    }
    let (src, dst) = (a.dev().admin_identity(), b.dev().admin_identity());
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    b.prepare();
    b
}

/// Two daemons on one new database: `a`, and `b` on `a`'s token (dropped in this
/// order: the daemons before their database).
struct Replicas {
    a: Daemon,
    b: Daemon,
    a_dir: TestDir,
    _b_dir: TestDir,
    _db: testdb::TestDb,
}

impl Replicas {
    fn start() -> Self {
        let db = testdb::TestDb::start();
        let a_dir = TestDir::new();
        a_dir.prepare();
        use_db(&a_dir, &db);
        let a = Daemon::start(&a_dir);
        let b_dir = replica_of(&a_dir);
        use_db(&b_dir, &db);
        let b = Daemon::start(&b_dir);
        Self {
            a,
            b,
            a_dir,
            _b_dir: b_dir,
            _db: db,
        }
    }
}

/// Polls `check` until it holds, and returns how long that took (at most 1 s).
async fn within_a_second<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{what}: not seen by the other daemon within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

fn error_of<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Option<String> {
    r.err()
        .map(|s| p11kms::client::error_name(&s).unwrap_or("none").to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_on_one_database_and_token_agree_within_a_second() {
    let Replicas {
        a,
        b,
        a_dir: _a_dir,
        _b_dir,
        _db,
    } = Replicas::start();
    let (mut ca, mut cb) = (a.admin().await, b.admin().await);

    // Made on A, used on B, and back.
    let key = create_key(&mut ca).await.key_id;
    let blob = encrypt(&mut ca, &key, b"across", &[]).await;
    assert_eq!(decrypt(&mut cb, &blob, &[]).await, b"across");
    let blob = encrypt(&mut cb, &key, b"and back", &[]).await;
    assert_eq!(decrypt(&mut ca, &blob, &[]).await, b"and back");

    let mut took = Vec::new();
    // Key disabled on A: B refuses.
    ca.disable_key(proto::DisableKeyRequest {
        key_id: key.clone(),
    })
    .await
    .unwrap();
    took.push(
        within_a_second("DisableKey", || {
            let mut cb = cb.clone();
            let key = key.clone();
            async move {
                error_of(cb.encrypt(encrypt_req(&key, b"x", &[])).await).as_deref()
                    == Some("DisabledException")
            }
        })
        .await,
    );
    ca.enable_key(proto::EnableKeyRequest {
        key_id: key.clone(),
    })
    .await
    .unwrap();
    within_a_second("EnableKey", || {
        let mut cb = cb.clone();
        let key = key.clone();
        async move { cb.encrypt(encrypt_req(&key, b"x", &[])).await.is_ok() }
    })
    .await;

    // An identity policy changed on A: B denies.
    let app = role("111122223333", "App");
    put_identity_policy(&mut ca, &app, "all", allow(&["kms:*"])).await;
    let app_b = b.client_as(&app).await;
    within_a_second("PutPrincipalPolicy", || {
        let mut app_b = app_b.clone();
        let key = key.clone();
        async move { app_b.encrypt(encrypt_req(&key, b"x", &[])).await.is_ok() }
    })
    .await;
    put_identity_policy(
        &mut ca,
        &app,
        "deny",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*"}]}),
    )
    .await;
    took.push(
        within_a_second("a Deny added", || {
            let mut app_b = app_b.clone();
            let key = key.clone();
            async move {
                error_of(app_b.encrypt(encrypt_req(&key, b"x", &[])).await).as_deref()
                    == Some("AccessDeniedException")
            }
        })
        .await,
    );

    // A grant revoked on A: its grantee is refused on B.
    let grantee = role("111122223333", "Grantee");
    let grant = ca
        .create_grant(proto::CreateGrantRequest {
            key_id: key.clone(),
            grantee_principal: grantee.clone(),
            operations: vec!["Decrypt".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .grant_id;
    let grantee_b = b.client_as(&grantee).await;
    within_a_second("CreateGrant", || {
        let mut g = grantee_b.clone();
        let blob = blob.clone();
        async move { g.decrypt(decrypt_req(&blob, &[])).await.is_ok() }
    })
    .await;
    ca.revoke_grant(proto::RevokeGrantRequest {
        key_id: key.clone(),
        grant_id: grant,
    })
    .await
    .unwrap();
    took.push(
        within_a_second("RevokeGrant", || {
            let mut g = grantee_b.clone();
            let blob = blob.clone();
            async move {
                error_of(g.decrypt(decrypt_req(&blob, &[])).await).as_deref()
                    == Some("AccessDeniedException")
            }
        })
        .await,
    );

    // An alias moved on A: B resolves it to the new key.
    let other = create_key(&mut ca).await.key_id;
    ca.create_alias(proto::CreateAliasRequest {
        alias_name: "alias/moving".into(),
        target_key_id: key.clone(),
    })
    .await
    .unwrap();
    assert_eq!(describe(&mut cb, "alias/moving").await.key_id, key);
    ca.update_alias(proto::UpdateAliasRequest {
        alias_name: "alias/moving".into(),
        target_key_id: other.clone(),
    })
    .await
    .unwrap();
    took.push(
        within_a_second("UpdateAlias", || {
            let mut cb = cb.clone();
            let other = other.clone();
            async move { describe(&mut cb, "alias/moving").await.key_id == other }
        })
        .await,
    );

    // Scheduled for deletion on A: B refuses to encrypt.
    ca.schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
        key_id: key.clone(),
        pending_window_in_days: Some(7),
    })
    .await
    .unwrap();
    took.push(
        within_a_second("ScheduleKeyDeletion", || {
            let mut cb = cb.clone();
            let key = key.clone();
            async move {
                error_of(cb.encrypt(encrypt_req(&key, b"x", &[])).await).as_deref()
                    == Some("KMSInvalidStateException")
            }
        })
        .await,
    );
    println!("propagation to the other daemon: {took:?}");
    drop(app_b);
    drop(grantee_b);
    a.stop();
    b.stop();
}

/// One of two daemons killed with SIGKILL under load from a client that knows both:
/// the client goes on with the other, calls fail only while in flight on the dead one
/// (and only as transport failures), and every ciphertext it was given decrypts on the
/// survivor.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_under_load_loses_nothing_and_the_client_fails_over() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let Replicas {
        a,
        b,
        a_dir,
        _b_dir,
        _db,
    } = Replicas::start();
    let identity = p11kms::client::Identity::from_dir(&a_dir.dev().admin_identity()).unwrap();
    let c = p11kms::client::connect(&format!("{},{}", a.endpoint(), b.endpoint()), &identity)
        .await
        .unwrap();
    let key = create_key(&mut c.clone()).await.key_id;
    let stop = Arc::new(AtomicBool::new(false));
    let told = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..4u8)
        .map(|t| {
            let (mut c, stop, told, failed, key) = (
                c.clone(),
                Arc::clone(&stop),
                Arc::clone(&told),
                Arc::clone(&failed),
                key.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let plain = format!("{t}-{n}").into_bytes();
                    match c.encrypt(encrypt_req(&key, &plain, &[])).await {
                        Ok(r) => told
                            .lock()
                            .unwrap()
                            .push((r.into_inner().ciphertext_blob, plain)),
                        Err(s) => failed.lock().unwrap().push(s),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = told.lock().unwrap().len();
    a.crash();
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let told = told.lock().unwrap().clone();
    assert!(
        before > 0 && told.len() > before,
        "{before} then {}",
        told.len()
    );
    for s in failed.lock().unwrap().iter() {
        // Only calls in flight on the dead daemon, which carry no AWS name.
        assert!(p11kms::client::error_name(s).is_none(), "{s:?}");
    }
    let mut survivor = b.admin().await;
    for (blob, plain) in &told {
        assert_eq!(&decrypt(&mut survivor, blob, &[]).await, plain);
    }
    println!(
        "one of two daemons killed: {} ciphertexts acknowledged ({} after the kill), {} calls failed in flight, all decrypt on the survivor",
        told.len(),
        told.len() - before,
        failed.lock().unwrap().len()
    );
    b.stop();
}

/// Two daemons rotating the same key at the same moment, again and again: each version
/// is made once in the token (one object per version, no CKA_ID made twice), and what
/// either encrypts after decrypts on both.
#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_rotating_one_key_at_once_make_each_version_once() {
    let Replicas {
        a,
        b,
        a_dir,
        _b_dir,
        _db,
    } = Replicas::start();
    let (mut ca, mut cb) = (a.admin().await, b.admin().await);
    let key = create_key(&mut ca).await.key_id;
    for _ in 0..5 {
        let rotate = |mut c: p11kms::client::KmsClient| {
            let key = key.clone();
            async move {
                c.rotate_key_on_demand(proto::RotateKeyOnDemandRequest { key_id: key })
                    .await
            }
        };
        let (ra, rb) = tokio::join!(rotate(ca.clone()), rotate(cb.clone()));
        assert!(ra.is_ok() || rb.is_ok(), "{ra:?} {rb:?}");
        let from_a = encrypt(&mut ca, &key, b"from a", &[]).await;
        let from_b = encrypt(&mut cb, &key, b"from b", &[]).await;
        assert_eq!(decrypt(&mut cb, &from_a, &[]).await, b"from a");
        assert_eq!(decrypt(&mut ca, &from_b, &[]).await, b"from b");
    }
    let rotations = ca
        .list_key_rotations(proto::ListKeyRotationsRequest {
            key_id: key.clone(),
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rotations
        .len();
    let prefix = key.replace('-', "");
    let mut ids: Vec<String> = a_dir
        .token_objects()
        .iter()
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .filter(|id| id.starts_with(&prefix))
        .collect();
    let all = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(all, ids.len(), "a CKA_ID made twice: {ids:?}");
    assert_eq!(
        all,
        1 + rotations,
        "token objects against 1 + {rotations} rotations"
    );
    a.stop();
    b.stop();
}
