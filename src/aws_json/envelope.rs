//! The AWS JSON 1.1 envelope: `POST /` with `X-Amz-Target: TrentService.<Operation>`
//! and `Content-Type: application/x-amz-json-1.1`, a bounded body, JSON decoding into
//! an operation's shape; and the envelope of every answer (content type, request id).

use std::sync::Arc;

use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::{Zeroize as _, Zeroizing};

use super::errors;
use super::operation::Operation;
use crate::vault::KmsError;

/// The body type of every answer.
pub(crate) type Body = Full<Bytes>;

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
/// daemon hold. The batch calls may send more: [`MAX_BATCH_BODY`].
pub(super) const MAX_BODY: usize = 512 * 1024;

/// The largest body of a batch call (BatchEncrypt, BatchDecrypt), 8 MiB. 1000 items of
/// 4096-byte plaintexts (5,464 characters of base64 each) under a key ARN with a short
/// context are about 5.7 MB; 1000 blobs of such plaintexts to decrypt about the same.
/// A batch whose items carry long contexts, grant tokens or 6144-byte blobs may not fit
/// and must be split. Bodies over [`MAX_BODY`] also need room in the listener's
/// [`BodyBudget`], so that 4096 unauthenticated connections cannot make the daemon hold
/// 8 MiB each.
pub(super) const MAX_BATCH_BODY: usize = 8 * 1024 * 1024;

/// What all bodies over [`MAX_BODY`] held at once may add up to: 64 MiB, eight full
/// batch bodies. A body that finds no room waits for it, within the listener's request
/// read timeout.
const LARGE_BODY_BUDGET_KIB: usize = 64 * 1024;

/// Why a request was refused before it reached an operation.
#[derive(Debug)]
pub(crate) enum Rejected {
    /// No such operation, not POST /, or a body that could not be read.
    Kms(KmsError),
    /// The content type is not AWS JSON 1.1.
    MediaType,
    /// The body is over the operation's limit (the number).
    TooLarge(usize),
    /// The body did not arrive within the listener's request read timeout.
    TooSlow,
}

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
            Self::TooLarge(limit) => errors::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
                &format!("the request body is larger than {limit} bytes"),
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

/// Which operation a request names and the most bytes its body may have (see
/// [`body_limit`]), or why it names none. Pure: the property tests drive it with
/// arbitrary headers.
pub(super) fn route(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(Operation, usize), Rejected> {
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
    Ok((op, body_limit(op, headers)?))
}

/// The most bytes `op`'s body may have: its limit, or less when the request declares
/// a length. A declared length over the limit is refused before a byte is read.
fn body_limit(op: Operation, headers: &HeaderMap) -> Result<usize, Rejected> {
    let limit = op.max_body();
    match headers.get(CONTENT_LENGTH) {
        None => Ok(limit),
        Some(len) => len
            .to_str()
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l <= limit)
            .ok_or(Rejected::TooLarge(limit)),
    }
}

/// What reading bodies may cost on one listener, shared by all its connections: room
/// for bodies over [`MAX_BODY`], and the time a body may take to arrive.
#[derive(Clone)]
pub(crate) struct BodyBudget {
    room: Arc<Semaphore>,
    /// A client has this long to send a request's body (`connections.
    /// request_read_timeout_secs`): a body held back cannot keep its buffer (up to
    /// [`MAX_BODY`], or room in the budget) for ever.
    read_timeout: std::time::Duration,
}

impl BodyBudget {
    /// The listener's budget (see `LARGE_BODY_BUDGET_KIB`), and its bodies' time limit.
    pub(super) fn new(read_timeout: std::time::Duration) -> Self {
        Self {
            room: Arc::new(Semaphore::new(LARGE_BODY_BUDGET_KIB)),
            read_timeout,
        }
    }

    /// Room for a body of up to `limit` bytes, waiting for it when others hold it;
    /// none needed up to [`MAX_BODY`] (those are bounded by the number of connections).
    async fn room(&self, limit: usize) -> Option<OwnedSemaphorePermit> {
        if limit <= MAX_BODY {
            return None;
        }
        // At most the whole budget, so it always fits in u32; the semaphore is never
        // closed, so the acquire never fails.
        let kib = u32::try_from(limit.div_ceil(1024).min(LARGE_BODY_BUDGET_KIB)).ok()?;
        Arc::clone(&self.room).acquire_many_owned(kib).await.ok()
    }
}

/// Reads the body, at most `limit` bytes of it (see [`body_limit`]), within the
/// budget's read timeout, after taking room for it in `budget`.
pub(crate) async fn read_body(
    body: Incoming,
    limit: usize,
    budget: &BodyBudget,
) -> Result<Wiped, Rejected> {
    // A declared length over the limit is refused before any of the body is read (or
    // waited for): a client may not hold the request open by sending it slowly.
    let declared = hyper::body::Body::size_hint(&body).lower();
    if declared > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(Rejected::TooLarge(limit));
    }
    let read = async {
        let room = budget.room(limit).await;
        (Limited::new(body, limit).collect().await, room)
    };
    match tokio::time::timeout(budget.read_timeout, read)
        .await
        .map_err(|_| Rejected::TooSlow)?
    {
        (Ok(c), room) => Ok(Wiped {
            bytes: c.to_bytes(),
            _room: room,
        }),
        (Err(e), _) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Rejected::TooLarge(limit))
        }
        (Err(_), _) => Err(Rejected::Kms(KmsError::Serialization(
            "the request body could not be read".into(),
        ))),
    }
}

/// A request body, wiped when dropped if nothing else holds it: it may carry a
/// plaintext (Encrypt) as base64. A large body holds its room in the budget as long.
pub(crate) struct Wiped {
    bytes: Bytes,
    _room: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Wiped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        if let Ok(mut b) = std::mem::take(&mut self.bytes).try_into_mut() {
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
/// written into a [`WipingBuf`], wiped when hyper drops the body. Its first 8 KiB hold
/// every single call's answer (the largest, Decrypt of 4096 bytes, is 5.5 KiB of
/// base64); a batch's answer makes it grow.
pub(super) fn ok<T: Serialize>(out: &T, request_id: &str) -> Response<Body> {
    let mut buf = WipingBuf(Zeroizing::new(Vec::with_capacity(8192)));
    match serde_json::to_writer(&mut buf, out) {
        Ok(()) => response(StatusCode::OK, Bytes::from_owner(buf.0), request_id),
        Err(e) => errors::kms_error(&KmsError::internal(e), request_id),
    }
}

/// `out` as JSON in a buffer that is wiped when the answer's body is dropped, and
/// leaves no unwiped copy behind as it grows (for answers that may hold a plaintext).
pub(crate) fn wiping_json<T: Serialize>(out: &T) -> Result<Bytes, serde_json::Error> {
    let mut buf = WipingBuf(Zeroizing::new(Vec::with_capacity(1024)));
    serde_json::to_writer(&mut buf, out)?;
    Ok(Bytes::from_owner(buf.0))
}

/// A buffer that grows without leaving an unwiped copy behind: a `Vec` that grows
/// frees its old bytes as they are, so this one moves into a buffer twice the size
/// and wipes the old one itself.
struct WipingBuf(Zeroizing<Vec<u8>>);

impl std::io::Write for WipingBuf {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let need = self.0.len().saturating_add(bytes.len());
        if need > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                need.max(self.0.capacity().saturating_mul(2)),
            ));
            bigger.extend_from_slice(&self.0);
            // The old buffer is wiped, spare capacity included, as it drops.
            self.0 = bigger;
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
