//! The signed suite's ECDSA P-384 keys. The encrypting side makes a key pair per message
//! and puts the public key (SEC1 compressed point, base64) into the encryption context
//! under `aws-crypto-public-key`; the footer is a DER signature over the SHA-384 of
//! every byte before it.

use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyCompressedBin};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P384_SHA384_ASN1,
    ECDSA_P384_SHA384_ASN1_SIGNING,
};
use base64::Engine as _;

use super::EnvelopeError;

/// The context key that carries the verification key.
pub const PUBLIC_KEY_FIELD: &str = "aws-crypto-public-key";
/// Context keys with this prefix belong to the format, not to callers.
pub(crate) const RESERVED_PREFIX: &str = "aws-crypto-";
/// A compressed P-384 point: tag byte and 48 bytes of x.
const COMPRESSED_LEN: usize = 49;

/// A per-message signing key. Debug shows nothing of it.
#[derive(Clone)]
pub(crate) struct SigningKey(Arc<EcdsaKeyPair>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(P-384)")
    }
}

impl SigningKey {
    /// A fresh key pair.
    pub(crate) fn generate() -> Result<Self, EnvelopeError> {
        EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING)
            .map(|k| Self(Arc::new(k)))
            .map_err(|_| EnvelopeError::Random)
    }

    /// The public key as the context carries it.
    pub(crate) fn public_key_b64(&self) -> Result<String, EnvelopeError> {
        let point: EcPublicKeyCompressedBin<'static> = self
            .0
            .public_key()
            .as_be_bytes()
            .map_err(|_| EnvelopeError::Crypto)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(point.as_ref()))
    }

    /// Signs the digest of everything written so far.
    pub(crate) fn sign(&self, hash: digest::Context) -> Result<Vec<u8>, EnvelopeError> {
        self.0
            .sign_digest(&hash.finish())
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| EnvelopeError::Crypto)
    }
}

/// The public half, read from a message's context.
#[derive(Clone, Debug)]
pub(crate) struct VerificationKey(Vec<u8>);

impl VerificationKey {
    /// Parses the context value: base64 of a compressed P-384 point, nothing else.
    pub(crate) fn from_context_value(value: &str) -> Result<Self, EnvelopeError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| EnvelopeError::Malformed("the public key is not base64"))?;
        if bytes.len() != COMPRESSED_LEN || !matches!(bytes.first(), Some(2 | 3)) {
            return Err(EnvelopeError::Malformed(
                "the public key is not a compressed P-384 point",
            ));
        }
        Ok(Self(bytes))
    }

    /// Checks `signature` over the digest of everything read before the footer.
    pub(crate) fn verify(
        &self,
        hash: digest::Context,
        signature: &[u8],
    ) -> Result<(), EnvelopeError> {
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &self.0)
            .verify_digest(&hash.finish(), signature)
            .map_err(|_| EnvelopeError::BadSignature)
    }
}

/// The running hash a signature covers.
pub(crate) fn new_hash() -> digest::Context {
    digest::Context::new(&digest::SHA384)
}
