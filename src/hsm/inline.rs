//! Short HSM calls run on the thread that needs them. A fast token (SoftHSM2 answers
//! C_Encrypt in about 7 µs) costs less than the two thread hand-offs of a worker pool
//! (a futex wake-up each way, and on a small machine a context switch), so while the
//! token's measured latency stays low, a short call takes an idle session from this set
//! and runs on the async runtime's own thread. A slow token (a network HSM answering in
//! milliseconds) would stall the runtime that way, so as soon as answers take longer
//! than [`INLINE_MAX_LATENCY`] (three of the last four) calls go to the worker pool
//! again, and they come back after a run of fast answers (see `Verdict`).
//!
//! The set holds fewer sessions than the runtime has threads, so that even while every
//! inline session is in a call, one runtime thread is free for work that needs no HSM
//! (DescribeKey, health checks, TLS). A call that finds no idle session goes to the pool.
//!
//! Sessions are opened and repaired on pool workers, never inline: a login or a lost
//! session can take as long as the token likes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::session::WorkerSession;
use super::Forget;

/// Above this measured call latency, short calls leave the runtime's threads for the
/// pool. Tokio's guidance is that a task should yield within 10–100 µs; a fast token
/// answers well inside that, a network HSM far outside it.
pub(super) const INLINE_MAX_LATENCY: Duration = Duration::from_micros(100);

/// Forgotten materials remembered for sessions that were busy when the forgetting
/// happened; a session further behind than this forgets every cached key instead.
const FORGET_LOG: usize = 1024;

/// `seen` of a session that holds no key copies (being repaired, or not yet opened).
const HOLDS_NOTHING: u64 = u64::MAX;

/// The idle inline sessions, and what makes their use safe.
pub(super) struct Inline {
    /// Idle sessions with their index.
    idle: Mutex<Vec<(usize, WorkerSession)>>,
    /// Per session index: the forget epoch its key cache has caught up with.
    seen: Box<[AtomicU64]>,
    /// The latest forget epoch; each `forget_everywhere` adds one.
    epoch: AtomicU64,
    /// The materials forgotten at each recent epoch.
    forgets: Mutex<VecDeque<(u64, Forget)>>,
    /// Session indexes with no session: not opened yet, or lost and not yet reopened.
    missing: Mutex<Vec<usize>>,
    /// When the missing sessions may next be (re)opened, in ms since `born`.
    next_fill_ms: AtomicU64,
    born: Instant,
    /// Exponentially weighted mean latency of short calls, in nanoseconds (shown as a
    /// metric).
    latency_ns: AtomicU64,
    /// Which way short calls go, from the latest answers: see [`Verdict`].
    verdict: AtomicU32,
    /// Set at shutdown: sessions handed back or reopened later are closed, not kept.
    closed: AtomicBool,
    /// Per session index: when its current call began, in ms since `born` plus one; 0
    /// while it is not lent out. The supervisor looks for calls that hang.
    busy_since: Box<[AtomicU64]>,
}

/// The choice between inline and the workers, from the recent answers: the low 16 bits
/// say which of the last 16 short calls were slow (over [`INLINE_MAX_LATENCY`]), bit
/// [`Verdict::SLOW`] whether calls go to the workers. Calls leave the request threads
/// when three of the last four answers were slow, and come back after sixteen fast ones
/// in a row. A call preempted midway on a busy machine looks slow, but three in four
/// are not preempted; a token answering in milliseconds is slow every time. A token
/// whose answers vary goes to the workers and stays there.
struct Verdict;

impl Verdict {
    const SLOW: u32 = 1 << 16;
    const HISTORY: u32 = 0xFFFF;

