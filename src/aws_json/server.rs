//! The AWS JSON listener: accepts TCP, runs TLS handshakes off the accept loop (bounded
//! in number and time, as the gRPC loop does: `api::Handshakes`), and serves HTTP/1.1 or HTTP/2 on each
//! connection as its TLS handshake chose (ALPN), on the daemon's runtime. Open
//! connections are bounded in number, and an idle or silent one is closed: anyone who
//! can reach the port, signed or not, must not be able to hold its resources.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::envelope::BodyBudget;
use super::handler::handle;
use crate::api::{ConnectionLimits, Handshakes, Peer};
use crate::vault::Vault;

/// Concurrent requests on one HTTP/2 connection, as on the gRPC port.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// An HTTP/1.1 client has this long to send a request's head once it starts one, so
/// that a silent connection cannot hold a task for ever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections open at once, handshakes in progress included; more wait to be accepted.
/// Each holds a file descriptor and a task; an unauthenticated client must not exhaust
/// either for the gRPC port too.
const MAX_CONNECTIONS: usize = 4096;
// Handshakes in progress are bounded below it (`connections.max_pending_handshakes`), so
// that silent sockets alone can never fill it and make accepting wait.
const _: () = assert!(crate::api::MAX_PENDING_HANDSHAKES_LIMIT < MAX_CONNECTIONS);
/// HTTP/2: a ping this often, and the connection closed if its answer takes longer
/// than [`KEEP_ALIVE_TIMEOUT`] (a vanished peer).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in flight for this long is closed, whether it never
/// sent one (hyper's head timer starts only at a request's first byte) or sent its last
/// long ago. The AWS SDKs reopen a closed keep-alive connection on their next call.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a connection is doing, for the idle check.
struct Activity {
    started: Instant,
    /// Milliseconds after `started` when a request last began or ended.
    last: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Completes once the connection has had no request in flight for [`IDLE_TIMEOUT`].
    async fn idle(&self) {
        loop {
            tokio::time::sleep(IDLE_TIMEOUT / 4).await;
            let since = self
                .started
                .elapsed()
                .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)));
            if self.in_flight.load(Ordering::Relaxed) == 0 && since >= IDLE_TIMEOUT {
                return;
            }
        }
    }
}

/// One request in flight on a connection, counted until it is answered or dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(a: &Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.touch();
        Self(Arc::clone(a))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves the AWS JSON API on `listener` until `shutdown` completes. Then the listener
/// is closed at once, every connection is told to finish (HTTP/2 GOAWAY, HTTP/1.1
/// `Connection: close` after the request in flight), and the requests in flight get
/// `shutdown_timeout` to answer; what still runs after that is left for the runtime's
/// shutdown to cancel. Each new connection uses the TLS configuration `tls` holds at
/// its accept (a SIGHUP reload applies to new connections). With `echo`, every request
/// is answered with its own body, for the throughput benchmark's transport ceiling.
pub(crate) async fn serve(
    listener: TcpListener,
    vault: Arc<Vault>,
    tls: watch::Receiver<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    shutdown_timeout: Duration,
    echo: bool,
    shutdown: impl Future<Output = ()>,
) {
    let mut h1 = http1::Builder::new();
    // The head's timer runs from the moment the connection waits for a request, so a
    // connection that never sends one (or stays idle between requests) is closed too.
    h1.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    let builders = Arc::new((h1, h2));
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let handshakes = Handshakes::new(limits);
    let budget = BodyBudget::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = async {
                // A connection's permit is taken before it is accepted and held until
                // it closes. Handshakes take no permit that could make accepting wait:
                // a new one ends the oldest pending instead (see `Handshakes`).
                let open = Arc::clone(&connections).acquire_owned().await;
                (open, listener.accept().await)
            } => accepted,
        };
        let (open, (tcp, addr)) = match accepted {
            (Ok(open), Ok(c)) => (open, c),
            (Err(_), _) => break,
            (_, Err(e)) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "AWS JSON listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let ticket = handshakes.admit(addr);
        // Clone the Arc out at once: a borrow holds the channel's read lock.
        let acceptor = TlsAcceptor::from(Arc::clone(&*tls.borrow()));
        let (vault, builders, watcher, budget) = (
            Arc::clone(&vault),
            Arc::clone(&builders),
            graceful.watcher(),
            budget.clone(),
        );
        tokio::spawn(async move {
            let tls = match ticket.handshake(acceptor, tcp).await {
                Ok(tls) => tls,
                // A failed handshake concerns that client only.
                Err(e) => {
                    return debug!(%addr, error = %e, "AWS JSON TLS handshake gave no connection")
                }
            };
            let peer = Arc::new(Peer::of(&tls, addr));
            let activity = Arc::new(Activity::new());
            let counted = Arc::clone(&activity);
            let service = hyper::service::service_fn(move |req| {
                let (vault, peer, budget) = (Arc::clone(&vault), Arc::clone(&peer), budget.clone());
                let in_flight = InFlight::begin(&counted);
                async move {
                    let answer = if echo {
                        super::handler::echo(req, &budget).await
                    } else {
                        handle(vault, peer, budget, req).await
                    };
                    drop(in_flight);
                    Ok::<_, Infallible>(answer)
                }
            });
            // The protocol the handshake agreed on: no sniffing of the first bytes,
            // which would wait without a limit for a client that sends none.
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(tls);
            let served = async {
                if h2 {
                    watcher
                        .watch(builders.1.serve_connection(io, service))
                        .await
                } else {
                    watcher
                        .watch(builders.0.serve_connection(io, service))
                        .await
                }
            };
            tokio::select! {
                ended = served => if let Err(e) = ended {
                    debug!(%addr, error = %e, "AWS JSON connection ended with an error");
                },
                () = activity.idle() => debug!(%addr, "AWS JSON connection closed: idle"),
            }
            drop(open);
        });
    }
    // The port refuses connections from the moment shutdown begins.
    drop(listener);
    info!("AWS JSON listener: no new connections; requests in flight may finish");
    if tokio::time::timeout(shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            timeout_secs = shutdown_timeout.as_secs(),
            "AWS JSON requests still in flight at the shutdown deadline are cancelled"
        );
    }
}
