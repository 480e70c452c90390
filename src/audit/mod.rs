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
    signed_parts, CheckpointError, CheckpointPublicKey, CheckpointSettings, CheckpointSigner,
    SignError, CHECKPOINT_EVENT_TYPE, FORMAT as CHECKPOINT_FORMAT,
    PUBLIC_KEY_FILE as CHECKPOINT_PUBLIC_KEY_FILE,
};
pub use query::{read_trail, Filter};
pub use record::{Parameters, BACKGROUND_PRINCIPAL};
pub use trail::AuditTrail;
pub use verify::{check_end, verify, Recovery, Verified, VerifyError};
pub use writer::{
    line_hash, trail_files, trail_is_being_written, AuditError, AuditSettings, SyncMode,
};
