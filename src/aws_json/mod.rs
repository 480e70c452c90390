//! AWS KMS's own wire protocol (AWS JSON 1.1 over HTTPS), so that the AWS CLI, boto3 and
//! the AWS SDKs work against p11kms: a second listener in front of the same request path
//! (`Vault::run`) as gRPC. `server` accepts and serves HTTP; `envelope` routes and
//! decodes (`operation` is the table of operations); `shapes` are the AWS request and
//! response members; `calls` turn them into the vault's inputs and back; `errors` maps
//! `KmsError` to AWS's error answer; `auth` says who is calling (SigV4). No policy
//! logic, no HSM calls.

pub(crate) mod auth;
mod calls;
mod envelope;
mod errors;
mod handler;
mod operation;
mod server;
mod shapes;

pub(crate) use envelope::{read_body, wiping_json, Body, BodyBudget, Rejected};
pub(crate) use server::{serve, Routes};

use hyper::header::HeaderMap;
use hyper::Method;

/// What the listener makes of a request before it knows the caller: the route (method,
/// path, `X-Amz-Target`, content type, declared length), the body limit, then the body
/// decoded as the operation's request and checked for required and unsupported members
/// (which the listener does after SigV4). Gives the operation's name, or the status and
/// JSON body of the error answer. For the aws_json fuzz target and its corpus replay
/// (fuzz/src/aws_json.rs), which need the real decoding without a vault; not an API.
#[doc(hidden)]
pub fn check_request(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'static str, (u16, Vec<u8>)> {
    use futures_util::FutureExt as _;
    use http_body_util::BodyExt as _;

    let answer = |r: hyper::Response<envelope::Body>| {
        let status = r.status().as_u16();
        // A `Full` body is ready at once.
        let bytes = r
            .into_body()
            .collect()
            .now_or_never()
            .and_then(Result::ok)
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default();
        (status, bytes)
    };
    let op = envelope::route(method, path, headers)
        .and_then(|(op, limit)| {
            if body.len() > limit {
                // What `read_body` answers for a body over the limit.
                return Err(envelope::Rejected::TooLarge(limit));
            }
            Ok(op)
        })
        .map_err(|r| answer(r.response("fuzz")))?;
    op.visit(operation::Check(body))
        .map_err(|e| answer(errors::kms_error(&e, "fuzz")))?;
    Ok(op.name())
}
