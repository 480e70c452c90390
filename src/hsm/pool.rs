//! The HSM's sessions: a fixed pool of worker threads, each owning one logged-in
//! session, fed in two lanes (a channel that a few workers serve for short calls to a
//! fast token, and `dispatch` for the rest), and a small set of inline sessions for short calls
//! while the token answers fast (see `inline`). A call that may block for long (a slow
//! token, making or destroying objects, opening a session) runs on a worker, never on
//! the async runtime; a dedicated thread per session also avoids a spawn_blocking hop.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use cryptoki::slot::Slot;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn, Span};

use super::dispatch::{Dispatch, Letter, Next, Place};
use super::health::Health;
use super::inline::{Inline, Lease};
use super::mechanisms::Mechanisms;
use super::session::{KeyCopies, WorkerSession};
use super::supervisor::{self, Supervisor};
use super::{Forget, HsmError, MaterialRef, Module, TokenSelector};
use super::{OaepHash, Signed, Wrapping, WrappingKeyRef};
use crate::domain::{
    Curve, KeyId, KeySpec, KeyUsage, MacAlgorithm, MaterialKind, Pin, Plaintext, SignatureScheme,
    SigningAlgorithm,
};
use crate::metrics::Metrics;

/// What a job does: its names for the call-latency metric, and whether it is one short
/// call that may run inline (see `inline`). Making or destroying objects, probing and
/// (re)opening sessions always run on a worker.
#[derive(Clone, Copy)]
struct CallKind {
    operation: &'static str,
    mechanism: &'static str,
    short: bool,
    /// Key-pair generation: its deadline is [`KEY_PAIR_TIMEOUT`] (see there).
    key_pair: bool,
}

const fn kind(operation: &'static str, mechanism: &'static str, short: bool) -> CallKind {
    CallKind {
        operation,
        mechanism,
        short,
        key_pair: false,
    }
}

const fn key_pair(operation: &'static str, mechanism: &'static str) -> CallKind {
    CallKind {
        key_pair: true,
        ..kind(operation, mechanism, false)
    }
}

/// The deadline of key-pair generation when `hsm.call_timeout_ms` is shorter: an HSM may
/// take seconds to find the primes of an RSA-4096 key (kryoptic on a slow 2-core machine
/// once took over 5 s), which is work, not a hang. While such a call runs, a health probe
/// that the token keeps waiting does not mark it down either (see `supervisor`).
const KEY_PAIR_TIMEOUT: Duration = Duration::from_secs(60);

/// The deadline of key-pair generation in a pool whose other calls have `call_timeout`.
pub(super) fn key_pair_deadline(call_timeout: Duration) -> Duration {
    call_timeout.max(KEY_PAIR_TIMEOUT)
}

const GCM_ENCRYPT: CallKind = kind("encrypt", "CKM_AES_GCM", true);
const GCM_DECRYPT: CallKind = kind("decrypt", "CKM_AES_GCM", true);
// C_GenerateRandom then C_Encrypt with CKM_AES_GCM, in one job.
const DATA_KEY: CallKind = kind("generate_data_key", "CKM_AES_GCM", true);
const RANDOM: CallKind = kind("generate_random", "none", true);
const KEY_GEN: CallKind = kind("create_material", "CKM_AES_KEY_GEN", false);
const HMAC_KEY_GEN: CallKind = kind("create_material", "CKM_GENERIC_SECRET_KEY_GEN", false);
const RSA_KEY_GEN: CallKind = key_pair("create_material", "CKM_RSA_PKCS_KEY_PAIR_GEN");
const EC_KEY_GEN: CallKind = key_pair("create_material", "CKM_EC_KEY_PAIR_GEN");
// RSA private-key operations take milliseconds (RSA-4096 tens of them), ECDH about as
// long as ECDSA plus an object made and destroyed: never on the runtime's threads, and
// never in the short calls' latency verdict.
const SIGN_RSA_PKCS: CallKind = kind("sign", "CKM_RSA_PKCS", false);
const SIGN_RSA_PSS: CallKind = kind("sign", "CKM_RSA_PKCS_PSS", false);
const SIGN_ECDSA: CallKind = kind("sign", "CKM_ECDSA", true);
const VERIFY_RSA_PKCS: CallKind = kind("verify", "CKM_RSA_PKCS", true);
const VERIFY_RSA_PSS: CallKind = kind("verify", "CKM_RSA_PKCS_PSS", true);
const VERIFY_ECDSA: CallKind = kind("verify", "CKM_ECDSA", true);
const MAC: CallKind = kind("generate_mac", "CKM_SHA_HMAC", true);
const VERIFY_MAC: CallKind = kind("verify_mac", "CKM_SHA_HMAC", true);
const PUBLIC_KEY: CallKind = kind("get_public_key", "none", true);
const RSA_DECRYPT: CallKind = kind("decrypt", "CKM_RSA_PKCS_OAEP", false);
const RSA_ENCRYPT: CallKind = kind("encrypt", "CKM_RSA_PKCS_OAEP", true);
const DERIVE: CallKind = kind("derive_shared_secret", "CKM_ECDH1_DERIVE", false);
const DESTROY: CallKind = kind("destroy_material", "none", false);
const WRAPPING_KEY_GEN: CallKind = key_pair("make_wrapping_key", "CKM_RSA_PKCS_KEY_PAIR_GEN");
const UNWRAP: CallKind = kind("import_material", "CKM_RSA_PKCS_OAEP", false);
const SWEEP_WRAPPING_KEYS: CallKind = kind("destroy_wrapping_keys", "none", false);
const PROBE: CallKind = kind("probe", "none", false);
const LIST_MATERIAL: CallKind = kind("list_material", "none", false);
const SEAL_SECRET: CallKind = kind("seal_secret", "CKM_AES_GCM", true);
const OPEN_SECRET: CallKind = kind("open_secret", "CKM_AES_GCM", true);

