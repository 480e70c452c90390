//! Who writes the trail, and when: group commit without a hop at low load.
//!
//! The first caller to find nobody writing takes the pen: it chains, writes and syncs
//! every record waiting, as one batch, on its own thread, and answers the callers of
//! that batch. At one call in flight a record so costs one write and one fsync, with no
//! thread to wake and no wake back. Callers that arrive while a batch is being written
//! queue their records and wait. If records are waiting when the caller's own batch is
//! done, it passes the pen to the trail's background thread, which writes batch after
//! batch while they keep coming and lays the pen down when the queue is empty: under
//! load one fsync covers everything that arrived during the one before, and no runtime
//! thread is held by a stream of fsyncs. The background thread also writes interval
//! checkpoints when nobody writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Semaphore};

use super::checkpoint::CheckpointSigner;
use super::writer::{self, trail_files, AuditError, AuditSettings, Job};
use super::{record, Parameters};
use crate::metrics::Metrics;
use crate::vault::Outcome;

/// Records waiting to be written at most; a caller beyond it waits (backpressure on a
/// stalled disk instead of unbounded memory).
const QUEUE: usize = 65_536;

/// How long the background thread sleeps at most between looks at the checkpoint clock.
const TICK: Duration = Duration::from_secs(1);

/// A handle on the trail. Cheap to clone.
#[derive(Clone)]
pub struct AuditTrail {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<Queue>,
    /// Held by whoever has the pen, so never contended for long; None once closed.
    writer: Mutex<Option<writer::Writer>>,
    permits: Arc<Semaphore>,
    healthy: Arc<AtomicBool>,
    dir: Arc<std::path::Path>,
    /// To the background thread: take the pen, or stop.
    wake: Mutex<Option<std_mpsc::Sender<Wake>>>,
    background: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Job>,
    /// Someone has the pen (a caller, the background thread, or `close`).
    writing: bool,
    /// No more records are taken.
    closed: bool,
    /// The background thread takes no more hand-overs (it is stopping).
    background_gone: bool,
}

enum Wake {
    /// The pen is handed over: write what waits.
    Write,
    Stop,
}

/// Who holds the pen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// A caller whose own record is among those waiting (marked `leader`).
    Caller,
    /// The background thread or `close`: no record of their own.
    Trail,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditTrail")
    }
}

