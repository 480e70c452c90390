//! `[store]`: which backend holds the metadata, and opening it. SQLite (one file, one
//! daemon) or PostgreSQL (one database, several daemons), exactly one of the two.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::postgres::{DbTls, DbTlsFiles};
use super::{PostgresStore, SqliteStore, Store, StoreError};

/// `[store]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// SQLite database file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<PathBuf>,
    /// PostgreSQL connection URL, `postgresql://user@host:port/dbname` (with
    /// `?sslmode=…` and the like), without a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    /// PostgreSQL: the environment variable that holds the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// PostgreSQL: a file that holds the password (a trailing newline is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: connections in the pool (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<usize>,
    /// PostgreSQL: TLS to the database, the server's certificate checked against the
    /// CA certificates in this PEM file and the URL's host name. Without it the
    /// connection is plain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// PostgreSQL with TLS: a client certificate chain (PEM) to present, with
    /// `tls_key_file` (`cert` authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// PostgreSQL with TLS: the client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
}

/// Where the PostgreSQL password comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// No password (trust, peer or certificate authentication).
    None,
    /// An environment variable.
    Env(String),
    /// A file.
    File(PathBuf),
}

/// The store a daemon opens, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres {
        /// The URL as written (it holds no password).
        url: String,
        /// Where the password comes from.
        password: PasswordSource,
        /// Connections in the pool.
        pool_size: usize,
        /// TLS to the database, when configured.
        tls: Option<DbTlsFiles>,
    },
}

/// The default PostgreSQL pool: enough for the vault's blocking calls at full load.
const DEFAULT_POOL: usize = 16;

/// Why `[store]` was refused: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl StoreSection {
    /// Checks the section; `abs` resolves relative paths against the configuration's
    /// directory.
    pub fn check(&self, abs: impl Fn(&Path) -> PathBuf) -> Result<StoreBackend, StoreConfigError> {
        let bad = |field, reason: &str| StoreConfigError {
            field,
            reason: reason.to_owned(),
        };
        match (&self.sqlite, &self.postgres) {
            (Some(path), None) => {
                for (field, set) in [
                    ("store.password_env", self.password_env.is_some()),
                    ("store.password_file", self.password_file.is_some()),
                    ("store.pool_size", self.pool_size.is_some()),
                    ("store.tls_ca_file", self.tls_ca_file.is_some()),
                    ("store.tls_cert_file", self.tls_cert_file.is_some()),
                    ("store.tls_key_file", self.tls_key_file.is_some()),
                ] {
                    if set {
                        return Err(bad(field, "is for store.postgres only"));
                    }
                }
                Ok(StoreBackend::Sqlite(abs(path)))
            }
            (None, Some(url)) => {
                let parsed: tokio_postgres::Config = url.parse().map_err(|e| {
                    bad(
                        "store.postgres",
                        &format!(
                            "not a PostgreSQL URL ({e}); write postgresql://user@host:port/dbname"
                        ),
                    )
                })?;
                if parsed.get_password().is_some() {
                    return Err(bad(
                        "store.postgres",
                        "holds a password: give it in store.password_file or store.password_env instead",
                    ));
                }
                if parsed.get_hosts().is_empty() {
                    return Err(bad("store.postgres", "names no host"));
                }
                let password = match (&self.password_env, &self.password_file) {
                    (None, None) => PasswordSource::None,
                    (Some(v), None) => PasswordSource::Env(v.clone()),
                    (None, Some(f)) => PasswordSource::File(abs(f)),
                    (Some(_), Some(_)) => {
                        return Err(bad(
                            "store.password_env",
                            "give store.password_env or store.password_file, not both",
                        ))
                    }
                };
                let pool_size = match self.pool_size {
                    None => DEFAULT_POOL,
                    Some(n) if (1..=1024).contains(&n) => n,
                    Some(_) => return Err(bad("store.pool_size", "must be 1 to 1024")),
                };
                let tls = self.tls(&parsed, &abs)?;
                Ok(StoreBackend::Postgres {
                    url: url.clone(),
                    password,
                    pool_size,
                    tls,
                })
            }
            _ => Err(bad(
                "store",
                "give exactly one of store.sqlite and store.postgres",
            )),
        }
    }
}

impl StoreSection {
    /// TLS to PostgreSQL: the files, checked against each other and the URL's sslmode
    /// (which p11kms sets itself: require with a CA file, disable without).
    fn tls(
        &self,
        url: &tokio_postgres::Config,
        abs: impl Fn(&Path) -> PathBuf,
    ) -> Result<Option<DbTlsFiles>, StoreConfigError> {
        use tokio_postgres::config::SslMode;
        let bad = |field, reason: &str| StoreConfigError {
            field,
            reason: reason.to_owned(),
        };
        let client = match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((abs(c), abs(k))),
            (Some(_), None) => {
                return Err(bad(
                    "store.tls_key_file",
                    "is needed with store.tls_cert_file",
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "store.tls_cert_file",
                    "is needed with store.tls_key_file",
                ))
            }
        };
        match (&self.tls_ca_file, url.get_ssl_mode()) {
            (Some(_), SslMode::Disable) => Err(bad(
                "store.postgres",
                "says sslmode=disable, but store.tls_ca_file asks for TLS",
            )),
            (None, SslMode::Require) => Err(bad(
                "store.postgres",
                "says sslmode=require: give store.tls_ca_file, the CA that the database's certificate is checked against",
            )),
            (None, _) if client.is_some() => Err(bad(
                "store.tls_cert_file",
                "needs store.tls_ca_file (a client certificate is only sent over TLS)",
            )),
            (None, _) => Ok(None),
            (Some(ca), _) => Ok(Some(DbTlsFiles {
                ca: abs(ca),
                client,
            })),
        }
    }
}

