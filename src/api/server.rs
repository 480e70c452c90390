//! The daemon's gRPC entry point: `serve(listener, vault, tls, lifetimes, shutdown)`.
//! Accepts TCP, runs TLS handshakes off the accept loop (`connections::Handshakes`), and
//! serves each finished connection with tonic, closing it once idle. The TLS
//! configuration is read per connection from a watch channel, so that a reload (new
//! CRLs) applies to new connections without a restart.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_stream::StreamExt as _;
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::server::NamedService;
use tonic::service::Routes;
use tracing::{debug, info, warn};

use super::connections::{Activity, ConnectionLimits, Handshakes};
use super::service::KmsService;
use super::tls::TlsConn;
use crate::metrics::ConnectionCounters;
use crate::proto::key_management_service_server::KeyManagementServiceServer;
use crate::vault::Vault;

/// Concurrent requests on one HTTP/2 connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// How long connections and, at shutdown, calls in flight may live, and what a
/// connection may cost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lifetimes {
    /// Bounds on handshakes in progress and idle connections (`[connections]`).
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
    counters: ConnectionCounters,
    echo: bool,
    shutdown: impl Future<Output = ()>,
) {
    let (stopping_tx, stopping) = watch::channel(false);
    let served = (listener, tls, lifetimes, counters, stopping);
    let accept_loop = if echo {
        tokio::spawn(accept(super::echo::Echo, served))
    } else {
        let kms = KeyManagementServiceServer::new(KmsService::new(Arc::clone(&vault)))
            .max_decoding_message_size(super::MAX_MESSAGE_BYTES);
        tokio::spawn(accept(kms, served))
    };
    shutdown.await;
    info!("shutting down: no new connections; calls in flight may finish");
    vault.begin_draining();
    let _ = stopping_tx.send(true);
    let started = std::time::Instant::now();
    // Every connection holds a receiver until it is closed, as the accept loop does
    // until it has dropped the listener.
    match tokio::time::timeout(lifetimes.shutdown_timeout, stopping_tx.closed()).await {
        Ok(()) => info!(
            waited_ms = started.elapsed().as_millis(),
            "calls in flight finished"
        ),
        Err(_) => warn!(
            timeout_secs = lifetimes.shutdown_timeout.as_secs(),
            "calls still in flight at the shutdown deadline are cancelled"
        ),
    }
    accept_loop.abort();
}

/// What [`accept`] serves on, besides the service.
type Served = (
    TcpListener,
    watch::Receiver<Arc<rustls::ServerConfig>>,
    Lifetimes,
    ConnectionCounters,
    watch::Receiver<bool>,
);

