//! SQLite metadata store: one connection behind a mutex (writes are rare and SQLite
//! serialises them anyway), WAL journal, synchronous=FULL so that a key whose ciphertexts
//! a client already holds survives a power cut.

mod access_keys;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    AliasRecord, AliasStore, GrantRecord, GrantStore, KeyRecord, MaterialRecord, PolicyStore,
    RotationSchedule, Store, StoreError,
};
use crate::domain::{
    AccountId, KeyId, KeySpec, KeyState, KeyUsage, MaterialVersion, Origin, RotationType,
};

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

    fn conn(&self) -> MutexGuard<'_, Connection> {
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
        let tx = conn.transaction()?;
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

fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt("counter"))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store for SqliteStore {
    fn insert_key(&self, rec: &KeyRecord) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO keys (key_id, account, description, creation_ms, key_usage,
                key_spec, origin, key_state, deletion_ms, current_version, policy,
                rotation_period_days, next_rotation_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                rec.key_id.to_string(),
                rec.account.as_str(),
                rec.description,
                to_ms(rec.creation_date),
                rec.key_usage.as_str(),
                rec.key_spec.as_str(),
                rec.origin.as_str(),
                rec.key_state.as_str(),
                rec.deletion_date.map(to_ms),
                rec.current_version.0,
                rec.policy,
                rec.rotation.map(|r| r.period_days),
                rec.rotation.map(|r| to_ms(r.next)),
            ],
        )?;
        if n == 0 {
            return Err(StoreError::AlreadyExists("key"));
        }
        for m in &rec.versions {
            tx.execute(
                "INSERT INTO key_materials (key_id, version, created_ms, reserved, rotation_type)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    rec.key_id.to_string(),
                    m.version.0,
                    to_ms(m.created),
                    to_i64(m.reserved_invocations),
                    m.rotation.map(|r| r.as_str())
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT account, description, creation_ms, key_usage, key_spec, origin, key_state,
                        deletion_ms, current_version, policy, rotation_period_days,
                        next_rotation_ms
                 FROM keys WHERE key_id = ?1",
                params![id.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                        r.get::<_, u32>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        (r.get::<_, Option<u32>>(10)?, r.get::<_, Option<i64>>(11)?),
                    ))
                },
            )
            .optional()?;
        let Some((
            account,
            description,
            created,
            usage,
            spec,
            origin,
            state,
            deletion,
            current,
            policy,
            (period, next_rotation),
        )) = row
        else {
            return Ok(None);
        };
        let mut stmt = conn.prepare_cached(
            "SELECT version, created_ms, reserved, rotation_type FROM key_materials
             WHERE key_id = ?1 ORDER BY version",
        )?;
        let versions = stmt
            .query_map(params![id.to_string()], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?
            .map(|row| {
                let (v, c, reserved, rotation) = row?;
                Ok(MaterialRecord {
                    version: MaterialVersion(v),
                    created: from_ms(c),
                    reserved_invocations: to_u64(reserved)?,
                    rotation: rotation
                        .map(|t| {
                            RotationType::parse(&t).ok_or(StoreError::Corrupt("rotation type"))
                        })
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(KeyRecord {
            key_id: *id,
            account: account
                .parse()
                .map_err(|_| StoreError::Corrupt("account id"))?,
            description,
            creation_date: from_ms(created),
            key_usage: KeyUsage::parse(&usage).ok_or(StoreError::Corrupt("key usage"))?,
            key_spec: KeySpec::parse(&spec).ok_or(StoreError::Corrupt("key spec"))?,
            origin: Origin::parse(&origin).ok_or(StoreError::Corrupt("origin"))?,
            key_state: KeyState::parse(&state).ok_or(StoreError::Corrupt("key state"))?,
            deletion_date: deletion.map(from_ms),
            current_version: MaterialVersion(current),
            versions,
            policy,
            rotation: match (period, next_rotation) {
                (Some(period_days), Some(next)) => Some(RotationSchedule {
                    period_days,
                    next: from_ms(next),
                }),
                _ => None,
            },
        }))
    }

    fn list_keys(
        &self,
        account: &AccountId,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<KeyId>, StoreError> {
        let after = after.map(|k| k.to_string()).unwrap_or_default();
        key_ids(
            &self.conn(),
            "SELECT key_id FROM keys WHERE account = ?1 AND key_id > ?2 ORDER BY key_id LIMIT ?3",
            params![
                account.as_str(),
                after,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    fn set_key_enabled(&self, id: &KeyId, enabled: bool) -> Result<bool, StoreError> {
        let state = if enabled {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        };
        let n = self.conn().execute(
            "UPDATE keys SET key_state = ?2
             WHERE key_id = ?1 AND key_state IN ('Enabled', 'Disabled')",
            params![id.to_string(), state.as_str()],
        )?;
        Ok(n == 1)
    }

    fn schedule_deletion(&self, id: &KeyId, at: SystemTime) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET key_state = 'PendingDeletion', deletion_ms = ?2
             WHERE key_id = ?1 AND key_state IN ('Enabled', 'Disabled')",
            params![id.to_string(), to_ms(at)],
        )?;
        Ok(n == 1)
    }

    fn cancel_deletion(&self, id: &KeyId) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET key_state = 'Disabled', deletion_ms = NULL
             WHERE key_id = ?1 AND key_state = 'PendingDeletion' AND destroy_started_ms IS NULL",
            params![id.to_string()],
        )?;
        Ok(n == 1)
    }

    fn keys_due_for_deletion(&self, now: SystemTime) -> Result<Vec<KeyId>, StoreError> {
        key_ids(
            &self.conn(),
            "SELECT key_id FROM keys
             WHERE key_state = 'PendingDeletion'
               AND (deletion_ms <= ?1 OR destroy_started_ms IS NOT NULL)
             ORDER BY key_id",
            params![to_ms(now)],
        )
    }

    fn begin_destruction(&self, id: &KeyId, now: SystemTime) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET destroy_started_ms = COALESCE(destroy_started_ms, ?2)
             WHERE key_id = ?1 AND key_state = 'PendingDeletion'
               AND (deletion_ms <= ?2 OR destroy_started_ms IS NOT NULL)",
            params![id.to_string(), to_ms(now)],
        )?;
        Ok(n == 1)
    }

    fn finish_destruction(&self, id: &KeyId, now: SystemTime) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let key = id.to_string();
        let account: Option<String> = tx
            .query_row(
                "SELECT account FROM keys WHERE key_id = ?1 AND destroy_started_ms IS NOT NULL",
                params![key],
                |r| r.get(0),
            )
            .optional()?;
        let Some(account) = account else {
            return Err(StoreError::Missing("key being destroyed"));
        };
        tx.execute("DELETE FROM aliases WHERE key_id = ?1", params![key])?;
        tx.execute("DELETE FROM key_tags WHERE key_id = ?1", params![key])?;
        tx.execute("DELETE FROM grants WHERE key_id = ?1", params![key])?;
        tx.execute("DELETE FROM key_materials WHERE key_id = ?1", params![key])?;
        tx.execute("DELETE FROM keys WHERE key_id = ?1", params![key])?;
        tx.execute(
            "INSERT OR REPLACE INTO deleted_keys (key_id, account, deleted_ms) VALUES (?1, ?2, ?3)",
            params![key, account, to_ms(now)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn deleted_key(&self, id: &KeyId) -> Result<Option<AccountId>, StoreError> {
        let conn = self.conn();
        let account: Option<String> = conn
            .query_row(
                "SELECT account FROM deleted_keys WHERE key_id = ?1",
                params![id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        account
            .map(|a| a.parse().map_err(|_| StoreError::Corrupt("account")))
            .transpose()
    }

    fn set_rotation(
        &self,
        id: &KeyId,
        rotation: Option<RotationSchedule>,
    ) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET rotation_period_days = ?2, next_rotation_ms = ?3 WHERE key_id = ?1",
            params![
                id.to_string(),
                rotation.map(|r| r.period_days),
                rotation.map(|r| to_ms(r.next))
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("key"));
        }
        Ok(())
    }

    fn keys_due_for_rotation(&self, now: SystemTime) -> Result<Vec<KeyId>, StoreError> {
        key_ids(
            &self.conn(),
            "SELECT key_id FROM keys
             WHERE key_state = 'Enabled' AND next_rotation_ms IS NOT NULL AND next_rotation_ms <= ?1
             ORDER BY key_id",
            params![to_ms(now)],
        )
    }

    fn tag_key(
        &self,
        id: &KeyId,
        tags: &[(String, String)],
        max_tags: usize,
    ) -> Result<(), StoreError> {
        put_tags(
            &mut self.conn(),
            TagTable::KEY,
            &id.to_string(),
            tags,
            max_tags,
        )
    }

    fn untag_key(&self, id: &KeyId, keys: &[String]) -> Result<(), StoreError> {
        delete_tags(&mut self.conn(), TagTable::KEY, &id.to_string(), keys)
    }

    fn key_tags(&self, id: &KeyId) -> Result<Vec<(String, String)>, StoreError> {
        string_pairs(
            &self.conn(),
            "SELECT tag_key, tag_value FROM key_tags WHERE key_id = ?1 ORDER BY tag_key",
            &id.to_string(),
        )
    }

    fn set_key_description(&self, id: &KeyId, description: &str) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET description = ?2 WHERE key_id = ?1",
            params![id.to_string(), description],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("key"));
        }
        Ok(())
    }

    fn count_keys(&self, account: &AccountId) -> Result<usize, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM keys WHERE account = ?1",
            params![account.as_str()],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn add_material(
        &self,
        id: &KeyId,
        m: &MaterialRecord,
        next_rotation: Option<SystemTime>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO key_materials (key_id, version, created_ms, reserved, rotation_type)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id.to_string(),
                m.version.0,
                to_ms(m.created),
                to_i64(m.reserved_invocations),
                m.rotation.map(|r| r.as_str())
            ],
        )?;
        let n = tx.execute(
            "UPDATE keys SET current_version = ?2,
                 next_rotation_ms = COALESCE(?3, next_rotation_ms)
             WHERE key_id = ?1",
            params![id.to_string(), m.version.0, next_rotation.map(to_ms)],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("key"));
        }
        tx.commit()?;
        Ok(())
    }

    fn reserve_invocations(
        &self,
        id: &KeyId,
        version: MaterialVersion,
        reserved: u64,
    ) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE key_materials SET reserved = MAX(reserved, ?3) WHERE key_id = ?1 AND version = ?2",
            params![id.to_string(), version.0, to_i64(reserved)],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("key material"));
        }
        Ok(())
    }

    fn heartbeat(&self, now: SystemTime) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO heartbeat (id, at_ms) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
            params![to_ms(now)],
        )?;
        Ok(())
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

