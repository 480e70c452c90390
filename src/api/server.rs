//! The daemon's gRPC entry point: `serve(listener, vault, tls, lifetimes, shutdown)`.
//! Accepts TCP, runs TLS handshakes off the accept loop, and hands finished connections
//! to tonic. The TLS configuration is read per connection from a watch channel, so that
//! a reload (new CRLs) applies to new connections without a restart.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

use super::connections::{ConnectionLimits, Handshakes};
use super::service::KmsService;
use super::tls::TlsConn;
use crate::proto::key_management_service_server::KeyManagementServiceServer;
use crate::vault::Vault;

/// Concurrent requests on one HTTP/2 connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// How long connections and, at shutdown, calls in flight may live, and what a
/// connection may cost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lifetimes {
    /// Bounds on handshakes in progress (`[connections]`).
    pub limits: ConnectionLimits,
    /// A connection is closed (gracefully) after this long.
    pub max_connection_age: Duration,
    /// At shutdown, calls in flight have this long to finish.
    pub shutdown_timeout: Duration,
}

/// Serves the gRPC API on `listener` until `shutdown` completes (with `echo`, the
/// benchmark's echo service in its place: see `echo`). Then the listener is
/// closed at once (new connections are refused), every connection is told to go away,
/// and the calls in flight get `lifetimes.shutdown_timeout` to finish; calls still
/// running after it are left for the runtime's shutdown to cancel. Each new connection
/// uses the TLS configuration `tls` holds at its accept; connections already open keep
/// the one they started with.
pub(crate) async fn serve(
    listener: TcpListener,
    vault: Arc<Vault>,
    tls: watch::Receiver<Arc<rustls::ServerConfig>>,
    lifetimes: Lifetimes,
    echo: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (tx, rx) = mpsc::channel::<Result<TlsConn, std::io::Error>>(256);
    let handshakes = Handshakes::new(lifetimes.limits);
    let (stopping_tx, mut stopping) = watch::channel(false);
    let mut accept_stopping = stopping.clone();
    let accept_loop = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                // The listener is dropped with this task: the port refuses connections
                // from the moment shutdown begins.
                _ = accept_stopping.changed() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, addr) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            // Accepting never waits for a handshake to end: a new connection takes its
            // place among the pending ones at once, ending the oldest if need be.
            let ticket = handshakes.admit(addr);
            // Clone the Arc out at once: a borrow holds the channel's read lock.
            let acceptor = TlsAcceptor::from(Arc::clone(&*tls.borrow()));
            let tx = tx.clone();
            tokio::spawn(async move {
                match ticket.handshake(acceptor, tcp).await {
                    Ok(tls) => {
                        let _ = tx.send(Ok(TlsConn::new(tls, addr))).await;
                    }
                    // A failed handshake (wrong CA, no certificate, not TLS, too slow)
                    // concerns that client only; rustls has already sent it an alert.
                    Err(e) => debug!(%addr, error = %e, "TLS handshake gave no connection"),
                }
            });
        }
    });
    let mut builder = tonic::transport::Server::builder()
        // Bounds on what one client can hold open; the HSM pool's queue bounds the rest.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
        // A connection is authenticated once, at its handshake: ageing connections out
        // makes every client pass the current CRLs again now and then.
        .max_connection_age(lifetimes.max_connection_age);
    let router = if echo {
        builder.add_service(super::echo::Echo)
    } else {
        builder.add_service(
            KeyManagementServiceServer::new(KmsService::new(Arc::clone(&vault)))
                .max_decoding_message_size(super::MAX_MESSAGE_BYTES),
        )
    };
    let server = router.serve_with_incoming_shutdown(ReceiverStream::new(rx), async move {
        let _ = stopping.changed().await;
    });
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        () = shutdown => {
            info!("shutting down: no new connections; calls in flight may finish");
            vault.begin_draining();
            let _ = stopping_tx.send(true);
            let started = std::time::Instant::now();
            match tokio::time::timeout(lifetimes.shutdown_timeout, &mut server).await {
                Ok(result) => {
                    info!(waited_ms = started.elapsed().as_millis(), "calls in flight finished");
                    result
                }
                Err(_) => {
                    warn!(
                        timeout_secs = lifetimes.shutdown_timeout.as_secs(),
                        "calls still in flight at the shutdown deadline are cancelled"
                    );
                    Ok(())
                }
            }
        }
    };
    accept_loop.abort();
    result
}
