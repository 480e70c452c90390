//! The token's health, shared by everything that holds a session on the module: whether
//! calls may go to the token at all (a circuit breaker), which initialisation of the
//! module a session belongs to, and which slot the token sits in now.
//!
//! A token that fails (the device is removed, errors in a burst, a call hangs, the token
//! no longer holds p11kms's marker object) is marked down. While it is down, calls fail
//! at once with [`HsmError::Unavailable`], which clients see as the retryable
//! KeyUnavailableException: a queue that grows while the token is away would only turn
//! into a wave of timeouts. The supervisor (`supervisor`) brings it back: it probes the
//! token, re-initialises the module when that is what the fault needs, and marks the
//! token up once a probe finds it again.
//!
//! A module re-initialisation (C_Finalize, C_Initialize) invalidates every session and
//! object handle, and a new session may get the number an old one had. So every call on
//! a session holds [`Health::enter`]'s read guard, the re-initialisation holds the write
//! guard, and a session stamped with an older generation is forgotten (never closed: its
//! number may belong to another session now) before it is used again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use cryptoki::slot::Slot;

use super::HsmError;
use crate::metrics::Metrics;

/// Calls that fail in a row with a device fault before the token is marked down.
pub(super) const FAILURES_TO_TRIP: u32 = 3;

/// Why the token was marked down, and since when.
#[derive(Clone, Debug)]
pub(crate) struct Down {
    /// When.
    pub(crate) since: Instant,
    /// What happened, for logs, errors and `/readyz`.
    pub(crate) reason: String,
    /// The module must be re-initialised before the token can come back (the device
    /// was removed, or the module lost its state).
    pub(crate) reinit: bool,
}

/// Which initialisation of the module, and which drop-everything round, a session was
/// opened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    generation: u64,
    epoch: u64,
}

/// What a session must do before its next call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Staleness {
    /// Nothing: the session is current.
    Current,
    /// Close it (and its key copies) and open a new one: the token was replaced.
    Close,
    /// Forget it without closing: the module was re-initialised under it.
    Forget,
}