/// How often sessions of the inline set that are missing (a lost token) are tried again.
const REOPEN_EVERY: Duration = Duration::from_millis(200);

/// How long `destroy_material_everywhere` waits for a busy session to hand back its copy.
const FORGET_WAIT: Duration = Duration::from_secs(5);

/// Work for a worker, with the span it was sent from: a request's, for the calls made
/// while serving one. The worker runs it inside that span, so every line logged for it,
/// the line about a panic included (logged after the work has unwound), carries the
/// request id.
pub(super) struct Job {
    span: Span,
    work: Box<dyn FnOnce(&mut WorkerSession) + Send>,
    /// Key-pair generation: its deadline is [`KEY_PAIR_TIMEOUT`], not the pool's.
    long: bool,
}

impl Job {
    /// `work`, in the current span.
    pub(super) fn new(work: impl FnOnce(&mut WorkerSession) + Send + 'static) -> Self {
        Self {
            span: Span::current(),
            work: Box::new(work),
            long: false,
        }
    }
}

/// Pool sizing and behaviour.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Worker threads, one PKCS#11 session each: they run the calls of a slow token
    /// and every long call, so they bound the calls a slow token has in flight. One per
    /// two cores of them (at least one, at most a quarter of them; none under four)
    /// serves the short calls of a fast token instead (docs/DESIGN.md, "Feeding").
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
    /// The longest a call may take, queueing included: a call still running then fails
    /// its request, and a worker stuck in it is replaced (see `supervisor`). Key-pair
    /// generation gets at least `KEY_PAIR_TIMEOUT` (60 s).
    pub call_timeout: Duration,
    /// How often the supervisor checks that the token is still the one p11kms made its
    /// keys in, while it is up.
    pub health_check: Duration,
    /// How to find the token again after the module is re-initialised (its slot may
    /// change); None keeps the slot.
    pub token: Option<TokenSelector>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            sessions: DEFAULT_SESSIONS,
            inline_sessions: default_inline_sessions(),
            queue_per_session: 64,
            copy_keys: true,
            metrics: Metrics::default(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            health_check: DEFAULT_HEALTH_CHECK,
            token: None,
        }
    }
}

/// `hsm.call_timeout_ms` when the configuration sets none: far above any answer of a
/// working token, network HSMs included, so that only a call that hangs reaches it.
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// `hsm.health_check_ms` when the configuration sets none.
pub(crate) const DEFAULT_HEALTH_CHECK: Duration = Duration::from_secs(1);

/// Worker threads when the configuration sets none: enough for 64 calls in flight to a
/// token that answers in milliseconds. Idle workers cost a parked thread each; a worker
/// opens its session on its first call.
pub(crate) const DEFAULT_SESSIONS: usize = 64;

/// No inline sessions unless configured. Measured on 2 cores, running short calls
/// inline gained nothing over the workers (within ±10%, at 32 calls in flight up to 20%
/// less), and a call that hangs inline holds a runtime thread until the token answers
/// (see docs/DESIGN.md, "The HSM failure model"). Where a token is known to answer fast
/// and never hang, one per core is the setting to try: the runtime has a thread more
/// than the cores (see `cli::serve`), so one runtime thread stays free of HSM calls.
pub(crate) fn default_inline_sessions() -> usize {
    0
}

/// Makes a worker's session (not yet opened).
pub(super) type SessionFactory = Arc<dyn Fn() -> WorkerSession + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The bit of `WorkerState::busy_since` that marks key-pair generation.
const LONG_JOB: u64 = 1 << 63;

/// What the supervisor sees of one worker.
#[derive(Default)]
struct WorkerState {
    /// When its current job began, in ms since the pool started plus one; 0 when idle.
    /// [`LONG_JOB`] is set in it for key-pair generation: one atomic, so that the
    /// supervisor never pairs one job's start with another job's deadline.
    busy_since: AtomicU64,
    /// Replaced after a hang: it leaves once its call returns.
    abandoned: AtomicBool,
}

