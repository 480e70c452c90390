//! p11kms as an AWS KMS external key store proxy (the XKS proxy API, version 1): AWS
//! KMS keys whose cryptography happens here, under p11kms keys in the HSM. Served on
//! the AWS JSON listener under each logical key store's URI path. `config` is the
//! `[[xks.stores]]` sections; `handler` routes, authenticates (SigV4, service
//! `kms-xks-proxy`) and runs each call through the vault's request path; `shapes` and
//! `errors` are the specification's bodies and error answers. The cryptography is
//! `Vault::xks_*` (src/vault/xks.rs).

mod config;
mod errors;
mod handler;
mod shapes;

pub(crate) use config::{load, read_secrets};
pub use config::{
    XksConfigError, XksCredential, XksCredentialSection, XksKey, XksKeySection, XksSection,
    XksStore, XksStoreSection, XksUsage,
};
pub(crate) use handler::{handle, is_xks_path};
