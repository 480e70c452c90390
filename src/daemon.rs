//! Start-up: configuration → HSM (load, find token, probe, log in, start the pool) →
//! store → vault → TLS → listener. Everything that can be wrong with a deployment is
//! found here, before the first request, with a message that says what to fix.
//! While serving, a reload signal (SIGHUP) rebuilds the TLS configurations from their files
//! and reads the external key stores (`[[xks.stores]]`) from the configuration file again.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::signal::unix::Signal;
use tokio::sync::watch;
use tracing::info;

use crate::api;
use crate::audit::{CheckpointSigner, SignError};
use crate::config::{Config, ConfigError};
use crate::hsm::{EcSigner, HsmError, HsmPool, Module, PoolConfig, SigningKeyName};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::vault::{OffsetFileClock, SystemClock, Vault, VaultSettings};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad configuration or unreadable PIN.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The PKCS#11 module or token.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// The metadata store.
    #[error("cannot open the metadata store: {0}")]
    Store(#[from] StoreError),
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] api::TlsError),
    /// The listen address.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The metrics listener's TLS material.
    #[error(transparent)]
    MetricsTls(#[from] crate::metrics::HttpError),
    /// The vault could not be built.
    #[error("cannot set up the vault")]
    Vault(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A failure traced to one configuration field.
    #[error("configuration field `{field}`")]
    Field {
        /// The field, as written in p11kms.toml.
        field: &'static str,
        /// What went wrong there.
        #[source]
        source: Box<DaemonError>,
    },
}

/// CKA_ID of the audit checkpoint key pair (both halves). Unlike a material's 20-byte
/// id, it can never be a key id.
pub(crate) const CHECKPOINT_KEY_ID: &[u8] = b"p11kms-audit-checkpoint-v1";
/// CKA_LABEL of the audit checkpoint key pair.
pub(crate) const CHECKPOINT_KEY_LABEL: &str = "p11kms/audit-checkpoint";

/// The audit writer's signer: the checkpoint key in the token, on a session of its own.
struct HsmCheckpointSigner(EcSigner);

impl CheckpointSigner for HsmCheckpointSigner {
    fn public_point(&self) -> Vec<u8> {
        self.0.public_point().to_vec()
    }

    fn sign(&mut self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
        let digest: &[u8; 32] = digest
            .as_ref()
            .try_into()
            .map_err(|_| "SHA-256 gave other than 32 bytes")?;
        Ok(self.0.sign_digest(digest)?)
    }
}

/// A daemon ready to serve: the HSM is logged in, the store open, the port bound.
pub struct Prepared {
    vault: Arc<Vault>,
    audit: Option<crate::audit::AuditTrail>,
    shutdown_timeout: std::time::Duration,
    bench_echo: bool,
    sweep_interval: std::time::Duration,
    pool: HsmPool,
    module: Module,
    tls: Arc<rustls::ServerConfig>,
    tls_files: api::TlsFiles,
    max_connection_age: std::time::Duration,
    connections: api::ConnectionLimits,
    listener: std::net::TcpListener,
    metrics: Metrics,
    metrics_listener: Option<MetricsListener>,
    aws_listener: Option<AwsListener>,
    xks_listener: Option<XksListener>,
    /// The external key stores, their secrets read.
    xks_stores: Arc<[crate::xks::XksStore]>,
    /// The configuration file, whose stores a reload reads again.
    config_source: Option<std::path::PathBuf>,
}

/// The bound listener of the external key stores, when they have their own.
struct XksListener {
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    /// What its TLS configuration is rebuilt from at a reload.
    config: crate::xks::XksListenerConfig,
}

/// The bound AWS JSON listener and its TLS configuration.
struct AwsListener {
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    /// `[aws_api] require_client_certificate`, for reloads.
    require_client_cert: bool,
    /// Whether the external key stores are served on it (they have no listener of
    /// their own).
    serves_xks: bool,
}

/// The bound metrics listener and its TLS configuration, if any.
struct MetricsListener {
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Names the configuration field behind a start-up failure.
fn at<E: Into<DaemonError>>(field: &'static str) -> impl FnOnce(E) -> DaemonError {
    move |e| DaemonError::Field {
        field,
        source: Box::new(e.into()),
    }
}

/// Connections the kernel completes and queues for a listener before it accepts them
/// (Linux caps it at `net.core.somaxconn`, 4096 by default). std's 128 overflows when a
/// burst of connections meets a busy runtime, and a connection whose SYN finds the queue
/// full waits a whole second for its retry: 1,000 silent sockets opened on a loaded
/// 2-core machine were enough.
const ACCEPT_BACKLOG: i32 = 4096;

/// Binds `addr` for a runtime listener (non-blocking); an error names the address.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, DaemonError> {
    use socket2::{Domain, Socket, Type};
    let bound = Socket::new(Domain::for_address(addr), Type::STREAM, None).and_then(|s| {
        // As std does: a restart may bind while the last run's connections linger.
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(ACCEPT_BACKLOG)?;
        s.set_nonblocking(true)?;
        Ok(std::net::TcpListener::from(s))
    });
    bound.map_err(|source| DaemonError::Bind { addr, source })
}

/// Hands a listener bound by [`bind`] to the runtime.
fn to_tokio(listener: std::net::TcpListener) -> Result<tokio::net::TcpListener, DaemonError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    tokio::net::TcpListener::from_std(listener).map_err(|source| DaemonError::Bind { addr, source })
}

