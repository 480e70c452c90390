//! Who is calling: SigV4 authentication. PLACEHOLDER until the SigV4 verifier lands
//! (`src/sigv4/`): every request is refused, with the names AWS uses, so the listener
//! can be tested end to end without credentials.

use hyper::http::request::Parts;

use crate::vault::{Caller, KmsError, Vault};

/// The caller of a request with these head `parts` (the connection's `Arc<api::Peer>`
/// is in `parts.extensions`) and this `body` (for the payload hash). Runs inside
/// `Vault::run`, so a refusal is audited like any failed call.
pub(super) async fn caller(vault: &Vault, parts: &Parts, body: &[u8]) -> Result<Caller, KmsError> {
    let _ = (vault, body);
    if parts.headers.contains_key(hyper::header::AUTHORIZATION) {
        Err(KmsError::UnrecognizedClient(
            "The security token included in the request is invalid.".into(),
        ))
    } else {
        Err(KmsError::MissingAuthenticationToken(
            "Missing Authentication Token".into(),
        ))
    }
}
