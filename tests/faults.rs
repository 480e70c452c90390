//! Crash ordering under injected store failures, with the real vault and a real SoftHSM2
//! token in this process: a failed write never leaves a key id without material, an
//! orphan is replaced rather than duplicated, and material the store already records is
//! adopted, never destroyed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use p11kms::{
    AccountId, AliasRecord, AliasStore, Clock, CreateKeyInput, DecryptInput, DevDir, EncryptInput,
    GrantRecord, GrantStore, HsmModule, HsmPool, KeyId, KeyRecord, KmsError, MaterialRecord,
    MaterialVersion, Pin, Plaintext, PolicyStore, PoolConfig, SqliteStore, Store, StoreError,
    TokenSelector, Vault, VaultSettings,
};

const OK: u8 = 0;
/// add_material fails before writing (a crash after the HSM step).
const FAIL_BEFORE_ADD: u8 = 1;
/// add_material writes, then reports failure (a request cancelled after the write).
const FAIL_AFTER_ADD: u8 = 2;
/// insert_key fails (a crash between CreateKey's HSM step and its metadata).
const FAIL_INSERT: u8 = 3;
/// finish_destruction fails (a crash after the HSM objects were destroyed, before the
/// metadata step).
const FAIL_FINISH_DESTRUCTION: u8 = 4;

struct FaultyStore {
    inner: SqliteStore,
    mode: Arc<AtomicU8>,
}

fn injected() -> StoreError {
    StoreError::Corrupt("injected fault")
}

impl Store for FaultyStore {
    fn insert_key(&self, rec: &KeyRecord) -> Result<(), StoreError> {
        if self.mode.load(Ordering::SeqCst) == FAIL_INSERT {
            return Err(injected());
        }
        self.inner.insert_key(rec)
    }
    fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.get_key(id)
    }
    fn list_keys(
        &self,
        a: &AccountId,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<KeyId>, StoreError> {
        self.inner.list_keys(a, after, limit)
    }
    fn set_key_enabled(&self, id: &KeyId, e: bool) -> Result<bool, StoreError> {
        self.inner.set_key_enabled(id, e)
    }
    fn schedule_deletion(&self, id: &KeyId, at: std::time::SystemTime) -> Result<bool, StoreError> {
        self.inner.schedule_deletion(id, at)
    }
    fn cancel_deletion(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.inner.cancel_deletion(id)
    }
    fn keys_due_for_deletion(&self, now: std::time::SystemTime) -> Result<Vec<KeyId>, StoreError> {
        self.inner.keys_due_for_deletion(now)
    }
    fn begin_destruction(
        &self,
        id: &KeyId,
        now: std::time::SystemTime,
    ) -> Result<bool, StoreError> {
        self.inner.begin_destruction(id, now)
    }
    fn finish_destruction(&self, id: &KeyId, now: std::time::SystemTime) -> Result<(), StoreError> {
        if self.mode.load(Ordering::SeqCst) == FAIL_FINISH_DESTRUCTION {
            return Err(injected());
        }
        self.inner.finish_destruction(id, now)
    }
    fn deleted_key(&self, id: &KeyId) -> Result<Option<AccountId>, StoreError> {
        self.inner.deleted_key(id)
    }
    fn tag_key(&self, id: &KeyId, t: &[(String, String)], m: usize) -> Result<(), StoreError> {
        self.inner.tag_key(id, t, m)
    }
    fn untag_key(&self, id: &KeyId, k: &[String]) -> Result<(), StoreError> {
        self.inner.untag_key(id, k)
    }
    fn key_tags(&self, id: &KeyId) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.key_tags(id)
    }
    fn set_key_description(&self, id: &KeyId, d: &str) -> Result<(), StoreError> {
        self.inner.set_key_description(id, d)
    }
    fn count_keys(&self, a: &AccountId) -> Result<usize, StoreError> {
        self.inner.count_keys(a)
    }
    fn add_material(
        &self,
        id: &KeyId,
        m: &MaterialRecord,
        next: Option<std::time::SystemTime>,
    ) -> Result<(), StoreError> {
        match self.mode.load(Ordering::SeqCst) {
            FAIL_BEFORE_ADD => Err(injected()),
            FAIL_AFTER_ADD => {
                self.inner.add_material(id, m, next)?;
                Err(injected())
            }
            _ => self.inner.add_material(id, m, next),
        }
    }
    fn set_rotation(
        &self,
        id: &KeyId,
        r: Option<p11kms::RotationSchedule>,
    ) -> Result<(), StoreError> {
        self.inner.set_rotation(id, r)
    }
    fn keys_due_for_rotation(&self, now: std::time::SystemTime) -> Result<Vec<KeyId>, StoreError> {
        self.inner.keys_due_for_rotation(now)
    }
    fn set_imported(
        &self,
        id: &KeyId,
        version: MaterialVersion,
        terms: &p11kms::ImportedMaterial,
        prior: Option<&[u8]>,
        check: &[u8],
    ) -> Result<bool, StoreError> {
        self.inner.set_imported(id, version, terms, prior, check)
    }
    fn clear_imported(&self, id: &KeyId, now: std::time::SystemTime) -> Result<bool, StoreError> {
        self.inner.clear_imported(id, now)
    }
    fn material_purged(&self, id: &KeyId) -> Result<(), StoreError> {
        self.inner.material_purged(id)
    }
    fn keys_with_expired_material(
        &self,
        now: std::time::SystemTime,
    ) -> Result<Vec<KeyId>, StoreError> {
        self.inner.keys_with_expired_material(now)
    }
    fn claim_invocations(
        &self,
        id: &KeyId,
        v: MaterialVersion,
        block: u64,
        max: u64,
    ) -> Result<Option<std::ops::Range<u64>>, StoreError> {
        self.inner.claim_invocations(id, v, block, max)
    }
    fn heartbeat(&self, now: std::time::SystemTime) -> Result<(), StoreError> {
        self.inner.heartbeat(now)
    }
}

