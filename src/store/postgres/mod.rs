//! PostgreSQL metadata store, for several daemons on one database (`[store] postgres`).
//! The store's traits block (the vault calls them off the async runtime), while the
//! driver (tokio-postgres, pooled by deadpool) is async: each call runs on the store's
//! own small runtime and the calling thread waits for it, which works from any thread.
//! Quotas "checked in the same transaction" take a transaction-scoped advisory lock on
//! what they count (the key, the principal), so that writers in other processes
//! serialise on it. Same tables as SQLite's, in PostgreSQL's types; times are
//! milliseconds since the epoch (BIGINT), as there.

mod keys;
mod rest;
#[cfg(test)]
pub(crate) mod testdb;
mod tls;

pub(crate) use tls::DbTls;
pub use tls::DbTlsFiles;

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;

use super::StoreError;
use crate::store::encoding::{from_ms, to_i64, to_ms, to_u64};

/// The schema, one migration per entry, applied in order under an advisory lock (several
/// daemons may start at once); `p11kms_schema` counts those applied. Never edit a
/// released entry: add a new one.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE keys (
        key_id               TEXT PRIMARY KEY,
        account              TEXT NOT NULL,
        description          TEXT NOT NULL,
        creation_ms          BIGINT NOT NULL,
        key_usage            TEXT NOT NULL,
        key_spec             TEXT NOT NULL,
        origin               TEXT NOT NULL,
        key_state            TEXT NOT NULL,
        deletion_ms          BIGINT,
        current_version      BIGINT NOT NULL,
        policy               TEXT,
        destroy_started_ms   BIGINT,
        rotation_period_days BIGINT,
        next_rotation_ms     BIGINT
     );
     CREATE INDEX keys_by_account ON keys(account, key_id);
     CREATE TABLE key_materials (
        key_id        TEXT NOT NULL REFERENCES keys(key_id),
        version       BIGINT NOT NULL,
        created_ms    BIGINT NOT NULL,
        reserved      BIGINT NOT NULL,
        rotation_type TEXT,
        PRIMARY KEY (key_id, version)
     );
     CREATE TABLE identity_policies (
        principal   TEXT NOT NULL,
        policy_name TEXT NOT NULL,
        document    TEXT NOT NULL,
        PRIMARY KEY (principal, policy_name)
     );
     CREATE TABLE principal_tags (
        principal TEXT NOT NULL,
        tag_key   TEXT NOT NULL,
        tag_value TEXT NOT NULL,
        PRIMARY KEY (principal, tag_key)
     );
     CREATE TABLE grants (
        grant_id        TEXT PRIMARY KEY,
        key_id          TEXT NOT NULL REFERENCES keys(key_id),
        name            TEXT NOT NULL,
        grantee         TEXT NOT NULL,
        retiring        TEXT,
        operations      TEXT NOT NULL,
        constraints     TEXT,
        issuing_account TEXT NOT NULL,
        creation_ms     BIGINT NOT NULL
     );
     CREATE INDEX grants_by_key ON grants(key_id, grant_id);
     CREATE INDEX grants_by_retiring ON grants(retiring, grant_id);
     CREATE TABLE daemon_secrets (
        name  TEXT PRIMARY KEY,
        value BYTEA NOT NULL
     );
     CREATE TABLE aliases (
        account    TEXT NOT NULL,
        name       TEXT NOT NULL,
        key_id     TEXT NOT NULL REFERENCES keys(key_id),
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (account, name)
     );
     CREATE INDEX aliases_by_key ON aliases(key_id, name);
     CREATE TABLE deleted_keys (
        key_id     TEXT PRIMARY KEY,
        account    TEXT NOT NULL,
        deleted_ms BIGINT NOT NULL
     );
     CREATE TABLE key_tags (
        key_id    TEXT NOT NULL REFERENCES keys(key_id),
        tag_key   TEXT NOT NULL,
        tag_value TEXT NOT NULL,
        PRIMARY KEY (key_id, tag_key)
     );
     CREATE TABLE heartbeat (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        at_ms BIGINT NOT NULL
     );
     CREATE TABLE access_keys (
        access_key_id TEXT PRIMARY KEY,
        principal     TEXT NOT NULL,
        account       TEXT NOT NULL,
        status        TEXT NOT NULL,
        created_ms    BIGINT NOT NULL,
        sealed_secret BYTEA NOT NULL
     );
     CREATE INDEX access_keys_by_principal ON access_keys(principal, created_ms);",
    // 2: who is making which material version (`Store::claim_material`).
    "CREATE TABLE material_claims (
        key_id     TEXT NOT NULL,
        version    BIGINT NOT NULL,
        claimed_ms BIGINT NOT NULL,
        PRIMARY KEY (key_id, version)
     );",
    // 3: whose claim it is (the store handle's name), so that a maker whose claim was
    // taken over cannot record the version; claimed_ms from the database's clock.
    "ALTER TABLE material_claims ADD COLUMN owner TEXT NOT NULL DEFAULT '';",
    // 4: imported key material: its terms while it is in the token, the check that a
    // re-import brings the same material, and since when material deleted or expired is
    // still to be destroyed in the token.
    "ALTER TABLE keys ADD COLUMN expiration_model TEXT;
     ALTER TABLE keys ADD COLUMN valid_to_ms BIGINT;
     ALTER TABLE keys ADD COLUMN import_check BYTEA;
     ALTER TABLE keys ADD COLUMN purge_since_ms BIGINT;",
];