/// Does every start-up step that can fail. Blocking; call before serving.
pub fn prepare(config: &Config) -> Result<Prepared, DaemonError> {
    let pin_field = match config.pin {
        crate::config::PinSource::Env(_) => "hsm.pin_env",
        crate::config::PinSource::File(_) => "hsm.pin_file",
    };
    let token_field = match config.token {
        crate::hsm::TokenSelector::Label(_) => "hsm.token_label",
        crate::hsm::TokenSelector::Slot(_) => "hsm.slot",
    };
    let pin = config.pin.read().map_err(at(pin_field))?;
    let module =
        Module::load_with_env(&config.module, &config.module_env).map_err(at("hsm.module"))?;
    let slot = module.find_slot(&config.token).map_err(at(token_field))?;
    module.probe_mechanisms(slot).map_err(at("hsm.module"))?;
    module.check_login(slot, &pin).map_err(at(pin_field))?;
    // Before anything decrypts: which code this token gives a damaged tag.
    module.tag_failure(slot, &pin).map_err(at("hsm.module"))?;
    module
        .ensure_secret_seal_key(slot, &pin)
        .map_err(at("hsm.module"))?;
    // One registry for the whole daemon, handed to each part that records into it.
    let metrics = Metrics::new();
    let pool_config = PoolConfig {
        metrics: metrics.clone(),
        token: Some(config.token.clone()),
        ..config.pool.clone()
    };
    let pool =
        HsmPool::start(&module, slot, pin.clone(), &pool_config).map_err(at("hsm.sessions"))?;
    let pool_handle = pool.clone();
    info!(sessions = pool.size(), token = %config.token, "HSM pool started");
    let store = config.store.open().map_err(at(config.store.field()))?;
    let vault = Vault::new(
        pool,
        store,
        VaultSettings {
            partition: config.partition.clone(),
            region: config.region.clone(),
            max_encryptions_per_material: config.max_encryptions_per_material,
            trusted_services: config.trusted_services.clone(),
            clock: match &config.clock_offset_file {
                Some(path) => {
                    // Whoever can write this file can move deletion dates: say so loudly.
                    tracing::warn!(
                        file = %path.display(),
                        "lifecycle.clock_offset_file is set: key deletion and rotation follow a test clock; leave it out in production"
                    );
                    Arc::new(OffsetFileClock::new(path.clone()))
                }
                None => Arc::new(SystemClock),
            },
        },
    )
    .map_err(|e| at(config.store.field())(DaemonError::Vault(e)))?
    .with_metrics(metrics.clone());
    let (vault, audit) = match &config.audit {
        Some(audit) => {
            let signer = EcSigner::ensure(
                &module,
                pool_handle.health(),
                pin,
                SigningKeyName {
                    id: CHECKPOINT_KEY_ID.to_vec(),
                    label: CHECKPOINT_KEY_LABEL.into(),
                },
            )
            .map_err(at("hsm.module"))?;
            let trail = crate::audit::AuditTrail::open(
                audit.clone(),
                Box::new(HsmCheckpointSigner(signer)),
                &metrics,
            )
            .map_err(|e| {
                // A fault of the public key file is that field's, not the directory's.
                let field = match e
                    .get_ref()
                    .map(|inner| inner.is::<crate::audit::CheckpointError>())
                {
                    Some(true) => "audit.checkpoint_public_key",
                    _ => "audit.dir",
                };
                at(field)(DaemonError::Vault(Box::new(e)))
            })?;
            info!(
                dir = %audit.dir.display(),
                checkpoint_public_key = %audit.checkpoint.public_key_file.display(),
                "audit trail open"
            );
            (vault.with_audit(trail.clone()), Some(trail))
        }
        None => {
            tracing::warn!(
                "audit.enabled is false: no call is recorded; for measuring the trail's cost only"
            );
            (vault, None)
        }
    };
    let tls_files = api::TlsFiles {
        cert: config.tls_cert.clone(),
        key: config.tls_key.clone(),
        client_ca: config.tls_client_ca.clone(),
        client_crl: config.tls_client_crl.clone(),
    };
    let tls = tls_files.server_config().map_err(|e| at(e.field())(e))?;
    let listener = bind(config.listen).map_err(at("listen"))?;
    let metrics_listener = match &config.metrics {
        None => None,
        Some(m) => {
            let tls = match &m.tls {
                Some(files) => Some(files.server_config().map_err(|e| at(e.field())(e))?),
                None => None,
            };
            let listener = bind(m.listen).map_err(at("metrics.listen"))?;
            Some(MetricsListener { listener, tls })
        }
    };
    let stores: Arc<[crate::xks::XksStore]> = {
        let mut stores = config.xks.clone();
        crate::xks::read_secrets(&mut stores).map_err(ConfigError::Xks)?;
        stores.into()
    };
    let xks_listener = match &config.xks_listener {
        None => None,
        Some(x) => Some(XksListener {
            tls: crate::xks::server_config(x, &tls_files.cert, &tls_files.key)
                .map_err(|e| at("xks")(e))?,
            listener: bind(x.listen).map_err(at("xks.listen"))?,
            config: x.clone(),
        }),
    };
    let aws_listener = match &config.aws_api {
        None => None,
        Some(a) => Some(AwsListener {
            tls: tls_files
                .aws_api_config(a.require_client_certificate)
                .map_err(|e| at(e.field())(e))?,
            listener: bind(a.listen).map_err(at("aws_api.listen"))?,
            require_client_cert: a.require_client_certificate,
            serves_xks: xks_listener.is_none(),
        }),
    };
    let vault = Arc::new(vault);
    Ok(Prepared {
        metrics,
        metrics_listener,
        aws_listener,
        xks_listener,
        xks_stores: stores,
        config_source: config.source.clone(),
        vault,
        audit,
        shutdown_timeout: config.shutdown_timeout,
        bench_echo: config.bench_echo,
        sweep_interval: config.sweep_interval,
        pool: pool_handle,
        module,
        tls,
        tls_files,
        max_connection_age: config.max_connection_age,
        connections: config.connections,
        listener,
    })
}

