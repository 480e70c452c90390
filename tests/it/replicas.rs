//! Several daemons on one PostgreSQL database and one SoftHSM2 token: a call answered
//! by one daemon uses what another made; a change made through one (key disabled, Deny
//! added, identity policy changed, grant revoked, alias moved, key scheduled for
//! deletion) is enforced by every other within a second, though they had the old state
//! cached; IV budgets and new material are claimed once across daemons; a daemon killed
//! under load loses nothing and hands the sweeps to a survivor.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use p11kms::client::KmsClient;
use p11kms::proto;
use serde_json::json;

use crate::harness::*;
use crate::postgres::use_db;

use crate::testdb;

/// A dev directory with `a`'s CA, identities, token and PINs.
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

/// `n` daemons on one new database and the first one's token (dropped in this order:
/// the daemons, their directories, the database).
pub(crate) struct Replicas {
    pub(crate) daemons: Vec<Daemon>,
    pub(crate) dirs: Vec<TestDir>,
    db: testdb::TestDb,
    /// The test clock all of them read, when asked for.
    clock: Option<PathBuf>,
}

impl Replicas {
    fn start(n: usize) -> Self {
        Self::start_with(n, "", false)
    }

    /// With `config` appended to each daemon's configuration and, when `clock`, one
    /// test clock for all and a sweep every second.
    pub(crate) fn start_with(n: usize, config: &str, clock: bool) -> Self {
        let db = testdb::TestDb::start();
        let first = TestDir::new();
        first.prepare();
        let clock = clock.then(|| first.path().join("clock-offset"));
        let configure = |d: &TestDir| {
            use_db(d, &db);
            d.append_config(config);
            if let Some(c) = &clock {
                d.append_config(&format!(
                    "\n[lifecycle]\nsweep_interval_secs = 1\nclock_offset_file = {:?}\n",
                    c.to_str().unwrap()
                ));
            }
        };
        // One at a time: the first to start migrates the database, leads the sweeps
        // and makes the dev admin's access key, which the others are given (dev mode
        // would make one more each, past AWS's two per principal).
        configure(&first);
        let mut daemons = vec![Daemon::start(&first)];
        let mut dirs = vec![first];
        for _ in 1..n {
            let d = replica_of(&dirs[0]);
            std::fs::copy(
                dirs[0].path().join("aws-env.sh"),
                d.path().join("aws-env.sh"),
            )
            .unwrap();
            configure(&d);
            daemons.push(Daemon::start(&d));
            dirs.push(d);
        }
        Self {
            daemons,
            dirs,
            db,
            clock,
        }
    }

    async fn admins(&self) -> Vec<KmsClient> {
        let mut out = Vec::new();
        for d in &self.daemons {
            out.push(d.admin().await);
        }
        out
    }

    async fn clients_as(&self, principal: &str) -> Vec<KmsClient> {
        let mut out = Vec::new();
        for d in &self.daemons {
            out.push(d.client_as(principal).await);
        }
        out
    }

    /// Stops every daemon still running (each must exit cleanly), then drops the rest.
    pub(crate) fn stop(mut self) {
        for d in self.daemons.drain(..) {
            d.stop();
        }
    }

    /// Makes every claim to make key material `secs` older, as the database's clock
    /// sees it (claims are timed by the database, not by the daemons' clocks).
    pub(crate) async fn age_claims(&self, secs: i64) {
        let (client, conn) = self
            .db
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .execute(
                "UPDATE material_claims SET claimed_ms = claimed_ms - $1",
                &[&(secs * 1000)],
            )
            .await
            .unwrap();
    }

