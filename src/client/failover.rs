//! Failover across several daemons (`--endpoint a,b,c`): one channel per endpoint, and
//! each call sent on the one that answered last. When a call fails in its transport
//! (no answer came), it goes to the next endpoint, if that is safe: always when the
//! connection was refused (the daemon never saw the call), and after any other transport
//! failure only for calls that may be repeated (not CreateKey, CreateGrant,
//! RotateKeyOnDemand or CreateAccessKey, which would act twice). An answer, even an
//! error status, is never retried: a daemon gave it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::BodyExt as _;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{BoxFuture, Bytes, Service};
use tonic::transport::Channel;

/// Calls that must not be sent twice: each would make one more key, grant, rotation or
/// access key.
const NOT_REPEATABLE: &[&str] = &[
    "CreateKey",
    "CreateGrant",
    "RotateKeyOnDemand",
    "CreateAccessKey",
];

/// The channels to every endpoint, and the one in use. Cheap to clone.
#[derive(Clone)]
pub struct Failover {
    channels: Arc<[(String, Channel)]>,
    current: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field(
                "endpoints",
                &self.channels.iter().map(|(e, _)| e).collect::<Vec<_>>(),
            )
            .field("current", &self.current.load(Ordering::Relaxed))
            .finish()
    }
}

impl Failover {
    /// Over `channels` (endpoint, channel), starting with the one at `first`.
    pub(crate) fn new(channels: Vec<(String, Channel)>, first: usize) -> Self {
        Self {
            channels: channels.into(),
            current: Arc::new(AtomicUsize::new(first)),
        }
    }
}

/// The error of a call no endpoint answered: the last transport failure.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Request<Body>> for Failover {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call waits for its channel's readiness itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            // One endpoint: nothing to fail over to, so nothing to hold.
            if let [(_, channel)] = &*me.channels {
                let mut channel = channel.clone();
                std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                return Ok(channel.call(req).await?);
            }
            let operation = req.uri().path().rsplit('/').next().unwrap_or_default();
            let repeatable = !NOT_REPEATABLE.contains(&operation);
            let (parts, body) = req.into_parts();
            // A unary call's body is one message: held, to be sent again if need be.
            let body: Bytes = body.collect().await?.to_bytes();
            let n = me.channels.len();
            let start = me.current.load(Ordering::Relaxed) % n.max(1);
            let mut last: Option<BoxError> = None;
            let order = me.channels.iter().enumerate().cycle().skip(start).take(n);
            for (i, (endpoint, channel)) in order {
                let mut req = Request::new(Body::new(http_body_util::Full::new(body.clone())));
                *req.method_mut() = parts.method.clone();
                *req.uri_mut() = parts.uri.clone();
                *req.version_mut() = parts.version;
                *req.headers_mut() = parts.headers.clone();
                let mut channel = channel.clone();
                let sent = async {
                    std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                    channel.call(req).await
                };
                match sent.await {
                    Ok(answer) => {
                        me.current.store(i, Ordering::Relaxed);
                        return Ok(answer);
                    }
                    Err(e) => {
                        let refused = connection_refused(&e);
                        tracing::debug!(%endpoint, error = %e, refused, "no answer; trying the next endpoint if safe");
                        if !(refused || repeatable) {
                            return Err(e.into());
                        }
                        last = Some(e.into());
                    }
                }
            }
            Err(last.unwrap_or_else(|| "no endpoint".into()))
        })
    }
}

/// True when the transport failure is a refused (or unreachable) connection: the call
/// was never sent.
fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | AddrNotAvailable | HostUnreachable | NetworkUnreachable
            ) {
                return true;
            }
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("transport error")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn only_a_refused_connection_is_known_unsent() {
        use std::io::{Error, ErrorKind};
        assert!(connection_refused(&Wrapped(Error::from(
            ErrorKind::ConnectionRefused
        ))));
        assert!(!connection_refused(&Wrapped(Error::from(
            ErrorKind::ConnectionReset
        ))));
        assert!(!connection_refused(&Wrapped(Error::from(
            ErrorKind::TimedOut
        ))));
    }
}
