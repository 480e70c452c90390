//! Statuses that tonic answers before a handler runs carry no AWS error name: a message
//! that does not decode (bad protobuf, a string field that is not UTF-8), one over the
//! size limit, an unknown method, a compressed message. This middleware gives each the
//! name, code and message a handler's error would have (`status::to_status`) and a
//! request id, so that every failed call is named as errors.md promises.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tracing::{debug, warn};

use super::status::{to_status, ERROR_TYPE_HEADER};
use super::{MAX_MESSAGE_BYTES, REQUEST_ID_HEADER};
use crate::vault::KmsError;

/// Header with which tonic lists the compressions it takes, on the status refusing a
/// compressed message; it tells that refusal from an unknown method.
const ACCEPT_ENCODING_HEADER: &str = "grpc-accept-encoding";

/// Names the status of a trailers-only answer (the only form tonic gives a refusal made
/// before the handler) that has none; every other answer passes untouched. Runs as
/// `axum::middleware::map_response` around the gRPC routes.
pub(super) async fn name_unnamed_statuses(mut response: Response) -> Response {
    let headers = response.headers();
    let Some(code) = headers
        .get(Status::GRPC_STATUS)
        .map(|v| Code::from_bytes(v.as_bytes()))
    else {
        // A success, or a status in the trailers (after a response message).
        return response;
    };
    if code == Code::Ok || headers.contains_key(ERROR_TYPE_HEADER) {
        return response;
    }
    let e = kms_error_for(code, headers);
    let request_id = crate::vault::new_request_id();
    // tonic's own words, for whoever looks the request id up. Debug-quoted: they may
    // repeat a header the caller sent (an unknown compression's name).
    let detail = headers.get(Status::GRPC_MESSAGE).cloned();
    if matches!(e, KmsError::Internal(_)) {
        warn!(%request_id, ?code, ?detail, "a call failed before its handler with an unexpected status");
    } else {
        debug!(%request_id, ?code, ?detail, error = e.name(), "a call was refused before its handler");
    }
    let mut status = to_status(&e);
    if let Ok(v) = MetadataValue::try_from(request_id.as_str()) {
        status.metadata_mut().insert(REQUEST_ID_HEADER, v);
    }
    let headers = response.headers_mut();
    headers.remove(Status::GRPC_MESSAGE);
    if status.add_header(headers).is_err() {
        // Our own message and metadata are plain ASCII; should that ever change, the
        // caller still gets a name rather than tonic's bare status.
        headers.insert(Status::GRPC_STATUS, HeaderValue::from_static("13"));
        headers.insert(
            ERROR_TYPE_HEADER,
            HeaderValue::from_static("KMSInternalException"),
        );
    }
    response
}

/// The KMS error a nameless status made before the handler stands for. Only tonic makes
/// these (every handler's error is named), so the code says which refusal it was.
fn kms_error_for(code: Code, headers: &HeaderMap) -> KmsError {
    match code {
        // tonic's decoder: bytes that are not the operation's protobuf message (a string
        // that is not UTF-8 among them), a frame cut short, no message at all, a
        // compressed-flag without an encoding. As a JSON body that does not decode is.
        Code::Internal => KmsError::Serialization(
            "the request is not one well-formed protobuf message of the operation's type"
                .into(),
        ),
        // The frame declares more than the server takes. AWS has no name for an
        // oversized request; a parameter over its limit is a ValidationException.
        Code::OutOfRange | Code::ResourceExhausted => KmsError::Validation(format!(
            "1 validation error detected: the request message is over the limit of {MAX_MESSAGE_BYTES} bytes"
        )),
        // tonic lists what it accepts when it refuses a compressed message; that header
        // stays on the answer, so a client can retry uncompressed.
        Code::Unimplemented if headers.contains_key(ACCEPT_ENCODING_HEADER) => {
            KmsError::UnsupportedOperation(
                "compressed request messages are not supported; send them uncompressed"
                    .into(),
            )
        }
        // The route or the service's dispatcher found no such method. AWS's name for
        // an operation it does not know (the AWS JSON listener's too).
        Code::Unimplemented => KmsError::UnknownOperation(
            "the request names no operation of p11kms.v1.KeyManagementService".into(),
        ),
        other => KmsError::Internal(format!("a call failed before its handler: {other:?}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    /// A trailers-only answer, as tonic makes one.
    fn refusal(status: Status) -> Response {
        let (parts, ()) = status.into_http::<()>().into_parts();
        Response::from_parts(parts, Body::empty())
    }

    async fn named(status: Status) -> Response {
        name_unnamed_statuses(refusal(status)).await
    }

    /// tonic's refusal of a compressed message, with the encodings it takes.
    fn compressed() -> Status {
        let mut st = Status::unimplemented("Content is compressed with `br`");
        st.metadata_mut().insert(
            ACCEPT_ENCODING_HEADER,
            MetadataValue::from_static("identity"),
        );
        st
    }

    fn header<'a>(r: &'a Response, name: &str) -> &'a str {
        r.headers().get(name).unwrap().to_str().unwrap()
    }

    #[tokio::test]
    async fn each_refusal_before_the_handler_gets_its_name_and_code() {
        let table = [
            (
                Status::internal("failed to decode Protobuf message: invalid string value"),
                "SerializationException",
                Code::InvalidArgument,
            ),
            (
                Status::out_of_range("decoded message length too large"),
                "ValidationException",
                Code::InvalidArgument,
            ),
            (
                Status::unimplemented(""),
                "UnknownOperationException",
                Code::Unimplemented,
            ),
            (
                compressed(),
                "UnsupportedOperationException",
                Code::Unimplemented,
            ),
            (
                Status::cancelled("Timeout expired"),
                "KMSInternalException",
                Code::Internal,
            ),
        ];
        for (status, name, code) in table {
            let r = named(status).await;
            assert_eq!(header(&r, ERROR_TYPE_HEADER), name);
            assert_eq!(
                Code::from_bytes(header(&r, "grpc-status").as_bytes()),
                code,
                "{name}"
            );
            let message = header(&r, "grpc-message");
            assert!(message.starts_with(name), "{message}");
            assert_eq!(header(&r, REQUEST_ID_HEADER).len(), 36, "a UUID");
        }
    }

    #[tokio::test]
    async fn compressed_messages_keep_the_list_of_accepted_encodings() {
        let r = named(compressed()).await;
        assert_eq!(header(&r, ACCEPT_ENCODING_HEADER), "identity");
    }

    #[tokio::test]
    async fn named_errors_and_successes_pass_untouched() {
        let named_by_handler = to_status(&KmsError::NotFound("no such key".into()));
        let r = named(named_by_handler).await;
        assert_eq!(header(&r, ERROR_TYPE_HEADER), "NotFoundException");
        assert_eq!(
            Code::from_bytes(header(&r, "grpc-status").as_bytes()),
            Code::NotFound
        );
        assert!(r.headers().get(REQUEST_ID_HEADER).is_none());

        let ok = Response::new(Body::empty());
        let r = name_unnamed_statuses(ok).await;
        assert!(r.headers().is_empty());
    }
}
