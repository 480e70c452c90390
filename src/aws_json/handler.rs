//! One HTTP request: the envelope, then the operation through the vault's request path
//! (`Vault::run`) exactly as a gRPC call goes, with `Transport::Json`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Request, Response};

use super::calls::Serve;
use super::envelope::{self, Body, BodyBudget};
use super::operation::{Operation, Visit};
use super::server::Routes;
use super::{auth, errors};
use crate::api::{Activity, Peer};
use crate::vault::{KmsError, RequestInfo, Transport, Vault};

/// Answers one request. Never fails: every refusal is an AWS error answer.
/// Bodies over the usual limit (batch calls) take room in `budget` while they are held.
/// A request whose signature checks out marks its connection's `activity`
/// authenticated.
pub(super) async fn handle(
    vault: Arc<Vault>,
    routes: &Routes,
    peer: Arc<Peer>,
    budget: BodyBudget,
    activity: &Activity,
    req: Request<Incoming>,
) -> Response<Body> {
    // The external key store proxy API may share the listener; its paths are never
    // KMS's. On the stores' own listener every path is theirs (an unknown one is their
    // InvalidUriPathException).
    // Cloned out at once: a borrow holds the channel's read lock.
    let xks = Arc::clone(&*routes.xks.borrow());
    if !routes.kms || (!xks.is_empty() && crate::xks::is_xks_path(req.uri().path())) {
        return crate::xks::handle(vault, &xks, peer.addr.ip(), &budget, activity, req).await;
    }
    let (parts, body) = req.into_parts();
    let (op, limit) = match envelope::route(&parts.method, parts.uri.path(), &parts.headers) {
        Ok(routed) => routed,
        // Not an API call (no operation): answered, logged at debug, not audited. The
        // body is read first (within the usual bounds): an HTTP/2 answer sent before
        // the request's body was read ends its stream with a reset, which some clients
        // (curl) report as a failed transfer rather than as the answer.
        Err(r) => {
            let _ = envelope::read_body(body, envelope::MAX_BODY, &budget).await;
            return refused(&r);
        }
    };
    let body = match envelope::read_body(body, limit, &budget).await {
        Ok(b) => b,
        Err(r) => return refused(&r),
    };
    op.visit(Run {
        vault: &vault,
        peer: &peer,
        activity,
        parts: &parts,
        body: &body,
        op,
    })
    .await
}

fn refused(r: &envelope::Rejected) -> Response<Body> {
    let request_id = crate::vault::new_request_id();
    tracing::debug!(request_id, rejected = ?r, "AWS JSON request refused before any operation");
    r.response(&request_id)
}

/// One operation's run, with what the request brought.
struct Run<'a> {
    vault: &'a Arc<Vault>,
    peer: &'a Peer,
    activity: &'a Activity,
    parts: &'a Parts,
    body: &'a [u8],
    op: Operation,
}

impl<'a> Visit for Run<'a> {
    type Out = Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>>;
    fn visit<R: Serve>(self) -> Self::Out {
        Box::pin(run::<R>(self))
    }
}

async fn run<R: Serve>(ctx: Run<'_>) -> Response<Body> {
    let vault = ctx.vault;
    // Authentication first, as AWS orders it: the body of a request whose signature
    // fails is never decoded, and nothing its sender wrote (a KeyId of any length)
    // goes into the audit record of the refusal, only the operation and source.
    let source_ip = ctx.peer.addr.ip();
    let authenticated = auth::caller(vault, ctx.parts, ctx.body, source_ip).await;
    if authenticated.is_ok() {
        ctx.activity.authenticated();
    }
    let (shape, key_id) = match &authenticated {
        Ok(_) => match envelope::decode::<R>(ctx.body) {
            Ok(s) => {
                let key_id = s.key_id();
                (Ok(s), key_id)
            }
            Err(e) => (Err(e), String::new()),
        },
        Err(_) => (
            Err(KmsError::Internal("the body was not decoded".into())),
            String::new(),
        ),
    };
    let info = RequestInfo {
        operation: ctx.op.name(),
        transport: Transport::Json,
        key_id,
        source_ip: Some(source_ip),
    };
    let (result, outcome) = R::serve(vault, info, authenticated, shape).await;
    match result {
        Ok(out) => envelope::ok(&out, &outcome.request_id),
        Err(e) => errors::kms_error(&e, &outcome.request_id),
    }
}

/// The benchmark's echo (`p11kms serve --bench-echo`): the request's body, read under
/// the same limits, answered as a success with no vault, SigV4 or HSM behind it.
pub(super) async fn echo(req: Request<Incoming>, budget: &BodyBudget) -> Response<Body> {
    let limit = envelope::MAX_BODY;
    let body = match envelope::read_body(req.into_body(), limit, budget).await {
        Ok(b) => hyper::body::Bytes::copy_from_slice(&b),
        Err(_) => hyper::body::Bytes::new(),
    };
    envelope::response(hyper::StatusCode::OK, body, "echo")
}
