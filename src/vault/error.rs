//! KmsError: the AWS KMS error names, the one vocabulary the vault speaks upward.
//! Messages are written for the caller: they say what to fix and never echo secret
//! bytes. Internal causes stay attached for the log only.

use crate::hsm::HsmError;
use crate::store::StoreError;

/// An operation's failure, named as AWS KMS names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// A parameter is missing, malformed or out of range.
    #[error("{0}")]
    Validation(String),
    /// The key (or alias) does not exist, or is not visible to the caller.
    #[error("{0}")]
    NotFound(String),
    /// The blob is damaged, foreign, or the context does not match.
    #[error("{0}")]
    InvalidCiphertext(String),
    /// Decrypt named a KeyId other than the one that encrypted the blob.
    #[error("{0}")]
    IncorrectKey(String),
    /// Not authorized.
    #[error("{0}")]
    AccessDenied(String),
    /// The caller presented no usable identity.
    #[error("{0}")]
    UnrecognizedClient(String),
    /// The key is disabled.
    #[error("{0}")]
    Disabled(String),
    /// The key's state does not allow the operation.
    #[error("{0}")]
    KmsInvalidState(String),
    /// The operation is not valid for this key's usage or the algorithm.
    #[error("{0}")]
    InvalidKeyUsage(String),
    /// Verify: the signature does not verify for this key, algorithm and message.
    #[error("{0}")]
    KmsInvalidSignature(String),
    /// VerifyMac: the MAC does not verify for this key, algorithm and message.
    #[error("{0}")]
    KmsInvalidMac(String),
    /// Imported material that is not what the key takes (its size, or other material
    /// than the key had).
    #[error("{0}")]
    IncorrectKeyMaterial(String),
    /// An import token that p11kms did not issue, or issued for another key.
    #[error("{0}")]
    InvalidImportToken(String),
    /// An import token past its ParametersValidTo.
    #[error("{0}")]
    ExpiredImportToken(String),
    /// A policy document that is not valid; the message says where and why.
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// A pagination marker that we did not issue.
    #[error("{0}")]
    InvalidMarker(String),
    /// A grant id that is not one.
    #[error("{0}")]
    InvalidGrantId(String),
    /// A grant token that does not parse.
    #[error("{0}")]
    InvalidGrantToken(String),
    /// A quota was exceeded.
    #[error("{0}")]
    LimitExceeded(String),
    /// A resource of that name exists already (an alias).
    #[error("{0}")]
    AlreadyExists(String),
    /// A tag that breaks the tag rules.
    #[error("{0}")]
    Tag(String),
    /// An alias name that breaks the naming rules or uses the reserved alias/aws/.
    #[error("{0}")]
    InvalidAliasName(String),
    /// A valid AWS request that p11kms does not support (yet).
    #[error("{0}")]
    UnsupportedOperation(String),
    /// The request carries no credentials at all (no Authorization header).
    #[error("{0}")]
    MissingAuthenticationToken(String),
    /// The request's signature is malformed or leaves out a required part.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The signature does not match, or its date is outside the allowed window.
    #[error("{0}")]
    InvalidSignature(String),
    /// The request names an operation the service does not have.
    #[error("{0}")]
    UnknownOperation(String),
    /// The request body is not JSON, or a member has the wrong type.
    #[error("{0}")]
    Serialization(String),
    /// A dependency (the metadata store, held by another writer) did not answer in time;
    /// retrying may succeed.
    #[error("{0}")]
    DependencyTimeout(String),
    /// The HSM holding the key cannot be used right now; retrying may succeed.
    #[error("the HSM holding this key is not available; retry later")]
    KeyUnavailable(#[source] HsmError),
    /// A fault inside p11kms. The caller sees only the name; the cause goes to the log.
    #[error("an internal error occurred; the request id in the server log has the detail")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl KmsError {
    /// The AWS KMS error name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Validation(_) => "ValidationException",
            Self::NotFound(_) => "NotFoundException",
            Self::InvalidCiphertext(_) => "InvalidCiphertextException",
            Self::IncorrectKey(_) => "IncorrectKeyException",
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::UnrecognizedClient(_) => "UnrecognizedClientException",
            Self::Disabled(_) => "DisabledException",
            Self::KmsInvalidState(_) => "KMSInvalidStateException",
            Self::InvalidKeyUsage(_) => "InvalidKeyUsageException",
            Self::KmsInvalidSignature(_) => "KMSInvalidSignatureException",
            Self::KmsInvalidMac(_) => "KMSInvalidMacException",
            Self::IncorrectKeyMaterial(_) => "IncorrectKeyMaterialException",
            Self::InvalidImportToken(_) => "InvalidImportTokenException",
            Self::ExpiredImportToken(_) => "ExpiredImportTokenException",
            Self::InvalidMarker(_) => "InvalidMarkerException",
            Self::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            Self::InvalidGrantToken(_) => "InvalidGrantTokenException",
            Self::InvalidGrantId(_) => "InvalidGrantIdException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::AlreadyExists(_) => "AlreadyExistsException",
            Self::InvalidAliasName(_) => "InvalidAliasNameException",
            Self::Tag(_) => "TagException",
            Self::UnsupportedOperation(_) => "UnsupportedOperationException",
            Self::MissingAuthenticationToken(_) => "MissingAuthenticationToken",
            Self::IncompleteSignature(_) => "IncompleteSignature",
            Self::InvalidSignature(_) => "InvalidSignatureException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::Serialization(_) => "SerializationException",
            Self::DependencyTimeout(_) => "DependencyTimeoutException",
            Self::KeyUnavailable(_) => "KeyUnavailableException",
            Self::Internal(_) => "KMSInternalException",
        }
    }

    /// Shorthand for a ValidationException.
    pub(crate) fn validation(msg: impl Into<String>) -> Self {
        Self::Validation(msg.into())
    }

    /// Shorthand for an internal error with a cause.
    pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }
}