const TAGS_SQL: &str =
    "SELECT tag_key, tag_value FROM principal_tags WHERE principal = ?1 ORDER BY tag_key";
const POLICIES_SQL: &str =
    "SELECT policy_name, document FROM identity_policies WHERE principal = ?1 ORDER BY policy_name";

impl PolicyStore for SqliteStore {
    fn set_key_policy(&self, id: &KeyId, policy: &str) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET policy = ?2 WHERE key_id = ?1",
            params![id.to_string(), policy],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("key"));
        }
        Ok(())
    }

    fn put_identity_policy(
        &self,
        principal: &str,
        name: &str,
        document: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO identity_policies (principal, policy_name, document) VALUES (?1, ?2, ?3)
             ON CONFLICT (principal, policy_name) DO UPDATE SET document = excluded.document",
            params![principal, name, document],
        )?;
        Ok(())
    }

    fn identity_policies(&self, principal: &str) -> Result<Vec<(String, String)>, StoreError> {
        string_pairs(&self.conn(), POLICIES_SQL, principal)
    }

    fn delete_identity_policy(&self, principal: &str, name: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM identity_policies WHERE principal = ?1 AND policy_name = ?2",
            params![principal, name],
        )?;
        Ok(n > 0)
    }

    fn principal_tags(&self, principal: &str) -> Result<Vec<(String, String)>, StoreError> {
        string_pairs(&self.conn(), TAGS_SQL, principal)
    }

    fn tag_principal(
        &self,
        principal: &str,
        tags: &[(String, String)],
        max_tags: usize,
    ) -> Result<(), StoreError> {
        put_tags(
            &mut self.conn(),
            TagTable::PRINCIPAL,
            principal,
            tags,
            max_tags,
        )
    }

    fn untag_principal(&self, principal: &str, keys: &[String]) -> Result<(), StoreError> {
        delete_tags(&mut self.conn(), TagTable::PRINCIPAL, principal, keys)
    }
}