impl StoreBackend {
    /// The configuration field to name in errors about the store.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "store.sqlite",
            Self::Postgres { .. } => "store.postgres",
        }
    }

    /// Opens the store (PostgreSQL: connects, reading the password now, and brings the
    /// schema up to date).
    pub fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            Self::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path)?)),
            Self::Postgres { .. } => Ok(Arc::new(self.connect_postgres()?)),
        }
    }

    /// Connects to the PostgreSQL store (reading the password now) and brings its
    /// schema up to date; Missing for a SQLite backend.
    pub fn connect_postgres(&self) -> Result<PostgresStore, StoreError> {
        let Self::Postgres {
            url,
            password,
            pool_size,
            tls,
        } = self
        else {
            return Err(StoreError::Missing("PostgreSQL store"));
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Database(Box::new(e)))?;
        if let Some(p) = read_password(password)? {
            config.password(p.as_bytes());
        }
        config.application_name("p11kms");
        let tls = match tls {
            Some(files) => DbTls::load(files)?,
            None => DbTls::none(),
        };
        PostgresStore::connect_with(config, *pool_size, tls)
    }
}

fn read_password(source: &PasswordSource) -> Result<Option<Zeroizing<String>>, StoreError> {
    let missing = |what: String| StoreError::Database(what.into());
    match source {
        PasswordSource::None => Ok(None),
        PasswordSource::Env(var) => {
            std::env::var(var)
                .map(|v| Some(Zeroizing::new(v)))
                .map_err(|_| {
                    missing(format!(
                        "the environment variable {var} (store.password_env) is not set"
                    ))
                })
        }
        PasswordSource::File(path) => {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                missing(format!(
                    "cannot read {} (store.password_file): {e}",
                    path.display()
                ))
            })?);
            Ok(Some(Zeroizing::new(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str) -> Result<StoreBackend, StoreConfigError> {
        let s: StoreSection = toml::from_str(toml).unwrap();
        s.check(|p| Path::new("/etc/p11kms").join(p))
    }

    #[test]
    fn exactly_one_backend_and_no_password_in_the_url() {
        assert_eq!(
            check("sqlite = \"kms.db\"").unwrap(),
            StoreBackend::Sqlite("/etc/p11kms/kms.db".into())
        );
        assert_eq!(
            check("postgres = \"postgresql://kms@db:5432/kms\"\npassword_file = \"pw\"").unwrap(),
            StoreBackend::Postgres {
                url: "postgresql://kms@db:5432/kms".into(),
                password: PasswordSource::File("/etc/p11kms/pw".into()),
                pool_size: DEFAULT_POOL,
                tls: None,
            }
        );
        assert_eq!(
            check(
                "postgres = \"postgresql://kms@db/kms?sslmode=require\"\ntls_ca_file = \"db-ca.pem\"\n\
                 tls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\""
            )
            .unwrap(),
            StoreBackend::Postgres {
                url: "postgresql://kms@db/kms?sslmode=require".into(),
                password: PasswordSource::None,
                pool_size: DEFAULT_POOL,
                tls: Some(DbTlsFiles {
                    ca: "/etc/p11kms/db-ca.pem".into(),
                    client: Some(("/etc/p11kms/c.pem".into(), "/etc/p11kms/k.pem".into())),
                }),
            }
        );
        for (toml, field) in [
            ("", "store"),
            ("sqlite = \"a\"\npostgres = \"postgresql://db/k\"", "store"),
            (
                "postgres = \"postgresql://kms:secret@db/kms\"",
                "store.postgres",
            ),
            ("postgres = \"not a url ::\"", "store.postgres"),
            (
                "postgres = \"postgresql://db/k\"\npool_size = 0",
                "store.pool_size",
            ),
            ("sqlite = \"a\"\npool_size = 4", "store.pool_size"),
            (
                "postgres = \"postgresql://db/k\"\npassword_env = \"A\"\npassword_file = \"b\"",
                "store.password_env",
            ),
            ("sqlite = \"a\"\ntls_ca_file = \"ca.pem\"", "store.tls_ca_file"),
            (
                "postgres = \"postgresql://db/k?sslmode=require\"",
                "store.postgres",
            ),
            (
                "postgres = \"postgresql://db/k?sslmode=disable\"\ntls_ca_file = \"ca.pem\"",
                "store.postgres",
            ),
            (
                "postgres = \"postgresql://db/k\"\ntls_ca_file = \"ca.pem\"\ntls_cert_file = \"c.pem\"",
                "store.tls_key_file",
            ),
            (
                "postgres = \"postgresql://db/k\"\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"",
                "store.tls_cert_file",
            ),
        ] {
            let e = check(toml).unwrap_err();
            assert_eq!(e.field, field, "{toml}");
            assert!(!e.reason.contains("secret"), "{}", e.reason);
        }
    }
}
