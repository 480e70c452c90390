//! `p11kms.toml`: the production configuration. Unknown fields are refused and every
//! semantic error names its field, so a typo is a clear start-up error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::ConnectionLimits;
use crate::domain::{AccountId, Partition, Pin, Region};
use crate::hsm::{ModuleEnv, PoolConfig, TokenSelector};
use crate::identity::Principal;
use crate::vault::{TrustedService, GCM_RANDOM_IV_LIMIT};

/// The file as written. Relative paths are relative to the file's directory.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Address to listen on, e.g. "127.0.0.1:7878".
    pub listen: String,
    /// The home account (12 digits): dev certificates are issued for it by default.
    pub account: String,
    /// Region used in key ARNs.
    pub region: String,
    /// ARN partition; "aws" when absent, so that AWS policies work as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Seconds calls in flight get to finish after SIGTERM (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout_secs: Option<u64>,
    /// Server TLS material.
    pub tls: TlsSection,
    /// The PKCS#11 token.
    pub hsm: HsmSection,
    /// Metadata store.
    pub store: StoreSection,
    /// Limits that only tests lower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSection>,
    /// Services that may call on behalf of other principals (kms:ViaService).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_services: Vec<TrustedServiceSection>,
    /// Scheduled lifecycle work (key destruction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleSection>,
    /// The audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSection>,
    /// The metrics and health listener; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSection>,
    /// The AWS KMS protocol listener (AWS JSON 1.1 over HTTPS); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_api: Option<AwsApiSection>,
    /// What a connection may cost on the listeners; defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionsSection>,
    /// The external key stores served to AWS KMS on the AWS API listener; none when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xks: Option<crate::xks::XksSection>,
}

/// `[connections]`: bounds on the connections of every listener (gRPC, AWS JSON and
/// metrics), so that clients that connect and stay silent or slow cannot lock others out.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsSection {
    /// Seconds from a client's TCP connect to the end of its TLS handshake (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout_secs: Option<u64>,
    /// TLS handshakes in progress at once per listener; a new connection over the bound
    /// ends the oldest (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_handshakes: Option<usize>,
    /// Handshakes in progress at once from one IPv4 address or IPv6 /64; a new one from
    /// a source at its bound ends that source's oldest (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_handshakes_per_source: Option<usize>,
    /// Seconds an API connection may stay with no request in flight before it is closed
    /// (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a request's head, and then its body, may take to arrive (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_read_timeout_secs: Option<u64>,
}

/// `[aws_api]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsApiSection {
    /// Address of the AWS JSON listener; 127.0.0.1:7880 when absent. It serves the
    /// daemon's own certificate (`[tls]`); client certificates are optional there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Require a client certificate from `tls.client_ca` (mutual TLS) before SigV4;
    /// false when absent (a certificate is then verified if sent, and not needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_client_certificate: Option<bool>,
}

/// The default AWS JSON address: localhost, after the API's and the metrics' ports.
pub(crate) const DEFAULT_AWS_API_LISTEN: &str = "127.0.0.1:7880";

/// Where the AWS JSON listener serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsApiConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Mutual TLS: a client certificate from `tls.client_ca` is required.
    pub require_client_certificate: bool,
}

/// `[metrics]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address of the `/metrics`, `/healthz` and `/readyz` listener; 127.0.0.1:7879 when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Certificate chain (PEM) to serve it over TLS; give `tls_key` with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

/// The default metrics address: localhost, next to the API's default port.
pub(crate) const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:7879";

/// Where and how the metrics listener serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// TLS files; plain HTTP when `None`.
    pub tls: Option<crate::metrics::MetricsTls>,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Directory of the trail's files; `audit` beside the configuration file when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// "batch" (default: one fsync per batch, before its calls answer) or "none"
    /// (benchmarks only: a crash can lose the last records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// A file is closed and the next begun at this size (default 64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_bytes: Option<u64>,
    /// false turns the trail off: for measuring its cost only, never in production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A signed checkpoint after at most this many records (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_records: Option<u64>,
    /// A signed checkpoint at most this many seconds after the first record it covers
    /// (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_secs: Option<u64>,
    /// Where the checkpoint public key (PEM) is written; `audit-checkpoint.pub.pem` in
    /// `dir` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_public_key: Option<PathBuf>,
}

