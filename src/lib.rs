//! p11kms: an AWS-KMS-style key management service whose master keys never leave a
//! PKCS#11 HSM.
//!
//! # Layout
//! One request flows down and its answer back up (each module is a directory or file
//! under `src/`):
//! - `api`: gRPC over mTLS (tonic + rustls). Wire ↔ domain types, errors → statuses.
//! - `aws_json`: AWS KMS's own protocol (AWS JSON 1.1 over HTTPS, hyper) in front of
//!   the same request path, for the AWS SDKs and CLI.
//! - `identity`: the caller's principal ARN from the client certificate.
//! - `vault`: the operations, one file each: validate → resolve → authorize → state →
//!   HSM → store. Owns the KMS error names and the ciphertext blob format.
//! - `authz`: pure authorization decisions.
//! - `audit`: the audit trail (hash-chained JSON lines, group-committed).
//! - `hsm`: the PKCS#11 backend (the only module that knows cryptoki).
//! - `store`: key metadata behind a trait; SQLite.
//! - `metrics`: the Prometheus registry every layer records into, and the listener for
//!   `/metrics`, `/healthz` and `/readyz`.
//! - `domain`: identifiers, key metadata, encryption context, secret containers.
//! - [`client`]: connecting to the daemon, and the envelope-encryption library; the CLI
//!   and tests use it.
//! - `config`, `daemon`, `dev`: configuration, start-up, and zero-config dev mode.
//! - [`proto`]: the generated wire types.
//!
//! # Public surface
//! Only [`client`] and [`proto`] are public modules. The others are private, and the
//! `pub use` block below re-exports the items that the binary (`src/main.rs`,
//! `src/cli/`), the integration tests, the benches and the fuzz targets use, at the
//! crate root. Every other item is `pub(crate)` or narrower, and the `unreachable_pub`
//! lint keeps it so; a `pub` item that is not re-exported stays `pub` only because a
//! public item's signature or field names it. To use an item from outside the crate,
//! add it to that block.

mod api;
mod audit;
mod authz;
mod aws_json;
pub mod client;
mod config;
mod daemon;
mod dev;
mod domain;
mod failpoint;
mod hsm;
mod identity;
mod metrics;
pub mod proto;
mod sigv4;
mod store;
mod vault;
mod xks;

// The library's public surface, besides the `client` and `proto` modules. A few items
// are renamed where their name alone would not say what they belong to at the root.

// Starting the daemon (`p11kms serve`): configuration and the two-step start-up.
pub use config::{AwsApiConfig, Config, MetricsConfig};
pub use daemon::prepare as prepare_daemon;
pub use xks::{XksClientAuth, XksListenerConfig};

// Zero-configuration dev mode: its directory, dev CA and SoftHSM2 token (the CLI, tests,
// benches).
pub use dev::{
    softhsm_module, DevAccessKey, DevCa, DevDir, DEV_ACCOUNT, DEV_AWS_API_LISTEN,
    DEV_METRICS_LISTEN, DEV_TOKEN_LABEL, DEV_XKS_ALIAS, DEV_XKS_KEYS, DEV_XKS_PREFIX,
};

// The crash points the crash-consistency tests stop the daemon at.
pub use failpoint::CRASH_POINTS;

// Reading and verifying the audit trail (`p11kms audit`, tests).
pub use audit::{
    check_end as check_trail_end, line_hash as trail_line_hash, read_trail,
    signed_parts as checkpoint_signed_parts, trail_files, trail_is_being_written,
    verify as verify_trail, CheckpointPublicKey, Filter as TrailFilter, CHECKPOINT_PUBLIC_KEY_FILE,
};

// Authorization decisions, pure: `p11kms policy test` cases, the authz bench, the
// cross-account tests.
pub use authz::case::{eval_case, parse_case, CaseError};
pub use authz::{
    allowed_across_accounts, decide, parse_value as parse_policy, AuthzInput, NamedPolicy,
    PolicyKind, RequestContext, CROSS_ACCOUNT_ACTIONS,
};

// Secret containers (zeroized, no `Display`): the envelope keyrings' data keys, and the
// vault's plaintexts and PIN.
pub use domain::{public_key_pem, Pin, Plaintext};

// The vault embedded without the gRPC layer, over any `Store` and a real token:
// tests/faults.rs drives it over a fault-injecting store. Only what that test needs.
pub use domain::{
    AccessKeyId, AccessKeyStatus, AccountId, KeyId, MaterialVersion, SecretAccessKey,
};
pub use hsm::{HsmPool, Module as HsmModule, ModuleEnv as HsmModuleEnv, PoolConfig, TokenSelector};
pub use store::{
    copy_sqlite_to_postgres, AccessKeyRecord, AccessKeyStore, AliasRecord, AliasStore, CopyReport,
    DbTlsFiles, GrantRecord, GrantStore, ImportedMaterial, KeyRecord, MaterialRecord,
    PasswordSource, PolicyStore, PostgresStore, RotationSchedule, SqliteStore, Store, StoreBackend,
    StoreConfigError, StoreError, StoreSection,
};
pub use store::{Change as StoreChange, OnChange as OnStoreChange};
pub use vault::{
    AccessKey, AccessKeyMetadata, Clock, CreateKeyInput, DecryptInput, EncryptInput, KmsError,
    Vault, VaultSettings,
};

// The parsers of untrusted bytes, for the fuzz targets (fuzz/src/) and their corpus
// replay (tests/it/fuzz_corpus.rs); docs/testing.md, "Fuzzing". The envelope and the
// configuration are fuzzed through their own public API (`client::envelope`,
// `Config::parse`). The hidden ones are entry points that nothing outside the crate
// needs but the fuzz targets: not an API.
#[doc(hidden)]
pub use authz::{
    parse_policy as parse_policy_text, parse_stored_policy as parse_stored_policy_text,
};
#[doc(hidden)]
pub use aws_json::check_request as check_aws_json_request;
#[doc(hidden)]
pub use sigv4::verify_request as verify_sigv4_request;
pub use vault::blob::parse as parse_blob;
pub use xks::{
    XksConfigError, XksCredential, XksCredentialSection, XksKey, XksKeySection, XksSection,
    XksStore, XksStoreSection, XksUsage,
};
