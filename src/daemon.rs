//! Start-up: configuration → HSM (load, find token, probe, log in, start the pool) →
//! store → vault → TLS → listener. Everything that can be wrong with a deployment is
//! found here, before the first request, with a message that says what to fix.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tracing::info;

use crate::api;
use crate::config::{Config, ConfigError};
use crate::hsm::{HsmError, HsmPool, Module};
use crate::store::{SqliteStore, StoreError};
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
    /// The server failed.
    #[error("the gRPC server failed")]
    Serve(#[from] tonic::transport::Error),
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

/// A daemon ready to serve: the HSM is logged in, the store open, the port bound.
pub struct Prepared {
    vault: Arc<Vault>,
    sweep_interval: std::time::Duration,
    pool: HsmPool,
    module: Module,
    tls: Arc<rustls::ServerConfig>,
    listener: std::net::TcpListener,
}

/// Names the configuration field behind a start-up failure.
fn at<E: Into<DaemonError>>(field: &'static str) -> impl FnOnce(E) -> DaemonError {
    move |e| DaemonError::Field {
        field,
        source: Box::new(e.into()),
    }
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
    let module = Module::load(&config.module).map_err(at("hsm.module"))?;
    let slot = module.find_slot(&config.token).map_err(at(token_field))?;
    module.probe_mechanisms(slot).map_err(at("hsm.module"))?;
    module.check_login(slot, &pin).map_err(at(pin_field))?;
    let pool = HsmPool::start(&module, slot, pin, &config.pool).map_err(at("hsm.sessions"))?;
    let pool_handle = pool.clone();
    info!(sessions = pool.size(), token = %config.token, "HSM pool started");
    let store = SqliteStore::open(&config.sqlite).map_err(at("store.sqlite"))?;
    let vault = Vault::new(
        pool,
        Arc::new(store),
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
    .map_err(|e| at("store.sqlite")(DaemonError::Vault(e)))?;
    let tls = api::server_config(&config.tls_cert, &config.tls_key, &config.tls_client_ca)
        .map_err(at("tls"))?;
    let bind = |source| DaemonError::Bind {
        addr: config.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(bind)
        .map_err(at("listen"))?;
    listener
        .set_nonblocking(true)
        .map_err(bind)
        .map_err(at("listen"))?;
    Ok(Prepared {
        vault: Arc::new(vault),
        sweep_interval: config.sweep_interval,
        pool: pool_handle,
        module,
        tls,
        listener,
    })
}

impl Prepared {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes. Must run inside a Tokio runtime.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
        let addr = self.local_addr();
        let listener = tokio::net::TcpListener::from_std(self.listener).map_err(|source| {
            DaemonError::Bind {
                addr: addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                source,
            }
        })?;
        let sweeper = tokio::spawn(sweep(Arc::clone(&self.vault), self.sweep_interval));
        let served = api::serve(listener, self.vault, self.tls, shutdown).await;
        sweeper.abort();
        // Workers first (their sessions close), then C_Finalize: a PKCS#11 module must
        // not be torn down by process exit while its sessions are still open.
        self.pool.shutdown();
        if let Err(e) = self.module.finalize() {
            tracing::warn!(error = %e, "C_Finalize failed");
        }
        served?;
        info!("stopped");
        Ok(())
    }
}

/// Destroys keys past their deletion date and rotates keys whose automatic rotation is
/// due: once at start (finishing any destruction a crash interrupted), then every
/// `interval`. A failure is logged and retried next time.
async fn sweep(vault: Arc<Vault>, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
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
    }
}
