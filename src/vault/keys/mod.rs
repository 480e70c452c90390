//! Finding keys (key id, key ARN or alias → cached entry), their state checks, and the
//! one write path that keeps a key's record in memory as the store holds it. The IV
//! budget of each material version is in `iv_budget`.
//!
//! The vault is the only writer of key metadata, so a process-wide cache of key entries
//! stays coherent; a multi-replica store will need invalidation here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

mod iv_budget;

use super::slot::Slot;
use super::{Caller, KmsError, Vault};
use crate::authz::{self, Policy, PolicyKind};
use crate::domain::{
    AccountId, KeyArn, KeyId, KeyMetadata, KeyRef, KeyRefError, KeySpec, KeyState, KeyUsage,
    MaterialVersion, Origin, Partition, RotationType,
};
use crate::hsm::MaterialRef;
use crate::store::KeyRecord;

/// A key in memory: its record and its IV budget.
pub(crate) struct KeyEntry {
    key_id: KeyId,
    account: AccountId,
    state: Mutex<EntryState>,
    // Serialises every change to this key's stored record with the matching change in
    // memory, across the await on the store: metadata writes (`Vault::write_key`) and
    // the slow path of the IV budget (store write or new material). Without it two
    // writes could land in the store in one order and in memory in the other. The fast
    // path of the IV budget never touches it.
    writes: Arc<tokio::sync::Mutex<()>>,
    // Set when a write reached the store but its read-back failed: memory may be behind
    // the store, so the next lookup reads the record again before anything decides on it.
    stale: AtomicBool,
    // The vault's clock: imported material past its ValidTo is refused at once, before
    // the sweep destroys it.
    clock: Arc<dyn super::Clock>,
}

/// The cached extras of a key (see `slot`).
#[derive(Default)]
pub(crate) struct KeySlots {
    /// Grants as the authorizer sees them.
    pub(crate) grants: Slot<Vec<authz::Grant>>,
    /// Alias names (kms:ResourceAliases).
    pub(crate) aliases: Slot<Vec<String>>,
    /// Tags (aws:ResourceTag/<key>).
    pub(crate) tags: Slot<Vec<(String, String)>>,
}

struct EntryState {
    record: KeyRecord,
    /// The key policy, parsed once (PutKeyPolicy replaces it).
    policy: Arc<Policy>,
    /// What the authorizer reads about the key besides its record, loaded on first
    /// use and emptied when it changes.
    slots: KeySlots,
    /// GCM invocations handed out for the current version since it was loaded.
    used: u64,
    /// Invocations reserved in the store for the current version.
    reserved: u64,
}

/// AWS's default key policy: the key account's root may do everything, which delegates
/// access to the account's identity policies.
pub(crate) fn default_key_policy(partition: &Partition, account: &AccountId) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:{}:iam::{account}:root", partition.as_str())},
            "Action": "kms:*",
            "Resource": "*"
        }]
    })
    .to_string()
}

/// Parses a stored key policy. Stored policies were validated when put; one that no
/// longer parses allows nothing (fail closed) and is logged. One an older p11kms
/// accepted but a new write would refuse is read as it was then, and logged.
fn parse_stored(text: &str, key_id: &KeyId) -> Policy {
    match authz::parse_stored_policy(text, PolicyKind::Key) {
        Ok((p, None)) => p,
        Ok((p, Some(e))) => {
            tracing::warn!(key_id = %key_id, problem = %e, "the stored key policy would be refused today; replace it with PutKeyPolicy");
            p
        }
        Err(e) => {
            tracing::error!(key_id = %key_id, error = %e, "stored key policy does not parse; the key allows nothing");
            Policy {
                statements: Vec::new(),
                variables: true,
            }
        }
    }
}

