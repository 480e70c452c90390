//! p11kms: an AWS-KMS-style key management service whose master keys never leave a
//! PKCS#11 HSM.
//!
//! # Layout
//! One request flows down and its answer back up:
//! - [`api`]: gRPC over mTLS (tonic + rustls). Wire ↔ domain types, errors → statuses.
//! - [`identity`]: the caller's principal ARN from the client certificate.
//! - [`vault`]: the operations, one file each: validate → resolve → authorize → state →
//!   HSM → store. Owns the KMS error names and the ciphertext blob format.
//! - [`authz`]: pure authorization decisions.
//! - [`audit`]: the audit trail (hash-chained JSON lines, group-committed).
//! - [`hsm`]: the PKCS#11 backend (the only module that knows cryptoki).
//! - [`store`]: key metadata behind a trait; SQLite.
//! - [`metrics`]: the Prometheus registry every layer records into, and the listener for
//!   `/metrics`, `/healthz` and `/readyz`.
//! - [`domain`]: identifiers, key metadata, encryption context, secret containers.
//! - [`client`]: connecting to the daemon; the CLI and tests use it.
//! - [`config`], [`daemon`], [`dev`]: configuration, start-up, and zero-config dev mode.
//! - [`proto`]: the generated wire types.

pub mod api;
pub mod audit;
pub mod authz;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dev;
pub mod domain;
pub mod hsm;
pub mod identity;
pub mod metrics;
pub mod proto;
pub mod store;
pub mod vault;
