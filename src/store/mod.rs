//! Key metadata persistence behind a trait: SQLite today (embedded, WAL), another
//! backend later. Stores what points at HSM objects, never key material.

mod backend;
mod copy;
mod encoding;
mod postgres;
mod record;
mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

pub use backend::{PasswordSource, StoreBackend, StoreConfigError, StoreSection};
pub use copy::{copy_sqlite_to_postgres, CopyReport};
pub use postgres::{DbTlsFiles, PostgresStore};
pub use record::{
    AccessKeyRecord, AliasRecord, GrantRecord, ImportedMaterial, KeyRecord, MaterialRecord,
    RotationSchedule,
};
pub use sqlite::SqliteStore;

use crate::domain::{AccessKeyId, AccountId, KeyId, MaterialVersion};

/// A failure of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database itself failed; the backend's error is the source.
    #[error("metadata database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Another writer held the database past the busy timeout: nothing was written.
    #[error("the metadata database stayed locked by another writer past its busy timeout")]
    Busy(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value did not parse: the database was edited or is from a newer build.
    #[error("metadata database holds an invalid {0}")]
    Corrupt(&'static str),
    /// The schema is newer than this build knows.
    #[error("metadata database schema version {found} is newer than this build ({known})")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Latest version this build knows.
        known: i64,
    },
    /// An insert met an existing row.
    #[error("the {0} already exists")]
    AlreadyExists(&'static str),
    /// An update found no row.
    #[error("the {0} does not exist")]
    Missing(&'static str),
    /// The right to make this material version was taken over by another daemon (ours
    /// went stale): nothing was recorded, and the material made must not be used.
    #[error("another daemon took over the right to make this key material; nothing was recorded")]
    ClaimLost,
    /// A write would exceed a quota; the text says which, for the caller
    /// (LimitExceededException).
    #[error("{0}")]
    LimitExceeded(String),
    /// The database file cannot be opened for writing: a read-only file system, or
    /// permissions. p11kms cannot serve from a database it cannot write.
    #[error(
        "the database file {} cannot be written ({cause}): p11kms writes it on every start and for every change; make it and its directory writable, or move it (store.sqlite)",
        path.display()
    )]
    NotWritable {
        /// The database file.
        path: std::path::PathBuf,
        /// What opening it for writing said (read-only file system, permission denied).
        cause: std::io::Error,
    },
}

