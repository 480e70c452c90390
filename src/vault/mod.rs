//! The operations. Each file owns one operation: validate → resolve the key → authorize
//! → check key state → HSM → store. The transport calls one method per request; nothing
//! here knows protobuf.

mod aliases;
mod authorize;
mod batch;
pub(crate) mod blob;
mod clock;
mod create_key;
mod credentials;
mod data_key_pair;
mod decrypt;
mod deletion;
mod derive_shared_secret;
mod describe_key;
mod encrypt;
mod error;
mod follow;
mod generate_data_key;
mod generate_random;
mod grants;
mod health;
mod import;
mod import_token;
mod key_policy;
mod key_state;
mod keys;
mod list_keys;
mod mac;
mod marker;
mod principal_policy;
mod public_key;
mod re_encrypt;
mod request;
mod rotation;
mod rsa_oaep;
mod seal;
mod sign;
mod slot;
mod tags;
mod validate;
mod xks;

use std::net::IpAddr;
use std::sync::Arc;

pub(crate) use aliases::{AliasEntry, ListAliasesInput};
pub(crate) use authorize::TrustedService;
pub(crate) use batch::Batch;
pub use clock::Clock;
pub(crate) use clock::{OffsetFileClock, SystemClock};
pub use create_key::CreateKeyInput;
#[allow(unused_imports, reason = "for the SigV4 verifier")]
pub(crate) use credentials::AccessKeySecret;
pub use credentials::{AccessKey, AccessKeyMetadata};
pub(crate) use credentials::{CreateAccessKeyInput, DeleteAccessKeyInput, ListAccessKeysInput};
pub(crate) use data_key_pair::DataKeyPairInput;
pub use decrypt::DecryptInput;
pub(crate) use derive_shared_secret::DeriveSharedSecretInput;
pub use encrypt::EncryptInput;
pub use error::KmsError;
pub(crate) use generate_data_key::DataKeyInput;
pub(crate) use grants::{CreateGrantInput, GrantPage, ListGrantsInput, ListRetirableGrantsInput};
pub(crate) use import::{GetParametersForImportInput, ImportKeyMaterialInput};
pub(crate) use key_policy::{ListKeyPoliciesInput, DEFAULT_POLICY_NAME};
pub(crate) use list_keys::ListKeysInput;
pub(crate) use mac::MacInput;
pub(crate) use re_encrypt::ReEncryptInput;
pub(crate) use request::{new_request_id, Authorization, Outcome, RequestInfo, Transport};
pub(crate) use sign::SignInput;
pub(crate) use xks::{XksDecryptInput, XksEncryptInput, XksRequest};

use crate::domain::{AccountId, KeyArn, KeyId, Partition, Region};
use crate::hsm::HsmPool;
use crate::identity::Principal;
use crate::store::Store;
use keys::KeyCache;

/// How long another daemon's right to make a material version holds before it is taken
/// for a dead daemon's: far longer than making and recording material takes.
pub(crate) const MATERIAL_CLAIM_STALE: std::time::Duration = std::time::Duration::from_secs(30);

/// NIST SP 800-38D's bound on AES-GCM invocations with random IVs under one key.
pub(crate) const GCM_RANDOM_IV_LIMIT: u64 = 1 << 32;

/// Settings the vault needs from the configuration.
#[derive(Clone, Debug)]
pub struct VaultSettings {
    /// ARN partition.
    pub partition: Partition,
    /// Region in key ARNs.
    pub region: Region,
    /// GCM encryptions allowed per key-material version before new material is made.
    /// At most `GCM_RANDOM_IV_LIMIT` (2^32); lowered only by tests.
    pub max_encryptions_per_material: u64,
    /// Services that may call on behalf of other principals (kms:ViaService).
    pub trusted_services: Vec<TrustedService>,
    /// The time for deletion dates and the destruction sweep.
    pub clock: std::sync::Arc<dyn Clock>,
}

/// An authenticated caller of one request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// From where, when known.
    pub source_ip: Option<IpAddr>,
    /// The trusted service that relayed the request, when one did (kms:ViaService).
    pub via_service: Option<String>,
    /// Where the request's authorizations are recorded for its outcome.
    pub(crate) trace: request::Trace,
}

