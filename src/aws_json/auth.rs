//! Who is calling: AWS Signature Version 4 over the request, checked against the
//! secret of the access key it names (see `crate::sigv4` and the vault's access keys).

use std::net::IpAddr;

use hyper::http::request::Parts;

use crate::domain::sha256_hex;
use crate::sigv4::{Expect, Presented, SigV4Error};
use crate::vault::{Caller, KmsError, Vault};

/// The signing name of AWS KMS.
const SERVICE: &str = "kms";

/// The caller of a request with these head `parts` and this `body` (for the payload
/// hash), sent from `source_ip`. Its refusal is recorded by the `Vault::run` it is
/// handed to, like any failed call.
///
/// Order: the header's form, scope and date first (no secret needed, nothing looked
/// up), then the access key, then the signature. A key id nobody issued is
/// UnrecognizedClientException, as in AWS.
pub(super) async fn caller(
    vault: &Vault,
    parts: &Parts,
    body: &[u8],
    source_ip: IpAddr,
) -> Result<Caller, KmsError> {
    let expect = Expect {
        region: vault.region().as_str(),
        service: SERVICE,
        now: vault.now(),
        must_sign: crate::sigv4::KMS_MUST_SIGN,
    };
    let presented = Presented::parse(parts, &expect).map_err(refused)?;
    // Temporary credentials come from STS, which p11kms does not have: a session token
    // is one this service never issued.
    if presented.has_session_token() {
        return Err(refused(SigV4Error::unrecognized()));
    }
    let key = vault
        .access_key_secret(presented.access_key_id())
        .await?
        .ok_or_else(|| refused(SigV4Error::unrecognized()))?;
    presented
        .verify(&key.secret, &sha256_hex(body))
        .map_err(refused)?;
    vault.caller(key.principal.clone(), None, Some(source_ip))
}

/// The vault error of a refused signature, with AWS's name and message.
pub(crate) fn refused(e: SigV4Error) -> KmsError {
    let message = e.to_string();
    match e {
        SigV4Error::Missing(_) => KmsError::MissingAuthenticationToken(message),
        SigV4Error::Incomplete(_) => KmsError::IncompleteSignature(message),
        SigV4Error::Invalid(_) => KmsError::InvalidSignature(message),
        SigV4Error::Unrecognized(_) => KmsError::UnrecognizedClient(message),
    }
}
