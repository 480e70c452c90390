//! HsmError: PKCS#11 failures, translated once into the few cases the vault acts on.
//! The raw cryptoki error stays attached as the source, for logs.

use cryptoki::error::{Error as CkError, RvError};

use super::MaterialRef;

/// A failure in the PKCS#11 layer.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("cannot load PKCS#11 module {path}")]
    ModuleLoad {
        /// Module path from the configuration.
        path: String,
        /// What cryptoki said.
        #[source]
        source: CkError,
    },
    /// No token matched the configured label or slot.
    #[error("no PKCS#11 token matches {0}")]
    TokenNotFound(String),
    /// The token lacks a mechanism p11kms needs.
    #[error("the PKCS#11 token does not offer {0}, which p11kms needs for its master keys")]
    MissingMechanism(&'static str),
    /// The token offers the mechanism, but not the way p11kms uses it.
    #[error(
        "the PKCS#11 token's {mechanism} cannot {what}, which p11kms needs for its master keys"
    )]
    WeakMechanism {
        /// The mechanism.
        mechanism: &'static str,
        /// What it lacks.
        what: &'static str,
    },
    /// C_Login failed (wrong PIN, locked PIN, ...).
    #[error("cannot log in to the PKCS#11 token")]
    Login(#[source] CkError),
    /// The session or token went away; the pool reopens and retries once.
    #[error("the PKCS#11 session was lost")]
    SessionLost(#[source] CkError),
    /// No object with this material's CKA_ID in the token.
    #[error("key material {} is missing from the token", .0.label())]
    KeyMissing(MaterialRef),
    /// GCM authentication failed: wrong key, context or a damaged blob.
    #[error("the ciphertext did not authenticate")]
    TagMismatch,
    /// A worker thread could not be started.
    #[error("cannot start an HSM worker thread")]
    Thread(#[source] std::io::Error),
    /// Every worker thread has exited (shutdown).
    #[error("the HSM worker pool has stopped")]
    PoolStopped,
    /// The token lacks a mechanism that audit checkpoints need.
    #[error("the PKCS#11 token does not offer {0}, which p11kms needs to sign audit checkpoints")]
    MissingSigningMechanism(&'static str),
    /// Only one half of a signing key pair is in the token.
    #[error("the token holds only one half of the key pair {0}; find out what removed the other before starting again")]
    HalfKeyPair(String),
    /// The token returned a public key that is not an uncompressed P-256 point.
    #[error("the token's checkpoint public key is not an uncompressed P-256 point")]
    BadPublicKey,
    /// The secret-sealing key is not in the token (removed while the daemon ran).
    #[error("the secret-sealing key is missing from the token")]
    SealKeyMissing,
    /// The token is marked down (see `health`): the call was not tried.
    #[error("the HSM is unavailable: {0}")]
    Unavailable(String),
    /// The call did not return within the configured deadline (`hsm.call_timeout_ms`).
    #[error("the HSM call did not return within {} ms", .0.as_millis())]
    Timeout(std::time::Duration),
    /// The token cannot make or use keys of this kind (a mechanism or curve it lacks).
    #[error("the PKCS#11 token cannot {0}")]
    Unsupported(String),
    /// The token refused a caller's input to a public-key operation (a ciphertext of the
    /// wrong length, a peer point not on the curve).
    #[error("the token refused the input: {0}")]
    BadInput(&'static str),
    /// The token answered with a public key or signature p11kms cannot read.
    #[error("the token answered with a malformed {0}")]
    Malformed(&'static str),
    /// The wrapping key of an import token is not in the token (swept after expiry,
    /// or the token was replaced).
    #[error("the import token's wrapping key is not in the token")]
    WrappingKeyMissing,
    /// The token could not unwrap imported material with the wrapping key and
    /// algorithm (the token's return code, for the log).
    #[error("the token could not unwrap the key material: {0}")]
    WrappedKeyInvalid(String),
    /// Unwrapped material that is not what the key takes: the wrong size, or not the
    /// material imported before.
    #[error("{0}")]
    IncorrectMaterial(String),
    /// Any other PKCS#11 failure.
    #[error("PKCS#11 call failed")]
    Pkcs11(#[source] CkError),
}

impl HsmError {
    /// Classifies a cryptoki error from a call that uses a session.
    pub(crate) fn from_call(e: CkError) -> Self {
        match rv(&e) {
            Some(
                RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::DeviceError,
            ) => Self::SessionLost(e),
            _ => Self::Pkcs11(e),
        }
    }

    /// Classifies a failure to make material of `spec`: a mechanism, curve or size the
    /// token does not offer is Unsupported, anything else as [`Self::from_call`].
    pub(crate) fn from_generation(e: CkError, spec: crate::domain::KeySpec) -> Self {
        match rv(&e) {
            // Not CKR_TEMPLATE_INCONSISTENT: SoftHSM2 gives it now and then for a
            // template it takes on the next try (see `retry_generation`).
            Some(
                RvError::MechanismInvalid
                | RvError::CurveNotSupported
                | RvError::DomainParamsInvalid
                | RvError::KeySizeRange,
            ) => Self::Unsupported(format!("make {} keys", spec.as_str())),
            _ => Self::from_call(e),
        }
    }

    /// Classifies a failure of a public-key call on caller input: the token's refusal
    /// of the input's size or form is BadInput, anything else as [`Self::from_call`].
    pub(crate) fn from_input(e: CkError, what: &'static str) -> Self {
        match rv(&e) {
            Some(
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataLenRange
                | RvError::DataInvalid
                | RvError::AttributeValueInvalid
                | RvError::DomainParamsInvalid
                | RvError::MechanismParamInvalid,
            ) => Self::BadInput(what),
            _ => Self::from_call(e),
        }
    }

    /// Classifies a failure of C_Decrypt with AES-GCM. CKR_ENCRYPTED_DATA_INVALID and
    /// CKR_ENCRYPTED_DATA_LEN_RANGE say "bad ciphertext" on any token (the standard's
    /// meaning). Any other code is a failed tag only when it is the one this token gave
    /// for a damaged tag at start-up (`tag`: SoftHSM2 answers CKR_GENERAL_ERROR):
    /// elsewhere CKR_GENERAL_ERROR is a fault of the device, and calling it bad
    /// ciphertext would hide it from the health count and blame the caller.
    pub(crate) fn from_decrypt(e: CkError, tag: TagFailure) -> Self {
        match rv(&e) {
            Some(RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange) => {
                Self::TagMismatch
            }
            Some(code) if code == tag.0 => Self::TagMismatch,
            _ => Self::from_call(e),
        }
    }

    /// True when reopening the session may cure it.
    pub(crate) fn is_session_lost(&self) -> bool {
        matches!(self, Self::SessionLost(_))
    }

    /// A fault of the token rather than of the request: counted towards marking the
    /// token down when it outlives the call's own retry.
    pub(crate) fn is_device_fault(&self) -> bool {
        match self {
            Self::SessionLost(_) | Self::Timeout(_) | Self::Login(_) => true,
            Self::Pkcs11(e) => matches!(
                rv(e),
                Some(
                    RvError::DeviceError
                        | RvError::DeviceMemory
                        | RvError::GeneralError
                        | RvError::FunctionFailed
                        | RvError::HostMemory
                )
            ),
            _ => false,
        }
    }

    /// A fault that only a re-initialisation of the module cures: the token or the
    /// module's own state is gone.
    pub(crate) fn needs_reinit(&self) -> bool {
        let e = match self {
            Self::SessionLost(e) | Self::Pkcs11(e) | Self::Login(e) => e,
            _ => return false,
        };
        matches!(
            rv(e),
            Some(
                RvError::DeviceRemoved
                    | RvError::TokenNotPresent
                    | RvError::TokenNotRecognized
                    | RvError::CryptokiNotInitialized
                    | RvError::SlotIdInvalid
            )
        )
    }

    /// Whether a failed C_GenerateKey, after `attempt` earlier retries, is tried again
    /// (at most `GENERATE_ATTEMPTS` attempts in all). SoftHSM2 fails a key made while
    /// other sessions read the token now and then (its file store re-indexes), and a new
    /// attempt with the same template succeeds: CKR_GENERAL_ERROR, and
    /// CKR_TEMPLATE_INCONSISTENT (about 1 in 4,800 CreateKey and rotate calls at 16 in
    /// flight, with a fixed template the token otherwise takes). A template a token
    /// really refuses fails every attempt, so the bound costs it 50 ms, no more.
    pub(crate) fn retry_generation(&self, attempt: u32) -> bool {
        let transient = matches!(
            self,
            Self::Pkcs11(e) if matches!(rv(e), Some(RvError::GeneralError | RvError::TemplateInconsistent))
        );
        transient && attempt + 1 < GENERATE_ATTEMPTS
    }

    /// The raw PKCS#11 return code, for log lines.
    pub(crate) fn return_code(&self) -> Option<RvError> {
        match self {
            Self::Pkcs11(e)
            | Self::SessionLost(e)
            | Self::Login(e)
            | Self::ModuleLoad { source: e, .. } => rv(e),
            _ => None,
        }
    }

    /// True when a cached object handle went stale.
    pub(crate) fn is_stale_handle(&self) -> bool {
        matches!(
            self,
            Self::Pkcs11(e) if matches!(rv(e), Some(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid))
        )
    }
}

/// How the token answers C_Decrypt of an AES-GCM ciphertext whose tag does not match:
/// learnt once at start-up by decrypting a damaged ciphertext (`Module::tag_failure`),
/// since tokens differ (SoftHSM2 answers CKR_GENERAL_ERROR, kryoptic
/// CKR_ENCRYPTED_DATA_INVALID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TagFailure(RvError);

impl TagFailure {
    /// The token's answer to a damaged tag, from a probe; the fault itself when the
    /// answer says the session or the token is in trouble (the probe met a fault, not
    /// the tag).
    pub(crate) fn learnt(answer: CkError) -> Result<Self, HsmError> {
        let code = rv(&answer);
        let e = HsmError::from_call(answer);
        match code {
            Some(code)
                if !(e.is_session_lost()
                    || e.needs_reinit()
                    || e.is_stale_handle()
                    || matches!(code, RvError::DeviceMemory | RvError::HostMemory)) =>
            {
                Ok(Self(code))
            }
            _ => Err(e),
        }
    }

    /// The answer of a token that reports a failed tag as the standard says.
    #[cfg(test)]
    pub(crate) const STANDARD: Self = Self(RvError::EncryptedDataInvalid);
}

impl std::fmt::Display for TagFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&ckr_name(self.0))
    }
}

/// A return code as the standard spells it (`CKR_GENERAL_ERROR`), from cryptoki's
/// variant name, for log lines.
pub(crate) fn ckr_name(code: RvError) -> String {
    let debug = format!("{code:?}");
    let mut out = String::from("CKR");
    for c in debug.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Attempts at making one key in the token: the first and up to four more, 5, 10, 15
/// and 20 ms apart, for the token's transient failures (`HsmError::retry_generation`).
pub(crate) const GENERATE_ATTEMPTS: u32 = 5;

fn rv(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use cryptoki::context::Function;

    use super::*;

    fn failed(rv: RvError) -> HsmError {
        HsmError::from_call(CkError::Pkcs11(rv, Function::GenerateKey))
    }

    #[test]
    fn key_generation_retries_the_tokens_transient_failures_a_bounded_number_of_times() {
        for rv in [RvError::GeneralError, RvError::TemplateInconsistent] {
            let e = failed(rv);
            // Attempts 1 to 4 fail and are retried; the fifth failure is the answer.
            for attempt in 0..GENERATE_ATTEMPTS - 1 {
                assert!(
                    e.retry_generation(attempt),
                    "{rv:?}, after {attempt} retries"
                );
            }
            assert!(
                !e.retry_generation(GENERATE_ATTEMPTS - 1),
                "{rv:?}: bounded"
            );
        }
    }

    fn decrypt_failed(code: RvError, tag: TagFailure) -> HsmError {
        HsmError::from_decrypt(CkError::Pkcs11(code, Function::Decrypt), tag)
    }

    #[test]
    fn general_error_is_a_failed_tag_only_on_a_token_that_answers_a_bad_tag_so() {
        let softhsm = TagFailure(RvError::GeneralError);
        let kryoptic = TagFailure::STANDARD;
        for tag in [softhsm, kryoptic] {
            // The standard's codes for bad ciphertext are that on every token.
            for code in [
                RvError::EncryptedDataInvalid,
                RvError::EncryptedDataLenRange,
            ] {
                assert!(matches!(decrypt_failed(code, tag), HsmError::TagMismatch));
            }
            // A lost session stays a lost session.
            assert!(decrypt_failed(RvError::DeviceError, tag).is_session_lost());
        }
        assert!(matches!(
            decrypt_failed(RvError::GeneralError, softhsm),
            HsmError::TagMismatch
        ));
        let fault = decrypt_failed(RvError::GeneralError, kryoptic);
        assert!(
            matches!(fault, HsmError::Pkcs11(_)) && fault.is_device_fault(),
            "{fault:?}"
        );
    }

    #[test]
    fn a_probe_that_meets_a_fault_learns_nothing() {
        let answer = |code| TagFailure::learnt(CkError::Pkcs11(code, Function::Decrypt));
        assert_eq!(
            answer(RvError::GeneralError).unwrap(),
            TagFailure(RvError::GeneralError)
        );
        assert_eq!(
            answer(RvError::EncryptedDataInvalid).unwrap(),
            TagFailure::STANDARD
        );
        for code in [
            RvError::SessionHandleInvalid,
            RvError::DeviceError,
            RvError::DeviceRemoved,
            RvError::CryptokiNotInitialized,
            RvError::KeyHandleInvalid,
            RvError::DeviceMemory,
        ] {
            assert!(answer(code).is_err(), "{code:?}");
        }
        assert_eq!(
            TagFailure(RvError::GeneralError).to_string(),
            "CKR_GENERAL_ERROR"
        );
        assert_eq!(
            TagFailure::STANDARD.to_string(),
            "CKR_ENCRYPTED_DATA_INVALID"
        );
    }

    #[test]
    fn key_generation_does_not_retry_other_failures() {
        for rv in [
            RvError::TemplateIncomplete,
            RvError::AttributeValueInvalid,
            RvError::FunctionFailed,
            RvError::MechanismInvalid,
            RvError::DeviceMemory,
            // A lost session is the pool's to handle: it reopens and runs the job again.
            RvError::SessionHandleInvalid,
        ] {
            assert!(!failed(rv).retry_generation(0), "{rv:?}");
        }
        assert!(!HsmError::PoolStopped.retry_generation(0));
    }
}