/// The advisory lock the migrations run under (any constant, the same in every build).
const MIGRATION_LOCK: i64 = 0x7031_6b6d_735f_6d67;

/// A runtime of the store's own, shut down without waiting when the store is dropped
/// (which may happen on another runtime's thread, where waiting is not allowed).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The advisory lock whose holder leads the sweeps ([`super::Store::lead`]).
const LEAD_LOCK: i64 = 0x7031_6b6d_735f_6c64;

/// The channel every change is announced on (`pg_notify`), and that each daemon
/// listens to, to drop what its caches hold of it.
const CHANNEL: &str = "p11kms_changes";

/// What every connection's application_name starts with; the store handle's origin
/// follows.
pub(crate) const APPLICATION_PREFIX: &str = "p11kms/";

tokio::task_local! {
    /// The store handle a write runs for (set by `PostgresStore::with`): its
    /// announcements carry it, so that its own listener can pass them by.
    static ORIGIN: std::sync::Arc<str>;
}

/// The PostgreSQL implementation of [`super::Store`].
pub struct PostgresStore {
    pool: Pool,
    rt: OwnRuntime,
    /// The connection settings, for the listening connection.
    config: tokio_postgres::Config,
    /// TLS to the database (or none), for the listening connection.
    tls: DbTls,
    /// This handle's name in its announcements: random, one per daemon.
    origin: std::sync::Arc<str>,
    /// Who is told of changes (see [`super::Store::watch`]).
    watcher: std::sync::Arc<std::sync::RwLock<Option<super::OnChange>>>,
    /// The connection that holds [`LEAD_LOCK`], while this daemon leads: a session
    /// lock, released by the server when the connection ends (this daemon died, or the
    /// database restarted).
    leader: std::sync::Arc<tokio::sync::Mutex<Option<deadpool_postgres::ClientWrapper>>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects with `config` (host, port, user, database and password set by the
    /// caller, never from a URL with a password in it), at most `pool_size`
    /// connections, and brings the schema up to date.
    pub fn connect(config: tokio_postgres::Config, pool_size: usize) -> Result<Self, StoreError> {
        Self::connect_with(config, pool_size, DbTls::none())
    }

    /// [`Self::connect`] over `tls`: TLS is then required (a server that refuses it, or
    /// whose certificate does not verify, is not connected to); without, it is never
    /// attempted.
    pub(crate) fn connect_with(
        mut config: tokio_postgres::Config,
        pool_size: usize,
        tls: DbTls,
    ) -> Result<Self, StoreError> {
        use tokio_postgres::config::SslMode;
        // TLS exactly when configured: never a silent fall-back to plain text, and no
        // attempt the connector could not complete.
        match (tls.enabled(), config.get_ssl_mode()) {
            (false, SslMode::Require) => {
                return Err(StoreError::Database(
                    "sslmode=require, but no TLS is configured (store.tls_ca_file)".into(),
                ))
            }
            (true, SslMode::Disable) => {
                return Err(StoreError::Database(
                    "sslmode=disable, but TLS is configured (store.tls_ca_file)".into(),
                ))
            }
            (true, _) => config.ssl_mode(SslMode::Require),
            (false, _) => config.ssl_mode(SslMode::Disable),
        };
        // Every connection of this handle carries its origin as application_name: a
        // claim whose owner has no connection left is a dead daemon's, taken over at
        // once (see `claim_material`) rather than after it goes stale.
        let origin: std::sync::Arc<str> = new_origin()?.into();
        config.application_name(format!("{APPLICATION_PREFIX}{origin}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("p11kms-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _entered = rt.enter();
            Pool::builder(manager)
                .max_size(pool_size.max(1))
                .wait_timeout(Some(Duration::from_secs(5)))
                .create_timeout(Some(Duration::from_secs(5)))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Database(Box::new(e)))?
        };
        let store = Self {
            pool,
            rt: OwnRuntime(Some(rt)),
            leader: std::sync::Arc::default(),
            config,
            tls,
            origin,
            watcher: std::sync::Arc::default(),
        };
        store.with(|mut c| async move { migrate(&mut c).await })?;
        Ok(store)
    }

    /// Runs `f` with a pooled connection on the store's runtime; the calling thread
    /// waits for its result.
    pub(crate) fn with<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let Some(rt) = &self.rt.0 else {
            return Err(StoreError::Database("the store is closed".into()));
        };
        let (pool, origin) = (self.pool.clone(), std::sync::Arc::clone(&self.origin));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(ORIGIN.scope(origin, async move {
            let result = match pool.get().await {
                Ok(client) => f(client).await,
                Err(e) => Err(StoreError::Database(Box::new(e))),
            };
            let _ = tx.send(result);
        }));
        rx.recv()
            .map_err(|_| StoreError::Database("the store's task ended".into()))?
    }
}

