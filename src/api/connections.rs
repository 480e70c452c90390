//! What a connection may cost before and after its TLS handshake, shared by every TLS
//! listener of the daemon (gRPC, AWS JSON, metrics): handshakes in progress are bounded
//! in time, in total and per source, and a new one makes room by ending the oldest, so
//! that silent or slow sockets cannot keep a prompt client from connecting; a served
//! connection with no request in flight for the idle timeout is closed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;
// Tokio's clock, which tests can pause and advance.
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::metrics::ConnectionCounters;

/// How the daemon's listeners bound their connections (`[connections]` in
/// `p11kms.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A client has this long from its TCP connect to the end of its TLS handshake.
    pub handshake_timeout: Duration,
    /// TLS handshakes in progress at once on one listener; a new connection over the
    /// bound ends the oldest.
    pub max_pending_handshakes: usize,
    /// Handshakes in progress at once from one source (an IPv4 address or an IPv6 /64);
    /// a new connection from a source at its bound ends that source's oldest.
    pub max_pending_handshakes_per_source: usize,
    /// A connection of the API listeners with no request in flight for this long is
    /// closed (HTTP/2 GOAWAY): idle clients cannot hold descriptors and buffers for ever.
    pub idle_timeout: Duration,
    /// A request's head and its body must each arrive within this long: a client that
    /// sends a request a byte at a time (slowloris) cannot keep it in flight for ever.
    pub request_read_timeout: Duration,
}

/// Default of [`ConnectionLimits::handshake_timeout`]: a TLS 1.3 handshake is two round
/// trips and a signature, so 5 s leaves a slow network ample time while a silent socket
/// holds its place for a short while only.
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`ConnectionLimits::max_pending_handshakes`].
pub(crate) const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;
/// Default of [`ConnectionLimits::max_pending_handshakes_per_source`]: a quarter of the
/// total, so that one address alone can end only its own handshakes, while many clients
/// behind one NAT can still connect at once.
pub(crate) const DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE: usize = 256;
/// Default of [`ConnectionLimits::idle_timeout`]: five minutes, as many servers keep an
/// idle keep-alive connection; a client that calls less often pays one handshake per
/// call, and gRPC clients and the AWS SDKs reconnect on their own.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default of [`ConnectionLimits::request_read_timeout`], as hyper's own default for an
/// HTTP/1.1 request's head.
pub(crate) const DEFAULT_REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The most `max_pending_handshakes` may be: half the AWS JSON listener's bound on open
/// connections (4096), which handshakes in progress count against, so that silent
/// sockets can never take all of it.
pub(crate) const MAX_PENDING_HANDSHAKES_LIMIT: usize = 2048;

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            max_pending_handshakes_per_source: DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_read_timeout: DEFAULT_REQUEST_READ_TIMEOUT,
        }
    }
}

/// Where a connection comes from, for the per-source bound: an IPv4 address (an
/// IPv4-mapped IPv6 address counts as its IPv4 address), or the /64 prefix of an IPv6
/// address, since one host commonly holds a whole /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Source(IpAddr);

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                Self(IpAddr::V6(prefix.into()))
            }
            v4 => Self(v4),
        }
    }
}

/// The handshakes in progress on one listener, oldest first, with the means to end each.
#[derive(Default)]
struct Pending {
    next: u64,
    by_age: BTreeMap<u64, (Source, oneshot::Sender<()>)>,
    by_source: HashMap<Source, BTreeSet<u64>>,
}

impl Pending {
    /// Registers a handshake from `source` and returns its number, and the handshakes it
    /// ends to stay within the bounds: first the oldest of its own source when that
    /// source is at its bound, then the oldest of all while the listener is at its own.
    /// Oldest, not newest: a client that completes its handshake promptly is through
    /// before many newer connections arrive, while a silent one lingers and is ended.
    fn admit(
        &mut self,
        source: Source,
        evict: oneshot::Sender<()>,
        limits: &ConnectionLimits,
    ) -> (u64, Vec<oneshot::Sender<()>>) {
        let mut ended = Vec::new();
        let own = self.by_source.get(&source).map_or(0, BTreeSet::len);
        if own >= limits.max_pending_handshakes_per_source.max(1) {
            let oldest = self.by_source.get(&source).and_then(|s| s.first().copied());
            ended.extend(oldest.and_then(|seq| self.remove(seq)));
        }
        while self.by_age.len() >= limits.max_pending_handshakes.max(1) {
            let Some(seq) = self.by_age.keys().next().copied() else {
                break;
            };
            ended.extend(self.remove(seq));
        }
        let seq = self.next;
        self.next += 1;
        self.by_age.insert(seq, (source, evict));
        self.by_source.entry(source).or_default().insert(seq);
        (seq, ended)
    }