/// `[lifecycle]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSection {
    /// Seconds between sweeps that destroy keys past their deletion date (default 60).
    pub sweep_interval_secs: Option<u64>,
    /// Testing only: a file holding seconds to add to the clock, read at every use.
    pub clock_offset_file: Option<PathBuf>,
}

/// `[[trusted_services]]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedServiceSection {
    /// The service's principal ARN, as its client certificate names it.
    pub principal: String,
    /// The kms:ViaService name, e.g. "s3.us-east-1.amazonaws.com".
    pub name: String,
    /// The accounts whose principals it may act for (12-digit ids, at least one).
    pub accounts: Vec<String>,
}

/// `[tls]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA whose client certificates are accepted (PEM).
    pub client_ca: PathBuf,
    /// CRLs (PEM) of revoked client certificates: one file or a list. Re-read on SIGHUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_crl: Option<PathList>,
    /// Seconds a client connection may live before the server asks it to reconnect
    /// (HTTP/2 GOAWAY; in-flight calls finish). Bounds how long a revoked certificate
    /// keeps a connection it opened before the revocation. 3600 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_age_secs: Option<u64>,
}

/// A field that takes one path or a list of paths: `f = "a.pem"` or `f = ["a.pem", "b.pem"]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged, expecting = "a path or a list of paths")]
pub enum PathList {
    /// `f = "a.pem"`
    One(PathBuf),
    /// `f = ["a.pem", "b.pem"]`
    Many(Vec<PathBuf>),
}

impl PathList {
    /// The paths, in the order written.
    pub fn paths(&self) -> &[PathBuf] {
        match self {
            Self::One(p) => std::slice::from_ref(p),
            Self::Many(ps) => ps,
        }
    }
}

/// `hsm.env` as written: variable names and values. Its `Debug` shows the names only,
/// since a value may be a secret of the vendor's module.
#[derive(Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct EnvTable(pub std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for EnvTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// `[hsm]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HsmSection {
    /// Path of the vendor's PKCS#11 module (.so).
    pub module: PathBuf,
    /// Token label (give this or `slot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
    /// Slot id (give this or `token_label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    /// Name of the environment variable holding the user PIN (give this or `pin_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_env: Option<String>,
    /// File holding the user PIN (give this or `pin_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
    /// PKCS#11 sessions on worker threads, for slow and long calls; 64 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
    /// PKCS#11 sessions for short calls run inline while the token answers fast; 0 (every
    /// call on the workers) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_sessions: Option<usize>,
    /// Use session copies of token keys (faster on SoftHSM2); true when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_keys: Option<bool>,
    /// The longest an HSM call may take, queueing included, in milliseconds; 5000 when
    /// absent. A call still running then fails its request and its worker is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_timeout_ms: Option<u64>,
    /// How often the token is checked to be the one p11kms's keys were made in, in
    /// milliseconds; 1000 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_ms: Option<u64>,
    /// Environment variables the module reads (e.g. `KRYOPTIC_CONF`), set before it is
    /// loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvTable>,
}

pub(crate) use crate::store::StoreSection;

/// `[limits]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// AES-GCM encryptions per key-material version before new material is made.
    pub max_encryptions_per_material: Option<u64>,
}

/// Where the user PIN comes from. Never argv, never the config file itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// An environment variable.
    Env(String),
    /// A file (trailing newline ignored).
    File(PathBuf),
}

