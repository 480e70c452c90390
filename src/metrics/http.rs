//! The metrics listener: `/metrics` (Prometheus text), `/healthz` (the process serves)
//! and `/readyz` (token, store and audit trail can do their work), over plain HTTP or
//! TLS, on its own port and the daemon's runtime. No client authentication: bind it to
//! localhost or a monitoring network; it shows counts and latencies, never key ids,
//! principals or payloads.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::registry::CONTENT_TYPE;
use super::{Metrics, Readiness};
use crate::api::{ConnectionLimits, Handshakes};

/// The certificate and key of a TLS metrics listener (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsTls {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A PEM file could not be read, or rustls refused the material.
    #[error("the metrics listener's TLS files")]
    Tls(#[from] crate::api::TlsError),
}

impl HttpError {
    /// The configuration field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Tls(crate::api::TlsError::Pem { what, .. }) if what.contains("key") => {
                "metrics.tls_key"
            }
            Self::Tls(_) => "metrics.tls_cert",
        }
    }
}

impl MetricsTls {
    /// Reads the files into a server configuration (TLS 1.2 and 1.3, no client
    /// certificates: Prometheus scrapers seldom have one).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, HttpError> {
        let (chain, key) = crate::api::read_chain_and_key(&self.cert, &self.key)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
            .map_err(crate::api::TlsError::from)?;
        Ok(Arc::new(cfg))
    }
}

struct AppState<H> {
    metrics: Metrics,
    health: Arc<H>,
}

impl<H> Clone for AppState<H> {
    fn clone(&self) -> Self {
        Self {
            metrics: self.metrics.clone(),
            health: Arc::clone(&self.health),
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` (with TLS when `tls` is
/// given, its handshakes bounded by `limits`) until `shutdown` completes.
pub(crate) async fn serve<H: Readiness>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    metrics: Metrics,
    health: Arc<H>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Counted only where there are handshakes to count: plain HTTP has none.
    let counters = tls.as_ref().map(|_| metrics.connections("metrics"));
    let app = Router::new()
        .route("/metrics", get(scrape::<H>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::<H>))
        .with_state(AppState { metrics, health });
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(cfg) => {
            let local = listener.local_addr()?;
            let (tx, rx) = mpsc::channel(64);
            let acceptor = tokio::spawn(accept_tls(
                listener,
                TlsAcceptor::from(cfg),
                Handshakes::new(limits, counters.unwrap_or_default()),
                tx,
            ));
            let served = axum::serve(TlsListener { rx, local }, app)
                .with_graceful_shutdown(shutdown)
                .await;
            acceptor.abort();
            served
        }
    }
}

async fn scrape<H: Readiness>(State(s): State<AppState<H>>) -> Response {
    match s.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

/// 200 when every part is ready, else 503; the body has one line per part, so the
/// failing one is named: `store: failed: …`.
async fn ready<H: Readiness>(State(s): State<AppState<H>>) -> Response {
    let checks = s.health.check().await;
    let mut body = String::new();
    let mut all_ok = true;
    for c in &checks {
        match &c.result {
            Ok(()) => body.push_str(&format!("{}: ok\n", c.part)),
            Err(reason) => {
                all_ok = false;
                body.push_str(&format!("{}: failed: {reason}\n", c.part));
            }
        }
    }
    if !all_ok {
        tracing::warn!(report = %body.trim_end().replace('\n', "; "), "not ready");
    }
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// Connections whose TLS handshake is done, for `axum::serve`.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The acceptor is gone (it is stopped only after serving ends): wait for the
            // shutdown that is under way.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts TCP and runs each handshake in its own task, so that a slow or silent client
/// cannot hold up the others. Like the API's accept loops: handshakes in progress are
/// bounded, and a new one ends the oldest rather than waiting, so that clients that
/// never finish one can neither pile up tasks nor lock a scraper out.
async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: Handshakes,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "metrics listener: accept failed");
                // An error such as EMFILE would repeat at once; do not spin on it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ticket = handshakes.admit(addr);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match ticket.handshake(acceptor, tcp).await {
                Ok(tls) => {
                    let _ = tx.send((tls, addr)).await;
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "metrics TLS handshake gave no connection")
                }
            }
        });
    }
}