    /// Waits until every daemon listens to the store's changes: its first connection
    /// reports that everything may have changed, which drops every cache and session
    /// copy once (a test that counts copies starts after).
    async fn listening(&self) {
        for d in &self.daemons {
            let url = d.metrics_url().to_owned();
            eventually("the daemon listens to the store's changes", || {
                let url = url.clone();
                async move {
                    crate::metrics::scrape_async(&url)
                        .await
                        .value("p11kms_store_changes_total", &[])
                        >= 1.0
                }
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    /// Moves every daemon's clock forward to `secs` past the real one.
    fn set_clock(&self, secs: u64) {
        std::fs::write(self.clock.as_ref().expect("a test clock"), secs.to_string()).unwrap();
    }
}

/// Polls `check` until it holds, and returns how long that took (at most 1 s).
async fn within_a_second<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{what}: not seen by the other daemons within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// [`within_a_second`] for `check` on every client but the one at `except` (the
/// daemon that made the change).
async fn all_others_within_a_second<F, Fut>(
    what: &str,
    clients: &[KmsClient],
    except: usize,
    check: F,
) -> Duration
where
    F: Fn(KmsClient) -> Fut,
    Fut: Future<Output = bool>,
{
    let others: Vec<KmsClient> = clients
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != except)
        .map(|(_, c)| c.clone())
        .collect();
    let check = &check;
    within_a_second(what, || {
        let others = others.clone();
        async move {
            for c in others {
                if !check(c).await {
                    return false;
                }
            }
            true
        }
    })
    .await
}

fn error_of<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Option<String> {
    r.err()
        .map(|s| p11kms::client::error_name(&s).unwrap_or("none").to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn three_daemons_on_one_database_and_token_agree_within_a_second() {
    let r = Replicas::start(3);
    let mut c = r.admins().await;
    let n = c.len();

    // A client alternating between the daemons: every round trip crosses two of them.
    let mut keys = Vec::new();
    for i in 0..9 {
        let (x, y, z) = (i % n, (i + 1) % n, (i + 2) % n);
        if i % n == 0 {
            keys.push(create_key(&mut c[x]).await.key_id);
        }
        let key = keys.last().unwrap().clone();
        let plain = format!("round {i}").into_bytes();
        let blob = encrypt(&mut c[x], &key, &plain, &[("round", "trip")]).await;
        assert_eq!(decrypt(&mut c[y], &blob, &[("round", "trip")]).await, plain);
        let dk = c[z]
            .generate_data_key(proto::GenerateDataKeyRequest {
                key_id: key.clone(),
                number_of_bytes: Some(32),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            decrypt(&mut c[x], &dk.ciphertext_blob, &[]).await,
            dk.plaintext
        );
        let other = keys[0].clone();
        let moved = c[y]
            .re_encrypt(proto::ReEncryptRequest {
                ciphertext_blob: blob,
                source_encryption_context: ctx(&[("round", "trip")]),
                destination_key_id: other,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .ciphertext_blob;
        assert_eq!(decrypt(&mut c[z], &moved, &[]).await, plain);
    }

    // Each change is made on one daemon (a different one each time) and must be
    // enforced by both others.
    let key = create_key(&mut c[0]).await.key_id;
    let blob = encrypt(&mut c[0], &key, b"across", &[]).await;
    for cl in c.iter_mut() {
        assert_eq!(decrypt(cl, &blob, &[]).await, b"across");
    }
    let mut took = Vec::new();
    let refused = |name: &'static str, key: String| {
        move |mut cl: KmsClient| {
            let key = key.clone();
            async move {
                error_of(cl.encrypt(encrypt_req(&key, b"x", &[])).await).as_deref() == Some(name)
            }
        }
    };
    let served = |key: String| {
        move |mut cl: KmsClient| {
            let key = key.clone();
            async move { cl.encrypt(encrypt_req(&key, b"x", &[])).await.is_ok() }
        }
    };

    // Key disabled on 0.
    c[0].disable_key(proto::DisableKeyRequest {
        key_id: key.clone(),
    })
    .await
    .unwrap();
    took.push((
        "DisableKey",
        all_others_within_a_second(
            "DisableKey",
            &c,
            0,
            refused("DisabledException", key.clone()),
        )
        .await,
    ));
    c[0].enable_key(proto::EnableKeyRequest {
        key_id: key.clone(),
    })
    .await
    .unwrap();
    all_others_within_a_second("EnableKey", &c, 0, served(key.clone())).await;

    // An identity policy granted on 1, then a Deny added on 1.
    let app = role("111122223333", "App");
    let apps = r.clients_as(&app).await;
    put_identity_policy(&mut c[1], &app, "all", allow(&["kms:*"])).await;
    took.push((
        "PutPrincipalPolicy (Allow)",
        all_others_within_a_second("PutPrincipalPolicy", &apps, 1, served(key.clone())).await,
    ));
    put_identity_policy(
        &mut c[1],
        &app,
        "deny",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*"}]}),
    )
    .await;
    took.push((
        "a Deny added",
        all_others_within_a_second(
            "a Deny added",
            &apps,
            1,
            refused("AccessDeniedException", key.clone()),
        )
        .await,
    ));

    // A grant made and revoked on 2: its grantee is refused on the others.
    let grantee = role("111122223333", "Grantee");
    let grantees = r.clients_as(&grantee).await;
    let grant = c[2]
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
    let decrypts = |ok: bool| {
        let blob = blob.clone();
        move |mut g: KmsClient| {
            let blob = blob.clone();
            async move {
                let r = g.decrypt(decrypt_req(&blob, &[])).await;
                if ok {
                    r.is_ok()
                } else {
                    error_of(r).as_deref() == Some("AccessDeniedException")
                }
            }
        }
    };
    all_others_within_a_second("CreateGrant", &grantees, 2, decrypts(true)).await;
    c[2].revoke_grant(proto::RevokeGrantRequest {
        key_id: key.clone(),
        grant_id: grant,
    })
    .await
    .unwrap();
    took.push((
        "RevokeGrant",
        all_others_within_a_second("RevokeGrant", &grantees, 2, decrypts(false)).await,
    ));

    // An alias moved on 0: the others resolve it to the new key.
    let other = create_key(&mut c[0]).await.key_id;
    c[0].create_alias(proto::CreateAliasRequest {
        alias_name: "alias/moving".into(),
        target_key_id: key.clone(),
    })
    .await
    .unwrap();
    for cl in c.iter_mut() {
        assert_eq!(describe(cl, "alias/moving").await.key_id, key);
    }
    c[0].update_alias(proto::UpdateAliasRequest {
        alias_name: "alias/moving".into(),
        target_key_id: other.clone(),
    })
    .await
    .unwrap();
    took.push((
        "UpdateAlias",
        all_others_within_a_second("UpdateAlias", &c, 0, |mut cl| {
            let other = other.clone();
            async move { describe(&mut cl, "alias/moving").await.key_id == other }
        })
        .await,
    ));

    // Scheduled for deletion on 1: the others refuse to encrypt.
    c[1].schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
        key_id: key.clone(),
        pending_window_in_days: Some(7),
    })
    .await
    .unwrap();
    took.push((
        "ScheduleKeyDeletion",
        all_others_within_a_second(
            "ScheduleKeyDeletion",
            &c,
            1,
            refused("KMSInvalidStateException", key.clone()),
        )
        .await,
    ));
    println!("propagation to both other daemons: {took:?}");
    drop((apps, grantees, c));
    r.stop();
}

/// The session copies a daemon made of a key are destroyed when another daemon
/// schedules the key for deletion (the token object goes later, with the sweep of
/// whichever daemon leads it): no daemon keeps usable material of a deleted key. The
/// copies of other keys stay.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_deleted_through_one_daemon_leaves_no_session_copy_in_another() {
    let r = Replicas::start_with(2, "", true);
    r.listening().await;
    let mut c = r.admins().await;
    let (doomed, kept) = (
        create_key(&mut c[0]).await.key_id,
        create_key(&mut c[0]).await.key_id,
    );
    let copies = |d: usize| {
        let url = r.daemons[d].metrics_url().to_owned();
        async move {
            crate::metrics::scrape_async(&url)
                .await
                .value("p11kms_hsm_session_copies", &[])
        }
    };
    // Each daemon uses each key from several calls at once (several sessions copy it).
    let mut held = [Vec::new(), Vec::new()];
    for key in [&kept, &doomed] {
        for (d, held) in held.iter_mut().enumerate() {
            let calls: Vec<_> = (0..8)
                .map(|_| {
                    let (mut cl, key) = (c[d].clone(), key.clone());
                    tokio::spawn(async move { encrypt(&mut cl, &key, b"copy me", &[]).await })
                })
                .collect();
            for call in calls {
                call.await.unwrap();
            }
            held.push(copies(d).await);
        }
    }
    for h in &held {
        assert!(h[0] >= 1.0 && h[1] > h[0], "copies: {held:?}");
    }
    c[0].schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
        key_id: doomed.clone(),
        pending_window_in_days: Some(7),
    })
    .await
    .unwrap();
    // The daemon that scheduled it has dropped its copies by its answer.
    assert_eq!(copies(0).await, held[0][0]);
    // Exactly `doomed`'s copies go from the other daemon: `kept`'s stay.
    let of_kept = held[1][0];
    let started = Instant::now();
    let mut now = copies(1).await;
    while now != of_kept {
        assert!(
            started.elapsed() < Duration::from_secs(10) && now >= of_kept,
            "daemon 1 holds {now} session copies; {of_kept} are the other key's"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = copies(1).await;
    }
    println!(
        "daemon 1's session copies: {} of both keys, {now} {:?} after the deletion of one was scheduled on daemon 0",
        held[1][1],
        started.elapsed()
    );
    encrypt(&mut c[1], &kept, b"still", &[]).await;
    // The leader's sweep destroys the token object once the window has passed.
    r.set_clock(8 * 24 * 3600);
    let dir = &r.dirs[0];
    eventually("the token object of the deleted key destroyed", || async {
        dir.objects_of(&doomed) == 0
    })
    .await;
    assert_eq!(dir.objects_of(&kept), 1);
    assert_eq!(
        error_of(
            c[1].describe_key(proto::DescribeKeyRequest {
                key_id: doomed.clone(),
                ..Default::default()
            })
            .await
        )
        .as_deref(),
        Some("NotFoundException")
    );
    drop(c);
    r.stop();
}

/// One of three daemons killed with SIGKILL under load from a client that knows all
/// of them: the client goes on with the others, calls fail only while in flight on the
/// dead one (and only as transport failures), every ciphertext it was given decrypts
/// on the survivors, and the sweeps the dead daemon led pass to a survivor.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_under_load_loses_nothing_and_the_client_fails_over() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let mut r = Replicas::start_with(3, "", true);
    // The first daemon started leads the sweeps.
    eventually("daemon 0 leads the sweeps", || async {
        r.daemons[0].log().contains("this daemon leads the sweeps")
    })
    .await;
    let identity = p11kms::client::Identity::from_dir(&r.dirs[0].dev().admin_identity()).unwrap();
    let endpoints: Vec<String> = r.daemons.iter().map(Daemon::endpoint).collect();
    let c = p11kms::client::connect(&endpoints.join(","), &identity)
        .await
        .unwrap();
    let key = create_key(&mut c.clone()).await.key_id;
    let doomed = create_key(&mut c.clone()).await.key_id;
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
    r.daemons.remove(0).crash();
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
    let mut survivors = r.admins().await;
    for (i, (blob, plain)) in told.iter().enumerate() {
        let s = &mut survivors[i % 2];
        assert_eq!(&decrypt(s, blob, &[]).await, plain);
    }

    // A survivor takes the sweeps over: a key whose deletion falls due is destroyed.
    survivors[0]
        .schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
            key_id: doomed.clone(),
            pending_window_in_days: Some(7),
        })
        .await
        .unwrap();
    r.set_clock(8 * 24 * 3600);
    let dir = &r.dirs[1];
    eventually("a survivor's sweep destroys the due key", || async {
        dir.objects_of(&doomed) == 0
    })
    .await;
    let leaders = r
        .daemons
        .iter()
        .filter(|d| d.log().contains("this daemon leads the sweeps"))
        .count();
    assert_eq!(leaders, 1, "survivors that took the sweeps over");
    println!(
        "one of three daemons killed: {} ciphertexts acknowledged ({} after the kill), {} calls failed in flight, all decrypt on the survivors; a survivor now leads the sweeps",
        told.len(),
        told.len() - before,
        failed.lock().unwrap().len()
    );
    r.stop();
}