/// The operations, with everything they need. Shared as `Arc<Vault>`.
pub struct Vault {
    hsm: HsmPool,
    store: Arc<dyn Store>,
    keys: KeyCache,
    aliases: aliases::AliasCache,
    principals: authorize::PrincipalCache,
    grant_tokens: grants::TokenKey,
    /// Issues and checks the markers of paginated calls.
    markers: marker::MarkerKey,
    /// Opened secret access keys (SigV4 look-ups).
    access_keys: credentials::SecretCache,
    settings: VaultSettings,
    audit: Option<crate::audit::AuditTrail>,
    metrics: crate::metrics::Metrics,
    /// Set when shutdown begins: `/readyz` then sends traffic elsewhere.
    draining: std::sync::atomic::AtomicBool,
    /// One import, deletion or expiry of imported material at a time: each is a token
    /// change and a store change that must not interleave with another's.
    imports: tokio::sync::Mutex<()>,
}

impl Vault {
    /// Builds a vault over a started HSM pool and an opened store.
    /// Fails when the store cannot hand out the daemon's grant-token or marker key, or
    /// the system random number generator cannot make one.
    pub fn new(
        hsm: HsmPool,
        store: Arc<dyn Store>,
        settings: VaultSettings,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let mut fresh = zeroize::Zeroizing::new(vec![0u8; 32]);
        aws_lc_rs::rand::fill(&mut fresh)
            .map_err(|_| "the system random number generator failed")?;
        // Used only the first time; afterwards the stored key is read back.
        let token_secret =
            zeroize::Zeroizing::new(store.secret("grant-token-mac-key", &|| fresh.to_vec())?);
        // A key of its own: a marker and a grant token can never be taken for each other.
        aws_lc_rs::rand::fill(&mut fresh)
            .map_err(|_| "the system random number generator failed")?;
        let marker_secret =
            zeroize::Zeroizing::new(store.secret("list-marker-mac-key", &|| fresh.to_vec())?);
        let max = settings
            .max_encryptions_per_material
            .clamp(1, GCM_RANDOM_IV_LIMIT);
        Ok(Self {
            hsm,
            keys: KeyCache::new(max),
            aliases: aliases::AliasCache::default(),
            principals: authorize::PrincipalCache::default(),
            grant_tokens: grants::TokenKey::new(&token_secret),
            markers: marker::MarkerKey::new(&marker_secret),
            access_keys: credentials::SecretCache::default(),
            store,
            settings,
            audit: None,
            metrics: crate::metrics::Metrics::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
            imports: tokio::sync::Mutex::new(()),
        })
    }

    /// Records requests, store calls, cache lookups and IV reservations in `metrics`
    /// (the daemon's registry); without it they go to a registry nobody reads.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Records every request (and the daemon's own work) in `trail`; without one, the
    /// vault keeps no audit trail (tests that build a vault directly).
    pub fn with_audit(mut self, trail: crate::audit::AuditTrail) -> Self {
        self.audit = Some(trail);
        self
    }

    /// Marks the vault as shutting down: calls in flight still finish, but readiness
    /// fails so that load balancers stop sending new ones.
    pub fn begin_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The region this daemon serves: the one SigV4 signatures must be scoped to.
    pub(crate) fn region(&self) -> &Region {
        &self.settings.region
    }

    /// The vault's clock (the system clock, moved by tests), for signature dates.
    pub(crate) fn now(&self) -> std::time::SystemTime {
        self.settings.clock.now()
    }

    /// The ARN of a key of ours.
    fn arn(&self, account: &AccountId, key_id: KeyId) -> KeyArn {
        KeyArn {
            partition: self.settings.partition.clone(),
            region: self.settings.region.clone(),
            account: account.clone(),
            key_id,
        }
    }

    /// Runs a store call off the async runtime.
    async fn store_call<T, F>(&self, f: F) -> Result<T, KmsError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        let started = std::time::Instant::now();
        let out = tokio::task::spawn_blocking(move || f(store.as_ref())).await;
        self.metrics.store_call(started.elapsed());
        Ok(out??)
    }
}
