//! The HSM's sessions: a fixed pool of worker threads, each owning one logged-in
//! session, fed through a channel, and a small set of inline sessions for short calls
//! while the token answers fast (see `inline`). A call that may block for long (a slow
//! token, making or destroying objects, opening a session) runs on a worker, never on
//! the async runtime; a dedicated thread per session also avoids a spawn_blocking hop.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cryptoki::slot::Slot;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn, Instrument as _, Span};

use super::inline::{Inline, Lease};
use super::session::WorkerSession;
use super::{HsmError, MaterialRef, Module};
use crate::domain::{Pin, Plaintext};
use crate::metrics::Metrics;

/// What a job does: its names for the call-latency metric, and whether it is one short
/// call that may run inline (see `inline`). Making or destroying objects, probing and
/// (re)opening sessions always run on a worker.
#[derive(Clone, Copy)]
struct CallKind {
    operation: &'static str,
    mechanism: &'static str,
    short: bool,
}

const fn kind(operation: &'static str, mechanism: &'static str, short: bool) -> CallKind {
    CallKind {
        operation,
        mechanism,
        short,
    }
}

const GCM_ENCRYPT: CallKind = kind("encrypt", "CKM_AES_GCM", true);
const GCM_DECRYPT: CallKind = kind("decrypt", "CKM_AES_GCM", true);
// C_GenerateRandom then C_Encrypt with CKM_AES_GCM, in one job.
const DATA_KEY: CallKind = kind("generate_data_key", "CKM_AES_GCM", true);
const RANDOM: CallKind = kind("generate_random", "none", true);
const KEY_GEN: CallKind = kind("create_material", "CKM_AES_KEY_GEN", false);
const DESTROY: CallKind = kind("destroy_material", "none", false);
const PROBE: CallKind = kind("probe", "none", false);
const SEAL_SECRET: CallKind = kind("seal_secret", "CKM_AES_GCM", true);
const OPEN_SECRET: CallKind = kind("open_secret", "CKM_AES_GCM", true);

/// How often sessions of the inline set that are missing (a lost token) are tried again.
const REOPEN_EVERY: Duration = Duration::from_millis(200);

/// How long `destroy_material_everywhere` waits for a busy session to hand back its copy.
const FORGET_WAIT: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce(&mut WorkerSession) + Send>;

/// Pool sizing and behaviour.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Worker threads, one PKCS#11 session each: they run the calls of a slow token
    /// and every long call, so they bound the calls a slow token has in flight.
    pub sessions: usize,
    /// Sessions for short calls run on the caller's own thread while the token answers
    /// fast (see `inline`); 0 sends every call to the workers. Keep it below the
    /// runtime's threads.
    pub inline_sessions: usize,
    /// Requests queued per worker before callers wait.
    pub queue_per_session: usize,
    /// Use session-object copies of token keys (faster on SoftHSM2).
    pub copy_keys: bool,
    /// Where call latencies, queue depth, session reopens and re-logins are recorded.
    pub metrics: Metrics,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            sessions: DEFAULT_SESSIONS,
            inline_sessions: default_inline_sessions(),
            queue_per_session: 64,
            copy_keys: true,
            metrics: Metrics::default(),
        }
    }
}

/// Worker threads when the configuration sets none: enough for 64 calls in flight to a
/// token that answers in milliseconds. Idle workers cost a parked thread each; a worker
/// opens its session on its first call.
pub(crate) const DEFAULT_SESSIONS: usize = 64;

/// One inline session per core: the runtime has a thread more than the cores (see
/// `cli::serve`), so one runtime thread stays free of HSM calls.
pub(crate) fn default_inline_sessions() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Makes a worker's session (not yet opened).
type SessionFactory = Arc<dyn Fn() -> WorkerSession + Send + Sync>;

/// Handle to the worker pool. Cheap to clone; the workers stop when the last clone is
/// dropped.
#[derive(Clone)]
pub struct HsmPool {
    jobs: crossbeam_channel::Sender<Job>,
    // Bounds queued work so that a burst waits asynchronously instead of piling up.
    permits: Arc<Semaphore>,
    workers: Arc<std::sync::Mutex<Vec<thread::JoinHandle<()>>>>,
    size: usize,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    // Each worker's own job channel (see `destroy_material_everywhere`).
    controls: Arc<Vec<crossbeam_channel::Sender<Job>>>,
    metrics: Metrics,
    /// Sessions for short calls on the caller's thread.
    inline: Arc<Inline>,
    factory: SessionFactory,
}