/// Accepts connections until `stopping`, each served with `svc` in a task of its own.
async fn accept<S>(svc: S, served: Served)
where
    S: GrpcService,
{
    let (listener, tls, lifetimes, counters, mut stopping) = served;
    let idle_closed = counters.idle_closed.clone();
    let handshakes = Handshakes::new(lifetimes.limits, counters);
    let server = tonic::transport::Server::builder()
        // Bounds on what one client can hold open; the HSM pool's queue bounds the rest.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
        // A connection is authenticated once, at its handshake: ageing connections out
        // makes every client pass the current CRLs again now and then.
        .max_connection_age(lifetimes.max_connection_age);
    loop {
        let accepted = tokio::select! {
            // The listener is dropped with this function: the port refuses connections
            // from the moment shutdown begins.
            _ = stopping.changed() => break,
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
        let (mut server, svc, mut stopping, idle_closed) = (
            server.clone(),
            svc.clone(),
            stopping.clone(),
            idle_closed.clone(),
        );
        let (idle_timeout, read_timeout) = (
            lifetimes.limits.idle_timeout,
            lifetimes.limits.request_read_timeout,
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
                // A failed handshake (wrong CA, no certificate, not TLS, too slow)
                // concerns that client only; rustls has already sent it an alert.
                Err(e) => return debug!(%addr, error = %e, "TLS handshake gave no connection"),
            };
            let (conn, gone) = TlsConn::new(tls, addr);
            // The client certificate named the caller at the handshake.
            let activity = Activity::new(true);
            // The statuses tonic answers before a handler runs (a message that does not
            // decode, an unknown method or service) get an AWS error name too; the echo
            // as well, so that the benchmark's ceiling pays what the real service pays.
            let routes = Routes::new(Counted {
                inner: svc,
                activity: Arc::clone(&activity),
                read_timeout,
            })
            .into_axum_router()
            .layer(axum::middleware::map_response(
                super::unnamed::name_unnamed_statuses,
            ));
            let router = server.add_routes(Routes::from(routes));
            // One tonic server per connection, so that each can be told to go away on
            // its own (GOAWAY, calls in flight finish) when idle. Its one connection is
            // followed by a stream that never ends: an ended stream would make tonic
            // shut the connection down at once.
            let incoming =
                tokio_stream::once(Ok::<_, std::io::Error>(conn)).chain(tokio_stream::pending());
            let go_away = async {
                tokio::select! {
                    _ = stopping.wait_for(|stop| *stop) => {},
                    () = activity.idle(idle_timeout, idle_timeout) => {
                        idle_closed.inc();
                        debug!(%addr, "connection closed: idle");
                    }
                    // The client closed it: nothing left to tell to go away.
                    _ = gone => {},
                }
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, go_away).await {
                debug!(%addr, error = %e, "connection ended with an error");
            }
            // `stopping` is dropped only now, so that a shutdown waits for this
            // connection's calls.
            drop(stopping);
        });
    }
}

/// What [`accept`] serves: the KMS service, or the benchmark's echo.
trait GrpcService:
    Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcService for S where
    S: Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A service that counts its calls as the connection's activity, each from its request
/// until its answer's body is sent or dropped, for the idle check, and gives each
/// request's body `read_timeout` to arrive.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
    read_timeout: Duration,
}

impl<S: NamedService> NamedService for Counted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: GrpcService> Service<http::Request<Body>> for Counted<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let in_flight = self.activity.begin();
        let timeout = self.read_timeout;
        let req = req.map(|body| Body::new(ReadDeadline::new(body, timeout)));
        let answer = self.inner.call(req);
        Box::pin(async move {
            let answer = answer.await?;
            // The guard travels with the body: a call ends when its answer is sent.
            Ok(answer.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _held = &in_flight;
                    frame
                }))
            }))
        })
    }
}

/// A request body that fails once `timeout` has passed since its request arrived before
/// it has all arrived: a client that sends a request slowly (slowloris) cannot keep it
/// in flight, with its buffer and task, for ever. HTTP/2 has no such limit of its own;
/// the failure ends the call with DEADLINE_EXCEEDED, the connection stays open.
struct ReadDeadline {
    inner: Body,
    deadline: tokio::time::Instant,
    timeout: Duration,
    /// Made the first time the body has to wait: a request whose body arrives with its
    /// head (nearly all) never touches the timer wheel.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ReadDeadline {
    fn new(inner: Body, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: tokio::time::Instant::now() + timeout,
            timeout,
            sleep: None,
        }
    }
}

/// The status of a request whose body did not arrive in time: DEADLINE_EXCEEDED, named
/// as the AWS JSON listener names its 408 (Smithy's name), so that `unnamed` leaves it.
fn too_slow(timeout: Duration) -> tonic::Status {
    let mut st = tonic::Status::deadline_exceeded(format!(
        "RequestTimeoutException: the request did not arrive within {} s",
        timeout.as_secs()
    ));
    st.metadata_mut().insert(
        super::status::ERROR_TYPE_HEADER,
        tonic::metadata::MetadataValue::from_static("RequestTimeoutException"),
    );
    st
}

impl hyper::body::Body for ReadDeadline {
    type Data = hyper::body::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(too_slow(this.timeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
