//! KmsError → an AWS JSON error answer, in one place: the HTTP status AWS KMS uses for
//! each name (its API reference lists one per error), a body `{"__type": NAME,
//! "message": …}` and the `x-amzn-ErrorType` header, from which botocore picks the
//! exception class.

use hyper::body::Bytes;
use hyper::{Response, StatusCode};

use super::envelope::{response, Body};
use crate::vault::KmsError;

/// The header AWS names the error in (x-amzn-ErrorType; header names are lowercase
/// here, as HTTP/2 requires and `HeaderName::from_static` insists).
pub(super) const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// The HTTP status AWS KMS answers each error with.
pub(super) fn status_of(e: &KmsError) -> StatusCode {
    match e {
        // Faults on the service's side: AWS's reference gives 500 for both.
        KmsError::Internal(_) | KmsError::KeyUnavailable(_) | KmsError::DependencyTimeout(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        // AWS's common errors give 403 for a request with no credentials at all;
        // a bad or unknown one is 400 (IncompleteSignature, InvalidSignatureException,
        // UnrecognizedClientException as KMS sends them).
        KmsError::MissingAuthenticationToken(_) => StatusCode::FORBIDDEN,
        // Everything else, including AccessDenied, NotFound and KMSInvalidState: AWS
        // KMS answers 400, for the request must change before a retry can succeed.
        KmsError::Validation(_)
        | KmsError::NotFound(_)
        | KmsError::InvalidCiphertext(_)
        | KmsError::IncorrectKey(_)
        | KmsError::AccessDenied(_)
        | KmsError::UnrecognizedClient(_)
        | KmsError::Disabled(_)
        | KmsError::KmsInvalidState(_)
        | KmsError::InvalidKeyUsage(_)
        | KmsError::KmsInvalidSignature(_)
        | KmsError::KmsInvalidMac(_)
        | KmsError::IncorrectKeyMaterial(_)
        | KmsError::InvalidImportToken(_)
        | KmsError::ExpiredImportToken(_)
        | KmsError::MalformedPolicyDocument(_)
        | KmsError::InvalidMarker(_)
        | KmsError::InvalidGrantId(_)
        | KmsError::InvalidGrantToken(_)
        | KmsError::LimitExceeded(_)
        | KmsError::AlreadyExists(_)
        | KmsError::Tag(_)
        | KmsError::InvalidAliasName(_)
        | KmsError::UnsupportedOperation(_)
        | KmsError::IncompleteSignature(_)
        | KmsError::InvalidSignature(_)
        | KmsError::UnknownOperation(_)
        | KmsError::Serialization(_) => StatusCode::BAD_REQUEST,
    }
}

/// The answer to a failed request. The message is the error's own, which never shows
/// input bytes or internal causes (see `KmsError`).
pub(super) fn kms_error(e: &KmsError, request_id: &str) -> Response<Body> {
    error(status_of(e), e.name(), &e.to_string(), request_id)
}

/// An error answer with any name: also the envelope's own (415, 413).
pub(super) fn error(
    status: StatusCode,
    name: &'static str,
    message: &str,
    request_id: &str,
) -> Response<Body> {
    let body = serde_json::json!({ "__type": name, "message": message }).to_string();
    let mut r = response(status, Bytes::from(body), request_id);
    r.headers_mut().insert(
        ERROR_TYPE_HEADER,
        hyper::header::HeaderValue::from_static(name),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[test]
    fn every_error_has_its_aws_status() {
        let table: Vec<(KmsError, u16, &str)> = vec![
            (KmsError::Validation("x".into()), 400, "ValidationException"),
            (KmsError::NotFound("x".into()), 400, "NotFoundException"),
            (
                KmsError::AccessDenied("x".into()),
                400,
                "AccessDeniedException",
            ),
            (
                KmsError::KmsInvalidState("x".into()),
                400,
                "KMSInvalidStateException",
            ),
            (KmsError::Disabled("x".into()), 400, "DisabledException"),
            (
                KmsError::UnrecognizedClient("x".into()),
                400,
                "UnrecognizedClientException",
            ),
            (
                KmsError::MissingAuthenticationToken("x".into()),
                403,
                "MissingAuthenticationToken",
            ),
            (
                KmsError::IncompleteSignature("x".into()),
                400,
                "IncompleteSignature",
            ),
            (
                KmsError::InvalidSignature("x".into()),
                400,
                "InvalidSignatureException",
            ),
            (
                KmsError::UnknownOperation("x".into()),
                400,
                "UnknownOperationException",
            ),
            (
                KmsError::Serialization("x".into()),
                400,
                "SerializationException",
            ),
            (
                KmsError::UnsupportedOperation("x".into()),
                400,
                "UnsupportedOperationException",
            ),
            (
                KmsError::LimitExceeded("x".into()),
                400,
                "LimitExceededException",
            ),
            (
                KmsError::KeyUnavailable(crate::hsm::HsmError::PoolStopped),
                500,
                "KeyUnavailableException",
            ),
            (
                KmsError::Internal("boom".into()),
                500,
                "KMSInternalException",
            ),
        ];
        for (e, status, name) in table {
            assert_eq!(status_of(&e).as_u16(), status, "{name}");
            assert_eq!(e.name(), name);
        }
    }

    #[tokio::test]
    async fn an_error_answer_has_the_body_and_headers_botocore_reads() {
        let r = kms_error(
            &KmsError::NotFound("Key 'x' does not exist".into()),
            "rid-1",
        );
        assert_eq!(r.status(), 400);
        let h = r.headers();
        assert_eq!(h["x-amzn-errortype"], "NotFoundException");
        assert_eq!(h["x-amzn-requestid"], "rid-1");
        assert_eq!(h["content-type"], "application/x-amz-json-1.1");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"__type": "NotFoundException", "message": "Key 'x' does not exist"})
        );
    }

    #[tokio::test]
    async fn internal_errors_do_not_show_their_cause() {
        let r = kms_error(&KmsError::Internal("disk I/O at /secret/path".into()), "r");
        assert_eq!(r.status(), 500);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert!(!String::from_utf8_lossy(&body).contains("/secret/path"));
    }
}