impl Prepared {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The metrics listener's bound address and whether it speaks TLS, when it is on.
    pub fn metrics_addr(&self) -> Option<(SocketAddr, bool)> {
        let m = self.metrics_listener.as_ref()?;
        Some((m.listener.local_addr().ok()?, m.tls.is_some()))
    }

    /// The AWS JSON listener's bound address, when it is on.
    pub fn aws_api_addr(&self) -> Option<SocketAddr> {
        self.aws_listener.as_ref()?.listener.local_addr().ok()
    }

    /// The external key stores' own listener's bound address, when they have one.
    pub fn xks_addr(&self) -> Option<SocketAddr> {
        self.xks_listener.as_ref()?.listener.local_addr().ok()
    }

    /// Dev mode: makes the p11kms key behind the dev external key store's keys (a key
    /// and its alias, as `principal`) when its alias is missing. Both calls are
    /// audited, as the daemon's own work; the look for the alias is a lookup, not a
    /// call (no authorization, nothing to record).
    pub async fn dev_xks_key(&self, principal: &str) -> Result<(), DaemonError> {
        use crate::vault::{CreateKeyInput, KmsError, RequestInfo, Transport};
        let failed = |e: KmsError| DaemonError::Vault(Box::new(e));
        let target: crate::identity::Principal = principal
            .parse()
            .map_err(|e| DaemonError::Vault(Box::new(e)))?;
        let alias = crate::dev::DEV_XKS_ALIAS;
        let caller = self
            .vault
            .caller(target.clone(), None, None)
            .map_err(failed)?;
        match self.vault.resolve(&caller, alias).await {
            Ok(_) => return Ok(()),
            Err(KmsError::NotFound(_)) => {}
            Err(e) => return Err(failed(e)),
        }
        let info = |operation| RequestInfo {
            operation,
            transport: Transport::Background,
            key_id: String::new(),
            source_ip: None,
        };
        let vault = &self.vault;
        let identify = || async { vault.caller(target.clone(), None, None) };
        let (made, _) = vault
            .run(info("CreateKey"), identify(), |c| async move {
                let input = CreateKeyInput {
                    description: "the dev external key store's key".into(),
                    key_usage: String::new(),
                    key_spec: String::new(),
                    origin: String::new(),
                    policy: String::new(),
                    bypass_policy_lockout_safety_check: false,
                };
                vault.create_key(&c, input).await
            })
            .await;
        let key_id = made.map_err(failed)?.key_id.to_string();
        let (aliased, _) = vault
            .run(info("CreateAlias"), identify(), |c| async move {
                vault.create_alias(&c, alias, &key_id).await
            })
            .await;
        aliased.map_err(failed)
    }

