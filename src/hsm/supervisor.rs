//! The supervisor: one thread that watches the token and brings it back.
//!
//! - **Hung calls.** A worker whose call has run past `hsm.call_timeout_ms` (or past a
//!   longer deadline of its own: key-pair generation) is replaced
//!   by a new worker (its caller has already failed with KMSInternalException); a call
//!   that hangs on an inline session sends short calls to the workers. Either marks the
//!   token down.
//! - **The token is the one p11kms knows.** While the token is up, a probe on a session
//!   of the supervisor's own checks, every `hsm.health_check_ms`, that the token still
//!   holds the secret-sealing key that start-up made in it. A token that lost it was
//!   wiped or replaced: every session drops its key copies, and the token is marked down
//!   until the key is found again, so that no ciphertext is made under a key that will
//!   not exist after the next restart.
//! - **Recovery.** While the token is down, a probe runs every [`RECOVER_EVERY`]; when
//!   the fault needs it, or a probe fails, the module is re-initialised first
//!   (C_Finalize, C_Initialize, the slot found again by label), at most once per
//!   [`REINIT_EVERY`]. The first probe that finds the token, logged in, with its
//!   marker, marks it up.
//!
//! The probes run on a thread of their own: a probe that hangs in the token must not
//! stop the supervisor from noticing other hangs.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};

use super::health::Health;
use super::inline::Inline;
use super::pool::{key_pair_deadline, SessionFactory, Workers};
use super::{HsmError, TokenSelector};
use crate::metrics::Metrics;

/// How often the supervisor looks for hung calls.
const TICK: Duration = Duration::from_millis(100);

/// How often a token that is down is probed.
const RECOVER_EVERY: Duration = Duration::from_millis(250);

/// The least time between two re-initialisations of the module.
const REINIT_EVERY: Duration = Duration::from_secs(1);

/// How long a re-initialisation waits for the calls in progress to finish.
const REINIT_WAIT: Duration = Duration::from_secs(1);

/// What the supervisor watches and uses.
pub(super) struct Watch {
    pub(super) health: Arc<Health>,
    pub(super) workers: Arc<Workers>,
    pub(super) inline: Arc<Inline>,
    pub(super) ctx: Pkcs11,
    pub(super) token: Option<TokenSelector>,
    pub(super) metrics: Metrics,
    pub(super) call_timeout: Duration,
    pub(super) health_check: Duration,
    pub(super) factory: SessionFactory,
}

/// The running supervisor.
pub(super) struct Supervisor {
    stop: mpsc::Sender<()>,
    handle: thread::JoinHandle<()>,
}

impl Supervisor {
    /// Starts the supervisor thread and its prober.
    pub(super) fn start(watch: Watch) -> Result<Self, HsmError> {
        let (stop, stopped) = mpsc::channel();
        let prober = Prober::start(&watch.factory, &watch.health)?;
        let handle = thread::Builder::new()
            .name("hsm-supervisor".into())
            .spawn(move || watch.run(&stopped, prober))
            .map_err(HsmError::Thread)?;
        Ok(Self { stop, handle })
    }

    /// Stops the supervisor and waits for it (not for a probe stuck in the token).
    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.join();
    }
}

/// What a probe found.
enum Probe {
    /// The token answers, logged in, holds the marker, and encrypts and decrypts.
    Found,
    /// The token answers but lacks p11kms's marker: wiped or replaced.
    MarkerMissing,
    /// A call failed.
    Failed(HsmError),
    /// The probe has not answered within the call deadline.
    Hung,
}