/// See the module documentation.
pub(crate) struct Health {
    calls: RwLock<()>,
    generation: AtomicU64,
    epoch: AtomicU64,
    slot: Mutex<Slot>,
    is_down: AtomicBool,
    down: Mutex<Option<Down>>,
    failures: AtomicU32,
    metrics: Metrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Health {
    /// A healthy token in `slot`; going down and coming back are counted in `metrics`.
    pub(crate) fn new(slot: Slot, metrics: Metrics) -> Self {
        Self {
            calls: RwLock::new(()),
            generation: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            slot: Mutex::new(slot),
            is_down: AtomicBool::new(false),
            down: Mutex::new(None),
            failures: AtomicU32::new(0),
            metrics,
        }
    }

    /// Held while a call uses a session: no re-initialisation runs meanwhile.
    pub(crate) fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.calls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The write side of [`Self::enter`], waited for at most `limit`: a call that hangs
    /// in the token holds its read guard, and the re-initialisation must not wait for
    /// it forever.
    pub(crate) fn exclusive(&self, limit: Duration) -> Option<RwLockWriteGuard<'_, ()>> {
        let until = Instant::now() + limit;
        loop {
            match self.calls.try_write() {
                Ok(g) => return Some(g),
                Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::sync::TryLockError::WouldBlock) => return None,
            }
        }
    }

    /// The slot the token is in now.
    pub(crate) fn slot(&self) -> Slot {
        *lock(&self.slot)
    }

    /// The stamp of a session opened now.
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp {
            generation: self.generation.load(Ordering::Acquire),
            epoch: self.epoch.load(Ordering::Acquire),
        }
    }

    /// What a session stamped `s` must do before it is used.
    pub(crate) fn staleness(&self, s: Stamp) -> Staleness {
        let now = self.stamp();
        if now.generation != s.generation {
            Staleness::Forget
        } else if now.epoch != s.epoch {
            Staleness::Close
        } else {
            Staleness::Current
        }
    }

    /// Every session drops its key copies and cached handles before its next call.
    pub(crate) fn drop_everything(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a re-initialisation of the module, done under [`Self::exclusive`]:
    /// every session opened before it is forgotten.
    pub(crate) fn reinitialised(&self, slot: Slot, _exclusive: &RwLockWriteGuard<'_, ()>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        *lock(&self.slot) = slot;
    }

    /// Fails at once while the token is down.
    pub(crate) fn check(&self) -> Result<(), HsmError> {
        if !self.is_down.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(HsmError::Unavailable(
            lock(&self.down)
                .as_ref()
                .map_or_else(|| "the HSM is unavailable".to_owned(), |d| d.reason.clone()),
        ))
    }

    /// Why the token is down, if it is.
    pub(crate) fn down(&self) -> Option<Down> {
        if !self.is_down.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.down).clone()
    }

    /// Counts one call's outcome: a device fault that outlived the call's own retry
    /// counts towards marking the token down (at once for a removed device), anything
    /// else (success, or a failure of the request itself) resets the count.
    pub(crate) fn observe<T>(&self, res: &Result<T, HsmError>) {
        match res {
            Err(e) if e.needs_reinit() => {
                self.trip(format!("the token reports: {e}"), true);
            }
            Err(e) if e.is_device_fault() => {
                let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
                if n >= FAILURES_TO_TRIP {
                    self.trip(format!("{n} calls in a row failed: {e}"), false);
                }
            }
            // Not tried, so nothing learnt.
            Err(HsmError::Unavailable(_) | HsmError::PoolStopped) => {}
            _ => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Release);
                }
            }
        }
    }

    /// Marks the token down (the first reason stays; a later one that needs a
    /// re-initialisation adds that need). Returns true when it was up.
    pub(crate) fn trip(&self, reason: String, reinit: bool) -> bool {
        let mut down = lock(&self.down);
        match down.as_mut() {
            Some(d) => {
                d.reinit |= reinit;
                false
            }
            None => {
                tracing::error!(%reason, "the HSM is marked down; calls fail with KeyUnavailableException until it is back");
                *down = Some(Down {
                    since: Instant::now(),
                    reason,
                    reinit,
                });
                self.is_down.store(true, Ordering::Release);
                self.metrics.hsm_fault_event("marked_down");
                true
            }
        }
    }

    /// Marks the token up again; returns how long it was down.
    pub(crate) fn restore(&self) -> Option<Duration> {
        let mut down = lock(&self.down);
        let was = down.take()?;
        self.failures.store(0, Ordering::Release);
        self.is_down.store(false, Ordering::Release);
        let took = was.since.elapsed();
        self.metrics.hsm_fault_event("recovered");
        tracing::warn!(
            down_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            reason = %was.reason,
            "the HSM is back; calls go to the token again"
        );
        Some(took)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;
    use cryptoki::error::{Error, RvError};

    fn slot(id: u64) -> Slot {
        Slot::try_from(id).unwrap()
    }

    fn fault(rv: RvError) -> Result<(), HsmError> {
        Err(HsmError::from_call(Error::Pkcs11(rv, Function::Encrypt)))
    }

    #[test]
    fn a_burst_of_device_errors_marks_the_token_down_and_a_success_in_between_resets_it() {
        let h = Health::new(slot(1), Metrics::default());
        for _ in 0..FAILURES_TO_TRIP - 1 {
            h.observe(&fault(RvError::DeviceError));
        }
        h.observe(&Ok::<(), HsmError>(()));
        for _ in 0..FAILURES_TO_TRIP - 1 {
            h.observe(&fault(RvError::DeviceError));
        }
        assert!(h.check().is_ok());
        h.observe(&fault(RvError::DeviceError));
        let err = h.check().unwrap_err();
        assert!(matches!(err, HsmError::Unavailable(_)), "{err:?}");
        assert!(!h.down().unwrap().reinit);
        assert!(h.restore().is_some());
        assert!(h.check().is_ok());
        assert!(h.restore().is_none());
    }

    #[test]
    fn a_removed_device_marks_the_token_down_at_once_for_a_reinitialisation() {
        let h = Health::new(slot(1), Metrics::default());
        h.observe(&fault(RvError::DeviceRemoved));
        assert!(h.down().unwrap().reinit);
        // A failure of the request itself (a bad tag) says nothing of the token.
        let h = Health::new(slot(1), Metrics::default());
        for _ in 0..10 {
            h.observe(&Err::<(), _>(HsmError::TagMismatch));
        }
        assert!(h.check().is_ok());
    }

    #[test]
    fn sessions_learn_whether_to_close_or_forget() {
        let h = Health::new(slot(1), Metrics::default());
        let s = h.stamp();
        assert_eq!(h.staleness(s), Staleness::Current);
        h.drop_everything();
        assert_eq!(h.staleness(s), Staleness::Close);
        let s = h.stamp();
        let w = h.exclusive(Duration::from_millis(10)).unwrap();
        h.reinitialised(slot(7), &w);
        drop(w);
        assert_eq!(h.staleness(s), Staleness::Forget);
        assert_eq!(h.slot().id(), 7);
        // A call in progress holds the re-initialisation off.
        let g = h.enter();
        assert!(h.exclusive(Duration::from_millis(20)).is_none());
        drop(g);
        assert!(h.exclusive(Duration::from_millis(20)).is_some());
    }
}
