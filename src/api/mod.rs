//! The transport: gRPC over mTLS. Translates wire types to domain types, calls one vault
//! method per request, and maps errors to gRPC statuses. No policy logic, no HSM calls.

mod asymmetric;
mod batch;
mod connections;
mod convert;
mod echo;
mod import;
mod server;
mod service;
mod status;
mod tls;
mod unnamed;

pub(crate) use connections::{
    Activity, ConnectionLimits, Handshakes, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_PENDING_HANDSHAKES, DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE,
    DEFAULT_REQUEST_READ_TIMEOUT, MAX_PENDING_HANDSHAKES_LIMIT,
};
pub(crate) use server::{serve, Lifetimes};
pub(crate) use status::ERROR_TYPE_HEADER;
pub(crate) use tls::{pem_err, read_chain_and_key, Peer, TlsError, TlsFiles};

/// The largest gRPC message the server takes and the client accepts: 8 MiB instead of
/// tonic's 4 MiB, so that one batch call fits 1000 items of 4096-byte plaintexts (about
/// 4.2 MB) or of 6144-byte blobs (about 6.3 MB) with key ARNs and short contexts. A
/// caller has passed mTLS before it can send one.
pub(crate) const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Metadata key carrying the request id, as AWS's x-amzn-RequestId header does.
pub(crate) const REQUEST_ID_HEADER: &str = "x-amzn-requestid";

/// Metadata key with which a trusted service names the principal it calls for; the
/// request is then authorized as that principal, with kms:ViaService set.
pub(crate) const ON_BEHALF_OF_HEADER: &str = "x-p11kms-on-behalf-of";
