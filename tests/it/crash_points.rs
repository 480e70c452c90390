//! Crash consistency, proven by killing: the daemon aborts at each crash point of
//! `src/failpoint.rs` (built with the `failpoints` feature, as the test command builds
//! it), and at random moments under mixed load (SIGKILL); after each, a restart must
//! find every invariant whole:
//!
//! - every key the store lists is usable or pending deletion, and each usable key
//!   encrypts and decrypts (its material is in the token);
//! - every ciphertext a client was told about decrypts to what was encrypted (unless
//!   its key is pending deletion or was destroyed, which the client was told too);
//! - a destroyed key is gone from the token as well;
//! - no token object is left that no key points at (orphans cleaned at start);
//! - SQLite passes `PRAGMA integrity_check`, and the audit trail verifies.
//!
//! `P11KMS_KILL_ROUNDS` (default 3) and `P11KMS_KILL_SEED` set the random run;
//! `scripts/crash-kills.sh` runs it for 200 rounds.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;

use p11kms::proto;

use crate::harness::*;

/// What the client was told, to be checked after a crash.
#[derive(Default)]
struct Told {
    /// Ciphertexts acknowledged, with their key and plaintext.
    blobs: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// Keys whose deletion the client scheduled (pending, or destroyed since).
    doomed: HashSet<String>,
    /// Keys whose creation was acknowledged.
    created: Vec<String>,
}

impl Told {
    /// Adds what a round's clients were told, and keeps in `keys` the keys the next
    /// round may use (the new ones, none scheduled for deletion). Returns how many
    /// ciphertexts the round acknowledged.
    fn take_in(&mut self, part: Told, keys: &mut Vec<String>) -> usize {
        let acknowledged = part.blobs.len();
        self.blobs.extend(part.blobs);
        self.doomed.extend(part.doomed);
        keys.extend(part.created);
        keys.retain(|k| !self.doomed.contains(k));
        acknowledged
    }
}

const CONTEXT: &[(&str, &str)] = &[("crash", "test")];

/// A daemon with a 1-second lifecycle sweep on a test clock, two keys with
/// ciphertexts, an alias, and a third key scheduled for deletion in 7 days.
async fn baseline(dir: &TestDir) -> (Told, Vec<String>) {
    dir.with_test_clock();
    let d = Daemon::start(dir);
    let mut c = d.admin().await;
    let mut told = Told::default();
    let mut keys = Vec::new();
    for i in 0..3u8 {
        let key = create_key(&mut c).await.key_id;
        let plain = vec![i; 24];
        let blob = encrypt(&mut c, &key, &plain, CONTEXT).await;
        told.blobs.push((key.clone(), blob, plain));
        keys.push(key);
    }
    c.create_alias(proto::CreateAliasRequest {
        alias_name: "alias/before".into(),
        target_key_id: keys[0].clone(),
    })
    .await
    .unwrap();
    c.schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
        key_id: keys[2].clone(),
        pending_window_in_days: Some(7),
    })
    .await
    .unwrap();
    told.doomed.insert(keys[2].clone());
    d.stop();
    (told, keys)
}

/// Starts the daemon to abort at `point`, runs `trigger`, and waits for the crash.
async fn crash_at<F, Fut>(dir: &TestDir, point: &str, told: &mut Told, trigger: F)
where
    F: FnOnce(p11kms::client::KmsClient) -> Fut,
    Fut: std::future::Future<Output = Vec<(String, Vec<u8>, Vec<u8>)>>,
{
    let d = Daemon::start_with(dir, &[("P11KMS_CRASH_AT", point)]);
    let c = d.admin().await;
    let acknowledged = trigger(c).await;
    told.blobs.extend(acknowledged);
    let log = d.wait_crash();
    assert!(
        log.contains(&format!("crash point {point} reached")),
        "the daemon did not stop at {point}:\n{log}"
    );
}

