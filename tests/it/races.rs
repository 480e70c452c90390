//! Racing pairs over the wire: whatever order two concurrent requests reach the store in,
//! what the running daemon answers (its memory) is what a daemon restarted on the same
//! directory answers (the store). EnableKey against ScheduleKeyDeletion, two PutKeyPolicy
//! calls, and alias lookups against DeleteAlias.

use p11kms::client::{error_name, KmsClient};
use p11kms::proto;
use serde_json::json;

use crate::harness::*;

const STATE_KEYS: usize = 40;
const POLICY_KEYS: usize = 30;
const ALIAS_ROUNDS: usize = 15;
const LOOKUPS: usize = 20;

fn schedule(key_id: &str) -> proto::ScheduleKeyDeletionRequest {
    proto::ScheduleKeyDeletionRequest {
        key_id: key_id.into(),
        pending_window_in_days: Some(7),
    }
}

/// Encrypt's outcome: Ok, or the AWS error's name.
async fn encrypt_outcome(c: &mut KmsClient, key_id: &str) -> Result<(), String> {
    match c.encrypt(encrypt_req(key_id, b"probe", &[])).await {
        Ok(_) => Ok(()),
        Err(st) => Err(error_name(&st).unwrap_or("<none>").to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enable_key_racing_schedule_key_deletion_leaves_memory_as_the_store_is() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let mut keys = Vec::new();
    for _ in 0..STATE_KEYS {
        let id = create_key(&mut c).await.key_id;
        // Disabled first, so that EnableKey has a write to make.
        c.disable_key(proto::DisableKeyRequest { key_id: id.clone() })
            .await
            .unwrap();
        keys.push(id);
    }

    // Every pair at once, each side on its own connection.
    let (a, b) = (d.admin().await, d.admin().await);
    let races: Vec<_> = keys
        .iter()
        .map(|id| {
            let (mut a, mut b, id) = (a.clone(), b.clone(), id.clone());
            tokio::spawn(async move {
                let enable = proto::EnableKeyRequest { key_id: id.clone() };
                tokio::join!(a.enable_key(enable), b.schedule_key_deletion(schedule(&id)))
            })
        })
        .collect();
    for (id, race) in keys.iter().zip(races) {
        let (enabled, scheduled) = race.await.unwrap();
        // Nothing EnableKey does can refuse ScheduleKeyDeletion; EnableKey may lose.
        scheduled.unwrap_or_else(|e| panic!("{id}: ScheduleKeyDeletion failed: {e:?}"));
        if let Err(st) = enabled {
            assert_eq!(
                error_name(&st),
                Some("KMSInvalidStateException"),
                "{id}: {st:?}"
            );
        }
    }

    let mut memory = Vec::new();
    for id in &keys {
        let m = describe(&mut c, id).await;
        let outcome = encrypt_outcome(&mut c, id).await;
        let expected = match m.key_state.as_str() {
            "Enabled" => Ok(()),
            "Disabled" => Err("DisabledException".to_owned()),
            "PendingDeletion" => Err("KMSInvalidStateException".to_owned()),
            other => panic!("{id}: unexpected state {other}"),
        };
        assert_eq!(
            outcome, expected,
            "{id}: Encrypt disagrees with {}",
            m.key_state
        );
        memory.push(m);
    }
    d.stop();

    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let mut stored = Vec::new();
    for id in &keys {
        stored.push(describe(&mut c, id).await);
    }
    // States first, over every key (the race's outcome), then the whole metadata
    // (the deletion date as stored, to the millisecond).
    let states = |ms: &[proto::KeyMetadata]| -> Vec<(String, bool)> {
        ms.iter()
            .map(|m| (m.key_state.clone(), m.enabled))
            .collect()
    };
    assert_eq!(
        states(&stored),
        states(&memory),
        "store (left), memory (right)"
    );
    for ((id, stored), before) in keys.iter().zip(&stored).zip(&memory) {
        assert_eq!(stored, before, "{id}: store (left), memory (right)");
        assert_eq!(stored.key_state, "PendingDeletion", "{id}");
        assert!(stored.deletion_date.is_some(), "{id}");
        assert_kms_error(
            c.encrypt(encrypt_req(id, b"probe", &[])).await,
            "KMSInvalidStateException",
        );
    }
}

fn policy(extra: serde_json::Value) -> String {
    let root = json!({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": root_of(ACCOUNT)}, "Action": "kms:*", "Resource": "*"});
    json!({"Version": "2012-10-17", "Statement": [root, extra]}).to_string()
}

/// Policy A allows a reader to describe the key; policy B denies everyone
/// GetKeyRotationStatus, so which of the two is enforced can be seen from outside.
fn policies() -> (String, String) {
    let a = policy(json!({"Sid": "PolicyA", "Effect": "Allow",
        "Principal": {"AWS": role(ACCOUNT, "Reader")}, "Action": "kms:DescribeKey", "Resource": "*"}));
    let b = policy(json!({"Sid": "DenyRotationStatus", "Effect": "Deny",
        "Principal": "*", "Action": "kms:GetKeyRotationStatus", "Resource": "*"}));
    (a, b)
}

fn put_policy(key_id: &str, text: &str) -> proto::PutKeyPolicyRequest {
    proto::PutKeyPolicyRequest {
        key_id: key_id.into(),
        policy_name: "default".into(),
        policy: text.into(),
        bypass_policy_lockout_safety_check: false,
    }
}

/// The key policy text the daemon shows, and whether it refuses GetKeyRotationStatus.
async fn policy_seen(c: &mut KmsClient, key_id: &str) -> (String, bool) {
    let text = c
        .get_key_policy(proto::GetKeyPolicyRequest {
            key_id: key_id.into(),
            policy_name: "default".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .policy;
    let req = proto::GetKeyRotationStatusRequest {
        key_id: key_id.into(),
    };
    let denied = match c.get_key_rotation_status(req).await {
        Ok(_) => false,
        Err(st) if error_name(&st) == Some("AccessDeniedException") => true,
        Err(st) => panic!("{key_id}: GetKeyRotationStatus: {st:?}"),
    };
    (text, denied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_put_key_policy_calls_leave_the_shown_and_enforced_policy_as_stored() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let (pa, pb) = policies();
    let mut keys = Vec::new();
    for _ in 0..POLICY_KEYS {
        keys.push(create_key(&mut c).await.key_id);
    }

    let (a, b) = (d.admin().await, d.admin().await);
    let races: Vec<_> = keys
        .iter()
        .map(|id| {
            let (mut a, mut b, id) = (a.clone(), b.clone(), id.clone());
            let (ra, rb) = (put_policy(&id, &pa), put_policy(&id, &pb));
            tokio::spawn(async move { tokio::join!(a.put_key_policy(ra), b.put_key_policy(rb)) })
        })
        .collect();
    for (id, race) in keys.iter().zip(races) {
        let (ra, rb) = race.await.unwrap();
        ra.unwrap_or_else(|e| panic!("{id}: PutKeyPolicy A: {e:?}"));
        rb.unwrap_or_else(|e| panic!("{id}: PutKeyPolicy B: {e:?}"));
    }

    let mut memory = Vec::new();
    for id in &keys {
        let (text, denied) = policy_seen(&mut c, id).await;
        assert!(text == pa || text == pb, "{id}: neither policy: {text}");
        assert_eq!(
            denied,
            text == pb,
            "{id}: the enforced policy is not the one shown"
        );
        memory.push((text, denied));
    }
    same_policies_after_restart(d, &dir, &keys, &memory).await;
}

/// A client that gives up on PutKeyPolicy part-way (a short deadline drops the
/// server's handler) must not leave the store changed and memory not: the write, its
/// read-back and memory's update finish together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_key_policy_abandoned_by_its_client_leaves_memory_as_the_store_is() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let (_, pb) = policies();
    let mut keys = Vec::new();
    for _ in 0..POLICY_KEYS {
        keys.push(create_key(&mut c).await.key_id);
    }
    let a = d.admin().await;
    let calls: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (mut a, req) = (a.clone(), put_policy(id, &pb));
            // Deadlines from 0.2 to 6 ms: some calls end before, some during, some
            // after the store write.
            let wait = std::time::Duration::from_micros(200 + 200 * i as u64);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(wait, a.put_key_policy(req)).await;
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    // Let any write the daemon still runs finish before memory is read.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut memory = Vec::new();
    for id in &keys {
        memory.push(policy_seen(&mut c, id).await);
    }
    same_policies_after_restart(d, &dir, &keys, &memory).await;
}

/// Restarts the daemon on `dir` and asserts that each key shows and enforces the
/// policy the running daemon did (`memory`): the store holds what memory held.
async fn same_policies_after_restart(
    d: Daemon,
    dir: &TestDir,
    keys: &[String],
    memory: &[(String, bool)],
) {
    d.stop();
    let d = Daemon::start(dir);
    let mut c = d.admin().await;
    for (id, before) in keys.iter().zip(memory) {
        let stored = policy_seen(&mut c, id).await;
        assert_eq!(&stored, before, "{id}: store (left), memory (right)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alias_lookup_racing_delete_alias_never_brings_the_alias_back() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let names: Vec<String> = (0..ALIAS_ROUNDS)
        .map(|i| format!("alias/race-{i}"))
        .collect();
    for name in &names {
        c.create_alias(proto::CreateAliasRequest {
            alias_name: name.clone(),
            target_key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
    }
    // A fresh daemon has none of the aliases cached: each round's lookups read the
    // store, and DeleteAlias lands while they do.
    d.stop();
    let d = Daemon::start(&dir);
    let (admin, lookups) = (d.admin().await, d.admin().await);

    for name in &names {
        let mut tasks = Vec::new();
        for i in 0..=LOOKUPS {
            let (mut a, mut l, name) = (admin.clone(), lookups.clone(), name.clone());
            tasks.push(tokio::spawn(async move {
                if i == LOOKUPS / 2 {
                    let r = a
                        .delete_alias(proto::DeleteAliasRequest { alias_name: name })
                        .await;
                    r.unwrap_or_else(|e| panic!("DeleteAlias: {e:?}"));
                    return None;
                }
                Some(l.encrypt(encrypt_req(&name, b"x", &[])).await)
            }));
        }
        for t in tasks {
            match t.await.unwrap() {
                None => {}
                Some(Ok(r)) => assert_eq!(r.into_inner().key_id, key.arn, "{name}"),
                Some(Err(st)) => {
                    assert_eq!(error_name(&st), Some("NotFoundException"), "{name}: {st:?}")
                }
            }
        }
        // Deleted, and every lookup has finished: none may have put it back.
        for mut client in [admin.clone(), lookups.clone(), admin.clone()] {
            assert_kms_error(
                client.encrypt(encrypt_req(name, b"x", &[])).await,
                "NotFoundException",
            );
        }
    }
    d.stop();

    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    for name in &names {
        assert_kms_error(
            c.encrypt(encrypt_req(name, b"x", &[])).await,
            "NotFoundException",
        );
    }
    encrypt(&mut c, &key.key_id, b"the key itself is untouched", &[]).await;
}
