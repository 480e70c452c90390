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
use crate::vault::{Vault, VaultSettings};

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
}

/// A daemon ready to serve: the HSM is logged in, the store open, the port bound.
pub struct Prepared {
    vault: Arc<Vault>,
    tls: Arc<rustls::ServerConfig>,
    listener: std::net::TcpListener,
}

/// Does every start-up step that can fail. Blocking; call before serving.
pub fn prepare(config: &Config) -> Result<Prepared, DaemonError> {
    let pin = config.pin.read()?;
    let module = Module::load(&config.module)?;
    let slot = module.find_slot(&config.token)?;
    module.probe_mechanisms(slot)?;
    module.check_login(slot, &pin)?;
    let pool = HsmPool::start(&module, slot, pin, &config.pool);
    info!(sessions = pool.size(), token = %config.token, "HSM pool started");
    let store = SqliteStore::open(&config.sqlite)?;
    let vault = Vault::new(
        pool,
        Arc::new(store),
        VaultSettings {
            partition: config.partition.clone(),
            region: config.region.clone(),
            max_encryptions_per_material: config.max_encryptions_per_material,
            trusted_services: config.trusted_services.clone(),
        },
    )?;
    let tls = api::server_config(&config.tls_cert, &config.tls_key, &config.tls_client_ca)?;
    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| DaemonError::Bind {
            addr: config.listen,
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| DaemonError::Bind {
            addr: config.listen,
            source,
        })?;
    Ok(Prepared {
        vault: Arc::new(vault),
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
        api::serve(listener, self.vault, self.tls, shutdown).await?;
        info!("stopped");
        Ok(())
    }
}