    /// Dev mode: the admin's access key for the AWS environment file. `kept` (the key
    /// the file held) is returned as it is while it still authenticates as `principal`;
    /// otherwise (first start, or the key was deleted) a new one is issued.
    pub async fn dev_access_key(
        &self,
        principal: &str,
        kept: Option<crate::dev::DevAccessKey>,
    ) -> Result<crate::dev::DevAccessKey, DaemonError> {
        let failed = |e: crate::vault::KmsError| DaemonError::Vault(Box::new(e));
        if let Some(k) = kept {
            let known = self.vault.access_key_secret(&k.id).await.map_err(failed)?;
            if known.is_some_and(|s| s.principal.arn() == principal && s.secret == k.secret) {
                return Ok(k);
            }
        }
        let target: crate::identity::Principal = principal
            .parse()
            .map_err(|e| DaemonError::Vault(Box::new(e)))?;
        let made = self.vault.issue_access_key(&target).await.map_err(failed)?;
        Ok(crate::dev::DevAccessKey {
            id: made.metadata.access_key_id.to_string(),
            secret: made.secret.into_zeroizing(),
        })
    }

    /// Serves until `shutdown` completes, then stops accepting and gives the calls in
    /// flight the configured `shutdown_timeout_secs` to finish. Each signal `reload`
    /// receives re-reads the TLS files (certificate, key, client CA, CRLs) for new
    /// connections. The caller registers `reload` before announcing readiness, because a
    /// SIGHUP that arrives before the handler exists kills the process. Must run inside a
    /// Tokio runtime; the caller then shuts the runtime down (cancelling any call still
    /// running, which records itself as RequestCanceled) and calls [`Stopped::close`].
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()>,
        reload: Signal,
    ) -> Result<Stopped, DaemonError> {
        let listener = to_tokio(self.listener)?;
        // Other daemons on the same store: their changes drop what the caches hold (and
        // the session copies of keys they delete, on this runtime).
        self.vault.follow_store_changes();
        // Before any request: no CreateKey of this daemon can be between making material
        // and recording it (another daemon's, on a shared store, holds a claim).
        match self.vault.destroy_orphan_material().await {
            Ok(0) => {}
            Ok(n) => info!(count = n, "orphaned key material destroyed"),
            Err(e) => {
                tracing::warn!(error = %e, "the sweep for orphaned key material failed; it runs again at the next start")
            }
        }
        let sweeper = tokio::spawn(sweep(Arc::clone(&self.vault), self.sweep_interval));
        let metrics_server = match self.metrics_listener {
            Some(m) => {
                let listener = to_tokio(m.listener)?;
                let (vault, metrics) = (Arc::clone(&self.vault), self.metrics.clone());
                Some(tokio::spawn(async move {
                    // Runs until aborted when the API stops; a scraper's idle connection
                    // must not hold up shutdown, and there is nothing to flush.
                    let served = crate::metrics::serve(
                        listener,
                        m.tls,
                        self.connections,
                        metrics,
                        vault,
                        std::future::pending(),
                    )
                    .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "the metrics listener failed");
                    }
                }))
            }
            None => None,
        };
        let (tls_tx, tls_rx) = watch::channel(self.tls);
        // One shutdown for every API listener: the gRPC server's future fans it out.
        let (stop_tx, stop_rx) = watch::channel(false);
        // What a reload rebuilds, beside the gRPC listener's configuration.
        let mut reloads: Vec<Reloadable> = Vec::new();
        // The stores, replaced at each reload; a listener that serves none watches a
        // channel whose sender is gone.
        let (stores_tx, stores) = watch::channel(Arc::clone(&self.xks_stores));
        let no_stores = watch::channel(Arc::from([])).1;
        // The AWS JSON and XKS listeners: one HTTP server, each with its routes.
        let spawn_http = |listener: std::net::TcpListener,
                          routes: crate::aws_json::Routes,
                          tls: watch::Receiver<Arc<rustls::ServerConfig>>,
                          counters: crate::metrics::ConnectionCounters|
         -> Result<_, DaemonError> {
            let mut stop_rx = stop_rx.clone();
            Ok(tokio::spawn(crate::aws_json::serve(
                to_tokio(listener)?,
                Arc::clone(&self.vault),
                routes,
                tls,
                self.connections,
                counters,
                self.shutdown_timeout,
                self.bench_echo,
                async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                },
            )))
        };
        let xks_server = match self.xks_listener {
            Some(x) => {
                let (tx, rx) = watch::channel(x.tls);
                let (files, config) = (self.tls_files.clone(), x.config);
                reloads.push(Reloadable {
                    build: Box::new(move || {
                        crate::xks::server_config(&config, &files.cert, &files.key)
                    }),
                    tx,
                });
                let routes = crate::aws_json::Routes {
                    kms: false,
                    xks: stores.clone(),
                };
                Some(spawn_http(
                    x.listener,
                    routes,
                    rx,
                    self.metrics.connections("xks"),
                )?)
            }
            None => None,
        };
        let aws_server = match self.aws_listener {
            Some(a) => {
                let (tx, rx) = watch::channel(a.tls);
                let (files, required) = (self.tls_files.clone(), a.require_client_cert);
                reloads.push(Reloadable {
                    build: Box::new(move || files.aws_api_config(required)),
                    tx,
                });
                let routes = crate::aws_json::Routes {
                    kms: true,
                    xks: if a.serves_xks {
                        stores.clone()
                    } else {
                        no_stores.clone()
                    },
                };
                Some(spawn_http(
                    a.listener,
                    routes,
                    rx,
                    self.metrics.connections("aws_json"),
                )?)
            }
            None => None,
        };
        drop(stop_rx);
        let stores = match (self.config_source, self.xks_stores.is_empty()) {
            (Some(source), false) => Some(StoresReload {
                source,
                tx: stores_tx,
            }),
            _ => None,
        };
        let reloader = tokio::spawn(reload_on_signal(
            self.tls_files,
            reload,
            tls_tx,
            reloads,
            stores,
        ));
        api::serve(
            listener,
            self.vault,
            tls_rx,
            api::Lifetimes {
                limits: self.connections,
                max_connection_age: self.max_connection_age,
                shutdown_timeout: self.shutdown_timeout,
            },
            self.metrics.connections("grpc"),
            self.bench_echo,
            async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            },
        )
        .await;
        // The listeners drain at once, each within shutdown_timeout.
        for (server, name) in [(aws_server, "AWS JSON"), (xks_server, "XKS")] {
            if let Some(Err(e)) = match server {
                Some(s) => Some(s.await),
                None => None,
            } {
                tracing::error!(error = %e, listener = name, "a listener failed");
            }
        }
        reloader.abort();
        sweeper.abort();
        if let Some(m) = metrics_server {
            m.abort();
        }
        Ok(Stopped {
            audit: self.audit,
            pool: self.pool,
            module: self.module,
        })
    }
}

