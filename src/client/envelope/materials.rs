//! Materials (a data key, its encrypted copies, the signing key) and the managers that
//! supply them. A keyring is itself a manager; the caching manager wraps another.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use super::signature::{SigningKey, VerificationKey, PUBLIC_KEY_FIELD, RESERVED_PREFIX};
use super::suite::DATA_KEY_LEN;
use super::{EncryptedDataKey, EnvelopeError, Keyring, Suite};
use crate::domain::Plaintext;

/// A boxed future, so that keyrings and managers can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What encrypting one message needs.
#[derive(Clone, Debug)]
pub struct EncryptionMaterials {
    /// The suite.
    pub suite: Suite,
    /// The full context the header will carry (with the public key for signed suites).
    pub context: BTreeMap<String, String>,
    /// The data key, once a keyring has made or been given one.
    pub data_key: Option<Plaintext>,
    /// Its encrypted copies, one per keyring that wrapped it.
    pub edks: Vec<EncryptedDataKey>,
    pub(crate) signing_key: Option<SigningKey>,
}

/// What decrypting one message needs.
#[derive(Clone, Debug)]
pub struct DecryptionMaterials {
    /// The suite.
    pub suite: Suite,
    /// The message's full context.
    pub context: BTreeMap<String, String>,
    /// The data key, once a keyring has unwrapped one.
    pub data_key: Option<Plaintext>,
    pub(crate) verification_key: Option<VerificationKey>,
}

/// A request for encryption materials.
#[derive(Clone, Copy, Debug)]
pub struct EncryptionRequest<'a> {
    /// The caller's context (no `aws-crypto-` keys).
    pub context: &'a BTreeMap<String, String>,
    /// The suite.
    pub suite: Suite,
    /// The plaintext length when known in advance (the cache needs it to count bytes).
    pub plaintext_length: Option<u64>,
}

/// A request for decryption materials, from a message header.
#[derive(Clone, Copy, Debug)]
pub struct DecryptionRequest<'a> {
    /// The suite.
    pub suite: Suite,
    /// The message's context.
    pub context: &'a BTreeMap<String, String>,
    /// The message's encrypted data keys.
    pub edks: &'a [EncryptedDataKey],
}

/// Supplies materials: the cryptographic materials manager of the ESDK.
pub trait MaterialsManager: Send + Sync {
    /// Materials for one message, data key included.
    fn encryption_materials<'a>(
        &'a self,
        request: EncryptionRequest<'a>,
    ) -> BoxFuture<'a, Result<EncryptionMaterials, EnvelopeError>>;
    /// The data key for one message.
    fn decryption_materials<'a>(
        &'a self,
        request: DecryptionRequest<'a>,
    ) -> BoxFuture<'a, Result<DecryptionMaterials, EnvelopeError>>;
}

/// Every keyring is a manager: it adds the signing key when the suite asks for one and
/// checks what the keyring returned.
impl<K: Keyring> MaterialsManager for K {
    fn encryption_materials<'a>(
        &'a self,
        request: EncryptionRequest<'a>,
    ) -> BoxFuture<'a, Result<EncryptionMaterials, EnvelopeError>> {
        Box::pin(async move {
            let mut materials = new_encryption_materials(request)?;
            materials = self.on_encrypt(materials).await?;
            match &materials.data_key {
                Some(k) if k.len() == DATA_KEY_LEN && !materials.edks.is_empty() => Ok(materials),
                _ => Err(EnvelopeError::BadKeyring(
                    "the keyring returned no data key or no encrypted data key",
                )),
            }
        })
    }

    fn decryption_materials<'a>(
        &'a self,
        request: DecryptionRequest<'a>,
    ) -> BoxFuture<'a, Result<DecryptionMaterials, EnvelopeError>> {
        Box::pin(async move {
            let materials = new_decryption_materials(request)?;
            let materials = self.on_decrypt(materials, request.edks).await?;
            match &materials.data_key {
                Some(k) if k.len() == DATA_KEY_LEN => Ok(materials),
                Some(_) => Err(EnvelopeError::BadKeyring("a data key is 32 bytes")),
                None => Err(EnvelopeError::NoDecryptableKey),
            }
        })
    }
}

/// Empty materials for `request`: the context checked, and for a signed suite a fresh
/// signing key with its public half in the context.
pub(crate) fn new_encryption_materials(
    request: EncryptionRequest<'_>,
) -> Result<EncryptionMaterials, EnvelopeError> {
    if request
        .context
        .keys()
        .any(|k| k.starts_with(RESERVED_PREFIX))
    {
        return Err(EnvelopeError::ReservedContextKey);
    }
    let mut context = request.context.clone();
    let signing_key = if request.suite.is_signed() {
        let key = SigningKey::generate()?;
        context.insert(PUBLIC_KEY_FIELD.to_owned(), key.public_key_b64()?);
        Some(key)
    } else {
        None
    };
    Ok(EncryptionMaterials {
        suite: request.suite,
        context,
        data_key: None,
        edks: Vec::new(),
        signing_key,
    })
}

/// Empty materials for `request`, with the verification key a signed suite needs (and
/// none allowed in an unsigned suite's context).
pub(crate) fn new_decryption_materials(
    request: DecryptionRequest<'_>,
) -> Result<DecryptionMaterials, EnvelopeError> {
    let public = request.context.get(PUBLIC_KEY_FIELD);
    let verification_key = match (request.suite.is_signed(), public) {
        (true, Some(v)) => Some(VerificationKey::from_context_value(v)?),
        (true, None) => {
            return Err(EnvelopeError::Malformed(
                "a signed message's context has no public key",
            ))
        }
        (false, Some(_)) => {
            return Err(EnvelopeError::Malformed(
                "an unsigned message's context carries a public key",
            ))
        }
        (false, None) => None,
    };
    Ok(DecryptionMaterials {
        suite: request.suite,
        context: request.context.clone(),
        data_key: None,
        verification_key,
    })
}

impl EncryptionMaterials {
    /// The data key, or an error when no keyring made one.
    pub(crate) fn key(&self) -> Result<&Plaintext, EnvelopeError> {
        self.data_key
            .as_ref()
            .filter(|k| k.len() == DATA_KEY_LEN)
            .ok_or(EnvelopeError::BadKeyring("no data key"))
    }
}