impl PinSource {
    /// Reads the PIN.
    pub fn read(&self) -> Result<Pin, ConfigError> {
        let pin = zeroize::Zeroizing::new(match self {
            Self::Env(var) => std::env::var(var).map_err(|_| ConfigError::Invalid {
                field: "hsm.pin_env",
                reason: format!("environment variable {var} is not set"),
            })?,
            Self::File(path) => {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(m) = std::fs::metadata(path) {
                    if m.permissions().mode() & 0o077 != 0 {
                        tracing::warn!(path = %path.display(), "the PIN file is readable by group or others; chmod 600 it");
                    }
                }
                std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
                    path: path.clone(),
                    source: e,
                })?
            }
        });
        let pin = pin.trim_end_matches(['\n', '\r']).to_owned();
        if pin.is_empty() {
            return Err(ConfigError::Invalid {
                field: "hsm.pin_env/pin_file",
                reason: "the PIN is empty".into(),
            });
        }
        Ok(Pin::new(pin))
    }
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Home account.
    pub account: AccountId,
    /// Region in key ARNs.
    pub region: Region,
    /// ARN partition.
    pub partition: Partition,
    /// Server certificate.
    pub tls_cert: PathBuf,
    /// Server key.
    pub tls_key: PathBuf,
    /// Client CA.
    pub tls_client_ca: PathBuf,
    /// Client CRL files; empty when revocation is not checked.
    pub tls_client_crl: Vec<PathBuf>,
    /// How long a client connection may live before it must reconnect.
    pub max_connection_age: std::time::Duration,
    /// How long calls in flight may run on after a shutdown signal.
    pub shutdown_timeout: std::time::Duration,
    /// The audit trail; `None` when turned off (benchmarks only).
    pub audit: Option<crate::audit::AuditSettings>,
    /// PKCS#11 module path.
    pub module: PathBuf,
    /// The module's environment (`hsm.env`), set before it is loaded.
    pub module_env: ModuleEnv,
    /// Which token.
    pub token: TokenSelector,
    /// Where the PIN comes from.
    pub pin: PinSource,
    /// Worker pool.
    pub pool: PoolConfig,
    /// The metadata store.
    pub store: crate::store::StoreBackend,
    /// IV budget per material version.
    pub max_encryptions_per_material: u64,
    /// Serve the benchmark's echo in place of the API on both listeners (`p11kms serve
    /// --bench-echo`): the transport's ceiling. Never read from a configuration file.
    pub bench_echo: bool,
    /// Services trusted to call on behalf of others.
    pub trusted_services: Vec<TrustedService>,
    /// How often due key deletions run.
    pub sweep_interval: std::time::Duration,
    /// Testing only: the clock's offset file.
    pub clock_offset_file: Option<PathBuf>,
    /// The metrics and health listener; `None` when off.
    pub metrics: Option<MetricsConfig>,
    /// The AWS JSON listener; `None` when off.
    pub aws_api: Option<AwsApiConfig>,
    /// What a connection may cost on every listener.
    pub connections: ConnectionLimits,
    /// The external key stores, served on the AWS API listener or on their own.
    pub xks: Vec<crate::xks::XksStore>,
    /// The external key stores' own listener; `None` when they are served on the AWS
    /// API listener (or there are none).
    pub xks_listener: Option<crate::xks::XksListenerConfig>,
    /// The file this configuration was read from ([`Config::load`]): a reload (SIGHUP)
    /// reads the external key stores from it again.
    pub source: Option<PathBuf>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// Which file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or a field is unknown, missing or of the wrong type. toml's message
    /// names the field and the line.
    #[error("{}: {source}", path.display())]
    Parse {
        /// Which file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: toml::de::Error,
    },
    /// A field has a value we cannot use.
    #[error("invalid configuration field `{field}`: {reason}")]
    Invalid {
        /// The field, as written in the file.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A field of `[[xks.stores]]` has a value we cannot use.
    #[error("invalid configuration field `{}`: {}", .0.field, .0.reason)]
    Xks(crate::xks::XksConfigError),
}

