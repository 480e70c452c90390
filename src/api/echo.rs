//! The transport's ceiling, for the throughput benchmark (`p11kms serve --bench-echo`):
//! a gRPC service under the KMS service's name that answers every call with the bytes
//! of its own request, touching neither vault nor HSM. Served by the same server, TLS
//! configuration and runtime as the real service, it measures what the transport alone
//! can do on this machine, the limit the daemon's own figures are compared with.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Bytes, Frame};
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap, HeaderValue};
use tonic::server::NamedService;

use crate::proto::key_management_service_server::SERVICE_NAME;

/// The echo service (see the module's documentation).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Echo;

impl NamedService for Echo {
    // The name the real service answers to, so that its clients reach the echo.
    const NAME: &'static str = SERVICE_NAME;
}

type Answer = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl tonic::codegen::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            // The request's gRPC frame (length prefix and message) is a valid answer frame:
            // the client decodes the request's fields as the response's.
            let message = req
                .into_body()
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames: [Result<Frame<Bytes>, Infallible>; 2] =
                [Ok(Frame::data(message)), Ok(Frame::trailers(trailers))];
            let mut answer =
                http::Response::new(Body::new(StreamBody::new(tokio_stream::iter(frames))));
            answer.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            Ok(answer)
        })
    }
}