impl HsmPool {
    /// Starts the workers on an already checked slot. Each opens its session lazily.
    /// Fails when the operating system refuses a worker thread.
    pub fn start(
        module: &Module,
        slot: Slot,
        pin: Pin,
        cfg: &PoolConfig,
    ) -> Result<Self, HsmError> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let sessions = cfg.sessions.max(1);
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut controls = Vec::with_capacity(sessions);
        let factory: SessionFactory = {
            let (ctx, pin, copy_keys, metrics) = (
                module.ctx().clone(),
                pin,
                cfg.copy_keys,
                cfg.metrics.clone(),
            );
            Arc::new(move || {
                WorkerSession::new(ctx.clone(), slot, pin.clone(), copy_keys, metrics.clone())
            })
        };
        let workers = (0..sessions)
            .map(|i| {
                let rx = rx.clone();
                // A channel of its own, for jobs that must run on this very worker.
                let (ctl_tx, ctl) = crossbeam_channel::unbounded::<Job>();
                controls.push(ctl_tx);
                let stop = Arc::clone(&stopping);
                let mut ws = factory();
                thread::Builder::new()
                    .name(format!("hsm-{i}"))
                    .spawn(move || {
                        loop {
                            let job = crossbeam_channel::select! {
                                recv(ctl) -> j => j,
                                recv(rx) -> j => j,
                            };
                            let Ok(job) = job else { break };
                            // A panicking job must not take its worker (and the session it
                            // owns) down with it; its caller sees the pool error instead.
                            let caught =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    job(&mut ws)
                                }));
                            if caught.is_err() {
                                tracing::error!(
                                    "an HSM job panicked; resetting the worker's session"
                                );
                                ws.reset();
                            }
                            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                                break;
                            }
                        }
                        // Leaving the loop drops the session: C_CloseSession.
                    })
                    .map_err(HsmError::Thread)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let total_permits = sessions * cfg.queue_per_session.max(1);
        let permits = Arc::new(Semaphore::new(total_permits));
        // Read at each scrape from what the channel and semaphore already know; a
        // receiver (not a sender) so that the gauge never keeps the workers alive.
        cfg.metrics.sample(
            "p11kms_hsm_queue_depth",
            "HSM jobs waiting for a free worker",
            move || i64::try_from(rx.len()).unwrap_or(i64::MAX),
        );
        let held = Arc::clone(&permits);
        cfg.metrics.sample(
            "p11kms_hsm_calls_in_flight",
            "HSM jobs queued or running (bounded by the sessions times the queue per session)",
            move || {
                i64::try_from(total_permits.saturating_sub(held.available_permits()))
                    .unwrap_or(i64::MAX)
            },
        );
        let pool = Self {
            jobs: tx,
            permits,
            size: workers.len(),
            workers: Arc::new(std::sync::Mutex::new(workers)),
            stopping,
            controls: Arc::new(controls),
            metrics: cfg.metrics.clone(),
            inline: Arc::new(Inline::new(cfg.inline_sessions)),
            factory,
        };
        let sampled = Arc::clone(&pool.inline);
        cfg.metrics.sample(
            "p11kms_hsm_token_latency_microseconds",
            "Running mean latency of short HSM calls (weight 1/8); the inline-or-worker choice follows the last answers (see docs)",
            move || i64::try_from(sampled.latency().as_micros()).unwrap_or(i64::MAX),
        );
        // The inline sessions open on the workers, in the background.
        pool.reopen_inline();
        Ok(pool)
    }

    /// Opens the inline sessions that are missing (at start, after a loss), each on a
    /// worker, at most once every `REOPEN_EVERY`.
    fn reopen_inline(&self) {
        for index in self.inline.take_missing(REOPEN_EVERY) {
            let inline = Arc::clone(&self.inline);
            let factory = Arc::clone(&self.factory);
            let job: Job = Box::new(move |_| {
                let mut ws = factory();
                match ws.check() {
                    Ok(()) => inline.add(index, ws),
                    Err(e) => {
                        debug!(error = %e, "an inline PKCS#11 session could not be opened; trying again later");
                        inline.mark_missing(index);
                    }
                }
            });
            if self.jobs.send(job).is_err() {
                return;
            }
        }
    }

    /// Hands an inline session whose token call failed badly to a worker, which closes
    /// it (that may block) and lets it be reopened.
    fn retire_inline(&self, (index, ws): (usize, Option<WorkerSession>)) {
        let inline = Arc::clone(&self.inline);
        let job: Job = Box::new(move |_| {
            drop(ws);
            inline.mark_missing(index);
        });
        let _ = self.jobs.send(job);
    }

    /// Runs a short call on an inline session, on this thread. None when the session
    /// was lost or the call panicked: the session is retired, and the caller runs the
    /// call on a worker instead.
    fn run_inline<T, F>(
        &self,
        kind: CallKind,
        material: Option<MaterialRef>,
        mut lease: Lease<'_>,
        op: &F,
    ) -> Option<Result<T, HsmError>>
    where
        F: Fn(&mut WorkerSession) -> Result<T, HsmError>,
    {
        let started = Instant::now();
        let caught = {
            let ws = lease.session()?;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let res = op(ws);
                match (&res, &material) {
                    (Err(e), Some(m)) if e.is_stale_handle() => {
                        ws.forget(m);
                        op(ws)
                    }
                    _ => res,
                }
            }))
        };
        match caught {
            Ok(Err(e)) if e.is_session_lost() => {
                warn!(error = %e, "PKCS#11 session lost; reopening it and running the call on a worker");
                self.metrics.hsm_session_reopened();
                self.retire_inline(lease.take());
                None
            }
            Ok(res) => {
                let took = started.elapsed();
                self.inline.observe(took);
                self.metrics.hsm_call(kind.operation, kind.mechanism, took);
                self.metrics.hsm_inline_call();
                Some(res)
            }
            Err(_) => {
                tracing::error!("an HSM call panicked; its session is reopened");
                self.retire_inline(lease.take());
                None
            }
        }
    }

    /// Number of worker threads that started.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Stops every worker once the jobs queued before this call are done, closes their
    /// sessions and waits for them, so that the module can be finalized cleanly.
    pub fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for _ in 0..self.size {
            let _ = self.jobs.send(Box::new(|_| {}));
        }
        let handles = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.join();
        }
        // Last, once no worker can hand back a reopened session.
        self.inline.close_all();
    }

    /// Runs `op` on a worker. When the session was lost, the worker reopens it and runs
    /// `op` once more; a stale cached handle is forgotten and retried the same way.
    async fn run<T, F>(
        &self,
        kind: CallKind,
        material: Option<MaterialRef>,
        op: F,
    ) -> Result<T, HsmError>
    where
        T: Send + 'static,
        F: Fn(&mut WorkerSession) -> Result<T, HsmError> + Send + 'static,
    {
        if kind.short && self.inline.token_is_fast() {
            match self.inline.checkout() {
                Some(lease) => {
                    if let Some(res) = self.run_inline(kind, material, lease, &op) {
                        return res;
                    }
                }
                None => self.reopen_inline(),
            }
        }
        let permit: OwnedSemaphorePermit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| HsmError::PoolStopped)?;
        let (tx, rx) = oneshot::channel();
        let span = Span::current();
        let metrics = self.metrics.clone();
        let inline = Arc::clone(&self.inline);
        let job: Job = Box::new(move |ws| {
            let _permit = permit;
            let _g = span.enter();
            // A call that opens the session first says nothing of the token's speed.
            let measured = kind.short && ws.is_open();
            let started = Instant::now();
            let mut res = op(ws);
            if let Err(e) = &res {
                if e.is_session_lost() {
                    warn!(error = %e, "PKCS#11 session lost; reopening and retrying once");
                    metrics.hsm_session_reopened();
                    ws.reset();
                    res = op(ws);
                } else if e.is_stale_handle() {
                    if let Some(m) = &material {
                        ws.forget(m);
                        res = op(ws);
                    }
                }
            }
            let took = started.elapsed();
            if measured {
                inline.observe(took);
            }
            metrics.hsm_call(kind.operation, kind.mechanism, took);
            let _ = tx.send(res);
        });
        self.jobs.send(job).map_err(|_| HsmError::PoolStopped)?;
        rx.instrument(Span::current())
            .await
            .map_err(|_| HsmError::PoolStopped)?
    }

    /// Encrypts with AES-256-GCM under `m`; returns ciphertext || 16-byte tag.
    pub async fn encrypt(
        &self,
        m: MaterialRef,
        iv: [u8; 12],
        aad: Vec<u8>,
        plaintext: Plaintext,
    ) -> Result<Vec<u8>, HsmError> {
        self.run(GCM_ENCRYPT, Some(m), move |ws| {
            ws.encrypt(&m, &iv, &aad, plaintext.expose())
        })
        .await
    }

    /// Decrypts ciphertext || tag under `m`.
    pub async fn decrypt(
        &self,
        m: MaterialRef,
        iv: [u8; 12],
        aad: Vec<u8>,
        ciphertext_and_tag: Vec<u8>,
    ) -> Result<Plaintext, HsmError> {
        self.run(GCM_DECRYPT, Some(m), move |ws| {
            ws.decrypt(&m, &iv, &aad, &ciphertext_and_tag)
        })
        .await
    }

    /// Seals one of the daemon's secrets with AES-256-GCM under the secret-sealing key
    /// (made at start-up by `Module::ensure_secret_seal_key`); returns ciphertext || tag.
    pub async fn seal_secret(
        &self,
        iv: [u8; 12],
        aad: Vec<u8>,
        plaintext: Plaintext,
    ) -> Result<Vec<u8>, HsmError> {
        self.run(SEAL_SECRET, None, move |ws| {
            match ws.seal_secret(&iv, &aad, plaintext.expose()) {
                Err(e) if e.is_stale_handle() => {
                    ws.forget_seal_key();
                    ws.seal_secret(&iv, &aad, plaintext.expose())
                }
                other => other,
            }
        })
        .await
    }

    /// Opens a secret sealed by [`Self::seal_secret`]; TagMismatch when the sealed bytes
    /// or the AAD are not the ones sealed.
    pub async fn open_secret(
        &self,
        iv: [u8; 12],
        aad: Vec<u8>,
        ciphertext_and_tag: Vec<u8>,
    ) -> Result<Plaintext, HsmError> {
        self.run(OPEN_SECRET, None, move |ws| {
            match ws.open_secret(&iv, &aad, &ciphertext_and_tag) {
                Err(e) if e.is_stale_handle() => {
                    ws.forget_seal_key();
                    ws.open_secret(&iv, &aad, &ciphertext_and_tag)
                }
                other => other,
            }
        })
        .await
    }

    /// A fresh data key from the token's RNG and its encryption under `m`, in one trip
    /// to a worker: C_GenerateRandom + C_Encrypt.
    pub async fn generate_data_key(
        &self,
        m: MaterialRef,
        iv: [u8; 12],
        aad: Vec<u8>,
        len: usize,
    ) -> Result<(Plaintext, Vec<u8>), HsmError> {
        // The data key is drawn once: a retry after a lost session encrypts the same key
        // under the same IV, never a second key under a reused IV.
        let drawn: std::sync::OnceLock<Plaintext> = std::sync::OnceLock::new();
        self.run(DATA_KEY, Some(m), move |ws| {
            let key = match drawn.get() {
                Some(k) => k.clone(),
                None => {
                    let k = ws.random(len)?;
                    drawn.get_or_init(|| k.clone());
                    k
                }
            };
            let ct = ws.encrypt(&m, &iv, &aad, key.expose())?;
            Ok((key, ct))
        })
        .await
    }

    /// Checks that a worker has a usable, logged-in session (C_GetSessionInfo, opening
    /// and logging in first if needed): the readiness probe's look at the token.
    pub async fn probe(&self) -> Result<(), HsmError> {
        self.run(PROBE, None, |ws| ws.check()).await
    }

    /// Random bytes from the token.
    pub async fn generate_random(&self, len: usize) -> Result<Plaintext, HsmError> {
        self.run(RANDOM, None, move |ws| ws.random(len)).await
    }

    /// Destroys a material's token object (best effort after a failed CreateKey).
    pub async fn destroy_material(&self, m: MaterialRef) -> Result<(), HsmError> {
        self.run(DESTROY, Some(m), move |ws| ws.destroy_key(&m))
            .await
    }

    /// Destroys a material's token object, and first its session copies in every
    /// worker: each worker gets the job on its own channel and acknowledges it. A
    /// worker that has stopped, or whose job panicked, drops its acknowledgement, and
    /// the call fails (the sweep retries) rather than waiting for it.
    pub async fn destroy_material_everywhere(&self, m: MaterialRef) -> Result<(), HsmError> {
        let mut acks = Vec::with_capacity(self.controls.len());
        for ctl in self.controls.iter() {
            let (tx, rx) = oneshot::channel();
            let job: Job = Box::new(move |ws| {
                ws.forget(&m);
                let _ = tx.send(());
            });
            ctl.send(job).map_err(|_| HsmError::PoolStopped)?;
            acks.push(rx);
        }
        for rx in acks {
            rx.await.map_err(|_| HsmError::PoolStopped)?;
        }
        // The inline sessions: idle ones forget at once, busy ones when handed back.
        let epoch = self.inline.forget_everywhere(m);
        let deadline = Instant::now() + FORGET_WAIT;
        while !self.inline.caught_up(epoch) {
            if Instant::now() > deadline {
                return Err(HsmError::PoolStopped);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.destroy_material(m).await
    }

    /// Generates new key material as a token object.
    pub async fn create_material(&self, m: MaterialRef) -> Result<(), HsmError> {
        self.run(KEY_GEN, None, move |ws| {
            // SoftHSM2 answers CKR_GENERAL_ERROR now and then when a token object is made
            // while other sessions read the token (its file store re-indexes). Making
            // material is idempotent (orphans are cleared first), so try again briefly.
            let mut attempt = 0u32;
            loop {
                match ws.generate_key(&m) {
                    Err(e) if e.is_general_error() && attempt < 4 => {
                        attempt += 1;
                        warn!(material = %m.label(), attempt, "C_GenerateKey failed with a general error; retrying");
                        std::thread::sleep(std::time::Duration::from_millis(5 * u64::from(attempt)));
                    }
                    other => return other,
                }
            }
        })
        .await
    }
}