/// What the vault needs from a metadata store. Methods block; the vault calls them off
/// the async runtime.
pub trait Store:
    PolicyStore + GrantStore + AliasStore + AccessKeyStore + Send + Sync + 'static
{
    /// Inserts a new key with its first material version.
    fn insert_key(&self, rec: &KeyRecord) -> Result<(), StoreError>;
    /// One key with all its material versions.
    fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError>;
    /// Key ids of an account in id order, starting after `after`, at most `limit`.
    fn list_keys(
        &self,
        account: &AccountId,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<KeyId>, StoreError>;
    /// Enabled or Disabled, only from one of those two (so it cannot undo a scheduled
    /// deletion that landed meanwhile): false when the key is in another state.
    fn set_key_enabled(&self, id: &KeyId, enabled: bool) -> Result<bool, StoreError>;
    /// PendingDeletion with a deletion date (ScheduleKeyDeletion). Only from Enabled,
    /// Disabled or PendingImport: false when the key is in another state.
    fn schedule_deletion(&self, id: &KeyId, at: std::time::SystemTime) -> Result<bool, StoreError>;
    /// Back to Disabled with no deletion date (CancelKeyDeletion), or to PendingImport
    /// for an EXTERNAL key without material. False when the key is not pending
    /// deletion, or its destruction has begun (it cannot be undone then).
    fn cancel_deletion(&self, id: &KeyId) -> Result<bool, StoreError>;
    /// Keys whose deletion date is at or before `now`, and keys whose destruction has
    /// begun (and must be finished after a crash).
    fn keys_due_for_deletion(&self, now: std::time::SystemTime) -> Result<Vec<KeyId>, StoreError>;
    /// Marks the start of destruction, after which the deletion cannot be cancelled.
    /// False unless the key is pending deletion and due at `now` (or already marked).
    fn begin_destruction(&self, id: &KeyId, now: std::time::SystemTime)
        -> Result<bool, StoreError>;
    /// The last step, after the HSM objects are gone: the key, its material versions,
    /// grants and aliases are removed in one transaction, and a tombstone is kept.
    fn finish_destruction(&self, id: &KeyId, now: std::time::SystemTime) -> Result<(), StoreError>;
    /// The account of a key that was deleted, if it was.
    fn deleted_key(&self, id: &KeyId) -> Result<Option<AccountId>, StoreError>;
    /// Turns automatic rotation on (with its schedule) or off.
    fn set_rotation(
        &self,
        id: &KeyId,
        rotation: Option<RotationSchedule>,
    ) -> Result<(), StoreError>;
    /// Enabled keys whose automatic rotation is due at `now`.
    fn keys_due_for_rotation(&self, now: std::time::SystemTime) -> Result<Vec<KeyId>, StoreError>;
    /// Adds or replaces tags on a key, all or none; LimitExceeded past `max_tags`.
    fn tag_key(
        &self,
        id: &KeyId,
        tags: &[(String, String)],
        max_tags: usize,
    ) -> Result<(), StoreError>;
    /// Removes tags by key (absent ones are ignored).
    fn untag_key(&self, id: &KeyId, keys: &[String]) -> Result<(), StoreError>;
    /// A key's tags, by tag key.
    fn key_tags(&self, id: &KeyId) -> Result<Vec<(String, String)>, StoreError>;
    /// Replaces a key's description.
    fn set_key_description(&self, id: &KeyId, description: &str) -> Result<(), StoreError>;
    /// How many keys an account has.
    fn count_keys(&self, account: &AccountId) -> Result<usize, StoreError>;
    /// Adds a material version and makes it the key's current one, atomically; with
    /// `next_rotation`, the key's next automatic rotation moves in the same transaction.
    fn add_material(
        &self,
        id: &KeyId,
        m: &MaterialRecord,
        next_rotation: Option<std::time::SystemTime>,
    ) -> Result<(), StoreError>;
    /// Claims the next `block` GCM invocations of a material version, at most up to
    /// `max` in all: returns the range claimed, which no other claim (by this daemon or
    /// another on the same database) ever overlaps; None when the version has reserved
    /// `max` already. The count only grows: after a crash a daemon resumes above
    /// everything any daemon may have used.
    fn claim_invocations(
        &self,
        id: &KeyId,
        version: MaterialVersion,
        block: u64,
        max: u64,
    ) -> Result<Option<std::ops::Range<u64>>, StoreError>;
    /// Records imported material (of material version `version`) of an EXTERNAL key: its
    /// terms, and `check` unless the key has one already; a key in PendingImport becomes
    /// Enabled, and no destruction of its material is pending any more. Only while the
    /// key's check is still `prior` (so that two first imports of different material
    /// cannot both land) and the key is Enabled, Disabled or PendingImport: false
    /// otherwise. Gives back the claim on the version taken before the unwrap, and
    /// refuses (`ClaimLost`) when another daemon has taken it over, as `add_material`.
    fn set_imported(
        &self,
        id: &KeyId,
        version: MaterialVersion,
        terms: &ImportedMaterial,
        prior: Option<&[u8]>,
        check: &[u8],
    ) -> Result<bool, StoreError>;
    /// Forgets the imported material of an EXTERNAL key (deleted or expired) and marks
    /// its destruction in the token pending since `now`: an Enabled or Disabled key
    /// becomes PendingImport; the import check stays. False when the key is not EXTERNAL.
    fn clear_imported(&self, id: &KeyId, now: std::time::SystemTime) -> Result<bool, StoreError>;
    /// Records that the material whose destruction `clear_imported` marked is gone from
    /// the token (unless the key has material again).
    fn material_purged(&self, id: &KeyId) -> Result<(), StoreError>;
    /// EXTERNAL keys whose imported material expires at or before `now`, or whose
    /// deleted material is still to be destroyed.
    fn keys_with_expired_material(
        &self,
        now: std::time::SystemTime,
    ) -> Result<Vec<KeyId>, StoreError>;
    /// A real write that changes nothing else (the readiness probe): fails when the
    /// store cannot take writes (locked, read-only, full).
    fn heartbeat(&self, now: std::time::SystemTime) -> Result<(), StoreError>;
    /// Whether this daemon leads the work that one daemon of those sharing the store
    /// must do alone (the deletion and rotation sweeps): taken when free, kept until
    /// this daemon or its connection to the store dies. A store only one daemon opens
    /// (SQLite) always answers true.
    fn lead(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Takes the right to make material version `version` of a key in the token, before
    /// the token object is made: false while it is held, by another daemon or by another
    /// request of this one (taken less than
    /// `stale_after` ago by the database's clock; an older claim is a dead or stalled
    /// daemon's and is taken over). Two daemons must never make the same version:
    /// making material first clears the token objects of its CKA_ID. `add_material` of
    /// that version, or `insert_key` of a key's first, gives the right back, and refuses
    /// (`ClaimLost`) while another daemon holds it: a maker whose claim was taken over
    /// never records, so never uses, material that the taker may destroy. A store only
    /// one daemon opens always answers true.
    fn claim_material(
        &self,
        id: &KeyId,
        version: MaterialVersion,
        stale_after: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let _ = (id, version, stale_after);
        Ok(true)
    }
    /// Gives back this daemon's right to make a material version when making it failed,
    /// so that a retry (by this daemon or another) need not wait for the claim to go
    /// stale. A claim another daemon has taken over stays.
    fn release_material(&self, id: &KeyId, version: MaterialVersion) -> Result<(), StoreError> {
        let _ = (id, version);
        Ok(())
    }
    /// Hands this daemon's claim over material the orphan sweep destroyed to whoever
    /// makes the version next: the claim stays (a maker that was only slow still cannot
    /// record the version: `ClaimLost`), but the next `claim_material` takes it at once
    /// instead of waiting for it to go stale. A store only one daemon opens has no claims.
    fn abandon_material(&self, id: &KeyId, version: MaterialVersion) -> Result<(), StoreError> {
        let _ = (id, version);
        Ok(())
    }
    /// Whether other daemons may share the store (and the token with it): then no
    /// daemon may take a token object without metadata for an orphan, as another may be
    /// between making a key's material and recording it.
    fn shared(&self) -> bool {
        false
    }
    /// Calls `on_change` with each change another daemon sharing the store makes (and
    /// this one's own), from a thread of the store's: what a cache of the store's data
    /// must drop. A store only one daemon opens has nothing to tell.
    fn watch(&self, on_change: OnChange) {
        let _ = on_change;
    }
}

/// What a change touched, for the caches that hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A key's record, material, policy, tags, grants or aliases.
    Key(KeyId),
    /// A principal's identity policies or tags.
    Principal(String),
    /// An alias of an account.
    Alias(AccountId, String),
    /// An access key.
    AccessKey(String),
    /// Anything: changes may have been missed (the store's connection was lost).
    All,
}

/// A watcher of [`Change`]s.
pub type OnChange = std::sync::Arc<dyn Fn(Change) + Send + Sync>;

/// Policies and principal tags: the authorization data.
pub trait PolicyStore {
    /// Replaces a key's policy document (stored as given).
    fn set_key_policy(&self, id: &KeyId, policy: &str) -> Result<(), StoreError>;
    /// Creates or replaces a principal's named identity policy.
    fn put_identity_policy(
        &self,
        principal: &str,
        name: &str,
        document: &str,
    ) -> Result<(), StoreError>;
    /// A principal's identity policies as (name, document), by name.
    fn identity_policies(&self, principal: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Deletes one; false when there was none.
    fn delete_identity_policy(&self, principal: &str, name: &str) -> Result<bool, StoreError>;
    /// A principal's tags as (key, value), by key.
    fn principal_tags(&self, principal: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Adds or replaces tags, refusing to exceed `max_tags` in all (atomically).
    fn tag_principal(
        &self,
        principal: &str,
        tags: &[(String, String)],
        max_tags: usize,
    ) -> Result<(), StoreError>;
    /// Removes tags by key.
    fn untag_principal(&self, principal: &str, keys: &[String]) -> Result<(), StoreError>;
}

/// Aliases: per-account names for keys.
pub trait AliasStore {
    /// Adds an alias; AlreadyExists when the account has one of that name,
    /// LimitExceeded when its key has `max_per_key` already (counted in the same
    /// transaction, so concurrent calls cannot both pass).
    fn insert_alias(&self, a: &AliasRecord, max_per_key: usize) -> Result<(), StoreError>;
    /// Points an alias from key `from` to key `to`; Missing when the alias does not
    /// exist or no longer points at `from`, LimitExceeded when `to` has `max_per_key`.
    #[allow(clippy::too_many_arguments)]
    fn update_alias(
        &self,
        account: &AccountId,
        name: &str,
        from: &KeyId,
        to: &KeyId,
        at: std::time::SystemTime,
        max_per_key: usize,
    ) -> Result<(), StoreError>;
    /// Removes an alias while it points at `key`; false when there is none, or it
    /// points elsewhere.
    fn delete_alias(
        &self,
        account: &AccountId,
        name: &str,
        key: &KeyId,
    ) -> Result<bool, StoreError>;
    /// One alias of an account.
    fn alias(&self, account: &AccountId, name: &str) -> Result<Option<AliasRecord>, StoreError>;
    /// An account's aliases (of one key, when given) after `after`, by name, at most
    /// `limit`.
    fn list_aliases(
        &self,
        account: &AccountId,
        key: Option<&KeyId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError>;
}

/// Grants, and the daemon's own secrets.
pub trait GrantStore {
    /// Inserts a grant unless the key already has `max_per_key` grants or the grantee
    /// `max_per_grantee` grants on it (checked and written atomically).
    fn insert_grant(
        &self,
        g: &GrantRecord,
        max_per_key: usize,
        max_per_grantee: usize,
    ) -> Result<(), StoreError>;
    /// A key's grants, by grant id.
    fn grants_for_key(&self, key: &KeyId) -> Result<Vec<GrantRecord>, StoreError>;
    /// One grant.
    fn grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, StoreError>;
    /// Deletes a grant (retire or revoke); false when there was none.
    fn delete_grant(&self, grant_id: &str) -> Result<bool, StoreError>;
    /// Grants with this retiring principal after `after` (a grant id), at most `limit`.
    fn retirable_grants(
        &self,
        retiring: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<GrantRecord>, StoreError>;
    /// A named daemon secret, made by `make` the first time it is asked for.
    fn secret(&self, name: &str, make: &dyn Fn() -> Vec<u8>) -> Result<Vec<u8>, StoreError>;
}

/// Access keys: the credentials of the AWS JSON listener's SigV4 authentication.
pub trait AccessKeyStore {
    /// Adds an access key unless its principal has `max_per_principal` already
    /// (LimitExceeded; counted in the same transaction, so concurrent calls cannot both
    /// pass); AlreadyExists when the id is taken.
    fn insert_access_key(
        &self,
        k: &AccessKeyRecord,
        max_per_principal: usize,
    ) -> Result<(), StoreError>;
    /// One access key.
    fn access_key(&self, id: &AccessKeyId) -> Result<Option<AccessKeyRecord>, StoreError>;
    /// A principal's access keys, oldest first.
    fn access_keys(&self, principal: &str) -> Result<Vec<AccessKeyRecord>, StoreError>;
    /// Deletes one; false when there was none.
    fn delete_access_key(&self, id: &AccessKeyId) -> Result<bool, StoreError>;
}