/// Which lane a worker serves.
#[derive(Clone, Copy)]
enum Role {
    /// Short calls while the token answers fast, from the fast lane's channel, which
    /// only these few workers wait on (see [`Workers::fast`]).
    Fast,
    /// Everything else, handed out by `dispatch`: the worker in this seat, or a new
    /// seat.
    General(Option<usize>),
}

/// One worker thread's place in the pool.
struct WorkerSlot {
    handle: thread::JoinHandle<()>,
    /// Its lane, and its seat there for a general worker.
    role: Role,
    /// Its own inbox, for jobs that must run on this very worker.
    inbox: crossbeam_channel::Sender<Letter<Job>>,
    /// The same inbox's other end: jobs handed to a worker that hangs before it reads
    /// them go to another (see [`Workers::replace_hung`]).
    mail: crossbeam_channel::Receiver<Letter<Job>>,
    state: Arc<WorkerState>,
}

/// The worker threads, and how to start more (a replacement for one that hangs).
pub(super) struct Workers {
    /// The general lane: every worker but the fast ones, each waiting on its own inbox.
    dispatch: Arc<Dispatch<Job>>,
    /// The fast lane: short calls while the token answers fast, served by a few workers
    /// only (one per two cores, at least one, at most a quarter of the sessions), which take the next job without sleeping
    /// while there is one. Each call woken on a worker of its own cost two context
    /// switches. Measured on 2 cores at 32 calls in flight: 7-12% more Encrypts and
    /// Decrypts than with the 64 workers all taking every job, and one worker 8-13 µs
    /// less daemon CPU per call than one per core: the runtime keeps the other core,
    /// and SoftHSM2 answers two threads at once slower than one (docs/DESIGN.md,
    /// "Feeding"). A lock-free channel: the handful of workers waiting on it do not
    /// crowd its waker. Taken at stop, so that a call sent after it fails at once.
    fast: Mutex<Option<crossbeam_channel::Receiver<Job>>>,
    /// Set at stop: a fast-lane call then fails at once, even while a hung fast worker
    /// still holds the lane's channel open.
    stopped: AtomicBool,
    slots: Mutex<Vec<WorkerSlot>>,
    factory: SessionFactory,
    health: Arc<Health>,
    born: Instant,
    started: AtomicUsize,
}

/// What a worker thread runs with.
struct Worker {
    inbox: crossbeam_channel::Receiver<Letter<Job>>,
    state: Arc<WorkerState>,
    health: Arc<Health>,
    born: Instant,
    session: WorkerSession,
}

impl Worker {
    /// A general worker: takes jobs until the pool stops or the worker is replaced.
    /// Leaving drops the session: C_CloseSession.
    fn serve(mut self, dispatch: &Dispatch<Job>, place: Place) {
        let mut next = Next::Idle;
        loop {
            let job = match next {
                Next::Run(job) => job,
                Next::Leave => break,
                Next::Idle => match self.inbox.recv() {
                    Ok(Letter::Job(job)) => job,
                    Ok(Letter::Own(job)) => {
                        // Out of the idle line while it runs, so that no job waits
                        // behind it here; if a job is already on its way, it comes next.
                        let was_idle = dispatch.leave_idle(place);
                        self.run(job);
                        next = if was_idle {
                            dispatch.next(place)
                        } else {
                            Next::Idle
                        };
                        continue;
                    }
                    Ok(Letter::Stop) | Err(_) => {
                        // A job handed over just before the stop still runs.
                        self.run_delivered();
                        break;
                    }
                },
            };
            self.run(job);
            // Jobs for this very worker that came while it was busy go before queued
            // work. Only an idle worker is handed a job, and a stop is left to `next`.
            self.run_delivered();
            next = dispatch.next(place);
        }
    }

    /// Runs the jobs already in its inbox, skipping a stop.
    fn run_delivered(&mut self) {
        while let Ok(letter) = self.inbox.try_recv() {
            if let Letter::Own(job) | Letter::Job(job) = letter {
                self.run(job);
            }
        }
    }

    /// A fast-lane worker: takes fast-lane jobs and its own until the pool stops (it
    /// runs the fast jobs sent before the stop first) or it is replaced.
    fn serve_fast(mut self, fast: &crossbeam_channel::Receiver<Job>) {
        loop {
            crossbeam_channel::select! {
                recv(self.inbox) -> letter => match letter {
                    Ok(Letter::Own(job) | Letter::Job(job)) => self.run(job),
                    Ok(Letter::Stop) | Err(_) => {
                        while let Ok(job) = fast.try_recv() {
                            self.run(job);
                        }
                        break;
                    }
                },
                recv(fast) -> job => match job {
                    Ok(job) => self.run(job),
                    Err(_) => break,
                },
            }
            if self.state.abandoned.load(Ordering::Acquire) {
                break;
            }
        }
    }