fn invalid(field: &'static str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.to_owned(),
            source: e,
        })?;
        let mut config = Self::parse(&text, path)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and validates the text of a configuration file read from `path` (which
    /// is only named in errors and resolves relative paths; it is not read). What
    /// [`Config::load`] does once it has the text; the config fuzz target calls it.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: e,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_file(file, base)
    }

    /// Validates a parsed file; relative paths are resolved against `base`.
    pub fn from_file(f: ConfigFile, base: &Path) -> Result<Self, ConfigError> {
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let token = match (f.hsm.token_label, f.hsm.slot) {
            (Some(l), None) if !l.is_empty() => TokenSelector::Label(l),
            (None, Some(s)) => TokenSelector::Slot(s),
            _ => {
                return Err(invalid(
                    "hsm.token_label",
                    "give exactly one of hsm.token_label and hsm.slot",
                ))
            }
        };
        let pin = match (f.hsm.pin_env, f.hsm.pin_file) {
            (Some(v), None) if !v.is_empty() => PinSource::Env(v),
            (None, Some(p)) => PinSource::File(abs(&p)),
            _ => {
                return Err(invalid(
                    "hsm.pin_env",
                    "give exactly one of hsm.pin_env and hsm.pin_file",
                ))
            }
        };
        let module_env = module_env(f.hsm.env.unwrap_or_default().0, &pin)?;
        let sessions = f.hsm.sessions.unwrap_or(crate::hsm::DEFAULT_SESSIONS);
        if !(1..=256).contains(&sessions) {
            return Err(invalid("hsm.sessions", "must be between 1 and 256"));
        }
        let inline_sessions = f
            .hsm
            .inline_sessions
            .unwrap_or_else(crate::hsm::default_inline_sessions);
        if inline_sessions > 256 {
            return Err(invalid("hsm.inline_sessions", "must be between 0 and 256"));
        }
        let ms = |v: Option<u64>, default: std::time::Duration, field: &'static str| match v {
            None => Ok(default),
            Some(ms @ 10..=600_000) => Ok(std::time::Duration::from_millis(ms)),
            Some(_) => Err(invalid(
                field,
                "must be between 10 and 600000 (milliseconds)",
            )),
        };
        let call_timeout = ms(
            f.hsm.call_timeout_ms,
            crate::hsm::DEFAULT_CALL_TIMEOUT,
            "hsm.call_timeout_ms",
        )?;
        let health_check = ms(
            f.hsm.health_check_ms,
            crate::hsm::DEFAULT_HEALTH_CHECK,
            "hsm.health_check_ms",
        )?;
        let max = f
            .limits
            .and_then(|l| l.max_encryptions_per_material)
            .unwrap_or(GCM_RANDOM_IV_LIMIT);
        if !(1..=GCM_RANDOM_IV_LIMIT).contains(&max) {
            return Err(invalid(
                "limits.max_encryptions_per_material",
                format!("must be between 1 and {GCM_RANDOM_IV_LIMIT} (the NIST SP 800-38D bound for random IVs)"),
            ));
        }
        let lifecycle = f.lifecycle.unwrap_or_default();
        let sweep = lifecycle.sweep_interval_secs.unwrap_or(60);
        if !(1..=86_400).contains(&sweep) {
            return Err(invalid(
                "lifecycle.sweep_interval_secs",
                "must be between 1 and 86400",
            ));
        }
        let tls_client_crl = match &f.tls.client_crl {
            // An empty list would silently turn revocation checking off.
            Some(l) if l.paths().is_empty() => {
                return Err(invalid(
                    "tls.client_crl",
                    "give at least one file, or leave the field out",
                ))
            }
            Some(l) => l.paths().iter().map(|p| abs(p)).collect(),
            None => Vec::new(),
        };
        let max_connection_age = f.tls.max_connection_age_secs.unwrap_or(3600);
        if !(1..=604_800).contains(&max_connection_age) {
            return Err(invalid(
                "tls.max_connection_age_secs",
                "must be between 1 and 604800 (a week)",
            ));
        }
        let shutdown_timeout = f.shutdown_timeout_secs.unwrap_or(30);
        if shutdown_timeout > 3600 {
            return Err(invalid(
                "shutdown_timeout_secs",
                "must be at most 3600 (an hour)",
            ));
        }
        let audit_section = f.audit.unwrap_or_default();
        let audit_dir = abs(audit_section.dir.as_deref().unwrap_or(Path::new("audit")));
        let audit = crate::audit::AuditSettings {
            checkpoint: crate::audit::CheckpointSettings {
                every_records: match audit_section.checkpoint_records {
                    None => 10_000,
                    Some(n) if (1..=1_000_000).contains(&n) => n,
                    Some(_) => {
                        return Err(invalid(
                            "audit.checkpoint_records",
                            "must be between 1 and 1000000",
                        ))
                    }
                },
                every: std::time::Duration::from_secs(match audit_section.checkpoint_secs {
                    None => 60,
                    Some(n) if (1..=86_400).contains(&n) => n,
                    Some(_) => {
                        return Err(invalid(
                            "audit.checkpoint_secs",
                            "must be between 1 and 86400 (a day)",
                        ))
                    }
                }),
                public_key_file: match &audit_section.checkpoint_public_key {
                    Some(p) => abs(p),
                    None => audit_dir.join(crate::audit::CHECKPOINT_PUBLIC_KEY_FILE),
                },
            },
            dir: audit_dir,
            sync: match audit_section.sync.as_deref() {
                None | Some("batch") => crate::audit::SyncMode::Batch,
                Some("none") => crate::audit::SyncMode::None,
                Some(_) => {
                    return Err(invalid(
                        "audit.sync",
                        "must be \"batch\" (durable before each call answers) or \"none\" (benchmarks only)",
                    ))
                }
            },
            max_file_bytes: match audit_section.max_file_bytes {
                None => 64 << 20,
                Some(n) if n >= 4096 => n,
                Some(_) => {
                    return Err(invalid("audit.max_file_bytes", "must be at least 4096"))
                }
            },
        };
        let metrics = match f.metrics {
            None => None,
            Some(m) => Some(MetricsConfig {
                listen: m
                    .listen
                    .as_deref()
                    .unwrap_or(DEFAULT_METRICS_LISTEN)
                    .parse()
                    .map_err(|e| {
                        invalid(
                            "metrics.listen",
                            format!("{e}; write an address such as {DEFAULT_METRICS_LISTEN}"),
                        )
                    })?,
                tls: match (m.tls_cert, m.tls_key) {
                    (None, None) => None,
                    (Some(cert), Some(key)) => Some(crate::metrics::MetricsTls {
                        cert: abs(&cert),
                        key: abs(&key),
                    }),
                    _ => {
                        return Err(invalid(
                            "metrics.tls_cert",
                            "give both metrics.tls_cert and metrics.tls_key, or neither",
                        ))
                    }
                },
            }),
        };
        let aws_api = match f.aws_api {
            None => None,
            Some(a) => Some(AwsApiConfig {
                listen: a
                    .listen
                    .as_deref()
                    .unwrap_or(DEFAULT_AWS_API_LISTEN)
                    .parse()
                    .map_err(|e| {
                        invalid(
                            "aws_api.listen",
                            format!("{e}; write an address such as {DEFAULT_AWS_API_LISTEN}"),
                        )
                    })?,
                require_client_certificate: a.require_client_certificate.unwrap_or(false),
            }),
        };
        let connections = connection_limits(f.connections.unwrap_or_default())?;
        let mut xks_section = f.xks.unwrap_or_default();
        for store in &mut xks_section.stores {
            for c in &mut store.credentials {
                c.secret_file = abs(&c.secret_file);
            }
        }
        for p in [
            &mut xks_section.tls_cert,
            &mut xks_section.tls_key,
            &mut xks_section.client_ca,
        ]
        .into_iter()
        .flatten()
        {
            *p = abs(p);
        }
        let region: Region = f.region.parse().map_err(|e| invalid("region", e))?;
        let xks = crate::xks::load(&xks_section, &region).map_err(ConfigError::Xks)?;
        let xks_listener = crate::xks::listener(&xks_section, &xks).map_err(ConfigError::Xks)?;
        if !xks.is_empty() && xks_listener.is_none() && aws_api.is_none() {
            return Err(invalid(
                "xks.stores",
                "external key stores are served on the AWS API listener unless xks.listen \
                 gives them their own: add [aws_api] or xks.listen",
            ));
        }
        let mut trusted_services = Vec::new();
        for s in f.trusted_services {
            s.principal
                .parse::<Principal>()
                .map_err(|e| invalid("trusted_services.principal", e))?;
            if s.name.is_empty() {
                return Err(invalid("trusted_services.name", "must not be empty"));
            }
            if s.accounts.is_empty() {
                return Err(invalid(
                    "trusted_services.accounts",
                    "name at least one account whose principals the service may act for",
                ));
            }
            let accounts = s
                .accounts
                .iter()
                .map(|a| a.parse::<AccountId>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("trusted_services.accounts", e))?;
            trusted_services.push(TrustedService {
                principal: s.principal,
                name: s.name,
                accounts,
            });
        }
        Ok(Self {
            metrics,
            aws_api,
            xks,
            xks_listener,
            source: None,
            connections,
            trusted_services,
            sweep_interval: std::time::Duration::from_secs(sweep),
            clock_offset_file: lifecycle.clock_offset_file.as_deref().map(abs),
            listen: f.listen.parse().map_err(|e| {
                invalid(
                    "listen",
                    format!("{e}; write an address such as 127.0.0.1:7878"),
                )
            })?,
            account: f.account.parse().map_err(|e| invalid("account", e))?,
            region,
            partition: match f.partition {
                Some(p) => p.parse().map_err(|e| invalid("partition", e))?,
                None => Partition::default(),
            },
            tls_cert: abs(&f.tls.cert),
            tls_key: abs(&f.tls.key),
            tls_client_ca: abs(&f.tls.client_ca),
            tls_client_crl,
            max_connection_age: std::time::Duration::from_secs(max_connection_age),
            shutdown_timeout: std::time::Duration::from_secs(shutdown_timeout),
            audit: audit_section.enabled.unwrap_or(true).then_some(audit),
            module: abs(&f.hsm.module),
            module_env,
            token,
            pin,
            pool: PoolConfig {
                sessions,
                inline_sessions,
                copy_keys: f.hsm.copy_keys.unwrap_or(true),
                call_timeout,
                health_check,
                ..PoolConfig::default()
            },
            store: f.store.check(abs).map_err(|e| invalid(e.field, e.reason))?,
            max_encryptions_per_material: max,
            bench_echo: false,
        })
    }
}