/// How long a stopping daemon waits for the audit writer's last records and final
/// checkpoint.
const AUDIT_CLOSE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A daemon that no longer serves, with what must be closed in order.
#[must_use = "close() flushes the audit trail and logs out of the token"]
pub struct Stopped {
    audit: Option<crate::audit::AuditTrail>,
    pool: HsmPool,
    module: Module,
}

impl Stopped {
    /// Closes the audit trail (every queued record written, the final checkpoint
    /// signed), then the HSM: the trail needs the token to sign its last checkpoint.
    /// Blocking; call it outside the runtime, after the runtime is shut down, so that
    /// calls cancelled by that shutdown have queued their records first.
    pub fn close(self) {
        let mut finalize = true;
        if let Some(trail) = &self.audit {
            if trail.close(AUDIT_CLOSE_LIMIT) {
                info!("audit trail closed");
            } else {
                // Its own PKCS#11 session may still be in use: C_Finalize under it is
                // undefined behaviour in some modules, so leave the module to exit.
                tracing::error!("the audit writer did not finish in time: the trail has no final checkpoint, and the PKCS#11 module is left to process exit");
                finalize = false;
            }
        }
        // Workers first (their sessions close), then C_Finalize: a PKCS#11 module must
        // not be torn down by process exit while its sessions are still open.
        self.pool.shutdown();
        if finalize {
            if let Err(e) = self.module.finalize() {
                tracing::warn!(error = %e, "C_Finalize failed");
            }
        }
        info!("stopped");
    }
}