impl PostgresStore {
    /// [`super::Store::lead`]: keeps the lead while the connection that took it is
    /// open; otherwise tries to take it on a connection of its own, out of the pool.
    pub(crate) fn lead(&self) -> Result<bool, StoreError> {
        let leader = std::sync::Arc::clone(&self.leader);
        self.with(move |c| async move {
            let mut held = leader.lock().await;
            if held.as_ref().is_some_and(|c| !c.is_closed()) {
                return Ok(true);
            }
            *held = None;
            let taken: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEAD_LOCK])
                .await?
                .get(0);
            if taken {
                // Out of the pool for good: the lock lives as long as this connection.
                let client = Object::take(c);
                *held = Some(client);
            }
            Ok(taken)
        })
    }
}

impl PostgresStore {
    /// [`super::Store::watch`]: the first call starts the listening connection, which
    /// reconnects by itself and, after every (re)connection, reports
    /// [`super::Change::All`]: what happened while it was away is unknown.
    pub(crate) fn watch(&self, on_change: super::OnChange) {
        let first = {
            let mut w = self
                .watcher
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let first = w.is_none();
            *w = Some(on_change);
            first
        };
        let Some(rt) = &self.rt.0 else { return };
        if first {
            rt.spawn(listen(
                self.config.clone(),
                self.tls.clone(),
                std::sync::Arc::clone(&self.origin),
                std::sync::Arc::clone(&self.watcher),
            ));
        }
    }
}

