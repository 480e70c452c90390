//! The AWS JSON listener: accepts TCP, runs TLS handshakes off the accept loop (bounded
//! in number and time, as the gRPC loop does), and serves HTTP/1.1 and HTTP/2 on each
//! connection with hyper-util's auto builder, on the daemon's runtime.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::handler::handle;
use crate::api::Peer;
use crate::vault::Vault;

/// TLS handshakes in progress at once; more connections wait to be accepted.
const MAX_HANDSHAKES: usize = 512;
/// A client has this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent requests on one HTTP/2 connection, as on the gRPC port.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// An HTTP/1.1 client has this long to send a request's head once it starts one, so
/// that a silent connection cannot hold a task for ever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the AWS JSON API on `listener` until `shutdown` completes. Then the listener
/// is closed at once, every connection is told to finish (HTTP/2 GOAWAY, HTTP/1.1
/// `Connection: close` after the request in flight), and the requests in flight get
/// `shutdown_timeout` to answer; what still runs after that is left for the runtime's
/// shutdown to cancel. Each new connection uses the TLS configuration `tls` holds at
/// its accept (a SIGHUP reload applies to new connections).
pub(crate) async fn serve(
    listener: TcpListener,
    vault: Arc<Vault>,
    tls: watch::Receiver<Arc<rustls::ServerConfig>>,
    shutdown_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = async {
                let permit = Arc::clone(&handshakes).acquire_owned().await;
                (permit, listener.accept().await)
            } => accepted,
        };
        let (permit, (tcp, addr)) = match accepted {
            (Ok(permit), Ok(c)) => (permit, c),
            (Err(_), _) => break,
            (_, Err(e)) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "AWS JSON listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // Clone the Arc out at once: a borrow holds the channel's read lock.
        let acceptor = TlsAcceptor::from(Arc::clone(&*tls.borrow()));
        let (vault, builder, watcher) =
            (Arc::clone(&vault), Arc::clone(&builder), graceful.watcher());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                // A failed handshake concerns that client only.
                Ok(Err(e)) => return debug!(%addr, error = %e, "AWS JSON TLS handshake failed"),
                Err(_) => return debug!(%addr, "AWS JSON TLS handshake timed out"),
            };
            drop(permit);
            let peer = Arc::new(Peer::of(&tls, addr));
            let service = hyper::service::service_fn(move |req| {
                let (vault, peer) = (Arc::clone(&vault), Arc::clone(&peer));
                async move { Ok::<_, Infallible>(handle(vault, peer, req).await) }
            });
            let conn = builder
                .serve_connection(TokioIo::new(tls), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                debug!(%addr, error = %e, "AWS JSON connection ended with an error");
            }
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