impl KeyEntry {
    fn new(
        record: KeyRecord,
        fresh: bool,
        partition: &Partition,
        clock: Arc<dyn super::Clock>,
    ) -> Self {
        let reserved = record
            .current()
            .map(|m| m.reserved_invocations)
            .unwrap_or(0);
        let text = record
            .policy
            .clone()
            .unwrap_or_else(|| default_key_policy(partition, &record.account));
        let policy = Arc::new(parse_stored(&text, &record.key_id));
        Self {
            key_id: record.key_id,
            account: record.account.clone(),
            state: Mutex::new(EntryState {
                // A key loaded from the store may have used its whole reservation before
                // a crash, so start at the top of it; a key made by this process has not.
                used: if fresh { 0 } else { reserved },
                reserved,
                policy,
                slots: KeySlots::default(),
                record,
            }),
            writes: Arc::new(tokio::sync::Mutex::new(())),
            stale: AtomicBool::new(false),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, EntryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key id.
    pub(crate) fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Owning account.
    pub(crate) fn account(&self) -> &AccountId {
        &self.account
    }

    /// Metadata as DescribeKey shows it.
    pub(crate) fn metadata(&self, arn: KeyArn) -> KeyMetadata {
        let s = self.lock();
        let r = &s.record;
        KeyMetadata {
            key_id: r.key_id,
            arn,
            account: r.account.clone(),
            creation_date: r.creation_date,
            description: r.description.clone(),
            key_usage: r.key_usage,
            key_spec: r.key_spec,
            origin: r.origin,
            key_state: r.key_state,
            deletion_date: r.deletion_date,
            expiration_model: r.imported.map(|i| i.expiration_model),
            valid_to: r.imported.and_then(|i| i.valid_to),
        }
    }

    /// The key policy in force.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.lock().policy)
    }

    /// The policy document as stored; `None` when it is the default.
    pub(crate) fn policy_text(&self) -> Option<String> {
        self.lock().record.policy.clone()
    }

    /// Reads the record back from the store after a write (under the write lock, on a
    /// blocking thread) and takes it into memory; marks the entry stale when it cannot.
    fn read_back(
        &self,
        store: &dyn crate::store::Store,
        partition: &Partition,
    ) -> Result<(), crate::store::StoreError> {
        match store.get_key(&self.key_id) {
            Ok(Some(stored)) => {
                self.adopt(stored, partition);
                self.stale.store(false, Ordering::Release);
                Ok(())
            }
            // Destroyed meanwhile: the sweep removes the entry.
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::warn!(key_id = %self.key_id, error = %e, "reading a key back after a write failed; it will be read again");
                self.stale.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Takes the metadata a request may change (state, deletion date, description,
    /// policy, rotation schedule, imported material) from the record as the store now
    /// holds it. Material
    /// versions and the IV budget are kept: they change only under the same lock, by
    /// `take_invocation` and `new_material`, which keep memory and store in step.
    fn adopt(&self, stored: KeyRecord, partition: &Partition) {
        let policy = {
            let s = self.lock();
            (s.record.policy != stored.policy).then(|| {
                let text = stored
                    .policy
                    .clone()
                    .unwrap_or_else(|| default_key_policy(partition, &stored.account));
                Arc::new(parse_stored(&text, &stored.key_id))
            })
        };
        let mut s = self.lock();
        if let Some(p) = policy {
            s.policy = p;
        }
        let r = &mut s.record;
        r.key_state = stored.key_state;
        r.deletion_date = stored.deletion_date;
        r.description = stored.description;
        r.policy = stored.policy;
        r.rotation = stored.rotation;
        r.imported = stored.imported;
        r.import_check = stored.import_check;
    }

    /// The lifecycle state.
    pub(crate) fn state(&self) -> KeyState {
        self.lock().record.key_state
    }

    /// Runs `f` on the key's cache slots.
    pub(crate) fn slots<R>(&self, f: impl FnOnce(&mut KeySlots) -> R) -> R {
        f(&mut self.lock().slots)
    }

    /// The automatic rotation schedule, when enabled.
    pub(crate) fn rotation(&self) -> Option<crate::store::RotationSchedule> {
        self.lock().record.rotation
    }

    /// The versions that rotations made: (version, when, why), oldest first.
    pub(crate) fn rotations(&self) -> Vec<(MaterialVersion, std::time::SystemTime, RotationType)> {
        self.lock()
            .record
            .versions
            .iter()
            .filter_map(|m| m.rotation.map(|t| (m.version, m.created, t)))
            .collect()
    }

    /// The current material version.
    pub(crate) fn current_version(&self) -> MaterialVersion {
        self.lock().record.current_version
    }

    /// The write lock: held while this key's record changes (see `writes`).
    pub(crate) async fn lock_writes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Every material version this key has.
    pub(crate) fn versions(&self) -> Vec<MaterialVersion> {
        self.lock()
            .record
            .versions
            .iter()
            .map(|m| m.version)
            .collect()
    }

    /// KeySpec, KeyUsage and Origin, for condition keys.
    pub(crate) fn kind(&self) -> (KeySpec, KeyUsage, Origin) {
        let s = self.lock();
        (s.record.key_spec, s.record.key_usage, s.record.origin)
    }

    /// True when this key has material of that version.
    pub(crate) fn has_version(&self, v: MaterialVersion) -> bool {
        self.lock().record.versions.iter().any(|m| m.version == v)
    }

    /// The token object of one version.
    pub(crate) fn material_ref(&self, version: MaterialVersion) -> MaterialRef {
        MaterialRef {
            key_id: self.key_id,
            version,
        }
    }

    /// Refuses cryptographic use in any state but Enabled, with AWS's error names, and of
    /// imported material whose ValidTo has passed (the sweep destroys it soon after).
    pub(crate) fn check_usable(&self, arn: &KeyArn) -> Result<(), KmsError> {
        let (state, valid_to) = {
            let s = self.lock();
            (
                s.record.key_state,
                s.record.imported.and_then(|i| i.valid_to),
            )
        };
        match state {
            KeyState::Enabled if valid_to.is_some_and(|t| t <= self.clock.now()) => {
                Err(KmsError::KmsInvalidState(format!(
                    "{arn}'s imported key material has expired; import it again"
                )))
            }
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(format!("{arn} is disabled."))),
            other => Err(KmsError::KmsInvalidState(format!(
                "{arn} is {} and cannot be used for this operation.",
                other.as_str()
            ))),
        }
    }

    /// For the symmetric encryption operations (Encrypt, Decrypt, the data keys,
    /// ReEncrypt): InvalidKeyUsageException for any other kind of key.
    pub(crate) fn check_symmetric_encryption(&self, arn: &KeyArn) -> Result<(), KmsError> {
        let r = &self.lock().record;
        if r.key_spec.is_symmetric_encryption() && r.key_usage == KeyUsage::EncryptDecrypt {
            return Ok(());
        }
        Err(KmsError::InvalidKeyUsage(format!(
            "{arn} is a {} key with KeyUsage {}; this operation needs a symmetric encryption key",
            r.key_spec.as_str(),
            r.key_usage.as_str()
        )))
    }

    /// For management operations AWS refuses on a key pending deletion: Ok when the
    /// key is Enabled, Disabled or PendingImport, KMSInvalidStateException otherwise.
    pub(crate) fn check_manageable(&self, arn: &KeyArn) -> Result<(), KmsError> {
        match self.lock().record.key_state {
            KeyState::Enabled | KeyState::Disabled | KeyState::PendingImport => Ok(()),
            other => Err(KmsError::KmsInvalidState(format!(
                "{arn} is {}.",
                other.as_str()
            ))),
        }
    }
}

/// The process-wide cache of key entries.
pub(crate) struct KeyCache {
    map: RwLock<HashMap<KeyId, Arc<KeyEntry>>>,
    max_per_material: u64,
}

impl KeyCache {
    pub(crate) fn new(max_per_material: u64) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            max_per_material,
        }
    }

    fn get(&self, id: &KeyId) -> Option<Arc<KeyEntry>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Drops every key: the next look-up of each reads it again.
    pub(crate) fn clear(&self) {
        self.map.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Drops a key (it was destroyed, or changed by another daemon).
    pub(crate) fn remove(&self, id: &KeyId) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Inserts unless another task got there first; returns the entry that is cached.
    fn insert(&self, entry: KeyEntry) -> Arc<KeyEntry> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(entry.key_id).or_insert_with(|| Arc::new(entry)))
    }
}

