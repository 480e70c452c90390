//! The AWS JSON listener: accepts TCP, runs TLS handshakes off the accept loop (bounded
//! in number and time by `api::Handshakes`, as the gRPC loop's are), and serves HTTP/1.1
//! or HTTP/2 on each connection as its TLS handshake chose (ALPN), on the daemon's
//! runtime. Open connections are bounded in number, and an idle or silent one is closed
//! (`connections.idle_timeout_secs`): anyone who can reach the port, signed or not, must
//! not be able to hold its resources.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::envelope::BodyBudget;
use super::handler::handle;
use crate::api::{Activity, ConnectionLimits, Handshakes, Peer};
use crate::metrics::ConnectionCounters;
use crate::vault::Vault;
use crate::xks::XksStore;

/// Concurrent requests on one HTTP/2 connection, as on the gRPC port.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;
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

/// What one listener answers: AWS KMS's API, the external key stores' (each under its
/// URI path), or both.
#[derive(Clone)]
pub(crate) struct Routes {
    /// AWS KMS's API (the AWS API listener); without it, every path is the stores'.
    pub kms: bool,
    /// The external key stores served here, as the last reload left them.
    pub xks: watch::Receiver<Arc<[XksStore]>>,
}

impl Routes {
    /// The listener's name in logs.
    fn name(&self) -> &'static str {
        if self.kms {
            "AWS JSON"
        } else {
            "XKS"
        }
    }
}

/// Serves the AWS JSON API (or the stores' alone, see [`Routes`]) on `listener` until
/// `shutdown` completes. Then the listener
/// is closed at once, every connection is told to finish (HTTP/2 GOAWAY, HTTP/1.1
/// `Connection: close` after the request in flight), and the requests in flight get
/// `shutdown_timeout` to answer; what still runs after that is left for the runtime's
/// shutdown to cancel. Each new connection uses the TLS configuration `tls` holds at
/// its accept (a SIGHUP reload applies to new connections). With `echo`, every request
/// is answered with its own body, for the throughput benchmark's transport ceiling.
#[expect(
    clippy::too_many_arguments,
    reason = "one call, in the daemon, hands each part of the listener over once"
)]
pub(crate) async fn serve(
    listener: TcpListener,
    vault: Arc<Vault>,
    routes: Routes,
    tls: watch::Receiver<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    counters: ConnectionCounters,
    shutdown_timeout: Duration,
    echo: bool,
    shutdown: impl Future<Output = ()>,
) {
    let mut h1 = http1::Builder::new();
    // An HTTP/1.1 client has this long to send a request's head: the head's timer runs
    // from the moment the connection waits for a request, so a connection that never
    // sends one (or stays idle between requests) is closed too, as is one that sends
    // its head a byte at a time. (An HTTP/2 head is one frame: until it is whole, no
    // request is in flight, and the idle timeout ends a connection that trickles it.)
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.request_read_timeout);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    let builders = Arc::new((h1, h2));
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Every connection holds a receiver until it is closed: at shutdown, the sender
    // tells them to finish and then waits for all of them to be dropped.
    let (stopping_tx, stopping) = watch::channel(false);
    let idle_closed = counters.idle_closed.clone();
    let handshakes = Handshakes::new(limits, counters);
    let budget = BodyBudget::new(limits.request_read_timeout);
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
                warn!(error = %e, listener = routes.name(), "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let ticket = handshakes.admit(addr);
        // Clone the Arc out at once: a borrow holds the channel's read lock.
        let acceptor = TlsAcceptor::from(Arc::clone(&*tls.borrow()));
        let (vault, routes, builders, mut stopping, budget, idle_closed) = (
            Arc::clone(&vault),
            routes.clone(),
            Arc::clone(&builders),
            stopping.clone(),
            budget.clone(),
            idle_closed.clone(),
        );
        tokio::spawn(async move {
            let handshake = tokio::select! {
                done = ticket.handshake(acceptor, tcp) => done,
                // The port is closed: a connection still in its handshake is dropped
                // rather than make the shutdown wait for its timeout.
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            let tls = match handshake {
                Ok(tls) => tls,
                // A failed handshake concerns that client only.
                Err(e) => {
                    return debug!(%addr, error = %e, listener = routes.name(), "TLS handshake gave no connection")
                }
            };
            let name = routes.name();
            let peer = Arc::new(Peer::of(&tls, addr));
            // TLS alone names no one here: the first request whose signature checks
            // out does.
            let activity = Activity::new(false);
            let counted = Arc::clone(&activity);
            let service = hyper::service::service_fn(move |req| {
                let (vault, routes, peer, budget) = (
                    Arc::clone(&vault),
                    routes.clone(),
                    Arc::clone(&peer),
                    budget.clone(),
                );
                let in_flight = counted.begin();
                let activity = Arc::clone(&counted);
                async move {
                    let answer = if echo {
                        super::handler::echo(req, &budget).await
                    } else {
                        handle(vault, &routes, peer, budget, &activity, req).await
                    };
                    drop(in_flight);
                    Ok::<_, Infallible>(answer)
                }
            });
            // The protocol the handshake agreed on: no sniffing of the first bytes,
            // which would wait without a limit for a client that sends none.
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(tls);
            let idle = async {
                activity
                    .idle(limits.idle_timeout, limits.request_read_timeout)
                    .await;
                idle_closed.inc();
                debug!(%addr, listener = name, "connection closed: idle");
            };
            let ended = if h2 {
                let conn = builders.1.serve_connection(io, service);
                drive(conn, idle, &mut stopping).await
            } else {
                let conn = builders.0.serve_connection(io, service);
                drive(conn, idle, &mut stopping).await
            };
            if let Err(e) = ended {
                debug!(%addr, error = %e, listener = name, "connection ended with an error");
            }
            drop(stopping);
            drop(open);
        });
    }
    // The port refuses connections from the moment shutdown begins.
    drop(listener);
    info!(
        listener = routes.name(),
        "no new connections; requests in flight may finish"
    );
    drop(stopping);
    let _ = stopping_tx.send(true);
    if tokio::time::timeout(shutdown_timeout, stopping_tx.closed())
        .await
        .is_err()
    {
        warn!(
            timeout_secs = shutdown_timeout.as_secs(),
            listener = routes.name(),
            "requests still in flight at the shutdown deadline are cancelled"
        );
    }
}

/// Serves `conn` to its end, telling it to finish (HTTP/2 GOAWAY; HTTP/1.1 closes after
/// the request in flight) once `idle` completes (no request in flight for the idle
/// timeout, whether it never sent one, for which hyper's HTTP/2 has no timer, or sent
/// its last long ago) and at shutdown. A graceful end rather than a dropped socket: a
/// client whose request crosses the GOAWAY learns that it was not served and can send
/// it again.
async fn drive<C>(
    conn: C,
    idle: impl Future<Output = ()>,
    stopping: &mut watch::Receiver<bool>,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    tokio::pin!(conn);
    tokio::select! {
        ended = conn.as_mut() => return ended,
        () = idle => {},
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}