    /// Forgets handshake `seq` (finished, failed or ended) and returns its ender.
    fn remove(&mut self, seq: u64) -> Option<oneshot::Sender<()>> {
        let (source, evict) = self.by_age.remove(&seq)?;
        if let Some(set) = self.by_source.get_mut(&source) {
            set.remove(&seq);
            if set.is_empty() {
                self.by_source.remove(&source);
            }
        }
        Some(evict)
    }

    #[cfg(test)]
    fn count(&self, source: Source) -> usize {
        self.by_source.get(&source).map_or(0, BTreeSet::len)
    }
}

/// The handshakes in progress on one listener, bounded as [`ConnectionLimits`] says.
/// Clones share the bookkeeping.
#[derive(Clone)]
pub(crate) struct Handshakes {
    limits: ConnectionLimits,
    pending: Arc<Mutex<Pending>>,
    counters: Arc<ConnectionCounters>,
}

/// Why a handshake gave no connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// TLS failed (wrong CA, no certificate, not TLS, the client hung up).
    #[error("TLS handshake failed: {0}")]
    Failed(#[source] std::io::Error),
    /// It took longer than the handshake timeout.
    #[error("TLS handshake timed out")]
    TimedOut,
    /// Newer connections needed its place.
    #[error("TLS handshake ended to make room for newer connections")]
    Evicted,
}

/// One handshake's place among the pending ones; leaving it (dropping) frees it.
pub(crate) struct Ticket {
    seq: u64,
    pending: Arc<Mutex<Pending>>,
    evicted: oneshot::Receiver<()>,
    timeout: Duration,
    counters: Arc<ConnectionCounters>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let removed = lock(&self.pending).remove(self.seq);
        // Dropped outside the lock: it wakes nobody but this handshake's own receiver.
        drop(removed);
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // The bookkeeping stays consistent at every unlock (no user code runs under the
    // lock), so a panic elsewhere leaves nothing to repair.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Handshakes {
    /// The bookkeeping of one listener, counting each handshake's outcome in
    /// `counters`.
    pub(crate) fn new(limits: ConnectionLimits, counters: ConnectionCounters) -> Self {
        Self {
            limits,
            pending: Arc::new(Mutex::new(Pending::default())),
            counters: Arc::new(counters),
        }
    }

    /// Takes a place for a connection from `addr` just accepted, ending the oldest
    /// handshakes in progress if the bounds require it. Never waits: the accept loop
    /// calls it, and a connection is never queued behind silent ones.
    pub(crate) fn admit(&self, addr: SocketAddr) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let (seq, ended) = lock(&self.pending).admit(Source::of(addr.ip()), tx, &self.limits);
        if !ended.is_empty() {
            tracing::debug!(%addr, ended = ended.len(), "pending TLS handshakes ended to make room");
        }
        // Dropping an ender wakes its handshake, which closes its socket.
        drop(ended);
        Ticket {
            seq,
            pending: Arc::clone(&self.pending),
            evicted: rx,
            timeout: self.limits.handshake_timeout,
            counters: Arc::clone(&self.counters),
        }
    }
}