/// A listener's TLS configuration as a reload rebuilds it, and where it goes.
struct Reloadable {
    build: Box<dyn Fn() -> Result<Arc<rustls::ServerConfig>, api::TlsError> + Send>,
    tx: watch::Sender<Arc<rustls::ServerConfig>>,
}

/// The external key stores as a reload reads them again: from the configuration file
/// `source`, to the listener that serves them.
struct StoresReload {
    source: std::path::PathBuf,
    tx: watch::Sender<Arc<[crate::xks::XksStore]>>,
}

impl StoresReload {
    /// Reads the stores (`[[xks.stores]]`: paths, regions, principals, credentials and
    /// their secret files, keys) again. Where they are served (`[xks] listen` and its
    /// TLS) takes a restart; a change there is reported, not applied.
    fn reload(&self) {
        let loaded = Config::load(&self.source).map_err(|e| e.to_string());
        let stores = loaded.and_then(|config| {
            let mut stores = config.xks;
            crate::xks::read_secrets(&mut stores).map_err(|e| ConfigError::Xks(e).to_string())?;
            Ok(stores)
        });
        match stores {
            // A listener made for stores stays up until a restart; so do its stores.
            Ok(stores) if stores.is_empty() => tracing::warn!(
                "the configuration has no [[xks.stores]] any more; keeping the stores served until a restart"
            ),
            Ok(stores) => {
                let count = stores.len();
                self.tx.send_replace(stores.into());
                info!(
                    stores = count,
                    "external key stores reloaded; new requests use them"
                );
            }
            Err(e) => tracing::warn!(
                error = %e,
                "external key stores not reloaded; keeping the previous ones"
            ),
        }
    }
}