impl Vault {
    /// One of a key's cached extras (`pick` chooses which), loaded with `load` when the
    /// slot is empty.
    pub(crate) async fn key_slot<T, L>(
        &self,
        key: &KeyEntry,
        pick: fn(&mut KeySlots) -> &mut Slot<T>,
        load: L,
    ) -> Result<Arc<T>, KmsError>
    where
        T: Send + Sync + 'static,
        L: FnOnce(&dyn crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    {
        let cached = key.slots(|s| pick(s).get());
        self.metrics.cache_lookup("key_extras", cached.is_ok());
        let ticket = match cached {
            Ok(v) => return Ok(v),
            Err(t) => t,
        };
        let value = Arc::new(self.store_call(load).await?);
        key.slots(|s| pick(s).fill(ticket, Arc::clone(&value)));
        Ok(value)
    }

    /// Changes a key's stored record with `write`, then takes the record back from the
    /// store into memory, both under the key's write lock: whatever order concurrent
    /// changes reach the store in, memory ends as the store is, and no decision is made
    /// on a state the store does not hold. The record is read back even when the write
    /// fails or refuses (a conditional update that found another state), since memory
    /// may then be the stale side.
    ///
    /// The write, the read-back and the update of memory run to the end on the blocking
    /// pool with the lock held, even if the request is cancelled meanwhile (a client's
    /// deadline or reset drops the handler): otherwise the store could change while
    /// memory did not. If the read-back fails, the entry is marked stale and the next
    /// lookup reads it again.
    pub(crate) async fn write_key<T, F>(&self, key: &Arc<KeyEntry>, write: F) -> Result<T, KmsError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    {
        let guard = Arc::clone(&key.writes).lock_owned().await;
        let (entry, store) = (Arc::clone(key), Arc::clone(&self.store));
        let partition = self.settings.partition.clone();
        let started = std::time::Instant::now();
        let task = tokio::task::spawn_blocking(move || {
            let _one_at_a_time = guard;
            let out = write(store.as_ref());
            // A failed read-back is logged and marks the entry stale; the write's own
            // outcome is what the caller gets.
            let _ = entry.read_back(store.as_ref(), &partition);
            out
        });
        let out = task.await;
        self.metrics.store_call(started.elapsed());
        Ok(out??)
    }

    /// Reads a stale entry's record again (see `write_key`).
    async fn refresh_if_stale(&self, key: &Arc<KeyEntry>) -> Result<(), KmsError> {
        if !key.stale.load(Ordering::Acquire) {
            return Ok(());
        }
        let guard = Arc::clone(&key.writes).lock_owned().await;
        let (entry, store) = (Arc::clone(key), Arc::clone(&self.store));
        let partition = self.settings.partition.clone();
        tokio::task::spawn_blocking(move || {
            let _one_at_a_time = guard;
            entry.read_back(store.as_ref(), &partition)
        })
        .await??;
        Ok(())
    }

    /// The cached entry of a key, if it is cached (no store read).
    pub(crate) fn cached_key(&self, id: KeyId) -> Option<Arc<KeyEntry>> {
        self.keys.get(&id)
    }

    /// The cached entry of a key, loading it from the store on a miss.
    pub(crate) async fn key(&self, id: KeyId) -> Result<Option<Arc<KeyEntry>>, KmsError> {
        let cached = self.keys.get(&id);
        self.metrics.cache_lookup("key", cached.is_some());
        if let Some(e) = cached {
            self.refresh_if_stale(&e).await?;
            return Ok(Some(e));
        }
        let rec = self.store_call(move |s| s.get_key(&id)).await?;
        Ok(rec.map(|r| {
            self.keys.insert(KeyEntry::new(
                r,
                false,
                &self.settings.partition,
                Arc::clone(&self.settings.clock),
            ))
        }))
    }

    /// An entry for a record that is not (yet) stored, for checks before CreateKey.
    pub(crate) fn uncached_entry(&self, rec: KeyRecord) -> KeyEntry {
        KeyEntry::new(
            rec,
            true,
            &self.settings.partition,
            Arc::clone(&self.settings.clock),
        )
    }

    /// Caches a key this process just created.
    pub(crate) fn cache_new_key(&self, rec: KeyRecord) -> Arc<KeyEntry> {
        self.keys.insert(KeyEntry::new(
            rec,
            true,
            &self.settings.partition,
            Arc::clone(&self.settings.clock),
        ))
    }

    /// Resolves a KeyId parameter as AWS does: a bare key id names a key of the caller's
    /// account; a key ARN names a key of the account in the ARN, which the authorizer may
    /// then refuse. A key we cannot see is NotFoundException either way.
    pub(crate) async fn resolve(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let key_ref: KeyRef = key_id.parse().map_err(|e| match e {
            KeyRefError::Empty | KeyRefError::TooLong => KmsError::validation(e.to_string()),
            _ => KmsError::NotFound(e.to_string()),
        })?;
        let (id, account) = match key_ref {
            KeyRef::Id(id) => (id, caller.principal.account().clone()),
            KeyRef::Arn(arn) => {
                if arn.partition != self.settings.partition || arn.region != self.settings.region {
                    return Err(not_found(&arn));
                }
                (arn.key_id, arn.account)
            }
            KeyRef::Alias(name) => {
                let account = caller.principal.account().clone();
                (self.key_of_alias(&account, &name).await?, account)
            }
            KeyRef::AliasArn {
                partition,
                region,
                account,
                name,
            } => {
                if partition != self.settings.partition.as_str()
                    || region != self.settings.region.as_str()
                {
                    return Err(KmsError::NotFound(format!("Alias {key_id} is not found.")));
                }
                (self.key_of_alias(&account, &name).await?, account)
            }
        };
        match self.key(id).await? {
            Some(e) if *e.account() == account => Ok(e),
            _ => Err(not_found(&self.arn(&account, id))),
        }
    }

    /// The key named inside a ciphertext blob, in whatever account owns it. The caller
    /// named no key, so a blob naming one that does not exist is a bad ciphertext (a
    /// damaged key-id field looks exactly like this).
    pub(crate) async fn key_of_blob(&self, id: KeyId) -> Result<Arc<KeyEntry>, KmsError> {
        if let Some(k) = self.key(id).await? {
            return Ok(k);
        }
        // A key that was destroyed is NotFound, as in AWS; an id nobody ever had means
        // the blob is damaged.
        Err(self.deleted(id).await?.unwrap_or_else(|| {
            KmsError::InvalidCiphertext("the ciphertext refers to a key that does not exist".into())
        }))
    }

    /// The ARN of a cached key.
    pub(crate) fn arn_of(&self, key: &KeyEntry) -> KeyArn {
        self.arn(key.account(), key.key_id())
    }
}

fn not_found(arn: &KeyArn) -> KmsError {
    KmsError::NotFound(format!("Key '{arn}' does not exist"))
}