    fn run(&mut self, Job { span, work, long }: Job) {
        let _in_span = span.enter();
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mark = if long { LONG_JOB } else { 0 };
        self.state
            .busy_since
            .store((now + 1).min(LONG_JOB - 1) | mark, Ordering::Release);
        {
            let _g = self.health.enter();
            // A panicking job must not take its worker (and the session it owns) down
            // with it; its caller sees the pool error instead.
            let ws = &mut self.session;
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut *ws)));
            if caught.is_err() {
                tracing::error!("an HSM job panicked; resetting the worker's session");
                self.session.reset();
            }
        }
        self.state.busy_since.store(0, Ordering::Release);
    }
}

impl Workers {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Starts one worker thread with a session of its own (opened on its first call).
    fn spawn(&self, role: Role) -> Result<WorkerSlot, HsmError> {
        let (tx, inbox) = crossbeam_channel::unbounded::<Letter<Job>>();
        let state = Arc::new(WorkerState::default());
        let worker = Worker {
            inbox: inbox.clone(),
            state: Arc::clone(&state),
            health: Arc::clone(&self.health),
            born: self.born,
            session: (self.factory)(),
        };
        let name = format!("hsm-{}", self.started.fetch_add(1, Ordering::Relaxed));
        let (handle, role) = match role {
            Role::Fast => {
                let fast = lock(&self.fast).clone().ok_or(HsmError::PoolStopped)?;
                let handle = thread::Builder::new()
                    .name(name)
                    .spawn(move || worker.serve_fast(&fast))
                    .map_err(HsmError::Thread)?;
                (handle, Role::Fast)
            }
            Role::General(index) => {
                let place = self.dispatch.place_for(index);
                let dispatch = Arc::clone(&self.dispatch);
                let handle = thread::Builder::new()
                    .name(name)
                    .spawn(move || worker.serve(&dispatch, place))
                    .map_err(HsmError::Thread)?;
                // Seated only once its thread runs: a replacement that fails to start
                // leaves the seat to the hung worker.
                match self.dispatch.seat(place, tx.clone()) {
                    Next::Run(job) => drop(tx.send(Letter::Job(job))),
                    Next::Leave => drop(tx.send(Letter::Stop)),
                    Next::Idle => {}
                }
                (handle, Role::General(Some(place.index())))
            }
        };
        Ok(WorkerSlot {
            handle,
            role,
            inbox: tx,
            mail: inbox,
            state,
        })
    }

    /// Jobs waiting for a worker, in both lanes.
    fn queued(&self) -> usize {
        self.dispatch.queued() + lock(&self.fast).as_ref().map_or(0, |f| f.len())
    }

    /// Every worker's own inbox.
    fn inboxes(&self) -> Vec<crossbeam_channel::Sender<Letter<Job>>> {
        lock(&self.slots).iter().map(|w| w.inbox.clone()).collect()
    }

    /// Refuses new jobs and stops every worker once the jobs queued are done.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.dispatch.stop();
        drop(lock(&self.fast).take());
        for inbox in self.inboxes() {
            let _ = inbox.send(Letter::Stop);
        }
    }

    /// Whether a worker is in a call with a deadline of its own (key-pair generation),
    /// which a token may make other sessions wait for.
    pub(super) fn in_long_call(&self) -> bool {
        lock(&self.slots)
            .iter()
            .any(|slot| slot.state.busy_since.load(Ordering::Acquire) & LONG_JOB != 0)
    }

    /// Replaces every worker whose job has run longer than `limit` (or its own longer
    /// deadline) with a new worker:
    /// the old thread is left to its call and leaves when (if) it returns. Returns how
    /// many were replaced.
    pub(super) fn replace_hung(&self, limit: Duration) -> usize {
        let now = self.now_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (limit_ms, long_ms) = (ms(limit), ms(key_pair_deadline(limit)));
        let mut slots = lock(&self.slots);
        let mut replaced = 0;
        for slot in slots.iter_mut() {
            let busy = slot.state.busy_since.load(Ordering::Acquire);
            let since = busy & !LONG_JOB;
            let limit = if busy & LONG_JOB == 0 {
                limit_ms
            } else {
                long_ms
            };
            if since == 0 || now.saturating_sub(since - 1) <= limit {
                continue;
            }
            match self.spawn(slot.role) {
                Ok(fresh) => {
                    slot.state.abandoned.store(true, Ordering::Release);
                    // The hung thread is not joined: it may never come back.
                    let hung = std::mem::replace(slot, fresh);
                    // A job handed to it behind the call that hangs (after a job of its
                    // own) goes to another worker; its own jobs are dropped, which fails
                    // their callers at once.
                    while let Ok(letter) = hung.mail.try_recv() {
                        if let Letter::Job(job) = letter {
                            let _ = self.dispatch.submit(job);
                        }
                    }
                    replaced += 1;
                }
                Err(e) => {
                    tracing::error!(error = %e, "a hung HSM worker could not be replaced");
                }
            }
        }
        replaced
    }
}