/// Listens on [`CHANNEL`] for as long as the store's runtime runs.
async fn listen(
    config: tokio_postgres::Config,
    tls: DbTls,
    origin: std::sync::Arc<str>,
    watcher: std::sync::Arc<std::sync::RwLock<Option<super::OnChange>>>,
) {
    use futures_util::StreamExt as _;
    let tell = |change: super::Change| {
        let w = watcher
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(w) = w {
            w(change);
        }
    };
    loop {
        let connected = config.connect(tls.clone()).await;
        let (client, mut connection) = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "the store's change listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        tokio::spawn(async move {
            futures_util::pin_mut!(messages);
            while let Some(m) = messages.next().await {
                match m {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            tracing::warn!(error = %e, "the store's change listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        tell(super::Change::All);
        while let Some(payload) = rx.recv().await {
            // This daemon's own writes have updated its caches already.
            match payload.split_once(' ') {
                Some((from, _)) if *from == *origin => {}
                Some((_, change)) => tell(parse_change(change)),
                None => tell(super::Change::All),
            }
        }
        tracing::warn!("the store's change listener lost its connection; reconnecting");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A change as announced (see [`announce`]); anything unreadable is everything.
fn parse_change(payload: &str) -> super::Change {
    use super::Change;
    let mut parts = payload.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("key"), Some(id), None) => id.parse().map_or(Change::All, Change::Key),
        (Some("principal"), Some(arn), None) => Change::Principal(arn.to_owned()),
        (Some("alias"), Some(account), Some(name)) => account
            .parse()
            .map_or(Change::All, |a| Change::Alias(a, name.to_owned())),
        (Some("access_key"), Some(id), None) => Change::AccessKey(id.to_owned()),
        _ => Change::All,
    }
}

/// Announces `change` to every daemon listening: delivered when `c`'s transaction
/// commits (at once outside one), never when it rolls back.
async fn announce(
    c: &impl tokio_postgres::GenericClient,
    change: &super::Change,
) -> Result<(), StoreError> {
    use super::Change;
    let payload = match change {
        Change::Key(id) => format!("key {id}"),
        Change::Principal(arn) => format!("principal {arn}"),
        Change::Alias(account, name) => format!("alias {} {name}", account.as_str()),
        Change::AccessKey(id) => format!("access_key {id}"),
        Change::All => "all".to_owned(),
    };
    // Outside `PostgresStore::with` (never, today) the origin is unknown: then every
    // daemon, this one included, takes the change.
    let origin = ORIGIN
        .try_with(std::sync::Arc::clone)
        .unwrap_or_else(|_| "-".into());
    let payload = format!("{origin} {payload}");
    c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await?;
    Ok(())
}

/// A random name for a store handle's announcements.
fn new_origin() -> Result<String, StoreError> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| StoreError::Database("the system random number generator failed".into()))?;
    Ok(crate::domain::to_hex(&bytes))
}

async fn migrate(c: &mut Object) -> Result<(), StoreError> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS p11kms_schema (version BIGINT NOT NULL)")
        .await?;
    let version: i64 = match tx
        .query_opt("SELECT version FROM p11kms_schema", &[])
        .await?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO p11kms_schema (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::SchemaTooNew {
            found: version,
            known,
        });
    }
    for sql in MIGRATIONS
        .iter()
        .skip(usize::try_from(version).unwrap_or(usize::MAX))
    {
        tx.batch_execute(sql).await?;
    }
    tx.execute("UPDATE p11kms_schema SET version = $1", &[&known])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The driver's errors: a serialization failure, a deadlock or a lock timeout is
/// [`StoreError::Busy`] (nothing was written, the caller may retry); anything else is a
/// database failure.
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let busy = [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
        ];
        match e.code() {
            Some(code) if busy.contains(code) => Self::Busy(Box::new(e)),
            _ => Self::Database(Box::new(e)),
        }
    }
}

