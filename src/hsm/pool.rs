//! A fixed pool of HSM worker threads, each owning one logged-in session, fed through a
//! channel. PKCS#11 calls block, so they never run on the async runtime; a dedicated
//! thread per session also avoids a spawn_blocking hop per request.

use std::sync::Arc;
use std::thread;

use cryptoki::slot::Slot;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{warn, Instrument as _, Span};

use super::session::WorkerSession;
use super::{HsmError, MaterialRef, Module};
use crate::domain::{Pin, Plaintext};
use crate::metrics::Metrics;

/// What a job does, for the call-latency metric: (operation, mechanism).
type CallKind = (&'static str, &'static str);
const GCM_ENCRYPT: CallKind = ("encrypt", "CKM_AES_GCM");
const GCM_DECRYPT: CallKind = ("decrypt", "CKM_AES_GCM");
// C_GenerateRandom then C_Encrypt with CKM_AES_GCM, in one job.
const DATA_KEY: CallKind = ("generate_data_key", "CKM_AES_GCM");
const RANDOM: CallKind = ("generate_random", "none");
const KEY_GEN: CallKind = ("create_material", "CKM_AES_KEY_GEN");
const DESTROY: CallKind = ("destroy_material", "none");
const PROBE: CallKind = ("probe", "none");
const SEAL_SECRET: CallKind = ("seal_secret", "CKM_AES_GCM");
const OPEN_SECRET: CallKind = ("open_secret", "CKM_AES_GCM");

type Job = Box<dyn FnOnce(&mut WorkerSession) + Send>;

/// Pool sizing and behaviour.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Worker threads, one PKCS#11 session each.
    pub sessions: usize,
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
            sessions: 4,
            queue_per_session: 64,
            copy_keys: true,
            metrics: Metrics::default(),
        }
    }
}

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
        let workers = (0..sessions)
            .map(|i| {
                let rx = rx.clone();
                // A channel of its own, for jobs that must run on this very worker.
                let (ctl_tx, ctl) = crossbeam_channel::unbounded::<Job>();
                controls.push(ctl_tx);
                let stop = Arc::clone(&stopping);
                let mut ws = WorkerSession::new(
                    module.ctx().clone(),
                    slot,
                    pin.clone(),
                    cfg.copy_keys,
                    cfg.metrics.clone(),
                );
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
        Ok(Self {
            jobs: tx,
            permits,
            size: workers.len(),
            workers: Arc::new(std::sync::Mutex::new(workers)),
            stopping,
            controls: Arc::new(controls),
            metrics: cfg.metrics.clone(),
        })
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
        let permit: OwnedSemaphorePermit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| HsmError::PoolStopped)?;
        let (tx, rx) = oneshot::channel();
        let span = Span::current();
        let metrics = self.metrics.clone();
        let job: Job = Box::new(move |ws| {
            let _permit = permit;
            let _g = span.enter();
            let started = std::time::Instant::now();
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
            metrics.hsm_call(kind.0, kind.1, started.elapsed());
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
