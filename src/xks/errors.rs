//! The XKS proxy API's error answers: an HTTP status and `{"errorName","errorMessage"}`,
//! with the specification's names. The vault's `KmsError` is mapped here; its own AWS
//! KMS name stays in the audit record.

use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::aws_json::Body;
use crate::vault::KmsError;

/// The error names of the specification, each with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XksErrorName {
    Validation,
    InvalidState,
    InvalidCiphertext,
    InvalidKeyUsage,
    AuthenticationFailed,
    AccessDenied,
    KeyNotFound,
    InvalidUriPath,
    Throttling,
    UnsupportedOperation,
    DependencyTimeout,
    Internal,
}

impl XksErrorName {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "ValidationException",
            Self::InvalidState => "InvalidStateException",
            Self::InvalidCiphertext => "InvalidCiphertextException",
            Self::InvalidKeyUsage => "InvalidKeyUsageException",
            Self::AuthenticationFailed => "AuthenticationFailedException",
            Self::AccessDenied => "AccessDeniedException",
            Self::KeyNotFound => "KeyNotFoundException",
            Self::InvalidUriPath => "InvalidUriPathException",
            Self::Throttling => "ThrottlingException",
            Self::UnsupportedOperation => "UnsupportedOperationException",
            Self::DependencyTimeout => "DependencyTimeoutException",
            Self::Internal => "InternalException",
        }
    }

    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::Validation
            | Self::InvalidState
            | Self::InvalidCiphertext
            | Self::InvalidKeyUsage => StatusCode::BAD_REQUEST,
            Self::AuthenticationFailed => StatusCode::UNAUTHORIZED,
            Self::AccessDenied => StatusCode::FORBIDDEN,
            Self::KeyNotFound | Self::InvalidUriPath => StatusCode::NOT_FOUND,
            Self::Throttling => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedOperation => StatusCode::NOT_IMPLEMENTED,
            Self::DependencyTimeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The name AWS KMS is told for a failure of the vault.
    pub(crate) fn of(e: &KmsError) -> Self {
        match e {
            KmsError::Validation(_)
            | KmsError::Serialization(_)
            | KmsError::KmsInvalidSignature(_)
            | KmsError::KmsInvalidMac(_)
            | KmsError::IncorrectKeyMaterial(_)
            | KmsError::InvalidImportToken(_)
            | KmsError::ExpiredImportToken(_) => Self::Validation,
            KmsError::Disabled(_) | KmsError::KmsInvalidState(_) => Self::InvalidState,
            KmsError::InvalidCiphertext(_) | KmsError::IncorrectKey(_) => Self::InvalidCiphertext,
            KmsError::InvalidKeyUsage(_) => Self::InvalidKeyUsage,
            KmsError::MissingAuthenticationToken(_)
            | KmsError::IncompleteSignature(_)
            | KmsError::InvalidSignature(_)
            | KmsError::UnrecognizedClient(_) => Self::AuthenticationFailed,
            KmsError::AccessDenied(_) => Self::AccessDenied,
            KmsError::NotFound(_) => Self::KeyNotFound,
            KmsError::LimitExceeded(_) => Self::Throttling,
            KmsError::UnsupportedOperation(_) => Self::UnsupportedOperation,
            KmsError::DependencyTimeout(_) => Self::DependencyTimeout,
            // An HSM call past its deadline: the key manager did not answer in time.
            KmsError::Internal(e)
                if matches!(
                    e.downcast_ref::<crate::hsm::HsmError>(),
                    Some(crate::hsm::HsmError::Timeout(_))
                ) =>
            {
                Self::DependencyTimeout
            }
            // KeyUnavailableException (the token is down) among them: the proxy cannot
            // reach its key manager.
            _ => Self::Internal,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    error_name: &'static str,
    error_message: &'a str,
}

/// The answer for `name`, with a message cut to the specification's bounds: under 512
/// characters, printable ASCII only (AWS KMS copies it into the customer's logs).
pub(crate) fn answer(name: XksErrorName, message: &str) -> Response<Body> {
    let mut clean: String = message
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    clean.truncate(511);
    let body = serde_json::to_vec(&ErrorBody {
        error_name: name.as_str(),
        error_message: &clean,
    })
    .unwrap_or_default();
    json(name.status(), body.into())
}

/// 405 for a method other than POST on one of the API's paths.
pub(crate) fn method_not_allowed() -> Response<Body> {
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("POST"));
    r
}

/// A JSON answer.
pub(crate) fn json(status: StatusCode, body: hyper::body::Bytes) -> Response<Body> {
    let mut r = Response::new(Body::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn an_answer_has_the_name_its_status_and_a_clean_short_message() {
        let r = answer(
            XksErrorName::KeyNotFound,
            &format!("no\u{7}key {}", "x".repeat(600)),
        );
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errorName"], "KeyNotFoundException");
        let m = v["errorMessage"].as_str().unwrap();
        assert!(m.len() < 512 && m.starts_with("no?key "), "{m}");
    }
}