/// Stops the workers when the last handle to the pool is dropped.
struct StopOnDrop(Arc<Workers>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Handle to the worker pool. Cheap to clone; the workers stop when the last clone is
/// dropped.
#[derive(Clone)]
pub struct HsmPool {
    /// The fast lane (see [`Workers::fast`]); None under four sessions.
    fast_jobs: Option<crossbeam_channel::Sender<Job>>,
    /// Stops the workers once the last clone is dropped.
    _stop: Arc<StopOnDrop>,
    // Bounds queued work so that a burst waits asynchronously instead of piling up.
    permits: Arc<Semaphore>,
    workers: Arc<Workers>,
    size: usize,
    metrics: Metrics,
    /// Sessions for short calls on the caller's thread.
    inline: Arc<Inline>,
    factory: SessionFactory,
    health: Arc<Health>,
    call_timeout: Duration,
    supervisor: Arc<Mutex<Option<Supervisor>>>,
    /// The token's mechanisms, read at start.
    mechanisms: Arc<Mechanisms>,
}

impl HsmPool {
    /// Starts the workers on an already checked slot, and the supervisor that watches the
    /// token. Each worker opens its session lazily. Fails when the operating system
    /// refuses a thread.
    pub fn start(
        module: &Module,
        slot: Slot,
        pin: Pin,
        cfg: &PoolConfig,
    ) -> Result<Self, HsmError> {
        let tag = module.tag_failure(slot, &pin)?;
        let sessions = cfg.sessions.max(1);
        // Half the cores (see `Workers::fast`), at least one, taken from the sessions:
        // at most a quarter of them, so that the general lane (long calls, and every
        // call of a slow token) keeps most; none under four sessions.
        let fast_lane = (thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
            / 2)
        .max(1)
        .min(sessions / 4);
        let (fast_tx, fast_rx) = crossbeam_channel::unbounded::<Job>();
        let health = Arc::new(Health::new(slot, cfg.metrics.clone()));
        let mechanisms = Arc::new(Mechanisms::probe(module, slot, &pin)?);
        let factory: SessionFactory = {
            let offered = Arc::clone(&mechanisms);
            let (ctx, pin, copies, metrics, health) = (
                module.ctx().clone(),
                pin,
                Arc::new(KeyCopies::new(cfg.copy_keys, cfg.metrics.clone())),
                cfg.metrics.clone(),
                Arc::clone(&health),
            );
            Arc::new(move || {
                WorkerSession::new(
                    ctx.clone(),
                    Arc::clone(&health),
                    pin.clone(),
                    Arc::clone(&copies),
                    Arc::clone(&offered),
                    metrics.clone(),
                    tag,
                )
            })
        };
        let workers = Arc::new(Workers {
            dispatch: Arc::new(Dispatch::default()),
            fast: Mutex::new(Some(fast_rx)),
            stopped: AtomicBool::new(false),
            slots: Mutex::new(Vec::with_capacity(sessions)),
            factory: Arc::clone(&factory),
            health: Arc::clone(&health),
            born: Instant::now(),
            started: AtomicUsize::new(0),
        });
        let stop = Arc::new(StopOnDrop(Arc::clone(&workers)));
        for n in 0..sessions {
            let role = if n < fast_lane {
                Role::Fast
            } else {
                Role::General(None)
            };
            let slot = workers.spawn(role)?;
            lock(&workers.slots).push(slot);
        }
        let total_permits = sessions * cfg.queue_per_session.max(1);
        let permits = Arc::new(Semaphore::new(total_permits));
        // Read at each scrape from what the dispatcher and semaphore already know.
        let queue = Arc::downgrade(&workers);
        cfg.metrics.sample(
            "p11kms_hsm_queue_depth",
            "HSM jobs waiting for a free worker",
            move || {
                let queued = queue.upgrade().map_or(0, |w| w.queued());
                i64::try_from(queued).unwrap_or(i64::MAX)
            },
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
        let watched = Arc::downgrade(&health);
        cfg.metrics.sample(
            "p11kms_hsm_token_up",
            "1 while calls go to the token, 0 while it is marked down and calls fail at once",
            move || i64::from(watched.upgrade().is_some_and(|h| h.down().is_none())),
        );
        let inline = Arc::new(Inline::new(cfg.inline_sessions));
        let supervisor = Supervisor::start(supervisor::Watch {
            health: Arc::clone(&health),
            workers: Arc::clone(&workers),
            inline: Arc::clone(&inline),
            ctx: module.ctx().clone(),
            token: cfg.token.clone(),
            metrics: cfg.metrics.clone(),
            call_timeout: cfg.call_timeout,
            health_check: cfg.health_check,
            factory: Arc::clone(&factory),
        })?;
        let pool = Self {
            fast_jobs: (fast_lane > 0).then_some(fast_tx),
            _stop: stop,
            permits,
            size: sessions,
            workers,
            metrics: cfg.metrics.clone(),
            inline,
            factory,
            health,
            call_timeout: cfg.call_timeout,
            supervisor: Arc::new(Mutex::new(Some(supervisor))),
            mechanisms,
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

    /// The token's health, shared with whatever else holds a session on the module
    /// (the audit checkpoint signer).
    pub(crate) fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// Opens the inline sessions that are missing (at start, after a loss), each on a
    /// worker, at most once every `REOPEN_EVERY`.
    fn reopen_inline(&self) {
        for index in self.inline.take_missing(REOPEN_EVERY) {
            let inline = Arc::clone(&self.inline);
            let factory = Arc::clone(&self.factory);
            let job = Job::new(move |_| {
                let mut ws = factory();
                match ws.check() {
                    Ok(()) => inline.add(index, ws),
                    Err(e) => {
                        debug!(error = %e, "an inline PKCS#11 session could not be opened; trying again later");
                        inline.mark_missing(index);
                    }
                }
            });
            if self.workers.dispatch.submit(job).is_err() {
                return;
            }
        }
    }

    /// Hands an inline session whose token call failed badly to a worker, which closes
    /// it (that may block) and lets it be reopened.
    fn retire_inline(&self, (index, ws): (usize, Option<WorkerSession>)) {
        let inline = Arc::clone(&self.inline);
        let job = Job::new(move |_| {
            drop(ws);
            inline.mark_missing(index);
        });
        let _ = self.workers.dispatch.submit(job);
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
            let _g = self.health.enter();
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
        let took = started.elapsed();
        match caught {
            Ok(Err(e)) if e.is_session_lost() => {
                warn!(error = %e, "PKCS#11 session lost; reopening it and running the call on a worker");
                self.metrics.hsm_session_reopened();
                self.retire_inline(lease.take());
                None
            }
            // The supervisor gave up on this call while it hung; its answer, now that
            // it came, is not trusted with the session it came on.
            Ok(_) if took > self.call_timeout => {
                self.metrics.hsm_fault_event("timeout");
                self.retire_inline(lease.take());
                Some(Err(HsmError::Timeout(self.call_timeout)))
            }
            Ok(res) => {
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

    /// Stops the supervisor, then every worker once the jobs queued before this call are
    /// done, closes their sessions and waits for them, so that the module can be
    /// finalized cleanly. A worker replaced after a hang is not waited for.
    pub fn shutdown(&self) {
        if let Some(s) = lock(&self.supervisor).take() {
            s.stop();
        }
        self.workers.stop();
        let slots = std::mem::take(&mut *lock(&self.workers.slots));
        for w in slots {
            let _ = w.handle.join();
        }
        // Last, once no worker can hand back a reopened session.
        self.inline.close_all();
    }

    /// Runs `op`: inline while the token answers fast and an inline session is idle,
    /// else on a worker, within the call deadline. Fails at once while the token is
    /// down; every outcome counts towards the token's health (see `health`).
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
        // While the token is down, fail at once instead of queueing (see `health`).
        self.health.check()?;
        if kind.short && self.inline.token_is_fast() {
            match self.inline.checkout() {
                Some(lease) => {
                    if let Some(res) = self.run_inline(kind, material, lease, &op) {
                        self.health.observe(&res);
                        return res;
                    }
                }
                None => self.reopen_inline(),
            }
        }
        let deadline = self.deadline(kind);
        let queued = self.queue(kind, material, op);
        let res = match tokio::time::timeout(deadline, queued).await {
            Ok(res) => res,
            Err(_) => {
                // The job runs on (or is still queued); the supervisor replaces its
                // worker if it hangs. Its late answer goes nowhere.
                self.metrics.hsm_fault_event("timeout");
                Err(HsmError::Timeout(deadline))
            }
        };
        self.health.observe(&res);
        res
    }

    /// How long a call of `kind` may take, queueing included.
    fn deadline(&self, kind: CallKind) -> Duration {
        if kind.key_pair {
            key_pair_deadline(self.call_timeout)
        } else {
            self.call_timeout
        }
    }

    /// Queues `op` for a worker and waits for its answer. When the session was lost, the
    /// worker reopens it and runs `op` once more; a stale cached handle is forgotten and
    /// retried the same way.
    async fn queue<T, F>(
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
        let metrics = self.metrics.clone();
        let inline = Arc::clone(&self.inline);
        let health = Arc::clone(&self.health);
        // In the caller's span (see `Job`).
        let mut job = Job::new(move |ws| {
            let _permit = permit;
            // Its caller gave up, or the token went down while it waited: skip the call.
            if tx.is_closed() {
                return;
            }
            if let Err(e) = health.check() {
                let _ = tx.send(Err(e));
                return;
            }
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
        job.long = kind.key_pair;
        match &self.fast_jobs {
            Some(fast) if kind.short && self.inline.token_is_fast() => {
                if self.workers.stopped.load(Ordering::Acquire) {
                    return Err(HsmError::PoolStopped);
                }
                fast.send(job).map_err(|_| HsmError::PoolStopped)?;
            }
            _ => self
                .workers
                .dispatch
                .submit(job)
                .map_err(|_| HsmError::PoolStopped)?,
        }
        rx.await.map_err(|_| HsmError::PoolStopped)?
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

    /// Every key-material object in the token (for the start-up orphan sweep).
    pub async fn material_objects(&self) -> Result<Vec<MaterialRef>, HsmError> {
        self.run(LIST_MATERIAL, None, |ws| ws.material_objects())
            .await
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
    /// session (see [`Self::forget_everywhere`]).
    pub async fn destroy_material_everywhere(&self, m: MaterialRef) -> Result<(), HsmError> {
        self.forget_everywhere(Forget::Material(m)).await?;
        self.destroy_material(m).await
    }

    /// Destroys every session copy of a key's material in this daemon's sessions (the
    /// token objects stay): another daemon on the same token is destroying the key.
    pub async fn forget_key_everywhere(&self, key_id: KeyId) -> Result<(), HsmError> {
        self.forget_everywhere(Forget::Key(key_id)).await
    }

    /// Destroys every session copy in this daemon's sessions (announcements of other
    /// daemons' destructions may have been missed); they are made again on first use.
    pub async fn forget_all_everywhere(&self) -> Result<(), HsmError> {
        self.forget_everywhere(Forget::All).await
    }

    /// Drops the session copies `what` covers in every session: each worker gets the job
    /// on its own channel and acknowledges it. A worker that has stopped, or whose job
    /// panicked, drops its acknowledgement, and the call fails (the caller retries)
    /// rather than waiting for it. Inline sessions forget at once when idle, and when
    /// handed back when busy.
    async fn forget_everywhere(&self, what: Forget) -> Result<(), HsmError> {
        self.health.check()?;
        let inboxes = self.workers.inboxes();
        let mut acks = Vec::with_capacity(inboxes.len());
        for inbox in &inboxes {
            let (tx, rx) = oneshot::channel();
            let job = Job::new(move |ws| {
                ws.forget_what(&what);
                let _ = tx.send(());
            });
            inbox
                .send(Letter::Own(job))
                .map_err(|_| HsmError::PoolStopped)?;
            acks.push(rx);
        }
        for rx in acks {
            // A worker stuck in a hung call cannot acknowledge: the caller retries later.
            tokio::time::timeout(self.call_timeout, rx)
                .await
                .map_err(|_| HsmError::Timeout(self.call_timeout))?
                .map_err(|_| HsmError::PoolStopped)?;
        }
        let epoch = self.inline.forget_everywhere(what);
        let deadline = Instant::now() + FORGET_WAIT;
        while !self.inline.caught_up(epoch) {
            if Instant::now() > deadline {
                return Err(HsmError::PoolStopped);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Ok when the token can make and use keys of `spec` and `usage`; else the
    /// mechanism it lacks.
    pub(crate) fn supports(&self, spec: KeySpec, usage: KeyUsage) -> Result<(), String> {
        self.mechanisms.serve(spec, usage)
    }

    /// Signs with the private half of `m` (ECDSA signatures DER-encoded).
    pub(crate) async fn sign(
        &self,
        m: MaterialRef,
        alg: SigningAlgorithm,
        signed: Signed,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, HsmError> {
        let call = match alg.scheme() {
            SignatureScheme::RsaPkcs1 => SIGN_RSA_PKCS,
            SignatureScheme::RsaPss => SIGN_RSA_PSS,
            SignatureScheme::Ecdsa => SIGN_ECDSA,
        };
        self.run(call, Some(m), move |ws| ws.sign(&m, alg, signed, &data))
            .await
    }

    /// Verifies with the public half of `m` in the token: Ok(false) when the signature
    /// does not verify.
    pub(crate) async fn verify(
        &self,
        m: MaterialRef,
        alg: SigningAlgorithm,
        curve: Option<Curve>,
        signed: Signed,
        data: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<bool, HsmError> {
        let call = match alg.scheme() {
            SignatureScheme::RsaPkcs1 => VERIFY_RSA_PKCS,
            SignatureScheme::RsaPss => VERIFY_RSA_PSS,
            SignatureScheme::Ecdsa => VERIFY_ECDSA,
        };
        self.run(call, Some(m), move |ws| {
            ws.verify(&m, alg, curve, signed, &data, &signature)
        })
        .await
    }

    /// HMAC of `data` under `m`.
    pub(crate) async fn mac(
        &self,
        m: MaterialRef,
        alg: MacAlgorithm,
        data: Plaintext,
    ) -> Result<Vec<u8>, HsmError> {
        self.run(MAC, Some(m), move |ws| ws.mac(&m, alg, data.expose()))
            .await
    }

    /// Checks an HMAC of `data` under `m` in the token.
    pub(crate) async fn verify_mac(
        &self,
        m: MaterialRef,
        alg: MacAlgorithm,
        data: Plaintext,
        mac: Vec<u8>,
    ) -> Result<bool, HsmError> {
        self.run(VERIFY_MAC, Some(m), move |ws| {
            ws.verify_mac(&m, alg, data.expose(), &mac)
        })
        .await
    }

    /// The public half of `m` as DER SubjectPublicKeyInfo.
    pub(crate) async fn public_key(
        &self,
        m: MaterialRef,
        kind: MaterialKind,
    ) -> Result<Vec<u8>, HsmError> {
        self.run(PUBLIC_KEY, Some(m), move |ws| ws.public_key(&m, kind))
            .await
    }

    /// RSAES-OAEP decryption with the private half of `m`.
    pub(crate) async fn rsa_decrypt(
        &self,
        m: MaterialRef,
        hash: OaepHash,
        modulus_len: usize,
        ciphertext: Vec<u8>,
    ) -> Result<Plaintext, HsmError> {
        self.run(RSA_DECRYPT, Some(m), move |ws| {
            ws.rsa_decrypt(&m, hash, modulus_len, &ciphertext)
        })
        .await
    }

    /// RSAES-OAEP encryption with the public half of `m`.
    pub(crate) async fn rsa_encrypt(
        &self,
        m: MaterialRef,
        hash: OaepHash,
        plaintext: Plaintext,
    ) -> Result<Vec<u8>, HsmError> {
        self.run(RSA_ENCRYPT, Some(m), move |ws| {
            ws.rsa_encrypt(&m, hash, plaintext.expose())
        })
        .await
    }

    /// ECDH between the private half of `m` and a peer's uncompressed point.
    pub(crate) async fn derive_shared_secret(
        &self,
        m: MaterialRef,
        curve: Curve,
        peer_point: Vec<u8>,
    ) -> Result<Plaintext, HsmError> {
        self.run(DERIVE, Some(m), move |ws| {
            ws.derive_shared_secret(&m, curve, &peer_point)
        })
        .await
    }

    /// Makes an RSA wrapping key of `bits` for an import token, after proving that the
    /// token can unwrap with `wrapping`; returns its public key (DER SPKI).
    pub(crate) async fn make_wrapping_key(
        &self,
        w: WrappingKeyRef,
        bits: u32,
        wrapping: Wrapping,
    ) -> Result<Vec<u8>, HsmError> {
        self.run(WRAPPING_KEY_GEN, None, move |ws| {
            ws.make_wrapping_key(&w, bits, wrapping)
        })
        .await
    }

    /// Unwraps imported material into `m` (see `WorkerSession::import_material`);
    /// returns the import check to keep.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn import_material(
        &self,
        m: MaterialRef,
        kind: (KeySpec, KeyUsage),
        w: WrappingKeyRef,
        how: (u32, Wrapping),
        wrapped: Vec<u8>,
        (prior, replace): (Option<Vec<u8>>, bool),
    ) -> Result<Vec<u8>, HsmError> {
        self.run(UNWRAP, None, move |ws| {
            ws.import_material(&m, kind, &w, how, &wrapped, (prior.as_deref(), replace))
        })
        .await
    }

    /// Destroys the wrapping keys of import tokens that expired before `now_secs`.
    pub(crate) async fn destroy_expired_wrapping_keys(
        &self,
        now_secs: u64,
    ) -> Result<usize, HsmError> {
        self.run(SWEEP_WRAPPING_KEYS, None, move |ws| {
            ws.destroy_expired_wrapping_keys(now_secs)
        })
        .await
    }

    /// Generates new key material of `spec` and `usage` in the token.
    pub async fn create_material(
        &self,
        m: MaterialRef,
        spec: KeySpec,
        usage: KeyUsage,
    ) -> Result<(), HsmError> {
        let call = match spec.material() {
            MaterialKind::Aes256 => KEY_GEN,
            MaterialKind::Hmac(_) => HMAC_KEY_GEN,
            MaterialKind::Rsa(_) => RSA_KEY_GEN,
            MaterialKind::Ec(_) => EC_KEY_GEN,
        };
        self.run(call, None, move |ws| {
            // SoftHSM2 fails a token object made while other sessions read the token
            // now and then (see `HsmError::retry_generation`). Making material is
            // idempotent (orphans are cleared first), so try again briefly.
            let mut attempt = 0u32;
            loop {
                match ws.generate(&m, spec, usage) {
                    Err(e) if e.retry_generation(attempt) => {
                        attempt += 1;
                        warn!(material = %m.label(), attempt, code = ?e.return_code(), "C_GenerateKey failed; retrying");
                        std::thread::sleep(std::time::Duration::from_millis(5 * u64::from(attempt)));
                    }
                    other => return other,
                }
            }
        })
        .await
    }
}
