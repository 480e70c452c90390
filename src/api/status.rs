//! KmsError → gRPC status, in one place. The AWS error name travels in the
//! `x-amzn-errortype` metadata (the header AWS itself uses) and prefixes the message, so
//! that both programs and people reading a raw gRPC error see it.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::vault::KmsError;

/// Metadata key holding the AWS error name.
pub(crate) const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// The gRPC code for each KMS error.
pub(crate) fn code_of(e: &KmsError) -> Code {
    match e {
        // AWS answers all of these with HTTP 400: the request itself must change.
        KmsError::Validation(_)
        | KmsError::InvalidCiphertext(_)
        | KmsError::IncorrectKey(_)
        | KmsError::InvalidKeyUsage(_)
        | KmsError::KmsInvalidSignature(_)
        | KmsError::KmsInvalidMac(_)
        | KmsError::IncorrectKeyMaterial(_)
        | KmsError::InvalidImportToken(_)
        | KmsError::ExpiredImportToken(_)
        | KmsError::InvalidMarker(_)
        | KmsError::MalformedPolicyDocument(_)
        | KmsError::InvalidGrantToken(_)
        | KmsError::InvalidGrantId(_)
        | KmsError::InvalidAliasName(_)
        | KmsError::Tag(_) => Code::InvalidArgument,
        KmsError::AlreadyExists(_) => Code::AlreadyExists,
        KmsError::NotFound(_) => Code::NotFound,
        KmsError::AccessDenied(_) => Code::PermissionDenied,
        KmsError::UnrecognizedClient(_)
        | KmsError::MissingAuthenticationToken(_)
        | KmsError::IncompleteSignature(_)
        | KmsError::InvalidSignature(_) => Code::Unauthenticated,
        // The AWS JSON transport's own errors; gRPC never makes them, but the map is
        // total so that a new variant is a compile error here.
        KmsError::UnknownOperation(_) => Code::Unimplemented,
        KmsError::Serialization(_) => Code::InvalidArgument,
        // The request is fine but the key's state forbids it.
        KmsError::Disabled(_) | KmsError::KmsInvalidState(_) => Code::FailedPrecondition,
        KmsError::LimitExceeded(_) => Code::ResourceExhausted,
        KmsError::UnsupportedOperation(_) => Code::Unimplemented,
        // Retryable: the HSM may come back.
        KmsError::KeyUnavailable(_) | KmsError::DependencyTimeout(_) => Code::Unavailable,
        KmsError::Internal(_) => Code::Internal,
    }
}

/// The status a client receives.
pub(crate) fn to_status(e: &KmsError) -> Status {
    let mut st = Status::new(code_of(e), format!("{}: {}", e.name(), e));
    st.metadata_mut()
        .insert(ERROR_TYPE_HEADER, MetadataValue::from_static(e.name()));
    st
}

/// One failed item of a batch call: the name and message a single call's status would
/// carry (the message without the name in front).
pub(crate) fn item_error(e: &KmsError) -> crate::proto::BatchItemError {
    crate::proto::BatchItemError {
        error_code: e.name().to_owned(),
        error_message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_code_and_name() {
        let table: Vec<(KmsError, Code, &str)> = vec![
            (
                KmsError::Validation("x".into()),
                Code::InvalidArgument,
                "ValidationException",
            ),
            (
                KmsError::NotFound("x".into()),
                Code::NotFound,
                "NotFoundException",
            ),
            (
                KmsError::InvalidCiphertext("x".into()),
                Code::InvalidArgument,
                "InvalidCiphertextException",
            ),
            (
                KmsError::IncorrectKey("x".into()),
                Code::InvalidArgument,
                "IncorrectKeyException",
            ),
            (
                KmsError::AccessDenied("x".into()),
                Code::PermissionDenied,
                "AccessDeniedException",
            ),
            (
                KmsError::UnrecognizedClient("x".into()),
                Code::Unauthenticated,
                "UnrecognizedClientException",
            ),
            (
                KmsError::MissingAuthenticationToken("x".into()),
                Code::Unauthenticated,
                "MissingAuthenticationToken",
            ),
            (
                KmsError::IncompleteSignature("x".into()),
                Code::Unauthenticated,
                "IncompleteSignature",
            ),
            (
                KmsError::InvalidSignature("x".into()),
                Code::Unauthenticated,
                "InvalidSignatureException",
            ),
            (
                KmsError::UnknownOperation("x".into()),
                Code::Unimplemented,
                "UnknownOperationException",
            ),
            (
                KmsError::Serialization("x".into()),
                Code::InvalidArgument,
                "SerializationException",
            ),
            (
                KmsError::Disabled("x".into()),
                Code::FailedPrecondition,
                "DisabledException",
            ),
            (
                KmsError::KmsInvalidState("x".into()),
                Code::FailedPrecondition,
                "KMSInvalidStateException",
            ),
            (
                KmsError::InvalidKeyUsage("x".into()),
                Code::InvalidArgument,
                "InvalidKeyUsageException",
            ),
            (
                KmsError::InvalidMarker("x".into()),
                Code::InvalidArgument,
                "InvalidMarkerException",
            ),
            (
                KmsError::MalformedPolicyDocument("x".into()),
                Code::InvalidArgument,
                "MalformedPolicyDocumentException",
            ),
            (
                KmsError::InvalidGrantToken("x".into()),
                Code::InvalidArgument,
                "InvalidGrantTokenException",
            ),
            (
                KmsError::InvalidGrantId("x".into()),
                Code::InvalidArgument,
                "InvalidGrantIdException",
            ),
            (
                KmsError::LimitExceeded("x".into()),
                Code::ResourceExhausted,
                "LimitExceededException",
            ),
            (
                KmsError::AlreadyExists("x".into()),
                Code::AlreadyExists,
                "AlreadyExistsException",
            ),
            (
                KmsError::InvalidAliasName("x".into()),
                Code::InvalidArgument,
                "InvalidAliasNameException",
            ),
            (
                KmsError::Tag("x".into()),
                Code::InvalidArgument,
                "TagException",
            ),
            (
                KmsError::UnsupportedOperation("x".into()),
                Code::Unimplemented,
                "UnsupportedOperationException",
            ),
            (
                KmsError::KeyUnavailable(crate::hsm::HsmError::PoolStopped),
                Code::Unavailable,
                "KeyUnavailableException",
            ),
            (
                KmsError::Internal("boom".into()),
                Code::Internal,
                "KMSInternalException",
            ),
        ];
        for (e, code, name) in table {
            let st = to_status(&e);
            assert_eq!(st.code(), code, "{name}");
            assert_eq!(st.metadata().get(ERROR_TYPE_HEADER).unwrap(), name);
            assert!(st.message().starts_with(name), "{}", st.message());
        }
    }

    #[test]
    fn internal_errors_do_not_show_their_cause() {
        let st = to_status(&KmsError::Internal(
            "sqlite: disk I/O error at /secret/path".into(),
        ));
        assert!(!st.message().contains("/secret/path"));
    }
}