impl PolicyStore for FaultyStore {
    fn set_key_policy(&self, id: &KeyId, p: &str) -> Result<(), StoreError> {
        self.inner.set_key_policy(id, p)
    }
    fn put_identity_policy(&self, p: &str, n: &str, d: &str) -> Result<(), StoreError> {
        self.inner.put_identity_policy(p, n, d)
    }
    fn identity_policies(&self, p: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.identity_policies(p)
    }
    fn delete_identity_policy(&self, p: &str, n: &str) -> Result<bool, StoreError> {
        self.inner.delete_identity_policy(p, n)
    }
    fn principal_tags(&self, p: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.principal_tags(p)
    }
    fn tag_principal(&self, p: &str, t: &[(String, String)], m: usize) -> Result<(), StoreError> {
        self.inner.tag_principal(p, t, m)
    }
    fn untag_principal(&self, p: &str, k: &[String]) -> Result<(), StoreError> {
        self.inner.untag_principal(p, k)
    }
}

impl AliasStore for FaultyStore {
    fn insert_alias(&self, a: &AliasRecord, max: usize) -> Result<(), StoreError> {
        self.inner.insert_alias(a, max)
    }
    fn update_alias(
        &self,
        a: &AccountId,
        n: &str,
        from: &KeyId,
        to: &KeyId,
        t: std::time::SystemTime,
        max: usize,
    ) -> Result<(), StoreError> {
        self.inner.update_alias(a, n, from, to, t, max)
    }
    fn delete_alias(&self, a: &AccountId, n: &str, k: &KeyId) -> Result<bool, StoreError> {
        self.inner.delete_alias(a, n, k)
    }
    fn alias(&self, a: &AccountId, n: &str) -> Result<Option<AliasRecord>, StoreError> {
        self.inner.alias(a, n)
    }
    fn list_aliases(
        &self,
        a: &AccountId,
        k: Option<&KeyId>,
        after: Option<&str>,
        l: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        self.inner.list_aliases(a, k, after, l)
    }
}

impl GrantStore for FaultyStore {
    fn insert_grant(&self, g: &GrantRecord, a: usize, b: usize) -> Result<(), StoreError> {
        self.inner.insert_grant(g, a, b)
    }
    fn grants_for_key(&self, k: &KeyId) -> Result<Vec<GrantRecord>, StoreError> {
        self.inner.grants_for_key(k)
    }
    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        self.inner.grant(id)
    }
    fn delete_grant(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_grant(id)
    }
    fn retirable_grants(&self, r: &str, a: &str, l: usize) -> Result<Vec<GrantRecord>, StoreError> {
        self.inner.retirable_grants(r, a, l)
    }
    fn secret(&self, n: &str, make: &dyn Fn() -> Vec<u8>) -> Result<Vec<u8>, StoreError> {
        self.inner.secret(n, make)
    }
}

/// A clock the test moves by hand.
#[derive(Debug)]
struct TestClock(std::sync::Mutex<std::time::SystemTime>);