impl From<HsmError> for KmsError {
    fn from(e: HsmError) -> Self {
        match e {
            HsmError::TagMismatch => Self::InvalidCiphertext(
                "the ciphertext is invalid, or the encryption context does not match the one used to encrypt it".into(),
            ),
            // Still lost after the pool's reopen-and-retry, or the token is marked down:
            // gone for now, so the caller may retry.
            e @ (HsmError::SessionLost(_) | HsmError::PoolStopped | HsmError::Unavailable(_)) => {
                Self::KeyUnavailable(e)
            }
            HsmError::Unsupported(what) => {
                Self::UnsupportedOperation(format!("the HSM cannot {what}"))
            }
            HsmError::IncorrectMaterial(why) => Self::IncorrectKeyMaterial(why),
            HsmError::WrappedKeyInvalid(_) => Self::InvalidCiphertext(
                "the EncryptedKeyMaterial cannot be unwrapped with the import token's wrapping key and wrapping algorithm".into(),
            ),
            HsmError::WrappingKeyMissing => Self::InvalidImportToken(
                "the wrapping key of this import token no longer exists; get new parameters for import".into(),
            ),
            HsmError::BadInput(what) => {
                Self::validation(format!("the HSM refused the {what} as given"))
            }
            // Anything else, a hung call among them (the token did not answer, and
            // nothing says whether the work was done), is the service's fault.
            other => Self::internal(other),
        }
    }
}

impl From<StoreError> for KmsError {
    /// A quota the store enforced is the caller's LimitExceededException; anything
    /// else is a fault of ours.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LimitExceeded(m) => Self::LimitExceeded(m),
            // Another writer held the database past the busy timeout: nothing was written.
            StoreError::Busy(e) => {
                tracing::warn!(error = %e, "the metadata store stayed locked past its busy timeout");
                Self::DependencyTimeout(
                    "the metadata store is busy; nothing was changed, retry the request".into(),
                )
            }
            other => Self::internal(other),
        }
    }
}

impl From<tokio::task::JoinError> for KmsError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(e)
    }
}