impl Ticket {
    /// Runs the TLS handshake on `tcp` within the handshake timeout, unless newer
    /// connections end it first. Until the client's first byte arrives nothing but the
    /// socket and a timer is held: a silent connection costs no TLS state.
    pub(crate) async fn handshake(
        mut self,
        acceptor: TlsAcceptor,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, HandshakeError> {
        let run = async {
            tcp.readable().await.map_err(HandshakeError::Failed)?;
            acceptor.accept(tcp).await.map_err(HandshakeError::Failed)
        };
        let done = tokio::select! {
            // The sender is dropped, never sent on: either way it means "make room".
            _ = &mut self.evicted => Err(HandshakeError::Evicted),
            done = tokio::time::timeout(self.timeout, run) => {
                done.unwrap_or(Err(HandshakeError::TimedOut))
            }
        };
        let counter = match &done {
            Ok(_) => &self.counters.handshake_ok,
            Err(HandshakeError::Failed(_)) => &self.counters.handshake_failed,
            Err(HandshakeError::TimedOut) => &self.counters.handshake_timed_out,
            Err(HandshakeError::Evicted) => &self.counters.handshake_evicted,
        };
        counter.inc();
        done
        // The ticket is dropped here, freeing its place once the handshake is over.
    }
}

/// What a served connection is doing, for the idle check: its requests in flight, when
/// one last began or ended, and whether its client has shown who it is.
pub(crate) struct Activity {
    started: Instant,
    /// Milliseconds after `started` when a request last began or ended.
    last: AtomicU64,
    in_flight: AtomicUsize,
    authenticated: AtomicBool,
}

impl Activity {
    /// A connection whose handshake just ended: idle from now on. `authenticated`: the
    /// handshake named the client (mTLS); otherwise it counts as anonymous until
    /// [`Self::authenticated`] is called.
    pub(crate) fn new(authenticated: bool) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            authenticated: AtomicBool::new(authenticated),
        })
    }

    /// A request on the connection proved who sent it (a valid SigV4 signature): the
    /// connection may idle for the full idle timeout from now on.
    pub(crate) fn authenticated(&self) {
        self.authenticated.store(true, Ordering::Relaxed);
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(Arc::clone(self))
    }

    /// Completes once the connection has had no request in flight for `timeout`, or for
    /// `anonymous` while no request on it has been authenticated: an anonymous client
    /// must not hold a connection, one of a bounded number, for as long as a known one.
    /// One timer per connection, reset only when it fires: a request costs two atomic
    /// stores, not a timer update.
    pub(crate) async fn idle(&self, timeout: Duration, anonymous: Duration) {
        loop {
            let since = if self.in_flight.load(Ordering::Relaxed) > 0 {
                Instant::now()
            } else {
                self.last()
            };
            tokio::time::sleep_until(since + self.allowed(timeout, anonymous)).await;
            // The allowance again, not the one the timer was set with: a request may
            // have authenticated the connection meanwhile, and a timer that fires late
            // must not close it by the anonymous allowance.
            if self.in_flight.load(Ordering::Relaxed) == 0
                && self.last() + self.allowed(timeout, anonymous) <= Instant::now()
            {
                return;
            }
        }
    }

    /// How long the connection may idle now.
    fn allowed(&self, timeout: Duration, anonymous: Duration) -> Duration {
        if self.authenticated.load(Ordering::Relaxed) {
            timeout
        } else {
            timeout.min(anonymous)
        }
    }
}