impl Watch {
    fn run(self, stopped: &mpsc::Receiver<()>, mut prober: Prober) {
        let mut next_check = Instant::now() + self.health_check;
        let mut next_recovery = Instant::now();
        let mut last_reinit: Option<Instant> = None;
        loop {
            match stopped.recv_timeout(TICK) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            self.find_hangs();
            let now = Instant::now();
            match self.health.down() {
                None if now >= next_check => {
                    next_check = now + self.health_check;
                    self.check(&mut prober);
                }
                None => {}
                Some(down) if now >= next_recovery => {
                    next_recovery = now + RECOVER_EVERY;
                    let reinit_due = last_reinit.is_none_or(|t| t.elapsed() >= REINIT_EVERY);
                    // A fault that needs it gets a re-initialisation before the probe;
                    // any other gets one once a probe has failed.
                    if down.reinit && reinit_due && !prober.busy() {
                        last_reinit = Some(Instant::now());
                        self.reinitialise();
                    }
                    match prober.probe(self.call_timeout) {
                        Probe::Found => {
                            self.health.restore();
                            next_check = Instant::now() + self.health_check;
                        }
                        Probe::Failed(e) => {
                            tracing::debug!(error = %e, "the HSM is still down");
                            if e.needs_reinit() {
                                self.health.trip(String::new(), true);
                            } else if reinit_due && !down.reinit && !prober.busy() {
                                last_reinit = Some(Instant::now());
                                self.reinitialise();
                            }
                        }
                        Probe::MarkerMissing | Probe::Hung => {}
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Replaces workers stuck in a call, keeps short calls off the runtime while one
    /// hangs inline, and marks the token down for either.
    fn find_hangs(&self) {
        let replaced = self.workers.replace_hung(self.call_timeout);
        for _ in 0..replaced {
            self.metrics.hsm_fault_event("worker_replaced");
        }
        let inline_hang = self
            .inline
            .longest_call()
            .is_some_and(|t| t > self.call_timeout);
        if inline_hang {
            self.inline.force_slow();
        }
        if replaced > 0 || inline_hang {
            let ms = self.call_timeout.as_millis();
            self.down(
                format!("an HSM call has not returned for over {ms} ms"),
                false,
            );
        }
    }

    /// The periodic look at a token that is up.
    fn check(&self, prober: &mut Prober) {
        match prober.probe(self.call_timeout) {
            Probe::Found => {}
            Probe::MarkerMissing => {
                // Every session drops its copies now: they are of keys this token no
                // longer holds.
                self.health.drop_everything();
                self.down(
                    "the token no longer holds p11kms's secret-sealing key: it was wiped or replaced, or is not the token p11kms's keys were made in".into(),
                    false,
                );
            }
            Probe::Failed(e) => {
                let reinit = e.needs_reinit();
                if reinit || e.is_device_fault() {
                    self.down(format!("the token failed a health probe: {e}"), reinit);
                }
            }
            // A token may keep other sessions waiting while it makes a key pair (kryoptic
            // did, for an RSA-4096 key): that call has a deadline of its own, and the
            // probe is not a hang until it is past it (the worker is then replaced).
            Probe::Hung
                if prober.excused(
                    self.workers.in_long_call(),
                    key_pair_deadline(self.call_timeout),
                ) => {}
            Probe::Hung => {
                let ms = self.call_timeout.as_millis();
                self.down(
                    format!("the token has not answered a health probe for over {ms} ms"),
                    false,
                );
            }
        }
    }

    fn down(&self, reason: String, reinit: bool) {
        self.health.trip(reason, reinit);
    }

    /// C_Finalize and C_Initialize, once the calls in progress are done, then the token's
    /// slot found again. Every session opened before is forgotten (see `health`).
    fn reinitialise(&self) {
        let Some(exclusive) = self.health.exclusive(REINIT_WAIT) else {
            tracing::warn!("the PKCS#11 module cannot be re-initialised while calls are still in it; trying again later");
            return;
        };
        // Not initialised (a previous attempt failed half-way) is fine here.
        let _ = self.ctx.clone().finalize();
        let slot = match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) => match &self.token {
                Some(sel) => super::module::find_slot(&self.ctx, sel).ok(),
                None => None,
            },
            Err(e) => {
                tracing::warn!(error = %e, "C_Initialize failed while re-initialising the PKCS#11 module");
                None
            }
        };
        self.health
            .reinitialised(slot.unwrap_or_else(|| self.health.slot()), &exclusive);
        self.metrics.hsm_fault_event("reinitialized");
        tracing::warn!(
            "the PKCS#11 module was re-initialised; sessions are opened and logged in again"
        );
    }
}

/// A thread with a session of its own that probes the token on request.
struct Prober {
    /// To the probe thread; dropped to stop it.
    ask: Option<mpsc::SyncSender<()>>,
    answers: mpsc::Receiver<Result<bool, HsmError>>,
    /// A probe was sent and has not answered yet.
    waiting: bool,
    /// When the latest probe was sent.
    sent: Option<Instant>,
    /// A key-pair generation was seen running while the latest probe waited.
    excused: bool,
    /// The probe thread, joined on drop unless a probe is stuck in the token: its
    /// session must be closed before the module is finalized.
    handle: Option<thread::JoinHandle<()>>,
}

impl Prober {
    fn start(factory: &SessionFactory, health: &Arc<Health>) -> Result<Self, HsmError> {
        let (ask, asked) = mpsc::sync_channel::<()>(1);
        let (answer, answers) = mpsc::channel();
        let mut ws = factory();
        let health = Arc::clone(health);
        let handle = thread::Builder::new()
            .name("hsm-probe".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    let found = {
                        let _g = health.enter();
                        let found = ws.self_test();
                        if found.is_err() {
                            ws.reset();
                        }
                        found
                    };
                    if answer.send(found).is_err() {
                        return;
                    }
                }
            })
            .map_err(HsmError::Thread)?;
        Ok(Self {
            ask: Some(ask),
            answers,
            waiting: false,
            sent: None,
            excused: false,
            handle: Some(handle),
        })
    }

    /// A probe is still in the token.
    fn busy(&mut self) -> bool {
        if self.waiting {
            // An answer that came late clears the way for the next probe.
            if self.answers.try_recv().is_ok() {
                self.waiting = false;
            }
        }
        self.waiting
    }

    /// Whether a probe still waiting is excused rather than hung: a key-pair generation
    /// ran (`long_call` now, or at an earlier look) while it waited, and it has waited
    /// no longer than that call's deadline, `limit`. Once seen, the excuse holds until
    /// the probe answers, so a key pair that ends just before the probe does not leave
    /// the probe looking hung.
    fn excused(&mut self, long_call: bool, limit: Duration) -> bool {
        self.excused |= long_call;
        self.excused && self.sent.is_some_and(|t| t.elapsed() <= limit)
    }

    /// Probes the token and waits at most `limit` for the answer.
    fn probe(&mut self, limit: Duration) -> Probe {
        if self.busy() {
            return Probe::Hung;
        }
        if self.ask.as_ref().is_none_or(|a| a.send(()).is_err()) {
            return Probe::Failed(HsmError::PoolStopped);
        }
        self.waiting = true;
        self.sent = Some(Instant::now());
        self.excused = false;
        match self.answers.recv_timeout(limit) {
            Ok(found) => {
                self.waiting = false;
                match found {
                    Ok(true) => Probe::Found,
                    Ok(false) => Probe::MarkerMissing,
                    Err(e) => Probe::Failed(e),
                }
            }
            Err(_) => Probe::Hung,
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        if self.busy() {
            return;
        }
        // Closing the channel ends the thread's loop.
        self.ask = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
