//! Why a message could not be made or read.

/// An envelope failure. Never carries plaintext or key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The message ends early.
    #[error("the message is truncated")]
    Truncated,
    /// A field has a value the format does not allow.
    #[error("the message is malformed: {0}")]
    Malformed(&'static str),
    /// Not message format version 2.
    #[error("unsupported message format version")]
    UnsupportedVersion,
    /// Another algorithm suite (only committing suites are accepted).
    #[error("unsupported algorithm suite (the commitment policy requires a key-committing suite)")]
    UnsupportedSuite,
    /// More encrypted data keys than allowed.
    #[error("the message has more than {0} encrypted data keys")]
    TooManyEdks(usize),
    /// No keyring could decrypt any data key (and none reported why).
    #[error("no encrypted data key could be decrypted with the given keyring")]
    NoDecryptableKey,
    /// A keyring failed; the text names the cause (e.g. the daemon's AWS error name).
    #[error("keyring: {0}")]
    KeyringFailed(String),
    /// The message's encryption context lacks a pair the caller requires.
    #[error("the encryption context does not contain the required pair for key {0:?}")]
    ContextMismatch(String),
    /// The caller's context uses the prefix the format reserves.
    #[error("encryption context keys starting with aws-crypto- are reserved")]
    ReservedContextKey,
    /// The data key does not commit to this message.
    #[error("key commitment does not match: the message was not made with this data key")]
    CommitmentMismatch,
    /// The header was changed.
    #[error("the message header does not authenticate")]
    BadHeader,
    /// A frame was changed, reordered, or removed.
    #[error("frame {0} does not authenticate or is out of order")]
    BadFrame(u32),
    /// The signature footer is missing, malformed or does not verify.
    #[error("the message signature does not verify")]
    BadSignature,
    /// A non-framed body longer than the caller accepts (it must be held in memory).
    #[error("the message is not framed and its body is longer than {0} bytes")]
    UnframedTooLarge(u64),
    /// Bytes after the end of the message.
    #[error("the message has bytes after its end")]
    TrailingData,
    /// The context does not fit the format.
    #[error("the encryption context is too large for the message format")]
    ContextTooLarge,
    /// A keyring's or manager's own configuration or output is wrong.
    #[error("keyring: {0}")]
    BadKeyring(&'static str),
    /// The message was used after a failure or after it was finished.
    #[error("the message stream has already failed or finished")]
    Finished,
    /// Reading or writing the stream failed.
    #[error("stream i/o: {0}")]
    Io(String),
    /// The random number generator failed.
    #[error("the random number generator failed")]
    Random,
    /// A cryptographic primitive failed unexpectedly.
    #[error("a cryptographic operation failed")]
    Crypto,
}

impl EnvelopeError {
    /// Reading `n` bytes failed with `e`: an early end is a truncated message.
    pub(crate) fn from_read(e: std::io::Error) -> Self {
        match envelope_cause(&e) {
            Some(inner) => inner,
            None if e.kind() == std::io::ErrorKind::UnexpectedEof => Self::Truncated,
            None => Self::Io(e.to_string()),
        }
    }
}

/// The envelope error inside an `io::Error` made by `into_io`, if that is what it is.
pub(crate) fn envelope_cause(e: &std::io::Error) -> Option<EnvelopeError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<EnvelopeError>())
        .cloned()
}

impl From<EnvelopeError> for std::io::Error {
    fn from(e: EnvelopeError) -> Self {
        let kind = match e {
            EnvelopeError::Io(_) => std::io::ErrorKind::Other,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}