    fn next(state: u32, slow_answer: bool) -> u32 {
        let history = ((state << 1) | u32::from(slow_answer)) & Self::HISTORY;
        let slow_mode = if state & Self::SLOW == 0 {
            (history & 0xF).count_ones() >= 3
        } else {
            history != 0
        };
        history | if slow_mode { Self::SLOW } else { 0 }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent under a panic (no multi-step updates).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inline {
    /// A set of `n` sessions, all missing until [`Self::take_missing`]'s caller opens them.
    pub(super) fn new(n: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::with_capacity(n)),
            seen: (0..n).map(|_| AtomicU64::new(HOLDS_NOTHING)).collect(),
            epoch: AtomicU64::new(0),
            forgets: Mutex::new(VecDeque::new()),
            missing: Mutex::new((0..n).collect()),
            next_fill_ms: AtomicU64::new(0),
            born: Instant::now(),
            latency_ns: AtomicU64::new(0),
            verdict: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            busy_since: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long the longest call now running on an inline session has been running.
    pub(super) fn longest_call(&self) -> Option<Duration> {
        let now = self.now_ms();
        self.busy_since
            .iter()
            .map(|b| b.load(Ordering::Acquire))
            .filter(|&b| b != 0)
            .map(|b| Duration::from_millis(now.saturating_sub(b - 1)))
            .max()
    }

    /// Sends short calls to the workers until sixteen answers in a row are fast again:
    /// a call hangs on an inline session, and a runtime thread must not be the next.
    pub(super) fn force_slow(&self) {
        self.verdict
            .store(Verdict::SLOW | Verdict::HISTORY, Ordering::Relaxed);
    }

    fn set_busy(&self, index: usize, busy: bool) {
        if let Some(b) = self.busy_since.get(index) {
            b.store(if busy { self.now_ms() + 1 } else { 0 }, Ordering::Release);
        }
    }

    /// Whether short calls should run inline: the token has been answering fast.
    pub(super) fn token_is_fast(&self) -> bool {
        self.verdict.load(Ordering::Relaxed) & Verdict::SLOW == 0
    }

    /// The running mean latency of short calls.
    pub(super) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_ns.load(Ordering::Relaxed))
    }

    /// Adds one short call's latency (inline or on a worker) to the verdict, and to the
    /// running mean shown as a metric (weight 1/8).
    pub(super) fn observe(&self, took: Duration) {
        let sample = nanos(took);
        let slow = took > INLINE_MAX_LATENCY;
        let _ = self
            .verdict
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(Verdict::next(v, slow))
            });
        let _ = self
            .latency_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(old - old / 8 + sample.min(u64::MAX / 8) / 8)
            });
    }

    /// An idle session, caught up with every forgotten material; None when all are busy
    /// or missing.
    pub(super) fn checkout(&self) -> Option<Lease<'_>> {
        let (index, mut ws) = lock(&self.idle).pop()?;
        self.set_busy(index, true);
        self.catch_up(index, &mut ws);
        Some(Lease {
            inline: self,
            index,
            ws: Some(ws),
        })
    }

    /// Destroys the session copies of `m` that are no longer wanted: before a session is
    /// used again it drops every copy forgotten since it last looked.
    fn catch_up(&self, index: usize, ws: &mut WorkerSession) {
        let Some(seen) = self.seen.get(index) else {
            return;
        };
        let now = self.epoch.load(Ordering::Acquire);
        let had = seen.load(Ordering::Acquire);
        if had == HOLDS_NOTHING || had >= now {
            seen.store(now, Ordering::Release);
            return;
        }
        let log = lock(&self.forgets);
        // The log keeps the latest epochs only; a session that missed some forgets all.
        if log.front().is_some_and(|(e, _)| *e > had + 1) || log.is_empty() {
            drop(log);
            ws.forget_all();
        } else {
            let due: Vec<Forget> = log
                .iter()
                .filter(|(e, _)| *e > had && *e <= now)
                .map(|(_, what)| *what)
                .collect();
            drop(log);
            for what in &due {
                ws.forget_what(what);
            }
        }
        seen.store(now, Ordering::Release);
    }

    /// Returns a session to the idle set. It catches up under the set's lock, so that a
    /// `forget_everywhere` running meanwhile either sees it idle or has its epoch seen
    /// here. After `close_all` the session is closed instead.
    fn checkin(&self, index: usize, mut ws: WorkerSession) {
        self.set_busy(index, false);
        let mut idle = lock(&self.idle);
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        self.catch_up(index, &mut ws);
        idle.push((index, ws));
    }

    /// Adds a freshly opened (or repaired) session; it holds no copies yet.
    pub(super) fn add(&self, index: usize, ws: WorkerSession) {
        let mut idle = lock(&self.idle);
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if let Some(seen) = self.seen.get(index) {
            seen.store(self.epoch.load(Ordering::Acquire), Ordering::Release);
        }
        idle.push((index, ws));
    }

    /// Marks a session as gone (its copies died with it) until it is reopened.
    pub(super) fn mark_missing(&self, index: usize) {
        if let Some(seen) = self.seen.get(index) {
            seen.store(HOLDS_NOTHING, Ordering::Release);
        }
        lock(&self.missing).push(index);
    }

    /// Session indexes to open now, at most once every `every`: the caller opens each on
    /// a pool worker and hands it to [`Self::add`], or back to [`Self::mark_missing`].
    pub(super) fn take_missing(&self, every: Duration) -> Vec<usize> {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let due = self.next_fill_ms.load(Ordering::Relaxed);
        if now < due {
            return Vec::new();
        }
        let next = now.saturating_add(u64::try_from(every.as_millis()).unwrap_or(u64::MAX));
        if self
            .next_fill_ms
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.missing))
    }

    /// Starts forgetting `what` in every inline session: idle ones at once, busy ones
    /// when they are handed back. Returns the epoch to wait for with [`Self::caught_up`].
    pub(super) fn forget_everywhere(&self, what: Forget) -> u64 {
        let target = {
            let mut log = lock(&self.forgets);
            let e = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
            log.push_back((e, what));
            while log.len() > FORGET_LOG {
                log.pop_front();
            }
            e
        };
        let mut idle = lock(&self.idle);
        for (index, ws) in idle.iter_mut() {
            self.catch_up(*index, ws);
        }
        target
    }

    /// Closes every idle session (shutdown, before the module is finalized).
    pub(super) fn close_all(&self) {
        let closed = {
            let mut idle = lock(&self.idle);
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut *idle)
        };
        for (index, _) in &closed {
            if let Some(seen) = self.seen.get(*index) {
                seen.store(HOLDS_NOTHING, Ordering::Release);
            }
        }
    }

    /// True when every session has dropped the copies forgotten up to `epoch`.
    pub(super) fn caught_up(&self, epoch: u64) -> bool {
        self.seen.iter().all(|s| s.load(Ordering::Acquire) >= epoch)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A session taken from the idle set; handed back when dropped.
pub(super) struct Lease<'a> {
    inline: &'a Inline,
    index: usize,
    ws: Option<WorkerSession>,
}