/// Two daemons rotating the same key at the same moment, again and again: each version
/// is made once in the token (one object per version, no CKA_ID made twice), and what
/// either encrypts after decrypts on both.
#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_rotating_one_key_at_once_make_each_version_once() {
    let r = Replicas::start(2);
    let c = r.admins().await;
    let (mut ca, mut cb) = (c[0].clone(), c[1].clone());
    let key = create_key(&mut ca).await.key_id;
    for _ in 0..5 {
        let rotate = |mut c: KmsClient| {
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
    let rotations = rotation_count(&mut ca, &key).await;
    assert_eq!(
        one_object_per_version(&r.dirs[0], &key),
        1 + rotations,
        "token objects against 1 + {rotations} rotations"
    );
    r.stop();
}

/// The key's token objects, each CKA_ID once (panics on a CKA_ID made twice).
fn one_object_per_version(dir: &TestDir, key: &str) -> usize {
    let prefix = key.replace('-', "");
    let mut ids: Vec<String> = dir
        .token_objects()
        .iter()
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .filter(|id| id.starts_with(&prefix))
        .collect();
    let all = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(all, ids.len(), "a CKA_ID made twice: {ids:?}");
    all
}

/// Three daemons encrypting under one key at once with a budget of a few encryptions
/// per material version, so that they claim invocations and roll the material over
/// again and again, each racing the others: every IV is recorded, and none repeats; no
/// version serves more encryptions than its budget across all daemons; each version is
/// made once; and every ciphertext decrypts on a daemon other than its own.
#[tokio::test(flavor = "multi_thread")]
async fn three_daemons_rolling_material_over_at_once_never_exceed_a_budget() {
    const BUDGET: usize = 4;
    let r = Replicas::start_with(
        3,
        &format!("\n[limits]\nmax_encryptions_per_material = {BUDGET}\n"),
        false,
    );
    let c = r.admins().await;
    let key = create_key(&mut c[0].clone()).await.key_id;
    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let (mut cl, key) = (c[t % c.len()].clone(), key.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                for n in 0..12 {
                    let plain = format!("{t}-{n}").into_bytes();
                    out.push((t, encrypt(&mut cl, &key, &plain, &[]).await, plain));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        match t.await {
            Ok(v) => all.extend(v),
            Err(e) => {
                for d in &r.daemons {
                    for l in d
                        .log()
                        .lines()
                        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                    {
                        eprintln!("daemon log: {l}");
                    }
                }
                panic!("{e:?}");
            }
        }
    }
    let mut ivs = std::collections::HashSet::new();
    let mut per_version = std::collections::BTreeMap::<u32, usize>::new();
    for (_, blob, _) in &all {
        assert!(ivs.insert(blob[24..36].to_vec()), "an IV used twice");
        *per_version.entry(material_version(blob)).or_default() += 1;
    }
    for (v, n) in &per_version {
        assert!(*n <= BUDGET, "version {v} served {n} encryptions");
    }
    let newest = *per_version.keys().last().unwrap();
    assert!(newest as usize >= all.len() / BUDGET, "{per_version:?}");
    // Versions skipped (a reservation dropped with a cache entry) still exist once.
    assert_eq!(one_object_per_version(&r.dirs[0], &key), newest as usize);
    for (t, blob, plain) in &all {
        let mut other = c[(t + 1) % c.len()].clone();
        assert_eq!(&decrypt(&mut other, blob, &[]).await, plain);
    }
    println!(
        "{} encryptions from three daemons: {} versions, encryptions per version {:?}",
        all.len(),
        newest,
        per_version.values().collect::<Vec<_>>()
    );
    drop(c);
    r.stop();
}

/// The CKA_IDs (hex) of the token's key-material objects (16 key-id bytes and 4
/// version bytes; p11kms's own keys have other ids).
fn material_ids(dir: &TestDir) -> std::collections::HashSet<String> {
    dir.token_objects()
        .iter()
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .filter(|id| id.len() == 40)
        .collect()
}

/// A CreateKey cut short by a crash leaves a token object that no metadata points at.
/// On a shared store another daemon may be making such an object at any moment, so a
/// start-up sweep destroys it only under the right to make it: its maker's claim is
/// taken over once the maker cannot be making it, here at once, for the crashed daemon
/// has no connection to the database left (a live maker's claim holds: the store's own
/// test, `one_daemon_at_a_time_makes_a_material_version`). Other keys are untouched.
#[tokio::test(flavor = "multi_thread")]
async fn an_orphan_on_a_shared_store_is_swept_once_its_maker_cannot_be_making_it() {
    let mut r = Replicas::start(2);
    let mut c0 = r.daemons[0].admin().await;
    let kept = create_key(&mut c0).await.key_id;
    let before = material_ids(&r.dirs[0]);
    r.daemons.remove(1).stop();
    let crashing = Daemon::start_with(
        &r.dirs[1],
        &[("P11KMS_CRASH_AT", "create_key.after_material")],
    );
    let mut c1 = crashing.admin().await;
    assert!(c1
        .create_key(proto::CreateKeyRequest::default())
        .await
        .is_err());
    crashing.wait_crash();
    let orphans: Vec<String> = material_ids(&r.dirs[0])
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    let orphan = orphans[0].clone();

    // The dead CreateKey's claim is fresh, but its daemon is gone: the next start takes
    // the claim over and destroys the object, without waiting for the claim to age.
    let d = Daemon::start(&r.dirs[1]);
    eventually("the start-up sweep destroys the object", || async {
        d.log()
            .contains("destroying key material that no metadata points at")
    })
    .await;
    assert!(!material_ids(&r.dirs[0]).contains(&orphan));
    assert_eq!(material_ids(&r.dirs[0]), before);
    let mut c1 = d.admin().await;
    let blob = encrypt(&mut c0, &kept, b"kept", &[]).await;
    assert_eq!(decrypt(&mut c1, &blob, &[]).await, b"kept");
    drop((c0, c1));
    r.daemons.push(d);
    r.stop();
}

/// Two daemons on one database and token import into one key: concurrent imports of the
/// same material land as one (the material claim), a deletion through one daemon makes
/// the other refuse the key and drop its session copies, and the same material imported
/// through the other brings old ciphertexts back.
#[tokio::test(flavor = "multi_thread")]
async fn imported_material_is_one_material_across_daemons() {
    let r = Replicas::start_with(2, "", false);
    r.listening().await;
    let mut c = r.admins().await;
    let key = crate::import::external_key(&mut c[0]).await.key_id;
    let params = crate::import::oaep_sha1_parameters(&mut c[1], &key).await;
    let material = [0x42u8; 32];
    let import = || crate::import::lasting_import(&key, &params, &material);
    // Both at once: each lands, or says that the other is changing the material.
    let (mut c0, mut c1) = (c[0].clone(), c[1].clone());
    let (a, b) = tokio::join!(
        c0.import_key_material(import()),
        c1.import_key_material(import())
    );
    for e in [error_of(a), error_of(b)].into_iter().flatten() {
        assert_eq!(e, "KMSInvalidStateException");
    }
    eventually("the key enabled for both daemons", || {
        let mut c = c.clone();
        let key = key.clone();
        async move {
            let mut ok = true;
            for c in &mut c {
                ok &= c.encrypt(encrypt_req(&key, b"both", &[])).await.is_ok();
            }
            ok
        }
    })
    .await;
    assert_eq!(r.dirs[0].objects_of(&key), 1, "one material in the token");
    let blob = encrypt(&mut c[1], &key, b"imported once", &[]).await;

    c[0].delete_imported_key_material(proto::DeleteImportedKeyMaterialRequest {
        key_id: key.clone(),
    })
    .await
    .unwrap();
    eventually("the other daemon refusing the key", || {
        let (mut c, key) = (c[1].clone(), key.clone());
        async move {
            error_of(c.encrypt(encrypt_req(&key, b"x", &[])).await).as_deref()
                == Some("KMSInvalidStateException")
        }
    })
    .await;
    assert_eq!(r.dirs[0].objects_of(&key), 0);
    c[1].import_key_material(import()).await.unwrap();
    eventually("the first daemon using the key again", || {
        let (mut c, blob) = (c[0].clone(), blob.clone());
        async move { c.decrypt(decrypt_req(&blob, &[])).await.is_ok() }
    })
    .await;
    assert_eq!(decrypt(&mut c[0], &blob, &[]).await, b"imported once");
    drop(c);
}
