//! p11kms as an AWS KMS external key store proxy (the XKS proxy API, version 1): AWS
//! KMS keys whose cryptography happens here, under p11kms keys in the HSM. Served on
//! a listener of their own (the AWS JSON listener's server, with `Routes::kms` off) or
//! on the AWS JSON listener, under each logical key store's URI path. `config` is the
//! `[xks]` section and its stores; `tls` the own listener's TLS and mutual TLS (AWS
//! KMS's certificate name); `handler` routes, authenticates (SigV4, service
//! `kms-xks-proxy`, the store's region) and runs each call through the vault's request
//! path; `shapes` and `errors` are the specification's bodies and error answers. The cryptography is
//! `Vault::xks_*` (src/vault/xks.rs).

mod config;
mod errors;
mod handler;
mod quota;
mod shapes;
mod tls;

pub(crate) use config::{listener, load, read_secrets, DEFAULT_XKS_LISTEN};
pub use config::{
    XksClientAuth, XksConfigError, XksCredential, XksCredentialSection, XksKey, XksKeySection,
    XksListenerConfig, XksSection, XksStore, XksStoreSection, XksUsage,
};
pub(crate) use handler::{handle, is_xks_path};
pub(crate) use tls::server_config;