/// On every `reload` signal, rebuilds the TLS configurations (the gRPC listener's from
/// `files`, and each of `others`) and reads the external key stores again. A TLS
/// failure (a CRL file that is missing or invalid, a half-written certificate) keeps
/// every TLS configuration in force: a bad edit must not open the door to revoked
/// clients or lock every client out. Likewise a configuration file that does not load
/// keeps the stores as they were.
async fn reload_on_signal(
    files: api::TlsFiles,
    mut reload: Signal,
    tx: watch::Sender<Arc<rustls::ServerConfig>>,
    others: Vec<Reloadable>,
    stores: Option<StoresReload>,
) {
    while reload.recv().await.is_some() {
        if let Some(s) = &stores {
            s.reload();
        }
        // A few small local files, read on a runtime thread: a reload is rare and takes
        // well under a millisecond, not worth a blocking-pool hop. All listeners change,
        // or none.
        let built = files.server_config().and_then(|cfg| {
            let rest = others
                .iter()
                .map(|o| (o.build)())
                .collect::<Result<Vec<_>, _>>()?;
            Ok((cfg, rest))
        });
        match built {
            Ok((cfg, rest)) => {
                tx.send_replace(cfg);
                for (o, cfg) in others.iter().zip(rest) {
                    o.tx.send_replace(cfg);
                }
                info!(
                    crl_files = files.client_crl.len(),
                    "TLS configuration reloaded; new connections use it"
                );
            }
            Err(e) => tracing::warn!(
                field = e.field(),
                error = %e,
                "TLS reload failed; keeping the previous configuration"
            ),
        }
    }
}

/// Destroys keys past their deletion date, rotates keys whose automatic rotation is due
/// and destroys imported material past its ValidTo: once at start (finishing any destruction a crash interrupted), then every
/// `interval`. A failure is logged and retried next time.
async fn sweep(vault: Arc<Vault>, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    loop {
        tick.tick().await;
        // One daemon of those sharing a store sweeps; the others wait their turn.
        let leads = vault.leads_sweeps().await;
        if leads != leading && vault.store_is_shared() {
            if leads {
                info!("this daemon leads the sweeps (deletion and rotation) of the shared store");
            } else {
                info!("this daemon no longer leads the sweeps");
            }
        }
        leading = leads;
        if !leads {
            tracing::debug!("another daemon leads the sweeps");
            continue;
        }
        match vault.destroy_due_keys().await {
            Ok(ids) if !ids.is_empty() => info!(count = ids.len(), "keys destroyed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "destroying due keys failed; will retry"),
        }
        match vault.rotate_due_keys().await {
            Ok(n) if n > 0 => info!(count = n, "keys rotated on schedule"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rotating due keys failed; will retry"),
        }
        match vault.expire_imported_material().await {
            Ok(n) if n > 0 => info!(count = n, "imported key material expired"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "expiring imported key material failed; will retry")
            }
        }
    }
}