/// Restarts the daemon and checks every invariant of the module documentation, for the
/// acknowledged ciphertexts `told.blobs[i]` of each `i` in `blobs`.
async fn check_invariants(dir: &TestDir, told: &Told, blobs: impl Iterator<Item = usize>) {
    let d = Daemon::start(dir);
    let mut c = d.admin().await;
    let listed = list_key_ids(&mut c).await;
    // Checked 32 at a time: each call waits for its audit record's commit, and
    // sequential calls would make a long run's checks (thousands of ciphertexts)
    // dominate its time.
    let states: Vec<Option<(String, String)>> = futures_util::stream::iter(&listed)
        .map(|key| {
            let (mut c, d) = (c.clone(), &d);
            async move {
                let described = c
                    .describe_key(proto::DescribeKeyRequest {
                        key_id: key.clone(),
                        grant_tokens: vec![],
                    })
                    .await;
                let m = match described {
                    Ok(r) => r.into_inner().key_metadata.unwrap(),
                    // The sweep at start finished its destruction since it was listed.
                    Err(s) if told.doomed.contains(key) && s.code() == tonic::Code::NotFound => {
                        return None
                    }
                    Err(s) => panic!("DescribeKey {key}: {s:?}"),
                };
                match m.key_state.as_str() {
                    "Enabled" => {
                        let blob = match c
                            .encrypt(encrypt_req(key, b"after the crash", CONTEXT))
                            .await
                        {
                            Ok(r) => r.into_inner().ciphertext_blob,
                            Err(s) => panic!("Encrypt {key} after the crash: {s:?}\n{}", d.log()),
                        };
                        assert_eq!(decrypt(&mut c, &blob, CONTEXT).await, b"after the crash");
                    }
                    "PendingDeletion" => {
                        assert!(told.doomed.contains(key), "{key} pending deletion")
                    }
                    // A key for imported material whose import never completed, or
                    // whose material was deleted (its token object is checked below).
                    "PendingImport" => assert_eq!(m.origin, "EXTERNAL", "{key}"),
                    other => panic!("{key} is {other} after a crash"),
                }
                Some((key.clone(), m.key_state))
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let state: HashMap<String, String> = states.into_iter().flatten().collect();
    let enabled: Vec<(&Vec<u8>, &Vec<u8>)> = blobs
        .map(|i| &told.blobs[i])
        .filter_map(
            |(key, blob, plain)| match state.get(key).map(String::as_str) {
                Some("Enabled") => Some((blob, plain)),
                Some(_) => None,
                None => {
                    assert!(
                        told.doomed.contains(key),
                        "{key}, under which a ciphertext was acknowledged, is gone"
                    );
                    None
                }
            },
        )
        .collect();
    futures_util::stream::iter(enabled)
        .map(|(blob, plain)| {
            let mut c = c.clone();
            async move { assert_eq!(&decrypt(&mut c, blob, CONTEXT).await, plain) }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    // Every token object belongs to a listed key: no orphans, nothing of a destroyed key;
    // and a usable key has exactly its versions there (one, and one per rotation), so no
    // material a crash left past the current version either.
    let known: HashSet<String> = listed.iter().map(|k| k.replace('-', "")).collect();
    let mut objects: HashMap<String, usize> = HashMap::new();
    for o in dir.token_objects() {
        let id = o["id"].as_str().unwrap();
        if id.len() == 40 {
            assert!(
                known.contains(&id[..32]),
                "token object {o} belongs to no key"
            );
            *objects.entry(id[..32].to_owned()).or_default() += 1;
        }
    }
    for (key, st) in &state {
        if st == "PendingImport" {
            assert_eq!(
                objects.get(&key.replace('-', "")),
                None,
                "{key} is without material, yet the token holds some"
            );
        }
        if st != "Enabled" {
            continue;
        }
        let rotations = rotation_count(&mut c, key).await;
        assert_eq!(
            objects.get(&key.replace('-', "")).copied().unwrap_or(0),
            1 + rotations,
            "{key}: token objects against 1 + {rotations} rotations"
        );
    }
    d.stop();
    let sqlite = dir.path().join("p11kms.db");
    if sqlite.exists() {
        let db = rusqlite::Connection::open(sqlite).unwrap();
        let integrity: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
    }
    let audit = dir.path().join("audit");
    let key =
        p11kms::CheckpointPublicKey::read(&audit.join(p11kms::CHECKPOINT_PUBLIC_KEY_FILE)).unwrap();
    let verified = p11kms::verify_trail(&p11kms::trail_files(&audit).unwrap(), Some(&key));
    assert!(verified.is_ok(), "the audit trail: {verified:?}");
}

/// Calls that may fail (the daemon dies under them) and the ciphertexts acknowledged.
async fn encrypt_some(
    mut c: p11kms::client::KmsClient,
    key: &str,
) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..5u8 {
        let plain = vec![i; 16];
        match c.encrypt(encrypt_req(key, &plain, CONTEXT)).await {
            Ok(r) => out.push((key.to_owned(), r.into_inner().ciphertext_blob, plain)),
            Err(_) => break,
        }
    }
    out
}

/// Runs one crash point: the baseline, the crash, the checks; then the daemon must keep
/// working (a second restart after the checks already proved that).
async fn crash_point(point: &str) {
    let dir = TestDir::new();
    let (mut told, keys) = baseline(&dir).await;
    let key = keys[0].clone();
    match point {
        p if p.starts_with("create_key.") => {
            crash_at(&dir, point, &mut told, |mut c| async move {
                let _ = c.create_key(proto::CreateKeyRequest::default()).await;
                Vec::new()
            })
            .await;
        }
        p if p.starts_with("new_material.") => {
            crash_at(&dir, point, &mut told, |mut c| async move {
                let _ = c
                    .rotate_key_on_demand(proto::RotateKeyOnDemandRequest {
                        key_id: key.clone(),
                    })
                    .await;
                Vec::new()
            })
            .await;
        }
        p if p.starts_with("destroy.") => {
            // Past the deletion date: the sweep at start destroys the doomed key.
            std::fs::write(dir.path().join("clock-offset"), (8 * 86_400).to_string()).unwrap();
            crash_at(&dir, point, &mut told, |_| async { Vec::new() }).await;
        }
        p if p.starts_with("import.") || p.starts_with("delete_import.") => {
            let delete = p.starts_with("delete_import.");
            crash_at(&dir, point, &mut told, |mut c| async move {
                let key = crate::import::external_key(&mut c).await.key_id;
                let params = crate::import::oaep_sha1_parameters(&mut c, &key).await;
                let import = crate::import::lasting_import(&key, &params, &[7; 32]);
                let imported = c.import_key_material(import).await;
                if delete {
                    imported.unwrap();
                    let _ = c
                        .delete_imported_key_material(proto::DeleteImportedKeyMaterialRequest {
                            key_id: key,
                        })
                        .await;
                }
                Vec::new()
            })
            .await;
        }
        "alias.after_write" => {
            crash_at(&dir, point, &mut told, |mut c| async move {
                let _ = c
                    .create_alias(proto::CreateAliasRequest {
                        alias_name: "alias/during".into(),
                        target_key_id: key.clone(),
                    })
                    .await;
                Vec::new()
            })
            .await;
        }
        "grant.after_write" => {
            crash_at(&dir, point, &mut told, |mut c| async move {
                let _ = c
                    .create_grant(proto::CreateGrantRequest {
                        key_id: key.clone(),
                        grantee_principal: role("111122223333", "crash"),
                        operations: vec!["Encrypt".into()],
                        ..Default::default()
                    })
                    .await;
                Vec::new()
            })
            .await;
        }
        p if p.starts_with("audit.") => {
            crash_at(&dir, point, &mut told, |c| encrypt_some(c, &key)).await;
        }
        other => panic!("no scenario for crash point {other}"),
    }
    check_invariants(&dir, &told, 0..told.blobs.len()).await;
}

macro_rules! crash_point_tests {
    ($($name:ident => $point:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                crash_point($point).await;
            }
        )*

        #[test]
        fn every_crash_point_has_a_test() {
            let tested: Vec<&str> = vec![$($point),*];
            assert_eq!(tested, p11kms::CRASH_POINTS);
        }
    };
}

crash_point_tests! {
    create_key_after_material => "create_key.after_material",
    create_key_after_insert => "create_key.after_insert",
    new_material_after_material => "new_material.after_material",
    new_material_after_store => "new_material.after_store",
    destroy_after_begin => "destroy.after_begin",
    destroy_after_version => "destroy.after_version",
    destroy_after_finish => "destroy.after_finish",
    import_after_unwrap => "import.after_unwrap",
    delete_import_after_record => "delete_import.after_record",
    alias_after_write => "alias.after_write",
    grant_after_write => "grant.after_write",
    audit_after_write => "audit.after_write",
    audit_after_sync => "audit.after_sync",
}

/// A number from the environment, or `default`.
fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Which of the `new` ciphertexts acknowledged before this round to check again: all of
/// them when `full`, else 100 picked at random (a long run's checks would otherwise
/// grow with the square of its rounds).
fn older_to_check(rng: &mut Rng, new: usize, full: bool) -> Vec<usize> {
    if full {
        (0..new).collect()
    } else {
        (0..100.min(new))
            .map(|_| rng.below(new as u64) as usize)
            .collect()
    }
}

/// A small deterministic generator (xorshift64*), so that a seed replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Mixed load from a few clients: CreateKey, Encrypt, GenerateDataKey, rotation,
/// aliases, grants and scheduled deletions, until the daemon dies under it (or `stop`
/// is set: a client of several daemons goes on with the others). Returns what the
/// clients were told.
async fn mixed_load(
    c: p11kms::client::KmsClient,
    keys: Vec<String>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Told {
    let tasks: Vec<_> = (0..4u64)
        .map(|t| {
            let (mut c, mut keys, stop) = (c.clone(), keys.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut told = Told::default();
                // Only keys this task created are scheduled for deletion, so that the
                // keys shared by the tasks (never empty) outlive every round.
                let mut mine: Vec<String> = Vec::new();
                for n in 0..10_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = keys[rng.below(keys.len() as u64) as usize].clone();
                    let ok = match rng.below(10) {
                        0 => match c.create_key(proto::CreateKeyRequest::default()).await {
                            Ok(r) => {
                                let key = r.into_inner().key_metadata.unwrap().key_id;
                                keys.push(key.clone());
                                mine.push(key.clone());
                                told.created.push(key);
                                true
                            }
                            Err(_) => false,
                        },
                        1 => c
                            .rotate_key_on_demand(proto::RotateKeyOnDemandRequest { key_id: key })
                            .await
                            .is_ok(),
                        2 => c
                            .create_alias(proto::CreateAliasRequest {
                                alias_name: format!("alias/kill-{t}-{n}"),
                                target_key_id: key,
                            })
                            .await
                            .is_ok(),
                        3 => c
                            .create_grant(proto::CreateGrantRequest {
                                key_id: key,
                                grantee_principal: role("111122223333", "kill"),
                                operations: vec!["Decrypt".into()],
                                ..Default::default()
                            })
                            .await
                            .is_ok(),
                        4 if !mine.is_empty() => {
                            let key = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                            // Told once the call is sent: a crash may or may not have kept it.
                            told.doomed.insert(key.clone());
                            keys.retain(|k| *k != key);
                            c.schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
                                key_id: key,
                                pending_window_in_days: Some(7),
                            })
                            .await
                            .is_ok()
                        }
                        _ => {
                            let plain = rng.next().to_be_bytes().to_vec();
                            match c.encrypt(encrypt_req(&key, &plain, CONTEXT)).await {
                                Ok(r) => {
                                    told.blobs
                                        .push((key, r.into_inner().ciphertext_blob, plain));
                                    true
                                }
                                Err(_) => false,
                            }
                        }
                    };
                    if !ok
                        && c.list_keys(proto::ListKeysRequest::default())
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
                told
            })
        })
        .collect();
    let mut told = Told::default();
    for t in tasks {
        let part = t.await.unwrap();
        told.blobs.extend(part.blobs);
        told.doomed.extend(part.doomed);
        told.created.extend(part.created);
    }
    told
}

/// Schedules the deletion of the keys made under load (`keys` after the baseline's
/// two), but the newest ten, through a daemon stopped gracefully afterwards.
async fn retire_old_keys(dir: &TestDir, keys: &mut Vec<String>, told: &mut Told) {
    const BASELINE: usize = 2;
    const KEPT: usize = 10;
    if keys.len() <= BASELINE + KEPT {
        return;
    }
    let d = Daemon::start(dir);
    let mut c = d.admin().await;
    let retired: Vec<String> = keys.drain(BASELINE..keys.len() - KEPT).collect();
    for key in retired {
        c.schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
            key_id: key.clone(),
            pending_window_in_days: Some(7),
        })
        .await
        .unwrap();
        told.doomed.insert(key);
    }
    d.stop();
}

