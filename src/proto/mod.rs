//! The generated wire types and gRPC stubs of `p11kms.v1` (proto/p11kms/v1/kms.proto).
//! Public so that tests and other clients can speak the raw protocol; the messages that
//! carry plaintext have a redacting Debug and wipe their secret field on drop.

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("p11kms.v1");
}

mod redact;

pub use generated::*;