/// At most this many variables in `hsm.env`.
const MAX_MODULE_ENV: usize = 64;

/// Validates `hsm.env`. Names are identifiers (what a shell can export), never one the
/// daemon reads itself: `P11KMS_…`, `RUST_LOG`, or the PIN's variable, which would put
/// the PIN into the configuration file. Values are passed as written (relative paths
/// are not resolved: the daemon cannot tell a path from any other value) and must not
/// hold a NUL byte. Error messages name variables, never values.
fn module_env(
    vars: std::collections::BTreeMap<String, String>,
    pin: &PinSource,
) -> Result<ModuleEnv, ConfigError> {
    if vars.len() > MAX_MODULE_ENV {
        return Err(invalid(
            "hsm.env",
            format!("at most {MAX_MODULE_ENV} variables"),
        ));
    }
    for (name, value) in &vars {
        let mut chars = name.chars();
        let identifier = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            return Err(invalid(
                "hsm.env",
                format!("{name:?} is not a variable name: use letters, digits and _, not starting with a digit"),
            ));
        }
        if name.starts_with("P11KMS_") || name == "RUST_LOG" {
            return Err(invalid(
                "hsm.env",
                format!("{name} is the daemon's own variable, not the module's; set it in the daemon's environment"),
            ));
        }
        if matches!(pin, PinSource::Env(var) if var == name) {
            return Err(invalid(
                "hsm.env",
                format!("{name} holds the PIN (hsm.pin_env); the PIN never goes into the configuration file"),
            ));
        }
        if value.contains('\0') {
            return Err(invalid(
                "hsm.env",
                format!("the value of {name} holds a NUL byte"),
            ));
        }
    }
    Ok(ModuleEnv::new(vars.into_iter().collect()))
}

