//! SQLite metadata store: one connection behind a mutex (writes are rare and SQLite
//! serialises them anyway), WAL journal, synchronous=FULL so that a key whose ciphertexts
//! a client already holds survives a power cut. Every write transaction begins IMMEDIATE: it takes
//! the write lock at once (waiting up to the busy timeout), so a count and the insert it
//! guards cannot meet another connection's write in between, which a deferred
//! transaction would answer with "database is locked" at once. This file opens and migrates the
//! database; each trait of the store is implemented in the file of its tables (`keys`,
//! `policies`, `aliases`, `grants`, `access_keys`), and `tags` holds what key and
//! principal tags share.

mod access_keys;
mod aliases;
mod grants;
mod keys;
mod policies;
mod tags;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection};

use super::StoreError;
use crate::domain::KeyId;
use crate::store::encoding::{from_ms, to_i64, to_ms, to_u64};

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
/// Never edit a released entry: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: keys and their material versions.
    "CREATE TABLE keys (
        key_id          TEXT PRIMARY KEY,
        account         TEXT NOT NULL,
        description     TEXT NOT NULL,
        creation_ms     INTEGER NOT NULL,
        key_usage       TEXT NOT NULL,
        key_spec        TEXT NOT NULL,
        origin          TEXT NOT NULL,
        key_state       TEXT NOT NULL,
        deletion_ms     INTEGER,
        current_version INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX keys_by_account ON keys(account, key_id);
     CREATE TABLE key_materials (
        key_id     TEXT NOT NULL REFERENCES keys(key_id),
        version    INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        reserved   INTEGER NOT NULL,
        PRIMARY KEY (key_id, version)
     ) WITHOUT ROWID;",
    // 2: key policies (NULL = the default key policy), identity policies and principal
    // tags.
    "ALTER TABLE keys ADD COLUMN policy TEXT;
     CREATE TABLE identity_policies (
        principal   TEXT NOT NULL,
        policy_name TEXT NOT NULL,
        document    TEXT NOT NULL,
        PRIMARY KEY (principal, policy_name)
     ) WITHOUT ROWID;
     CREATE TABLE principal_tags (
        principal TEXT NOT NULL,
        tag_key   TEXT NOT NULL,
        tag_value TEXT NOT NULL,
        PRIMARY KEY (principal, tag_key)
     ) WITHOUT ROWID;",
    // 3: grants, and daemon-wide secrets (the grant-token MAC key).
    "CREATE TABLE grants (
        grant_id        TEXT PRIMARY KEY,
        key_id          TEXT NOT NULL REFERENCES keys(key_id),
        name            TEXT NOT NULL,
        grantee         TEXT NOT NULL,
        retiring        TEXT,
        operations      TEXT NOT NULL,
        constraints     TEXT,
        issuing_account TEXT NOT NULL,
        creation_ms     INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX grants_by_key ON grants(key_id, grant_id);
     CREATE INDEX grants_by_retiring ON grants(retiring, grant_id);
     CREATE TABLE daemon_secrets (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
     ) WITHOUT ROWID;",
    // 4: aliases.
    "CREATE TABLE aliases (
        account    TEXT NOT NULL,
        name       TEXT NOT NULL,
        key_id     TEXT NOT NULL REFERENCES keys(key_id),
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (account, name)
     ) WITHOUT ROWID;
     CREATE INDEX aliases_by_key ON aliases(key_id, name);",
    // 5: scheduled deletion: the start of destruction (irreversible from then on), and
    // tombstones of destroyed keys.
    "ALTER TABLE keys ADD COLUMN destroy_started_ms INTEGER;
     CREATE TABLE deleted_keys (
        key_id     TEXT PRIMARY KEY,
        account    TEXT NOT NULL,
        deleted_ms INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 6: rotation: the schedule on the key, and why each material version was made.
    "ALTER TABLE keys ADD COLUMN rotation_period_days INTEGER;
     ALTER TABLE keys ADD COLUMN next_rotation_ms INTEGER;
     ALTER TABLE key_materials ADD COLUMN rotation_type TEXT;",
    // 7: key tags.
    "CREATE TABLE key_tags (
        key_id    TEXT NOT NULL REFERENCES keys(key_id),
        tag_key   TEXT NOT NULL,
        tag_value TEXT NOT NULL,
        PRIMARY KEY (key_id, tag_key)
     ) WITHOUT ROWID;",
    // 8: one row rewritten by the readiness probe, to prove the database takes writes.
    "CREATE TABLE heartbeat (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        at_ms INTEGER NOT NULL
     );",
    // 9: access keys for SigV4, their secrets sealed under a key in the HSM.
    "CREATE TABLE access_keys (
        access_key_id TEXT PRIMARY KEY,
        principal     TEXT NOT NULL,
        account       TEXT NOT NULL,
        status        TEXT NOT NULL,
        created_ms    INTEGER NOT NULL,
        sealed_secret BLOB NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX access_keys_by_principal ON access_keys(principal, created_ms);",
    // 10: imported key material: its terms while it is in the token, the check that a
    // re-import brings the same material, and since when material deleted or expired
    // is still to be destroyed in the token.
    "ALTER TABLE keys ADD COLUMN expiration_model TEXT;
     ALTER TABLE keys ADD COLUMN valid_to_ms INTEGER;
     ALTER TABLE keys ADD COLUMN import_check BLOB;
     ALTER TABLE keys ADD COLUMN purge_since_ms INTEGER;",
];

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            // Key metadata and the grant-token key are nobody else's business: create the
            // file 0600 before SQLite opens it (its -wal and -shm files copy the mode).
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
        }
        // SQLite would quietly open a file it cannot write read-only and fail later,
        // with a bare "unable to open database file" on a read-only file system.
        if let Err(cause) = std::fs::OpenOptions::new().write(true).open(path) {
            if matches!(
                cause.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            ) {
                return Err(StoreError::NotWritable {
                    path: path.to_owned(),
                    cause,
                });
            }
        }
        Self::init(Connection::open(path)?)
    }

    /// A private in-memory database, for unit tests of code above the store.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions
        // roll back), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// The backend's errors: busy or locked past the busy timeout is [`StoreError::Busy`]
/// (nothing was written, the caller may retry); anything else is a database failure.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::Busy(Box::new(e))
            }
            _ => Self::Database(Box::new(e)),
        }
    }
}

/// Rows of two text columns for one owner (a principal's tags or policies, a key's tags).
fn string_pairs(
    conn: &Connection,
    sql: &str,
    owner: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(params![owner], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The key ids a one-column query returns.
fn key_ids(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<KeyId>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let ids = stmt
        .query_map(params, |r| r.get::<_, String>(0))?
        .map(|r| {
            r.map_err(StoreError::from)?
                .parse::<KeyId>()
                .map_err(|_| StoreError::Corrupt("key id"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn sqlite_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.db");
        let store = SqliteStore::open(&path).unwrap();
        super::super::suite::run(&store);
        let ids = super::super::suite::seed(&store);
        drop(store);
        // Everything is still there after reopening the file.
        let store = SqliteStore::open(&path).unwrap();
        for id in ids {
            assert!(store.get_key(&id).unwrap().is_some());
        }
        let other = SqliteStore::open(&path).unwrap();
        super::super::suite::quotas_hold_under_concurrent_writers(&[&store, &other]);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }
}