impl Clock for TestClock {
    fn now(&self) -> std::time::SystemTime {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn advance_days(&self, days: u64) {
        *self.0.lock().unwrap() += std::time::Duration::from_secs(days * 24 * 3600);
    }
}

fn encrypt_input(key_id: &str, pt: &[u8]) -> EncryptInput {
    EncryptInput {
        key_id: key_id.into(),
        plaintext: Plaintext::new(pt.to_vec()),
        context: Default::default(),
        grant_tokens: vec![],
        algorithm: String::new(),
    }
}

fn decrypt_input(blob: &[u8]) -> DecryptInput {
    DecryptInput {
        ciphertext_blob: blob.to_vec(),
        context: Default::default(),
        grant_tokens: vec![],
        key_id: String::new(),
        algorithm: String::new(),
    }
}

fn version(blob: &[u8]) -> u32 {
    u32::from_be_bytes(blob[20..24].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_store_failures_keep_material_and_metadata_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = DevDir::at(tmp.path());
    dev.prepare().unwrap();
    // This test binary runs this one test: nothing else reads the environment.
    std::env::set_var("SOFTHSM2_CONF", dev.softhsm_conf());
    let module_path = p11kms::softhsm_module().unwrap();
    dev.init_token_if_missing(&module_path, &Default::default())
        .unwrap();
    let module = HsmModule::load(&module_path).unwrap();
    let slot = module
        .find_slot(&TokenSelector::Label(p11kms::DEV_TOKEN_LABEL.into()))
        .unwrap();
    let pin = Pin::new(
        std::fs::read_to_string(tmp.path().join("user.pin"))
            .unwrap()
            .trim()
            .to_owned(),
    );
    // This test is about store faults: a deadline and a probe interval far beyond what
    // a loaded machine can stretch a call to, so that the token is never marked down
    // under it (a sweep then fails fast, as it should, and the test would read that as
    // the store fault's doing).
    let config = PoolConfig {
        call_timeout: std::time::Duration::from_secs(120),
        health_check: std::time::Duration::from_secs(600),
        ..PoolConfig::default()
    };
    let pool = HsmPool::start(&module, slot, pin.clone(), &config).unwrap();
    let pool2 = pool.clone();
    let pool3 = pool.clone();
    let clock = Arc::new(TestClock(std::sync::Mutex::new(
        std::time::SystemTime::now(),
    )));
    let mode = Arc::new(AtomicU8::new(OK));
    let store = FaultyStore {
        inner: SqliteStore::open(&tmp.path().join("kms.db")).unwrap(),
        mode: mode.clone(),
    };
    let vault = Vault::new(
        pool,
        Arc::new(store),
        VaultSettings {
            partition: Default::default(),
            region: "us-east-1".parse().unwrap(),
            max_encryptions_per_material: 1,
            trusted_services: vec![],
            clock: clock.clone(),
        },
    )
    .unwrap();
    let caller = vault
        .caller(
            "arn:aws:iam::111122223333:root".parse().unwrap(),
            None,
            None,
        )
        .unwrap();
    let objects_of = |key_id: &str| -> Vec<String> {
        let hex = key_id.replace('-', "");
        let mut ids: Vec<String> = module
            .key_objects(slot, &pin)
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .filter(|id| id.starts_with(&hex))
            .collect();
        ids.sort();
        ids
    };

    // CreateKey whose metadata write fails: an error, and no material left behind.
    mode.store(FAIL_INSERT, Ordering::SeqCst);
    let before = module.key_objects(slot, &pin).unwrap().len();
    assert!(matches!(
        vault.create_key(&caller, CreateKeyInput::default()).await,
        Err(KmsError::Internal(_))
    ));
    assert_eq!(
        module.key_objects(slot, &pin).unwrap().len(),
        before,
        "the orphan was removed"
    );
    mode.store(OK, Ordering::SeqCst);

    let key = vault
        .create_key(&caller, CreateKeyInput::default())
        .await
        .unwrap()
        .key_id
        .to_string();
    let b1 = vault
        .encrypt(&caller, encrypt_input(&key, b"one"))
        .await
        .unwrap()
        .ciphertext_blob;
    assert_eq!(version(&b1), 1);

    // Material made, metadata not written (a crash): the request fails and an orphan
    // v2 object is left in the token...
    mode.store(FAIL_BEFORE_ADD, Ordering::SeqCst);
    assert!(matches!(
        vault.encrypt(&caller, encrypt_input(&key, b"two")).await,
        Err(KmsError::Internal(_))
    ));
    assert_eq!(objects_of(&key).len(), 2);
    // ...which the next rollover replaces: still one object per version.
    mode.store(OK, Ordering::SeqCst);
    let b2 = vault
        .encrypt(&caller, encrypt_input(&key, b"two"))
        .await
        .unwrap()
        .ciphertext_blob;
    assert_eq!(version(&b2), 2);
    let objs = objects_of(&key);
    assert_eq!(objs.len(), 2, "{objs:?}");

    // Metadata written but the request failed (cancelled): the store is ahead of
    // memory. The next call adopts v3 instead of destroying it, and moves on to v4.
    mode.store(FAIL_AFTER_ADD, Ordering::SeqCst);
    assert!(matches!(
        vault.encrypt(&caller, encrypt_input(&key, b"three")).await,
        Err(KmsError::Internal(_))
    ));
    mode.store(OK, Ordering::SeqCst);
    let b4 = vault
        .encrypt(&caller, encrypt_input(&key, b"four"))
        .await
        .unwrap()
        .ciphertext_blob;
    assert_eq!(version(&b4), 4);
    let objs = objects_of(&key);
    let expected: Vec<String> = (1..=4)
        .map(|v| format!("{}{v:08x}", key.replace('-', "")))
        .collect();
    assert_eq!(objs, expected, "exactly one object per version");

    for (blob, pt) in [(&b1, &b"one"[..]), (&b2, &b"two"[..]), (&b4, &b"four"[..])] {
        let out = vault.decrypt(&caller, decrypt_input(blob)).await.unwrap();
        assert_eq!(out.plaintext.expose(), pt);
    }

    // Scheduled deletion with a crash between the HSM step and the metadata step.
    let key_arn = format!("arn:aws:kms:us-east-1:111122223333:key/{key}");
    vault
        .schedule_key_deletion(&caller, &key, Some(7))
        .await
        .unwrap();
    assert!(
        vault.destroy_due_keys().await.unwrap().is_empty(),
        "not due yet"
    );
    clock.advance_days(8);
    mode.store(FAIL_FINISH_DESTRUCTION, Ordering::SeqCst);
    // The failing key is logged and left for the next sweep, not reported destroyed.
    assert!(vault.destroy_due_keys().await.unwrap().is_empty());
    assert!(
        objects_of(&key).is_empty(),
        "the HSM step ran before the failure"
    );
    // Destruction has begun: it cannot be cancelled, and the key cannot be used.
    assert!(matches!(
        vault.cancel_key_deletion(&caller, &key).await,
        Err(KmsError::KmsInvalidState(_))
    ));
    assert!(matches!(
        vault.decrypt(&caller, decrypt_input(&b1)).await,
        Err(KmsError::KmsInvalidState(_))
    ));
    // A restart: a new vault over the same database and token finishes the job.
    mode.store(OK, Ordering::SeqCst);
    let restarted = Vault::new(
        pool2,
        Arc::new(SqliteStore::open(&tmp.path().join("kms.db")).unwrap()),
        VaultSettings {
            partition: Default::default(),
            region: "us-east-1".parse().unwrap(),
            max_encryptions_per_material: 1,
            trusted_services: vec![],
            clock: clock.clone(),
        },
    )
    .unwrap();
    let destroyed = restarted.destroy_due_keys().await.unwrap();
    assert_eq!(destroyed.len(), 1);
    assert_eq!(destroyed[0].to_string(), key);
    let err = restarted
        .decrypt(&caller, decrypt_input(&b1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::NotFound(m) if m.contains(&key_arn)),
        "{err:?}"
    );
    assert!(matches!(
        restarted.describe_key(&caller, &key, &[]).await,
        Err(KmsError::NotFound(_))
    ));
    assert!(objects_of(&key).is_empty());
    assert!(restarted.destroy_due_keys().await.unwrap().is_empty());
    // As the daemon does: sessions closed and C_Finalize before exit. SoftHSM2 torn
    // down by process exit with sessions open can abort in its exit handlers.
    pool3.shutdown();
    module.finalize().unwrap();
}

impl p11kms::AccessKeyStore for FaultyStore {
    fn insert_access_key(&self, k: &p11kms::AccessKeyRecord, max: usize) -> Result<(), StoreError> {
        self.inner.insert_access_key(k, max)
    }
    fn access_key(
        &self,
        id: &p11kms::AccessKeyId,
    ) -> Result<Option<p11kms::AccessKeyRecord>, StoreError> {
        self.inner.access_key(id)
    }
    fn access_keys(&self, principal: &str) -> Result<Vec<p11kms::AccessKeyRecord>, StoreError> {
        self.inner.access_keys(principal)
    }
    fn delete_access_key(&self, id: &p11kms::AccessKeyId) -> Result<bool, StoreError> {
        self.inner.delete_access_key(id)
    }
}