/// A log line about key material (made, rotated, destroyed: every such line names it),
/// a new key, or a warning or error.
fn material_or_trouble(line: &str) -> bool {
    ["WARN", "ERROR", "material", "key created"]
        .iter()
        .any(|w| line.contains(w))
}

#[tokio::test(flavor = "multi_thread")]
async fn random_kills_under_mixed_load_lose_nothing() {
    let (rounds, seed) = (
        env_u64("P11KMS_KILL_ROUNDS", 3),
        env_u64("P11KMS_KILL_SEED", 0x5eed),
    );
    let mut rng = Rng(seed | 1);
    let dir = TestDir::new();
    let (mut told, keys) = baseline(&dir).await;
    let mut keys: Vec<String> = keys
        .into_iter()
        .filter(|k| !told.doomed.contains(k))
        .collect();
    let mut acknowledged = 0;
    let offset = dir.path().join("clock-offset");
    for round in 0..rounds {
        let d = Daemon::start(&dir);
        let c = d.admin().await;
        let load = tokio::spawn(mixed_load(
            c,
            keys.clone(),
            rng.next(),
            Arc::new(AtomicBool::new(false)),
        ));
        tokio::time::sleep(Duration::from_millis(100 + rng.below(600))).await;
        // Shown only when the test fails (the runner drops a passing test's output): what
        // the killed daemon did to key material, for an inconsistency found after it.
        eprintln!("round {round}: the killed daemon's material and trouble lines:");
        for line in d.crash().lines().filter(|l| material_or_trouble(l)) {
            eprintln!("  {line}");
        }
        let part = load.await.unwrap();
        let new = told.blobs.len();
        acknowledged += told.take_in(part, &mut keys);
        // Every ciphertext is checked after the crash that follows its acknowledgement,
        // and all of them every 10 rounds and at the end; in between, 100 older ones
        // picked at random.
        let full = round % 10 == 9 || round + 1 == rounds;
        let older = older_to_check(&mut rng, new, full);
        let checked = std::time::Instant::now();
        check_invariants(&dir, &told, older.into_iter().chain(new..told.blobs.len())).await;
        eprintln!(
            "round {round}: {acknowledged} ciphertexts acknowledged so far, {} ({} keys carried, checked in {:.1} s)",
            if full { "all decrypt" } else { "the new ones and 100 older decrypt" },
            keys.len(),
            checked.elapsed().as_secs_f64()
        );
        if round % 10 == 9 {
            // Keys and token objects must not pile up over a long run (each call on
            // the token grows slower with its number of objects): all but the newest
            // ten keys made under load are scheduled for deletion, and the clock moves
            // past their window, so the sweep of the next start destroys them, perhaps
            // killed in the middle.
            retire_old_keys(&dir, &mut keys, &mut told).await;
            let days = 8 * (round / 10 + 1);
            std::fs::write(&offset, (days * 86_400).to_string()).unwrap();
        }
    }
    println!(
        "random kills: {rounds} rounds (seed {seed}), {acknowledged} acknowledged ciphertexts, no inconsistency"
    );
}