fn grant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GrantRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

type GrantRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    i64,
);

fn to_grant(row: GrantRow) -> Result<GrantRecord, StoreError> {
    let (grant_id, key_id, name, grantee, retiring, ops, constraints, issuing, created) = row;
    Ok(GrantRecord {
        grant_id,
        key_id: key_id
            .parse()
            .map_err(|_| StoreError::Corrupt("grant key id"))?,
        name,
        grantee,
        retiring,
        operations: serde_json::from_str(&ops)
            .map_err(|_| StoreError::Corrupt("grant operations"))?,
        constraints: match constraints {
            Some(c) => Some(
                serde_json::from_str(&c).map_err(|_| StoreError::Corrupt("grant constraints"))?,
            ),
            None => None,
        },
        issuing_account: issuing,
        creation_date: from_ms(created),
    })
}

const GRANT_COLUMNS: &str =
    "grant_id, key_id, name, grantee, retiring, operations, constraints, issuing_account, creation_ms";

/// After a write in `tx`: LimitExceeded (and so a rollback) when `key` now has more
/// than `max` aliases.
fn check_alias_room(
    tx: &rusqlite::Transaction<'_>,
    key: &KeyId,
    max: usize,
) -> Result<(), StoreError> {
    let n: i64 = tx.query_row(
        "SELECT COUNT(*) FROM aliases WHERE key_id = ?1",
        params![key.to_string()],
        |r| r.get(0),
    )?;
    if usize::try_from(n).unwrap_or(usize::MAX) > max {
        return Err(StoreError::LimitExceeded(format!(
            "a key has at most {max} aliases"
        )));
    }
    Ok(())
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

/// A tag table: its name, its owner column, and what the limit error calls the owner.
struct TagTable {
    table: &'static str,
    owner: &'static str,
    what: &'static str,
    /// IAM tag keys ignore case (a new `Team` replaces `team`); KMS tag keys do not.
    fold_case: bool,
}

impl TagTable {
    const KEY: Self = Self {
        table: "key_tags",
        owner: "key_id",
        what: "a key",
        fold_case: false,
    };
    const PRINCIPAL: Self = Self {
        table: "principal_tags",
        owner: "principal",
        what: "a principal",
        fold_case: true,
    };
}

/// Adds or replaces `tags` of `owner`, all or none: LimitExceeded past `max_tags`.
fn put_tags(
    conn: &mut Connection,
    t: TagTable,
    owner: &str,
    tags: &[(String, String)],
    max_tags: usize,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let upsert = format!(
        "INSERT INTO {table} ({owner}, tag_key, tag_value) VALUES (?1, ?2, ?3)
         ON CONFLICT ({owner}, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
        table = t.table,
        owner = t.owner
    );
    // A tag whose key differs only in case is the same tag: it is replaced, keeping
    // the new spelling (SQLite's lower() folds ASCII, as condition keys do).
    let replace_folded = format!(
        "DELETE FROM {table} WHERE {owner} = ?1 AND lower(tag_key) = lower(?2) AND tag_key != ?2",
        table = t.table,
        owner = t.owner
    );
    for (k, v) in tags {
        if t.fold_case {
            tx.execute(&replace_folded, params![owner, k])?;
        }
        tx.execute(&upsert, params![owner, k, v])?;
    }
    let n: i64 = tx.query_row(
        &format!("SELECT COUNT(*) FROM {} WHERE {} = ?1", t.table, t.owner),
        params![owner],
        |r| r.get(0),
    )?;
    if usize::try_from(n).unwrap_or(usize::MAX) > max_tags {
        // Dropping the transaction rolls every insert back.
        return Err(StoreError::LimitExceeded(format!(
            "{} has at most {max_tags} tags",
            t.what
        )));
    }
    tx.commit()?;
    Ok(())
}

/// Removes tags of `owner` by key (absent ones are ignored).
fn delete_tags(
    conn: &mut Connection,
    t: TagTable,
    owner: &str,
    keys: &[String],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let delete = format!(
        "DELETE FROM {} WHERE {} = ?1 AND {}",
        t.table,
        t.owner,
        if t.fold_case {
            "lower(tag_key) = lower(?2)"
        } else {
            "tag_key = ?2"
        }
    );
    for k in keys {
        tx.execute(&delete, params![owner, k])?;
    }
    tx.commit()?;
    Ok(())
}

const ALIAS_COLUMNS: &str = "account, name, key_id, created_ms, updated_ms";

fn alias_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn alias_record(
    (account, name, key_id, created, updated): (String, String, String, i64, i64),
) -> Result<AliasRecord, StoreError> {
    Ok(AliasRecord {
        account: account
            .parse()
            .map_err(|_| StoreError::Corrupt("alias account"))?,
        name,
        key_id: key_id
            .parse()
            .map_err(|_| StoreError::Corrupt("alias key id"))?,
        created: from_ms(created),
        updated: from_ms(updated),
    })
}

impl AliasStore for SqliteStore {
    fn insert_alias(&self, a: &AliasRecord, max_per_key: usize) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let r = tx.execute(
            &format!("INSERT INTO aliases ({ALIAS_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
            params![
                a.account.as_str(),
                a.name,
                a.key_id.to_string(),
                to_ms(a.created),
                to_ms(a.updated)
            ],
        );
        match r {
            Ok(_) => {
                check_alias_room(&tx, &a.key_id, max_per_key)?;
                Ok(tx.commit()?)
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::AlreadyExists("alias"))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn update_alias(
        &self,
        account: &AccountId,
        name: &str,
        from: &KeyId,
        to: &KeyId,
        at: SystemTime,
        max_per_key: usize,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE aliases SET key_id = ?4, updated_ms = ?5
             WHERE account = ?1 AND name = ?2 AND key_id = ?3",
            params![
                account.as_str(),
                name,
                from.to_string(),
                to.to_string(),
                to_ms(at)
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("alias"));
        }
        check_alias_room(&tx, to, max_per_key)?;
        tx.commit()?;
        Ok(())
    }

    fn delete_alias(
        &self,
        account: &AccountId,
        name: &str,
        key: &KeyId,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM aliases WHERE account = ?1 AND name = ?2 AND key_id = ?3",
            params![account.as_str(), name, key.to_string()],
        )?;
        Ok(n > 0)
    }

    fn alias(&self, account: &AccountId, name: &str) -> Result<Option<AliasRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ALIAS_COLUMNS} FROM aliases WHERE account = ?1 AND name = ?2"
        ))?;
        let row = stmt
            .query_row(params![account.as_str(), name], alias_row)
            .optional()?;
        row.map(alias_record).transpose()
    }

    fn list_aliases(
        &self,
        account: &AccountId,
        key: Option<&KeyId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ALIAS_COLUMNS} FROM aliases
             WHERE account = ?1 AND (?2 IS NULL OR key_id = ?2) AND name > ?3
             ORDER BY name LIMIT ?4"
        ))?;
        let rows = stmt
            .query_map(
                params![
                    account.as_str(),
                    key.map(|k| k.to_string()),
                    after.unwrap_or(""),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                alias_row,
            )?
            .map(|r| alias_record(r?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

impl GrantStore for SqliteStore {
    fn insert_grant(
        &self,
        g: &GrantRecord,
        max_per_key: usize,
        max_per_grantee: usize,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let key = g.key_id.to_string();
        let per_key: i64 = tx.query_row(
            "SELECT COUNT(*) FROM grants WHERE key_id = ?1",
            params![key],
            |r| r.get(0),
        )?;
        let per_grantee: i64 = tx.query_row(
            "SELECT COUNT(*) FROM grants WHERE key_id = ?1 AND grantee = ?2",
            params![key, g.grantee],
            |r| r.get(0),
        )?;
        if usize::try_from(per_key).unwrap_or(usize::MAX) >= max_per_key {
            return Err(StoreError::LimitExceeded(format!(
                "a key has at most {max_per_key} grants"
            )));
        }
        if usize::try_from(per_grantee).unwrap_or(usize::MAX) >= max_per_grantee {
            return Err(StoreError::LimitExceeded(format!(
                "a key has at most {max_per_grantee} grants for one grantee"
            )));
        }
        let ops = serde_json::to_string(&g.operations)
            .map_err(|_| StoreError::Corrupt("grant operations"))?;
        let constraints = match &g.constraints {
            Some(c) => Some(
                serde_json::to_string(c).map_err(|_| StoreError::Corrupt("grant constraints"))?,
            ),
            None => None,
        };
        tx.execute(
            &format!(
                "INSERT INTO grants ({GRANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                g.grant_id,
                key,
                g.name,
                g.grantee,
                g.retiring,
                ops,
                constraints,
                g.issuing_account,
                to_ms(g.creation_date)
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn grants_for_key(&self, key: &KeyId) -> Result<Vec<GrantRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE key_id = ?1 ORDER BY grant_id"
        ))?;
        let rows = stmt
            .query_map(params![key.to_string()], grant_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(to_grant).collect()
    }

    fn grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE grant_id = ?1"),
                params![grant_id],
                grant_row,
            )
            .optional()?;
        row.map(to_grant).transpose()
    }

    fn delete_grant(&self, grant_id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM grants WHERE grant_id = ?1", params![grant_id])?;
        Ok(n > 0)
    }

    fn retirable_grants(
        &self,
        retiring: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE retiring = ?1 AND grant_id > ?2 ORDER BY grant_id LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(
                params![retiring, after, i64::try_from(limit).unwrap_or(i64::MAX)],
                grant_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(to_grant).collect()
    }

    fn secret(&self, name: &str, make: &dyn Fn() -> Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let conn = self.conn();
        // INSERT OR IGNORE then read: the first daemon to ask makes the secret, every
        // later one (and every restart) reads the same bytes.
        conn.execute(
            "INSERT OR IGNORE INTO daemon_secrets (name, value) VALUES (?1, ?2)",
            params![name, make()],
        )?;
        Ok(conn.query_row(
            "SELECT value FROM daemon_secrets WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
