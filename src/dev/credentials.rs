//! `p11kms dev issue-credentials`: mints an access key for any principal offline, as
//! `dev issue-cert` mints certificates. It opens the dev directory's token and store
//! from the CLI process (SoftHSM2 and SQLite both take a second process) and makes the
//! key exactly as CreateAccessKey does after authorization; a running daemon finds it on
//! its first look-up, since its cache holds only keys it has seen.

use std::sync::Arc;

use super::{DevDir, DevError};
use crate::config::Config;
use crate::hsm::{HsmPool, Module, PoolConfig};
use crate::identity::Principal;
use crate::vault::{AccessKey, SystemClock, Vault, VaultSettings};

impl DevDir {
    /// Makes an access key for `principal` in this directory's token and store, without
    /// asking who may (nothing is recorded in the audit trail, which the daemon holds).
    /// SOFTHSM2_CONF must already point at [`Self::softhsm_conf`].
    pub fn issue_credentials(&self, principal: &str) -> Result<AccessKey, DevError> {
        let target: Principal = principal
            .parse()
            .map_err(|e| DevError::Principal(format!("{principal}: {e}")))?;
        let config = Config::load(&self.config_path())?;
        if let crate::store::StoreBackend::Sqlite(path) = &config.store {
            if !path.exists() {
                return Err(DevError::NotInitialised(self.root().to_owned()));
            }
        }
        let pin = config.pin.read()?;
        let module = Module::load_with_env(&config.module, &config.module_env)?;
        let slot = module.find_slot(&config.token)?;
        module.ensure_secret_seal_key(slot, &pin)?;
        let pool = HsmPool::start(
            &module,
            slot,
            pin,
            &PoolConfig {
                sessions: 1,
                ..PoolConfig::default()
            },
        )?;
        let store = config.store.open().map_err(DevError::Store)?;
        let made = Vault::new(
            pool.clone(),
            store,
            VaultSettings {
                partition: config.partition.clone(),
                region: config.region.clone(),
                max_encryptions_per_material: config.max_encryptions_per_material,
                trusted_services: Vec::new(),
                clock: Arc::new(SystemClock),
            },
        )
        .map_err(DevError::Vault)
        .and_then(|vault| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| DevError::Io {
                    path: self.root().to_owned(),
                    source,
                })?;
            rt.block_on(vault.issue_access_key(&target))
                .map_err(|source| DevError::Kms {
                    name: source.name(),
                    source,
                })
        });
        // Sessions closed before C_Finalize, as the daemon does.
        pool.shutdown();
        module.finalize()?;
        made
    }
}