/// True when `e` is a unique or primary key violation.
fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// `usize` as a row limit.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count as `usize`.
fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Takes the transaction's advisory lock on `what` (a key id, a principal): writers
/// that count and insert under the same name wait for each other, in every process.
async fn lock(tx: &deadpool_postgres::Transaction<'_>, what: &str) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&what],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// An error and its sources, as one line.
    fn error_chain(e: &dyn std::error::Error) -> String {
        let mut chain = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            chain = format!("{chain}: {s}");
            source = s.source();
        }
        chain
    }

    /// Over TLS the session is encrypted (the server's own view, pg_stat_ssl), with
    /// the server verified; a plain connection and one that trusts another CA fail.
    #[test]
    fn tls_to_the_database_is_verified_and_used() {
        let db = testdb::TestDb::start();
        let dir = tempfile::tempdir().unwrap();
        let (pki, other) = (
            testdb::TestPki::new(dir.path(), "db"),
            testdb::TestPki::new(dir.path(), "other"),
        );
        db.require_tls(&pki);
        assert!(PostgresStore::connect(db.config(), 1).is_err());
        let files = |p: &testdb::TestPki| DbTlsFiles {
            ca: p.ca.clone(),
            client: Some((pki.client_cert.clone(), pki.client_key.clone())),
        };
        let foreign =
            PostgresStore::connect_with(db.config(), 1, DbTls::load(&files(&other)).unwrap());
        let e = foreign.expect_err("a server certificate from another CA accepted");
        let chain = error_chain(&e);
        assert!(chain.contains("UnknownIssuer"), "{chain}");
        // The right CA, but a certificate that does not name the host connected to.
        let mut by_name = tokio_postgres::Config::new();
        by_name
            .host("localhost")
            .port(db.port)
            .user("p11kms")
            .dbname("p11kms");
        let e = PostgresStore::connect_with(by_name, 1, DbTls::load(&files(&pki)).unwrap())
            .expect_err("a certificate for 127.0.0.1 accepted for localhost");
        let chain = error_chain(&e);
        assert!(chain.contains("not valid for name"), "{chain}");
        let store = PostgresStore::connect_with(db.config(), 1, DbTls::load(&files(&pki)).unwrap())
            .unwrap();
        let encrypted = store
            .with(|c| async move {
                let row = c
                    .query_one(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                    .await?;
                Ok(row.get::<_, bool>(0))
            })
            .unwrap();
        assert!(encrypted);
        crate::store::suite::seed(&store);
    }

    /// A Unix socket, for which the driver asks the TLS connector too (with no host
    /// name) even though TLS is off there.
    #[test]
    fn a_unix_socket_connects_without_tls() {
        let db = testdb::TestDb::start();
        let store = PostgresStore::connect(db.socket_config(), 1).unwrap();
        crate::store::suite::seed(&store);
    }

    #[test]
    fn postgres_store_passes_the_conformance_suite() {
        let db = testdb::TestDb::start();
        let store = PostgresStore::connect(db.config(), 4).unwrap();
        crate::store::suite::run(&store);
        let ids = crate::store::suite::seed(&store);
        drop(store);
        // Everything is still there through new connections, and the schema is not
        // applied twice.
        let store = PostgresStore::connect(db.config(), 2).unwrap();
        for id in ids {
            assert!(store.get_key(&id).unwrap().is_some());
        }
        assert!(store.heartbeat(std::time::SystemTime::now()).is_ok());
        let other = PostgresStore::connect(db.config(), 8).unwrap();
        crate::store::suite::quotas_hold_under_concurrent_writers(&[&store, &other]);
    }

    /// A database that goes away and comes back: calls fail while it is away, with
    /// a database error, and succeed again after (the pool replaces the connections
    /// the restart broke).
    #[test]
    fn calls_fail_while_the_database_is_down_and_resume_after() {
        let db = testdb::TestDb::start();
        let store = PostgresStore::connect(db.config(), 2).unwrap();
        let now = std::time::SystemTime::now();
        assert!(store.heartbeat(now).is_ok());
        db.pause();
        assert!(matches!(store.heartbeat(now), Err(StoreError::Database(_))));
        db.resume();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.heartbeat(now).is_err() {
            assert!(std::time::Instant::now() < deadline, "no recovery");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The right to make a material version: one daemon at a time, taken over once
    /// stale, given back by recording the version or by a release.
    #[test]
    fn one_daemon_at_a_time_makes_a_material_version() {
        use crate::domain::MaterialVersion;
        let db = testdb::TestDb::start();
        let (a, b) = (
            PostgresStore::connect(db.config(), 2).unwrap(),
            PostgresStore::connect(db.config(), 2).unwrap(),
        );
        let ids = crate::store::suite::seed(&a);
        let (id, v2) = (ids[0], MaterialVersion(2));
        let stale = std::time::Duration::from_secs(30);
        assert!(a.claim_material(&id, v2, stale).unwrap());
        assert!(
            !a.claim_material(&id, v2, stale).unwrap(),
            "a daemon's own claim blocks its other requests too"
        );
        assert!(!b.claim_material(&id, v2, stale).unwrap());
        // b releasing does not release a's claim.
        b.release_material(&id, v2).unwrap();
        assert!(!b.claim_material(&id, v2, stale).unwrap());
        // A claim older than `stale_after` by the database's clock is taken over...
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = std::time::Duration::ZERO;
        assert!(b.claim_material(&id, v2, now).unwrap());
        assert!(!a.claim_material(&id, v2, stale).unwrap());
        // ... and its first holder can no longer record the version.
        let m = a.get_key(&id).unwrap().unwrap().versions[0].clone();
        let record = crate::store::MaterialRecord { version: v2, ..m };
        assert!(matches!(
            a.add_material(&id, &record, None),
            Err(StoreError::ClaimLost)
        ));
        assert_eq!(a.get_key(&id).unwrap().unwrap().current_version.0, 1);
        b.release_material(&id, v2).unwrap();
        assert!(a.claim_material(&id, v2, stale).unwrap());
        // Recording the version gives the right back.
        a.add_material(&id, &record, None).unwrap();
        assert!(b.claim_material(&id, v2, stale).unwrap());

        // A claim over material the orphan sweep destroyed (version 3): it keeps a slow
        // maker from recording, yet the next maker takes it at once.
        let v3 = MaterialVersion(3);
        assert!(a.claim_material(&id, v3, stale).unwrap());
        a.abandon_material(&id, v3).unwrap();
        let record3 = crate::store::MaterialRecord {
            version: v3,
            ..record.clone()
        };
        assert!(matches!(
            a.add_material(&id, &record3, None),
            Err(StoreError::ClaimLost)
        ));
        assert!(b.claim_material(&id, v3, stale).unwrap());
        assert!(!a.claim_material(&id, v3, stale).unwrap());
        // Only its holder abandons a claim.
        a.abandon_material(&id, v3).unwrap();
        assert!(!a.claim_material(&id, v3, stale).unwrap());

        // A dead daemon's claim (its connections gone) is taken over at once.
        let v4 = MaterialVersion(4);
        assert!(b.claim_material(&id, v4, stale).unwrap());
        assert!(!a.claim_material(&id, v4, stale).unwrap());
        drop(b);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !a.claim_material(&id, v4, stale).unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "a closed store's claim was not taken over"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A store handle hears the changes other handles announce, not its own (its
    /// daemon's caches are up to date with its own writes).
    #[test]
    fn changes_reach_the_other_handles_only() {
        use crate::store::{Change, PolicyStore};
        let db = testdb::TestDb::start();
        let (a, b) = (
            PostgresStore::connect(db.config(), 2).unwrap(),
            PostgresStore::connect(db.config(), 2).unwrap(),
        );
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let h = std::sync::Arc::clone(&heard);
        a.watch(std::sync::Arc::new(move |c| h.lock().unwrap().push(c)));
        let wait_for = |n: usize| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while heard.lock().unwrap().len() < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{:?}",
                    heard.lock().unwrap()
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        // The listener's first connection: everything may have changed.
        wait_for(1);
        a.put_identity_policy("arn:aws:iam::111122223333:role/own", "p", "{}")
            .unwrap();
        b.put_identity_policy("arn:aws:iam::111122223333:role/other", "p", "{}")
            .unwrap();
        wait_for(2);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(
            *heard.lock().unwrap(),
            vec![
                Change::All,
                Change::Principal("arn:aws:iam::111122223333:role/other".into())
            ]
        );
    }

    /// One daemon leads the sweeps; the lead stays with it while it lives and moves to
    /// another once it is gone (its connection closed, the lock released).
    #[test]
    fn the_lead_is_held_by_one_store_and_moves_when_it_goes() {
        let db = testdb::TestDb::start();
        let a = PostgresStore::connect(db.config(), 2).unwrap();
        let b = PostgresStore::connect(db.config(), 2).unwrap();
        assert!(a.shared() && b.shared());
        assert!(a.lead().unwrap());
        assert!(!b.lead().unwrap());
        assert!(a.lead().unwrap(), "the leader keeps the lead");
        assert!(!b.lead().unwrap());
        drop(a);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !b.lead().unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "the lead did not move"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(b.lead().unwrap());
    }
}
