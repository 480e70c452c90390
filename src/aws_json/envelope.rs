//! The AWS JSON 1.1 envelope: `POST /` with `X-Amz-Target: TrentService.<Operation>`
//! and `Content-Type: application/x-amz-json-1.1`, a bounded body, JSON decoding into
//! an operation's shape; and the envelope of every answer (content type, request id).

use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::{Zeroize as _, Zeroizing};

use super::errors;
use super::operation::Operation;
use crate::vault::KmsError;

/// The body type of every answer.
pub(super) type Body = Full<Bytes>;

/// The protocol's content type, of requests and answers.
pub(super) const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.1";
/// The header naming the operation.
pub(super) const TARGET_HEADER: &str = "x-amz-target";
/// The header carrying the request id on every answer (x-amzn-RequestId).
pub(super) const REQUEST_ID_HEADER: &str = "x-amzn-requestid";

/// The largest request body taken, 512 KiB. The largest legal request is a CreateKey
/// or PutKeyPolicy with a 32 KiB policy; JSON may escape every character of it as
/// `\uXXXX` (botocore's `json.dumps` does so for non-ASCII), six bytes each: 192 KiB,
/// with CreateKey's 8192-character description likewise (48 KiB) and 50 tags of up to
/// 384 characters (113 KiB): about 353 KiB. The cryptographic calls are far smaller
/// (a 6144-byte blob is 8 KiB of base64, a 4096-byte plaintext 5.4 KiB). 512 KiB keeps
/// a margin over all of these and bounds what one unauthenticated stream can make the
/// daemon hold.
pub(super) const MAX_BODY: usize = 512 * 1024;

/// Why a request was refused before it reached an operation.
#[derive(Debug)]
pub(super) enum Rejected {
    /// No such operation, not POST /, or a body that could not be read.
    Kms(KmsError),
    /// The content type is not AWS JSON 1.1.
    MediaType,
    /// The body is over [`MAX_BODY`].
    TooLarge,
    /// The body did not arrive within [`BODY_READ_TIMEOUT`].
    TooSlow,
}

/// A client has this long to send a request's body: a body held back cannot keep its
/// buffer (up to [`MAX_BODY`]) for ever.
pub(super) const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Rejected {
    /// The answer, under a request id made for it (no request record exists).
    pub(super) fn response(&self, request_id: &str) -> Response<Body> {
        match self {
            Self::Kms(e) => errors::kms_error(e, request_id),
            // Named as Smithy's AWS JSON servers name it.
            Self::MediaType => errors::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaTypeException",
                "the Content-Type must be application/x-amz-json-1.1",
                request_id,
            ),
            Self::TooLarge => errors::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
                &format!("the request body is larger than {MAX_BODY} bytes"),
                request_id,
            ),
            Self::TooSlow => errors::error(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeoutException",
                "the request body did not arrive in time",
                request_id,
            ),
        }
    }
}

/// Which operation a request names, or why it names none. Pure: the property tests
/// drive it with arbitrary headers.
pub(super) fn route(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Operation, Rejected> {
    if method != Method::POST || path != "/" {
        return Err(Rejected::Kms(KmsError::UnknownOperation(
            "AWS JSON requests are POST / with an X-Amz-Target header".into(),
        )));
    }
    let target = headers
        .get(TARGET_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Rejected::Kms(KmsError::UnknownOperation(
                "the request has no X-Amz-Target header naming an operation".into(),
            ))
        })?;
    let op = Operation::from_target(target).ok_or_else(|| {
        // The target is caller input: not echoed.
        Rejected::Kms(KmsError::UnknownOperation(
            "X-Amz-Target names no operation of TrentService".into(),
        ))
    })?;
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(CONTENT_TYPE_JSON));
    if !json {
        return Err(Rejected::MediaType);
    }
    if let Some(len) = headers.get(CONTENT_LENGTH) {
        // A declared length over the limit is refused before a byte is read.
        let len = len.to_str().ok().and_then(|l| l.parse::<u64>().ok());
        if len.is_none_or(|l| l > MAX_BODY as u64) {
            return Err(Rejected::TooLarge);
        }
    }
    Ok(op)
}

/// Reads the body, at most [`MAX_BODY`] bytes of it, within [`BODY_READ_TIMEOUT`].
pub(super) async fn read_body(body: Incoming) -> Result<Wiped, Rejected> {
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, MAX_BODY).collect());
    match read.await.map_err(|_| Rejected::TooSlow)? {
        Ok(c) => Ok(Wiped(c.to_bytes())),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Rejected::TooLarge),
        Err(_) => Err(Rejected::Kms(KmsError::Serialization(
            "the request body could not be read".into(),
        ))),
    }
}

/// A request body, wiped when dropped if nothing else holds it: it may carry a
/// plaintext (Encrypt) as base64.
pub(super) struct Wiped(Bytes);

impl std::ops::Deref for Wiped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        if let Ok(mut b) = std::mem::take(&mut self.0).try_into_mut() {
            b.as_mut().zeroize();
        }
    }
}

/// Decodes a body into an operation's request shape. An empty body counts as `{}`.
/// Errors are SerializationException with where, never what: the message must not
/// echo caller bytes, and serde_json's own messages quote the offending value.
pub(super) fn decode<R: DeserializeOwned>(body: &[u8]) -> Result<R, KmsError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Data => "a member has the wrong type or an invalid value",
            Category::Syntax | Category::Eof | Category::Io => "the body is not valid JSON",
        };
        KmsError::Serialization(format!("{what} (line {}, column {})", e.line(), e.column()))
    })
}

/// A successful answer. The body may hold a plaintext or data key as base64, so it is
/// written into a zeroizing buffer, wiped when hyper drops the body. 8 KiB holds every
/// answer that carries a secret (the largest, Decrypt of 4096 bytes, is 5.5 KiB of
/// base64), so such a buffer never grows and leaves no unwiped copy behind.
pub(super) fn ok<T: Serialize>(out: &T, request_id: &str) -> Response<Body> {
    let mut buf = Zeroizing::new(Vec::with_capacity(8192));
    match serde_json::to_writer(&mut *buf, out) {
        Ok(()) => response(StatusCode::OK, Bytes::from_owner(buf), request_id),
        Err(e) => errors::kms_error(&KmsError::internal(e), request_id),
    }
}

/// An answer with the protocol's content type and the request id.
pub(super) fn response(status: StatusCode, body: Bytes, request_id: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID_HEADER, v);
    }
    r
}

#[cfg(test)]
mod tests;
