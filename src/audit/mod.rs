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
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::{mpsc, oneshot};

pub use checkpoint::{
    signed_parts, CheckpointPublicKey, PUBLIC_KEY_FILE as CHECKPOINT_PUBLIC_KEY_FILE,
};
pub(crate) use checkpoint::{CheckpointSettings, CheckpointSigner, SignError};
pub use query::{read_trail, Filter};
pub(crate) use record::Parameters;
pub use verify::{check_end, verify};
pub use writer::{line_hash, trail_files, trail_is_being_written};
pub(crate) use writer::{AuditError, AuditSettings, SyncMode};

use crate::metrics::Metrics;
use crate::vault::Outcome;

/// Records waiting for the writer at most; a caller beyond it waits (backpressure on
/// a stalled disk instead of unbounded memory).
const QUEUE: usize = 65_536;

/// A handle on the trail's writer thread. Cheap to clone.
#[derive(Clone)]
pub struct AuditTrail {
    inner: Arc<Inner>,
}

struct Inner {
    /// The only sender: taking it (at `close`) ends the writer once the records
    /// already queued are written.
    jobs: RwLock<Option<mpsc::Sender<writer::Job>>>,
    healthy: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    dir: Arc<std::path::Path>,
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditTrail")
    }
}

impl AuditTrail {
    /// Opens the trail (repairing a torn last line, continuing its hash chain), writes or
    /// checks the checkpoint public key file, and starts its writer thread, which signs
    /// checkpoints with `signer` and records batch sizes, fsync times and records
    /// written in `metrics`.
    pub fn open(
        settings: AuditSettings,
        signer: Box<dyn CheckpointSigner>,
        metrics: &Metrics,
    ) -> std::io::Result<Self> {
        let healthy = Arc::new(AtomicBool::new(true));
        let dir: Arc<std::path::Path> = Arc::from(settings.dir.as_path());
        let w = writer::Writer::open(settings, Arc::clone(&healthy), metrics.clone(), signer)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        // A weak handle: the gauge must not keep the writer thread alive.
        let weak = tx.downgrade();
        metrics.sample(
            "p11kms_audit_queue_depth",
            "Audit records waiting for the writer thread",
            move || {
                weak.upgrade().map_or(0, |tx| {
                    i64::try_from(tx.max_capacity().saturating_sub(tx.capacity())).unwrap_or(0)
                })
            },
        );
        let thread = std::thread::Builder::new()
            .name("p11kms-audit".into())
            .spawn(move || w.run(rx))?;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: RwLock::new(Some(tx)),
                healthy,
                dir,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Stops taking records and waits, up to `limit`, until every record already queued
    /// is written and the final checkpoint signed, and the writer has stopped. False when
    /// it has not finished in time (a hanging disk or token): the trail then has no
    /// final checkpoint. Blocking: call it last at shutdown, outside the runtime. Later
    /// records fail with [`AuditError::Stopped`].
    pub fn close(&self, limit: std::time::Duration) -> bool {
        drop(
            self.inner
                .jobs
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let deadline = std::time::Instant::now() + limit;
        let mut slot = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            match slot.as_ref() {
                None => return true,
                Some(t) if t.is_finished() => {
                    if slot.take().is_some_and(|t| t.join().is_err()) {
                        tracing::error!("the audit writer thread panicked");
                    }
                    return true;
                }
                Some(_) if std::time::Instant::now() >= deadline => return false,
                Some(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
            }
        }
    }

    /// The sender, unless the trail is closed.
    fn sender(&self) -> Result<mpsc::Sender<writer::Job>, AuditError> {
        self.inner
            .jobs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(AuditError::Stopped)
    }

    /// For the readiness probe: Err naming the fault when the last batch failed, or the
    /// trail's newest file is missing or not a regular file (removed, or replaced by
    /// something that is not a file). Writes nothing: a probe record would lengthen the
    /// trail with noise.
    pub fn probe(&self) -> Result<(), String> {
        if !self.is_healthy() {
            return Err("the last batch of records could not be written".into());
        }
        let files = trail_files(&self.inner.dir)
            .map_err(|e| format!("cannot read the trail directory: {e}"))?;
        let Some(newest) = files.last() else {
            return Err("the trail's file is missing".into());
        };
        match std::fs::metadata(newest) {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(format!(
                "{} is not a regular file",
                newest.file_name().unwrap_or_default().to_string_lossy()
            )),
            Err(e) => Err(format!("cannot read the trail's file: {e}")),
        }
    }

    /// False after the last batch failed to be written: calls should fail before they
    /// do any work, until a record goes through again.
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
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
        self.sender()?
            .send(job)
            .await
            .map_err(|_| AuditError::Stopped)?;
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
        if self
            .sender()
            .and_then(|tx| tx.try_send(job).map_err(|_| AuditError::Stopped))
            .is_err()
        {
            tracing::error!(request_id = %outcome.request_id, "the audit queue is full or stopped; a cancelled request could not be recorded");
        }
    }
}
