//! The audit trail: one record for every call, allowed or denied, and for the daemon's
//! own work, shaped like a CloudTrail KMS event, as JSON lines. Never a plaintext, data
//! key, grant token or PIN: a record is built from the request's `Outcome` and the
//! parameters the vault chose to record, never from the wire request.

mod checkpoint;
mod query;
mod record;
mod verify;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

pub use checkpoint::{
    signed_parts, CheckpointError, CheckpointPublicKey, CheckpointSettings, CheckpointSigner,
    SignError, CHECKPOINT_EVENT_TYPE, FORMAT as CHECKPOINT_FORMAT,
    PUBLIC_KEY_FILE as CHECKPOINT_PUBLIC_KEY_FILE,
};
pub use query::{read_trail, Filter};
pub use record::{Parameters, BACKGROUND_PRINCIPAL};
pub use verify::{check_end, verify, Recovery, Verified, VerifyError};
pub use writer::{
    line_hash, trail_files, trail_is_being_written, AuditError, AuditSettings, SyncMode,
};

use crate::vault::Outcome;

/// Records waiting for the writer at most; a caller beyond it waits (backpressure on
/// a stalled disk instead of unbounded memory).
const QUEUE: usize = 65_536;

/// A handle on the trail's writer thread. Cheap to clone.
#[derive(Clone)]
pub struct AuditTrail {
    jobs: mpsc::Sender<writer::Job>,
    healthy: Arc<AtomicBool>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Waits for the writer thread to finish: after the last [`AuditTrail`] clone is gone,
/// it writes the final checkpoint and exits. Holds no sender, so it does not keep the
/// trail open.
#[derive(Debug)]
pub struct AuditCloser {
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl AuditCloser {
    /// Waits up to `limit` for the writer to finish. False when it has not (a sender is
    /// still alive somewhere): the trail then has no final checkpoint yet.
    pub async fn closed(self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let finished = {
                let mut slot = self.thread.lock().unwrap_or_else(|p| p.into_inner());
                match slot.as_ref() {
                    None => true,
                    Some(h) if h.is_finished() => {
                        if let Some(h) = slot.take() {
                            let _ = h.join();
                        }
                        true
                    }
                    Some(_) => false,
                }
            };
            if finished {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditTrail")
    }
}

impl AuditTrail {
    /// Opens the trail (repairing a torn last line, continuing its hash chain), writes or
    /// checks the checkpoint public key file, and starts its writer thread, which signs
    /// checkpoints with `signer`.
    pub fn open(
        settings: AuditSettings,
        signer: Box<dyn CheckpointSigner>,
    ) -> std::io::Result<Self> {
        let healthy = Arc::new(AtomicBool::new(true));
        let w = writer::Writer::open(settings, Arc::clone(&healthy), signer)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("p11kms-audit".into())
            .spawn(move || w.run(rx))?;
        Ok(Self {
            jobs: tx,
            healthy,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    /// A handle to wait for the writer's end (see [`AuditCloser`]).
    pub fn closer(&self) -> AuditCloser {
        AuditCloser {
            thread: Arc::clone(&self.thread),
        }
    }

    /// False after the last batch failed to be written: calls should fail before they
    /// do any work, until a record goes through again.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Writes the record of one request and waits until it is durable.
    pub async fn record(&self, outcome: &Outcome, params: &Parameters) -> Result<(), AuditError> {
        self.enqueue(outcome, params).await?.await
    }

    /// Queues the record of one request; the returned future completes when it is
    /// durable. Once this returns, the record is written whether or not anyone waits.
    pub async fn enqueue(
        &self,
        outcome: &Outcome,
        params: &Parameters,
    ) -> Result<impl std::future::Future<Output = Result<(), AuditError>>, AuditError> {
        let (done, wait) = oneshot::channel();
        let job = writer::Job {
            record: record::build(outcome, params),
            done,
        };
        self.jobs.send(job).await.map_err(|_| AuditError::Stopped)?;
        Ok(async move { wait.await.map_err(|_| AuditError::Stopped)? })
    }

    /// Queues the record of a request that nobody waits for any more (its caller went
    /// away mid-way), without blocking: for use in `Drop`.
    pub fn record_detached(&self, outcome: &Outcome, params: &Parameters) {
        let (done, _) = oneshot::channel();
        let job = writer::Job {
            record: record::build(outcome, params),
            done,
        };
        if self.jobs.try_send(job).is_err() {
            tracing::error!(request_id = %outcome.request_id, "the audit queue is full or stopped; a cancelled request could not be recorded");
        }
    }
}