impl Lease<'_> {
    /// The session.
    pub(super) fn session(&mut self) -> Option<&mut WorkerSession> {
        self.ws.as_mut()
    }

    /// Takes the session out of the set, for repair on a pool worker.
    pub(super) fn take(mut self) -> (usize, Option<WorkerSession>) {
        self.inline.set_busy(self.index, false);
        (self.index, self.ws.take())
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(ws) = self.ws.take() {
            self.inline.checkin(self.index, ws);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_token_leaves_the_inline_path_within_three_calls_and_comes_back() {
        let inline = Inline::new(2);
        assert!(inline.token_is_fast(), "a new set starts inline");
        for _ in 0..200 {
            inline.observe(Duration::from_micros(7));
        }
        assert!(inline.token_is_fast());
        // Preempted calls now and then (even two in a row) do not move calls off the
        // request threads.
        for _ in 0..50 {
            inline.observe(Duration::from_millis(50));
            inline.observe(Duration::from_millis(50));
            inline.observe(Duration::from_micros(7));
            inline.observe(Duration::from_micros(7));
            assert!(inline.token_is_fast());
        }
        // A token answering in 2 ms does, within three calls.
        let mut calls = 0;
        while inline.token_is_fast() {
            inline.observe(Duration::from_millis(2));
            calls += 1;
        }
        assert!(calls <= 3, "{calls} slow calls ran inline");
        // One fast answer among slow ones changes nothing.
        inline.observe(Duration::from_micros(7));
        inline.observe(Duration::from_millis(2));
        assert!(!inline.token_is_fast());
        // Sixteen fast answers in a row bring calls back.
        for i in 0..16 {
            assert!(!inline.token_is_fast(), "back after {i} fast answers");
            inline.observe(Duration::from_micros(7));
        }
        assert!(inline.token_is_fast());
    }

    #[test]
    fn missing_sessions_are_handed_out_once_per_interval() {
        let inline = Inline::new(3);
        let every = Duration::from_secs(3600);
        assert_eq!(inline.take_missing(every), vec![0, 1, 2]);
        inline.mark_missing(1);
        assert!(
            inline.take_missing(every).is_empty(),
            "tried again too soon"
        );
        let inline = Inline::new(1);
        assert_eq!(inline.take_missing(Duration::ZERO), vec![0]);
        inline.mark_missing(0);
        assert_eq!(inline.take_missing(Duration::ZERO), vec![0]);
    }

    #[test]
    fn forgetting_waits_for_every_session_that_may_hold_a_copy() {
        let inline = Inline::new(2);
        // Both missing (hold nothing): caught up at once.
        let m = Forget::Material(super::super::MaterialRef {
            key_id: crate::domain::KeyId::generate(),
            version: crate::domain::MaterialVersion(1),
        });
        let e = inline.forget_everywhere(m);
        assert!(inline.caught_up(e));
        // A session that holds keys and has not looked since is behind.
        inline.seen[0].store(e, Ordering::Release);
        let e2 = inline.forget_everywhere(m);
        assert!(!inline.caught_up(e2));
        inline.seen[0].store(e2, Ordering::Release);
        assert!(inline.caught_up(e2));
    }
}