impl AuditTrail {
    /// Opens the trail (repairing a torn last line, continuing its hash chain, signing
    /// late what a crash left unsigned), writes or checks the checkpoint public key
    /// file, and starts the background thread. Checkpoints are signed with `signer`;
    /// batch sizes, fsync times and records written go to `metrics`.
    pub fn open(
        settings: AuditSettings,
        signer: Box<dyn CheckpointSigner>,
        metrics: &Metrics,
    ) -> std::io::Result<Self> {
        let healthy = Arc::new(AtomicBool::new(true));
        let dir: Arc<std::path::Path> = Arc::from(settings.dir.as_path());
        let mut w = writer::Writer::open(settings, Arc::clone(&healthy), metrics.clone(), signer)?;
        w.recover();
        let permits = Arc::new(Semaphore::new(QUEUE));
        let depth = Arc::downgrade(&permits);
        metrics.sample(
            "p11kms_audit_queue_depth",
            "Audit records waiting to be written",
            move || {
                depth.upgrade().map_or(0, |p| {
                    i64::try_from(QUEUE.saturating_sub(p.available_permits())).unwrap_or(0)
                })
            },
        );
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            writer: Mutex::new(Some(w)),
            permits,
            healthy,
            dir,
            wake: Mutex::new(None),
            background: Mutex::new(None),
        });
        let (wake, woken) = std_mpsc::channel();
        let weak = Arc::downgrade(&inner);
        let thread = std::thread::Builder::new()
            .name("p11kms-audit".into())
            .spawn(move || background(&weak, &woken))?;
        *lock(&inner.wake) = Some(wake);
        *lock(&inner.background) = Some(thread);
        Ok(Self { inner })
    }

    /// Stops taking records, writes every record already queued and the final
    /// checkpoint, and closes the trail's file (and its token session). Waits up to
    /// `limit` for a batch being written to finish; false when it has not (a hanging
    /// disk or token): the trail then has no final checkpoint. Blocking: call it last
    /// at shutdown, outside the runtime. Later records fail with
    /// [`AuditError::Stopped`].
    pub fn close(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        lock(&self.inner.queue).closed = true;
        if let Some(wake) = lock(&self.inner.wake).take() {
            let _ = wake.send(Wake::Stop);
        }
        // The background thread finishes a batch it is writing first.
        if let Some(t) = lock(&self.inner.background).take() {
            if t.join().is_err() {
                tracing::error!("the audit background thread panicked");
            }
        }
        loop {
            {
                let mut q = lock(&self.inner.queue);
                if !q.writing {
                    q.writing = true;
                    break;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let rest = std::mem::take(&mut lock(&self.inner.queue).pending);
        if let Some(mut w) = lock(&self.inner.writer).take() {
            if !rest.is_empty() {
                let result = w.write_batch(&rest);
                answer(rest, &result);
            }
            w.finish();
        }
        true
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
        self.enqueue(&[(outcome, params)]).await?.wait().await
    }

    /// Queues the records of a group of requests (one request, or a batch call and its
    /// items) together, in order; [`Durable::wait`] completes when all are durable.
    /// Queued together, a group goes into one batch, so it costs one write and one
    /// fsync however many records it holds. Once this returns, the records are written
    /// whether or not anyone waits. When nobody is writing, the caller writes, here,
    /// before this returns.
    pub async fn enqueue(&self, group: &[(&Outcome, &Parameters)]) -> Result<Durable, AuditError> {
        if group.is_empty() {
            return Ok(Durable {
                led: None,
                waits: Vec::new(),
            });
        }
        // A group is one request, or a batch call and its items (at most 1001): far
        // below the queue's size, so the room it asks for always comes.
        let n = u32::try_from(group.len()).map_err(|_| AuditError::Stopped)?;
        // Room for the whole group at once: groups taking room one record at a time
        // could each hold part of the queue and wait for each other.
        let permit = Arc::clone(&self.inner.permits)
            .acquire_many_owned(n)
            .await
            .map_err(|_| AuditError::Stopped)?;
        let mut room = Some(permit);
        let mut jobs = Vec::with_capacity(group.len());
        let mut waits = Vec::with_capacity(group.len());
        for (i, (outcome, params)) in group.iter().enumerate() {
            // Each record gives its own place back as it is written; the last takes
            // what remains.
            let own = if i + 1 == group.len() {
                room.take()
            } else {
                room.as_mut().and_then(|p| p.split(1))
            };
            let (done, wait) = oneshot::channel();
            waits.push(wait);
            jobs.push(Job {
                record: record::build(outcome, params),
                done: Some(done),
                leader: false,
                _permit: own,
            });
        }
        let led = match self.submit(jobs)? {
            true => {
                // The last record is the writer's own: it learns the result from its
                // batch, not from a channel.
                waits.pop();
                Some(self.write(Holder::Caller))
            }
            false => None,
        };
        Ok(Durable { led, waits })
    }

    /// Queues the record of a request that nobody waits for any more (its caller went
    /// away mid-way), without waiting for room: for use in `Drop`. If nobody is
    /// writing, it is written now, or, with `by_background`, by the background thread:
    /// the items of a cancelled batch are dropped one after another, and each would
    /// otherwise take the pen for a write and fsync of its own record alone.
    pub fn record_detached(&self, outcome: &Outcome, params: &Parameters, by_background: bool) {
        let rid = &outcome.request_id;
        let Ok(permit) = Arc::clone(&self.inner.permits).try_acquire_owned() else {
            tracing::error!(request_id = %rid, "the audit queue is full; a cancelled request could not be recorded");
            return;
        };
        let job = Job {
            record: record::build(outcome, params),
            done: None,
            leader: false,
            _permit: Some(permit),
        };
        match self.submit(vec![job]) {
            Ok(true) if by_background && self.hand_over() => {}
            Ok(true) => {
                if let Err(e) = self.write(Holder::Caller) {
                    tracing::error!(request_id = %rid, error = %e, "a cancelled request could not be recorded");
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(request_id = %rid, error = %e, "a cancelled request could not be recorded");
            }
        }
    }

    /// Passes the pen, which the caller holds, to the background thread; false when it
    /// has stopped (the caller must write).
    fn hand_over(&self) -> bool {
        let q = lock(&self.inner.queue);
        !q.background_gone
            && lock(&self.inner.wake)
                .as_ref()
                .is_some_and(|w| w.send(Wake::Write).is_ok())
    }

    /// Queues records, in order. True when the caller takes the pen (nobody was
    /// writing): its last record is then marked as the writer's own, and that record's
    /// `done` is not needed.
    fn submit(&self, mut jobs: Vec<Job>) -> Result<bool, AuditError> {
        let mut q = lock(&self.inner.queue);
        if q.closed {
            return Err(AuditError::Stopped);
        }
        let leads = !std::mem::replace(&mut q.writing, true);
        if leads {
            if let Some(last) = jobs.last_mut() {
                last.leader = true;
                last.done = None;
            }
        }
        q.pending.append(&mut jobs);
        Ok(leads)
    }

    /// Writes batches while records wait. A caller stops after the batch that holds
    /// its own record: if more wait, it hands the pen to the background thread. Returns
    /// the result of the caller's batch (Ok for the trail itself). Synchronous, with no
    /// await point: a holder cannot be cancelled half-way and leave the pen unheld.
    fn write(&self, holder: Holder) -> Result<(), AuditError> {
        let mut own = match holder {
            Holder::Caller => None,
            Holder::Trail => Some(Ok(())),
        };
        loop {
            let batch = {
                let mut q = lock(&self.inner.queue);
                if q.pending.is_empty() {
                    q.writing = false;
                    break;
                }
                if holder == Holder::Caller && own.is_some() && !q.background_gone {
                    let handed = lock(&self.inner.wake)
                        .as_ref()
                        .is_some_and(|w| w.send(Wake::Write).is_ok());
                    if handed {
                        // `writing` stays true: the pen is the background thread's now.
                        break;
                    }
                }
                let n = q.pending.len().min(writer::MAX_BATCH);
                q.pending.drain(..n).collect::<Vec<_>>()
            };
            let mut writer = lock(&self.inner.writer);
            let result = match writer.as_mut() {
                Some(w) => w.write_batch(&batch),
                None => Err(AuditError::Stopped),
            };
            if batch.iter().any(|j| j.leader) {
                own = Some(result.clone());
            }
            let written = result.is_ok();
            answer(batch, &result);
            // After the batch's calls are answered: a checkpoint never delays them.
            if let Some(w) = writer.as_mut().filter(|_| written) {
                w.checkpoint_if_due();
            }
        }
        own.unwrap_or(Err(AuditError::Stopped))
    }
}

/// A queued group of records (see [`AuditTrail::enqueue`]).
pub struct Durable {
    /// The result of the batch the caller wrote itself, when it took the pen.
    led: Option<Result<(), AuditError>>,
    /// Where the writers of the other records answer.
    waits: Vec<oneshot::Receiver<Result<(), AuditError>>>,
}

impl Durable {
    /// Completes when every record of the group is durable; the first failure
    /// otherwise.
    pub async fn wait(self) -> Result<(), AuditError> {
        if let Some(led) = self.led {
            led?;
        }
        for w in self.waits {
            w.await.map_err(|_| AuditError::Stopped)??;
        }
        Ok(())
    }
}

/// Tells each caller of a batch its outcome.
fn answer(batch: Vec<Job>, result: &Result<(), AuditError>) {
    for job in batch {
        if let Some(done) = job.done {
            // A caller that went away needs no answer; its record is written all the same.
            let _ = done.send(result.clone());
        }
    }
}

/// The background thread: writes while the pen is handed to it, and interval
/// checkpoints while nobody writes. Ends on `Wake::Stop` (or when the trail is gone).
fn background(inner: &Weak<Inner>, woken: &std_mpsc::Receiver<Wake>) {
    loop {
        let wait = match inner.upgrade() {
            Some(i) => lock(&i.writer)
                .as_ref()
                .and_then(writer::Writer::deadline)
                .map_or(TICK, |at| {
                    at.saturating_duration_since(Instant::now()).min(TICK)
                }),
            None => return,
        };
        let wake = woken.recv_timeout(wait);
        let Some(i) = inner.upgrade() else { return };
        let trail = AuditTrail { inner: i };
        match wake {
            Ok(Wake::Write) => {
                let _ = trail.write(Holder::Trail);
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                {
                    let mut q = lock(&trail.inner.queue);
                    if q.writing || q.closed {
                        continue;
                    }
                    q.writing = true;
                }
                if let Some(w) = lock(&trail.inner.writer).as_mut() {
                    w.checkpoint_if_due();
                }
                // Records that arrived meanwhile are written now.
                let _ = trail.write(Holder::Trail);
            }
            Ok(Wake::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                // No hand-over after this; one already sent is carried out.
                lock(&trail.inner.queue).background_gone = true;
                while let Ok(w) = woken.try_recv() {
                    if matches!(w, Wake::Write) {
                        let _ = trail.write(Holder::Trail);
                    }
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::tests::SoftSigner;
    use crate::audit::{check_end, verify, CheckpointPublicKey, CheckpointSettings, SyncMode};
    use crate::vault::Transport;

    fn outcome(n: usize) -> Outcome {
        Outcome {
            request_id: format!("req-{n}"),
            operation: "Encrypt",
            transport: Transport::Grpc,
            principal: Some("arn:aws:iam::111122223333:root".into()),
            principal_type: Some("Root"),
            account: Some("111122223333".into()),
            source_ip: None,
            via_service: None,
            key_id: "k".into(),
            authorizations: Vec::new(),
            resources: Vec::new(),
            error: None,
            latency: Duration::ZERO,
            batch: None,
        }
    }

    /// Many callers at once, some of them gone before their record is written: every
    /// record is written exactly once, each waiting caller hears Ok, the chain and its
    /// checkpoints verify, and the trail ends in the final checkpoint.
    #[test]
    fn concurrent_callers_each_get_their_record_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuditSettings {
            dir: dir.path().to_owned(),
            sync: SyncMode::None,
            max_file_bytes: 64 * 1024,
            checkpoint: CheckpointSettings {
                every_records: 97,
                every: Duration::from_secs(3600),
                public_key_file: dir.path().join("key.pem"),
            },
        };
        let trail =
            AuditTrail::open(settings, Box::new(SoftSigner::new()), &Metrics::default()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(3)
            .build()
            .unwrap();
        const TASKS: usize = 8;
        const EACH: usize = 150;
        rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..TASKS {
                let trail = trail.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..EACH {
                        let n = t * EACH + i;
                        if n.is_multiple_of(10) {
                            trail.record_detached(
                                &outcome(n),
                                &Parameters::default(),
                                n.is_multiple_of(20),
                            );
                        } else {
                            trail.record(&outcome(n), &Parameters::default()).await?;
                        }
                    }
                    Ok::<_, AuditError>(())
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        });
        drop(rt);
        assert!(trail.close(Duration::from_secs(10)));
        assert!(matches!(
            futures_record_after_close(&trail),
            Err(AuditError::Stopped)
        ));

        let files = trail_files(dir.path()).unwrap();
        assert!(files.len() > 1, "the trail should have rotated");
        let key = CheckpointPublicKey::read(&dir.path().join("key.pem")).unwrap();
        let verified = verify(&files, Some(&key)).unwrap();
        check_end(&verified, false).unwrap();
        let mut seen = std::collections::HashSet::new();
        for f in &files {
            for line in std::fs::read_to_string(f).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(rid) = v["requestID"].as_str() {
                    assert!(seen.insert(rid.to_owned()), "{rid} written twice");
                }
            }
        }
        assert_eq!(seen.len(), TASKS * EACH);
    }

    /// Groups (a batch call and its items) queued while single records keep coming:
    /// each group's records are written together, in order, one after another in the
    /// trail, and each group's caller hears Ok once all of them are durable.
    #[test]
    fn a_group_is_written_in_order_and_together() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuditSettings {
            dir: dir.path().to_owned(),
            sync: SyncMode::None,
            max_file_bytes: 16 * 1024 * 1024,
            checkpoint: CheckpointSettings {
                every_records: 100_000,
                every: Duration::from_secs(3600),
                public_key_file: dir.path().join("key.pem"),
            },
        };
        let trail =
            AuditTrail::open(settings, Box::new(SoftSigner::new()), &Metrics::default()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(3)
            .build()
            .unwrap();
        const GROUPS: usize = 20;
        const SIZE: usize = 101;
        rt.block_on(async {
            let singles = {
                let trail = trail.clone();
                tokio::spawn(async move {
                    for n in 0..500 {
                        trail
                            .record(&outcome(1_000_000 + n), &Parameters::default())
                            .await
                            .unwrap();
                    }
                })
            };
            let mut groups = Vec::new();
            for g in 0..GROUPS {
                let trail = trail.clone();
                groups.push(tokio::spawn(async move {
                    let outcomes: Vec<Outcome> = (0..SIZE).map(|i| outcome(g * SIZE + i)).collect();
                    let params = Parameters::default();
                    let group: Vec<_> = outcomes.iter().map(|o| (o, &params)).collect();
                    trail.enqueue(&group).await.unwrap().wait().await.unwrap();
                }));
            }
            for t in groups {
                t.await.unwrap();
            }
            singles.await.unwrap();
        });
        drop(rt);
        assert!(trail.close(Duration::from_secs(10)));
        let mut ids = Vec::new();
        for f in trail_files(dir.path()).unwrap() {
            for line in std::fs::read_to_string(f).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(rid) = v["requestID"].as_str() {
                    ids.push(rid.trim_start_matches("req-").parse::<usize>().unwrap());
                }
            }
        }
        assert_eq!(ids.len(), GROUPS * SIZE + 500);
        for g in 0..GROUPS {
            let start = ids.iter().position(|n| *n == g * SIZE).unwrap();
            let written: Vec<usize> = ids[start..start + SIZE].to_vec();
            let expected: Vec<usize> = (g * SIZE..(g + 1) * SIZE).collect();
            assert_eq!(written, expected, "group {g} is not whole and in order");
        }
    }

    fn futures_record_after_close(trail: &AuditTrail) -> Result<(), AuditError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(trail.record(&outcome(0), &Parameters::default()))
    }
}