/// Validates `[connections]`, filling in the defaults.
fn connection_limits(c: ConnectionsSection) -> Result<ConnectionLimits, ConfigError> {
    use crate::api::{
        DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_PENDING_HANDSHAKES,
        DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE, DEFAULT_REQUEST_READ_TIMEOUT,
        MAX_PENDING_HANDSHAKES_LIMIT,
    };
    let handshake_timeout = match c.handshake_timeout_secs {
        None => DEFAULT_HANDSHAKE_TIMEOUT,
        Some(n) if (1..=60).contains(&n) => Duration::from_secs(n),
        Some(_) => {
            return Err(invalid(
                "connections.handshake_timeout_secs",
                "must be between 1 and 60",
            ))
        }
    };
    let max_pending_handshakes = c
        .max_pending_handshakes
        .unwrap_or(DEFAULT_MAX_PENDING_HANDSHAKES);
    if !(1..=MAX_PENDING_HANDSHAKES_LIMIT).contains(&max_pending_handshakes) {
        return Err(invalid(
            "connections.max_pending_handshakes",
            format!("must be between 1 and {MAX_PENDING_HANDSHAKES_LIMIT} (half the AWS JSON listener's 4096 connections)"),
        ));
    }
    let max_pending_handshakes_per_source = match c.max_pending_handshakes_per_source {
        // A smaller total lowers the default with it.
        None => DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE.min(max_pending_handshakes),
        Some(n) if (1..=max_pending_handshakes).contains(&n) => n,
        Some(_) => {
            return Err(invalid(
                "connections.max_pending_handshakes_per_source",
                "must be between 1 and connections.max_pending_handshakes",
            ))
        }
    };
    let idle_timeout = match c.idle_timeout_secs {
        None => DEFAULT_IDLE_TIMEOUT,
        Some(n) if (1..=86_400).contains(&n) => Duration::from_secs(n),
        Some(_) => {
            return Err(invalid(
                "connections.idle_timeout_secs",
                "must be between 1 and 86400 (a day)",
            ))
        }
    };
    let request_read_timeout = match c.request_read_timeout_secs {
        None => DEFAULT_REQUEST_READ_TIMEOUT,
        Some(n) if (1..=3600).contains(&n) => Duration::from_secs(n),
        Some(_) => {
            return Err(invalid(
                "connections.request_read_timeout_secs",
                "must be between 1 and 3600 (an hour)",
            ))
        }
    };
    Ok(ConnectionLimits {
        handshake_timeout,
        max_pending_handshakes,
        max_pending_handshakes_per_source,
        idle_timeout,
        request_read_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:7878"
account = "111122223333"
region = "us-east-1"
[tls]
cert = "server.pem"
key = "server.key"
client_ca = "ca.pem"
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "p11kms"
pin_env = "P11KMS_PIN"
[store]
sqlite = "p11kms.db"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/p11kms/t.toml"))
    }

    #[test]
    fn a_good_file_resolves_relative_paths() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.tls_cert, Path::new("/etc/p11kms/server.pem"));
        assert_eq!(c.pin, PinSource::Env("P11KMS_PIN".into()));
        assert_eq!(c.token, TokenSelector::Label("p11kms".into()));
        assert_eq!(c.max_encryptions_per_material, GCM_RANDOM_IV_LIMIT);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (GOOD.replace("listen", "lisen"), "lisen"),
            (GOOD.replace("111122223333", "1111"), "account"),
            (GOOD.replace("127.0.0.1:7878", "localhost"), "listen"),
            (GOOD.replace("pin_env = \"P11KMS_PIN\"", ""), "hsm.pin_env"),
            (
                GOOD.replace(
                    "token_label = \"p11kms\"",
                    "token_label = \"p11kms\"\nslot = 1",
                ),
                "hsm.token_label",
            ),
            (GOOD.replace("us-east-1", "US East"), "region"),
            (
                format!("{GOOD}\n[limits]\nmax_encryptions_per_material = 0\n"),
                "limits.max_encryptions_per_material",
            ),
            (GOOD.replace("[store]\nsqlite = \"p11kms.db\"", ""), "store"),
            (
                format!("{GOOD}\n[metrics]\nlisten = \"localhost:1\"\n"),
                "metrics.listen",
            ),
            (
                format!("{GOOD}\n[metrics]\ntls_cert = \"m.pem\"\n"),
                "metrics.tls_cert",
            ),
            (
                format!("{GOOD}\n[aws_api]\nlisten = \"localhost:1\"\n"),
                "aws_api.listen",
            ),
            (
                format!("{GOOD}\n[connections]\nhandshake_timeout_secs = 0\n"),
                "connections.handshake_timeout_secs",
            ),
            (
                format!("{GOOD}\n[connections]\nrequest_read_timeout_secs = 0\n"),
                "connections.request_read_timeout_secs",
            ),
            (
                format!("{GOOD}\n[connections]\nidle_timeout_secs = 0\n"),
                "connections.idle_timeout_secs",
            ),
            (
                format!("{GOOD}\n[connections]\nmax_pending_handshakes = 5000\n"),
                "connections.max_pending_handshakes",
            ),
            (
                format!("{GOOD}\n[connections]\nmax_pending_handshakes = 10\nmax_pending_handshakes_per_source = 11\n"),
                "connections.max_pending_handshakes_per_source",
            ),
        ];
        for (text, field) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn module_env_is_taken_in_order_and_shows_only_its_names() {
        let c = parse(&GOOD.replace(
            "[store]",
            "env = { KRYOPTIC_CONF = \"/etc/kryoptic.conf\", A_SECRET = \"s3cr3t\" }\n[store]",
        ))
        .unwrap();
        let names: Vec<&str> = c.module_env.names().collect();
        assert_eq!(names, ["A_SECRET", "KRYOPTIC_CONF"]);
        let shown = format!("{c:?}");
        assert!(shown.contains("KRYOPTIC_CONF"), "{shown}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("/etc/kryoptic.conf"));
        assert_eq!(parse(GOOD).unwrap().module_env, ModuleEnv::default());
        // The file's own form too.
        let file: ConfigFile =
            toml::from_str(&GOOD.replace("[store]", "env = { A_SECRET = \"s3cr3t\" }\n[store]"))
                .unwrap();
        let shown = format!("{:?}", file.hsm);
        assert!(
            shown.contains("A_SECRET") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn module_env_refuses_bad_names_the_daemons_own_and_the_pin() {
        for (env, why) in [
            ("\"1X\" = \"v\"", "not a variable name"),
            ("\"A-B\" = \"v\"", "not a variable name"),
            ("\"\" = \"v\"", "not a variable name"),
            ("P11KMS_DEV_DIR = \"v\"", "daemon's own"),
            ("RUST_LOG = \"debug\"", "daemon's own"),
            ("P11KMS_PIN = \"1234\"", "daemon's own"),
            ("X = \"a\\u0000b\"", "NUL"),
        ] {
            let text = GOOD.replace("[store]", &format!("env = {{ {env} }}\n[store]"));
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("hsm.env") && err.contains(why), "{env}: {err}");
            assert!(!err.contains("1234") && !err.contains("debug"), "{err}");
        }
        let pin_in_env = GOOD
            .replace("P11KMS_PIN", "VENDOR_PIN")
            .replace("[store]", "env = { VENDOR_PIN = \"1234\" }\n[store]");
        let err = parse(&pin_in_env).unwrap_err().to_string();
        assert!(
            err.contains("holds the PIN") && !err.contains("1234"),
            "{err}"
        );
    }

    #[test]
    fn connection_limits_default_and_a_smaller_total_lowers_the_per_source_bound() {
        let d = parse(GOOD).unwrap().connections;
        assert_eq!(d, ConnectionLimits::default());
        assert_eq!(d.handshake_timeout, Duration::from_secs(5));
        assert_eq!(d.idle_timeout, Duration::from_secs(300));
        assert_eq!(d.request_read_timeout, Duration::from_secs(30));
        assert_eq!(
            (
                d.max_pending_handshakes,
                d.max_pending_handshakes_per_source
            ),
            (1024, 256)
        );
        let small = parse(&format!(
            "{GOOD}\n[connections]\nhandshake_timeout_secs = 2\nmax_pending_handshakes = 100\n"
        ))
        .unwrap()
        .connections;
        assert_eq!(small.handshake_timeout, Duration::from_secs(2));
        assert_eq!(small.max_pending_handshakes_per_source, 100);
    }

    #[test]
    fn aws_api_is_off_unless_configured_and_defaults_to_localhost() {
        assert_eq!(parse(GOOD).unwrap().aws_api, None);
        let on = parse(&format!("{GOOD}\n[aws_api]\n"))
            .unwrap()
            .aws_api
            .unwrap();
        assert_eq!(on.listen, DEFAULT_AWS_API_LISTEN.parse().unwrap());
    }

    #[test]
    fn metrics_are_off_unless_configured_and_default_to_localhost() {
        assert_eq!(parse(GOOD).unwrap().metrics, None);
        let on = parse(&format!("{GOOD}\n[metrics]\n"))
            .unwrap()
            .metrics
            .unwrap();
        assert_eq!(on.listen, DEFAULT_METRICS_LISTEN.parse().unwrap());
        assert_eq!(on.tls, None);
        let tls = parse(&format!(
            "{GOOD}\n[metrics]\nlisten = \"0.0.0.0:9100\"\ntls_cert = \"m.pem\"\ntls_key = \"m.key\"\n"
        ))
        .unwrap()
        .metrics
        .unwrap();
        assert_eq!(tls.listen.port(), 9100);
        assert_eq!(
            tls.tls.unwrap().key,
            Path::new("/etc/p11kms/m.key"),
            "relative to the file"
        );
    }

    #[test]
    fn client_crl_is_one_path_or_a_list() {
        assert!(parse(GOOD).unwrap().tls_client_crl.is_empty());
        let one = GOOD.replace(
            "client_ca = \"ca.pem\"",
            "client_ca = \"ca.pem\"\nclient_crl = \"a.pem\"",
        );
        assert_eq!(
            parse(&one).unwrap().tls_client_crl,
            [Path::new("/etc/p11kms/a.pem")]
        );
        let many = GOOD.replace(
            "client_ca = \"ca.pem\"",
            "client_ca = \"ca.pem\"\nclient_crl = [\"a.pem\", \"/crl/b.pem\"]",
        );
        assert_eq!(
            parse(&many).unwrap().tls_client_crl,
            [Path::new("/etc/p11kms/a.pem"), Path::new("/crl/b.pem")]
        );
        for bad in ["[]", "3", "[\"a.pem\", 3]"] {
            let text = GOOD.replace(
                "client_ca = \"ca.pem\"",
                &format!("client_ca = \"ca.pem\"\nclient_crl = {bad}"),
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("client_crl"), "{bad}: {err}");
        }
    }

    #[test]
    fn pin_is_read_from_a_file_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "1234\n").unwrap();
        assert_eq!(PinSource::File(p).read().unwrap().expose(), "1234");
    }
}