/// Two daemons on one PostgreSQL database and one token, under mixed load from a client
/// that knows both: each round one of them, chosen at random, is SIGKILLed at a random
/// moment, the load goes on with the other for a while, and the dead one's restart
/// must find every invariant above whole. The dead daemon's claims to make material
/// are first aged past the orphan sweep's five minutes (as if the restart came later),
/// so that its start destroys what it left between making material and recording it.
/// `P11KMS_REPLICA_KILL_ROUNDS` (default 3) and `P11KMS_KILL_SEED` set the run.
#[tokio::test(flavor = "multi_thread")]
async fn random_kills_of_one_of_two_replicas_lose_nothing() {
    let (rounds, seed) = (
        env_u64("P11KMS_REPLICA_KILL_ROUNDS", 3),
        env_u64("P11KMS_KILL_SEED", 0x5eed),
    );
    let mut rng = Rng(seed | 1);
    let mut r = crate::replicas::Replicas::start_with(2, "", true);
    let mut told = Told::default();
    let mut keys = Vec::new();
    {
        let mut c = r.daemons[0].admin().await;
        for i in 0..2u8 {
            let key = create_key(&mut c).await.key_id;
            let plain = vec![i; 24];
            let blob = encrypt(&mut c, &key, &plain, CONTEXT).await;
            told.blobs.push((key.clone(), blob, plain));
            keys.push(key);
        }
    }
    let identity = p11kms::client::Identity::from_dir(&r.dirs[0].dev().admin_identity()).unwrap();
    let mut acknowledged = 0;
    for round in 0..rounds {
        let endpoints: Vec<String> = r.daemons.iter().map(Daemon::endpoint).collect();
        let c = p11kms::client::connect(&endpoints.join(","), &identity)
            .await
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn(mixed_load(c, keys.clone(), rng.next(), Arc::clone(&stop)));
        tokio::time::sleep(Duration::from_millis(100 + rng.below(600))).await;
        let victim = rng.below(2) as usize;
        r.daemons.remove(victim).crash();
        // The other daemon carries the load on.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let part = load.await.unwrap();
        let new = told.blobs.len();
        acknowledged += told.take_in(part, &mut keys);
        r.age_claims(600).await;
        // As in the single daemon's run: the new ciphertexts and 100 older ones, and all
        // of them every 10 rounds and at the end.
        let full = round % 10 == 9 || round + 1 == rounds;
        let older = older_to_check(&mut rng, new, full);
        check_invariants(
            &r.dirs[victim],
            &told,
            older.into_iter().chain(new..told.blobs.len()),
        )
        .await;
        eprintln!(
            "round {round}: daemon {victim} killed; {acknowledged} ciphertexts acknowledged so far ({} this round), {}",
            told.blobs.len() - new,
            if full { "all decrypt" } else { "the new ones and 100 older decrypt" }
        );
        r.daemons.insert(victim, Daemon::start(&r.dirs[victim]));
    }
    println!(
        "random kills of replicas: {rounds} rounds (seed {seed}), {acknowledged} acknowledged ciphertexts, no inconsistency"
    );
    r.stop();
}
