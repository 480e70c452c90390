//! The audit trail: one record for every call, allowed or denied, and for the daemon's
//! own work, shaped like a CloudTrail KMS event, as JSON lines. Never a plaintext, data
//! key, grant token or PIN: a record is built from the request's `Outcome` and the
//! parameters the vault chose to record, never from the wire request.

mod checkpoint;
mod query;
mod record;
mod trail;
mod verify;
mod writer;

pub use checkpoint::{
    signed_parts, CheckpointPublicKey, PUBLIC_KEY_FILE as CHECKPOINT_PUBLIC_KEY_FILE,
};
pub(crate) use checkpoint::{CheckpointError, CheckpointSettings, CheckpointSigner, SignError};
pub use query::{read_trail, Filter};
pub(crate) use record::Parameters;
pub(crate) use trail::AuditTrail;
pub use verify::{check_end, verify};
pub use writer::{line_hash, trail_files, trail_is_being_written};
pub(crate) use writer::{AuditError, AuditSettings, SyncMode};
