//! The one entry point for the daemon and the tests: `serve(listener, vault, tls,
//! shutdown)`. Accepts TCP, runs TLS handshakes off the accept loop, and hands finished
//! connections to tonic. The TLS configuration is read per connection from a watch
//! channel, so that a reload (new CRLs) applies to new connections without a restart.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use super::service::KmsService;
use super::tls::TlsConn;
use crate::proto::key_management_service_server::KeyManagementServiceServer;
use crate::vault::Vault;

/// Concurrent requests on one HTTP/2 connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// TLS handshakes in progress at once; more connections wait to be accepted.
const MAX_HANDSHAKES: usize = 512;

/// A client has this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the gRPC API on `listener` until `shutdown` completes; in-flight requests
/// finish first. Each new connection uses the TLS configuration `tls` holds at its
/// accept; connections already open keep the one they started with.
pub async fn serve(
    listener: TcpListener,
    vault: Arc<Vault>,
    tls: watch::Receiver<Arc<rustls::ServerConfig>>,
    max_connection_age: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (tx, rx) = mpsc::channel::<Result<TlsConn, std::io::Error>>(256);
    let handshakes = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let accept_loop = tokio::spawn(async move {
        loop {
            let Ok(permit) = std::sync::Arc::clone(&handshakes).acquire_owned().await else {
                break;
            };
            let (tcp, addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            // Clone the Arc out at once: a borrow holds the channel's read lock.
            let acceptor = TlsAcceptor::from(Arc::clone(&*tls.borrow()));
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(TlsConn::new(tls, addr))).await;
                    }
                    // A failed handshake (wrong CA, no certificate, not TLS) concerns that
                    // client only; rustls has already sent it an alert.
                    Ok(Err(e)) => debug!(%addr, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%addr, "TLS handshake timed out"),
                }
            });
        }
    });
    let result = tonic::transport::Server::builder()
        // Bounds on what one client can hold open; the HSM pool's queue bounds the rest.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
        // A connection is authenticated once, at its handshake: ageing connections out
        // makes every client pass the current CRLs again now and then.
        .max_connection_age(max_connection_age)
        .add_service(KeyManagementServiceServer::new(KmsService::new(vault)))
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await;
    accept_loop.abort();
    result
}
