//! The audit trail: one record for every call, allowed or denied, and for the daemon's
//! own work, shaped like a CloudTrail KMS event, as JSON lines. Never a plaintext, data
//! key, grant token or PIN: a record is built from the request's `Outcome` and the
//! parameters the vault chose to record, never from the wire request.

mod record;
mod verify;
mod writer;

use std::sync::Arc;

use tokio::sync::oneshot;

pub use record::{Parameters, BACKGROUND_PRINCIPAL};
pub use verify::{verify, Verified, VerifyError};
pub use writer::{line_hash, trail_files, AuditError, AuditSettings, SyncMode};

use crate::vault::Outcome;

/// A handle on the trail's writer thread. Cheap to clone.
#[derive(Clone)]
pub struct AuditTrail {
    jobs: crossbeam_channel::Sender<writer::Job>,
    _thread: Arc<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditTrail")
    }
}

impl AuditTrail {
    /// Opens the trail (continuing its hash chain) and starts its writer thread.
    pub fn open(settings: AuditSettings) -> std::io::Result<Self> {
        let w = writer::Writer::open(settings)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("p11kms-audit".into())
            .spawn(move || w.run(rx))?;
        Ok(Self {
            jobs: tx,
            _thread: Arc::new(thread),
        })
    }

    /// Writes the record of one request and waits until it is durable.
    pub async fn record(&self, outcome: &Outcome, params: &Parameters) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        let job = writer::Job {
            record: record::build(outcome, params),
            done,
        };
        self.jobs.send(job).map_err(|_| AuditError::Stopped)?;
        wait.await.map_err(|_| AuditError::Stopped)?
    }
}
