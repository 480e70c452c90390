//! The AES-256 key that seals the daemon's own secrets (the secret access keys that
//! SigV4 needs in clear to verify a signature). Made in the token on first start
//! (sensitive, never extractable, encrypt and decrypt only) and found again by its fixed
//! CKA_ID, which can never be a material's 20-byte id.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::session::aes_key_template;
use super::HsmError;

/// CKA_ID of the secret-sealing key.
pub(crate) const SEAL_KEY_ID: &[u8] = b"p11kms-secret-seal-v1";
/// CKA_LABEL of the secret-sealing key, for people browsing the token.
pub(crate) const SEAL_KEY_LABEL: &str = "p11kms/secret-seal";

/// The sealing key's handle in this session, if the token has one.
pub(crate) fn find(s: &Session) -> Result<Option<ObjectHandle>, HsmError> {
    let found = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
            Attribute::Id(SEAL_KEY_ID.to_vec()),
        ])
        .map_err(HsmError::from_call)?;
    // SoftHSM2 may list one object twice (see session.rs); any handle is the object.
    Ok(found.first().copied())
}

/// Finds the sealing key, or makes it when the token has none. SoftHSM2's occasional
/// failures while other sessions read the token are retried, as for material.
pub(crate) fn ensure(s: &Session) -> Result<ObjectHandle, HsmError> {
    if let Some(h) = find(s)? {
        return Ok(h);
    }
    tracing::info!(
        label = SEAL_KEY_LABEL,
        "generating the secret-sealing key in the token"
    );
    let template = aes_key_template(SEAL_KEY_ID.to_vec(), SEAL_KEY_LABEL.as_bytes().to_vec());
    let mut attempt = 0u32;
    loop {
        match s
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(HsmError::from_call)
        {
            Err(e) if e.retry_generation(attempt) => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}