/// One request in flight on a connection, counted until it is answered or dropped.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_source: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_pending_handshakes: total,
            max_pending_handshakes_per_source: per_source,
            ..ConnectionLimits::default()
        }
    }

    fn ip(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    #[test]
    fn a_source_at_its_bound_ends_its_own_oldest_handshake() {
        let l = limits(10, 2);
        let mut p = Pending::default();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let (mut rx_a, mut senders) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let (tx, rx) = oneshot::channel();
            let (_, ended) = p.admit(a, tx, &l);
            assert!(ended.is_empty());
            rx_a.push(rx);
        }
        let (tx, mut rx_b) = oneshot::channel();
        assert!(p.admit(b, tx, &l).1.is_empty());
        // A third from `a` ends a's first, not b's (older than it but another source).
        let (tx, _rx) = oneshot::channel();
        let (_, ended) = p.admit(a, tx, &l);
        assert_eq!(ended.len(), 1);
        senders.extend(ended);
        drop(senders);
        assert!(rx_a[0].try_recv().is_err(), "a's oldest is ended");
        assert_eq!(rx_a[1].try_recv(), Err(oneshot::error::TryRecvError::Empty));
        assert_eq!(rx_b.try_recv(), Err(oneshot::error::TryRecvError::Empty));
        assert_eq!(p.count(a), 2);
        assert_eq!(p.count(b), 1);
    }

    #[test]
    fn a_full_listener_ends_the_oldest_of_all() {
        let l = limits(3, 3);
        let mut p = Pending::default();
        let (mut seqs, mut receivers) = (Vec::new(), Vec::new());
        for who in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            let (tx, rx) = oneshot::channel();
            receivers.push(rx);
            seqs.push(p.admit(ip(who), tx, &l).0);
        }
        let (tx, _rx) = oneshot::channel();
        let (_, ended) = p.admit(ip("10.0.0.4"), tx, &l);
        assert_eq!(ended.len(), 1);
        assert!(!p.by_age.contains_key(&seqs[0]), "the oldest made room");
        assert_eq!(p.by_age.len(), 3);
        assert_eq!(p.count(ip("10.0.0.1")), 0);
        assert!(
            !p.by_source.contains_key(&ip("10.0.0.1")),
            "no empty sets kept"
        );
    }

    #[test]
    fn ten_thousand_connections_from_one_address_keep_the_bounds() {
        let l = limits(100, 25);
        let mut p = Pending::default();
        for i in 0..10_000u32 {
            let (tx, _rx) = oneshot::channel();
            let who = if i % 2 == 0 {
                "127.0.0.1"
            } else {
                "::ffff:127.0.0.1"
            };
            p.admit(ip(who), tx, &l);
            assert!(p.by_age.len() <= 100);
        }
        assert_eq!(p.count(ip("127.0.0.1")), 25, "mapped IPv6 counts as IPv4");
    }

    #[test]
    fn ipv6_sources_are_their_64_bit_prefixes() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_after_the_timeout_with_nothing_in_flight() {
        let t = Duration::from_secs(10);
        let a = Activity::new(true);
        let idle = |a: &Arc<Activity>| {
            let a = Arc::clone(a);
            tokio::spawn(async move { a.idle(t, Duration::from_secs(1)).await })
        };
        // A request in flight keeps the connection busy however long it takes.
        let call = a.begin();
        let waiting = idle(&a);
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert!(!waiting.is_finished());
        drop(call);
        // Idle from the request's end: not at 9 s, at 10 s.
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!waiting.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(waiting.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn an_anonymous_connection_idles_for_the_shorter_time_until_it_authenticates() {
        let (t, anonymous) = (Duration::from_secs(300), Duration::from_secs(30));
        let idle = |a: &Arc<Activity>| {
            let a = Arc::clone(a);
            tokio::spawn(async move { a.idle(t, anonymous).await })
        };
        // One authenticated request on the connection, done.
        let sign_in = |a: &Arc<Activity>| {
            drop(a.begin());
            a.authenticated();
        };
        let nobody = Activity::new(false);
        let waiting = idle(&nobody);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(waiting.is_finished(), "anonymous: closed after 30 s");

        // Authenticated before the timer's task first ran, and after it set the timer
        // with the anonymous allowance (its task then woken only once that allowance has
        // run out, as on a busy runtime): either way the connection keeps the full idle
        // timeout, counted from the request.
        for timer_set_first in [false, true] {
            let known = Activity::new(false);
            let waiting = idle(&known);
            if timer_set_first {
                tokio::task::yield_now().await;
            }
            sign_in(&known);
            tokio::time::sleep(Duration::from_secs(31)).await;
            assert!(
                !waiting.is_finished(),
                "authenticated (timer set first: {timer_set_first}): past the anonymous allowance"
            );
            tokio::time::sleep(Duration::from_secs(259)).await;
            assert!(
                !waiting.is_finished(),
                "authenticated (timer set first: {timer_set_first}): the full idle timeout"
            );
            tokio::time::sleep(Duration::from_secs(20)).await;
            assert!(waiting.is_finished(), "closed after it");
        }
    }

    #[tokio::test]
    async fn a_ticket_frees_its_place_when_dropped_and_an_ended_one_says_so() {
        let gate = Handshakes::new(limits(1, 1), ConnectionCounters::default());
        let addr: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let first = gate.admit(addr);
        assert_eq!(lock(&gate.pending).by_age.len(), 1);
        let second = gate.admit(addr);
        assert_eq!(lock(&gate.pending).by_age.len(), 1, "the first made room");
        let mut first = first;
        assert!((&mut first.evicted).await.is_err(), "the first learns it");
        drop(first);
        assert_eq!(
            lock(&gate.pending).by_age.len(),
            1,
            "the second keeps its place"
        );
        drop(second);
        assert!(lock(&gate.pending).by_age.is_empty());
    }
}
