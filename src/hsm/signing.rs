//! An EC P-256 signing key that lives in the token, for the audit trail's checkpoints.
//! Made once (non-extractable, sensitive), found again by its fixed CKA_ID on later
//! starts. The signer owns a session of its own, so that signing never queues behind
//! (or holds up) the request path's worker pool; it runs on whichever thread owns it.

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use std::sync::Arc;

use super::health::{Health, Staleness, Stamp};
use super::module::login;
use super::{HsmError, Module};
use crate::domain::Pin;

/// DER of the named curve P-256 (prime256v1, OID 1.2.840.10045.3.1.7), for CKA_EC_PARAMS.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Which key: its CKA_ID (the daemon's look-up) and CKA_LABEL (for people).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SigningKeyName {
    /// CKA_ID of both halves of the pair.
    pub id: Vec<u8>,
    /// CKA_LABEL of both halves.
    pub label: String,
}

/// A P-256 key pair in the token and a logged-in session to sign with.
pub(crate) struct EcSigner {
    ctx: cryptoki::context::Pkcs11,
    /// Shared with the pool: the module may be re-initialised under the session.
    health: Arc<Health>,
    stamp: Stamp,
    pin: Pin,
    name: SigningKeyName,
    session: Option<Session>,
    key: Option<ObjectHandle>,
    public_point: Vec<u8>,
}

impl std::fmt::Debug for EcSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcSigner")
            .field("label", &self.name.label)
            .finish_non_exhaustive()
    }
}

impl EcSigner {
    /// Finds the key pair named `name` in the token, or generates it (CKA_TOKEN,
    /// CKA_SENSITIVE, not extractable, sign only) when there is none.
    pub(crate) fn ensure(
        module: &Module,
        health: Arc<Health>,
        pin: Pin,
        name: SigningKeyName,
    ) -> Result<Self, HsmError> {
        probe(module, health.slot())?;
        let held = Arc::clone(&health);
        let _g = held.enter();
        let mut signer = Self {
            ctx: module.ctx().clone(),
            stamp: health.stamp(),
            health: Arc::clone(&health),
            pin,
            name,
            session: None,
            key: None,
            public_point: Vec::new(),
        };
        let name = signer.name.clone();
        let s = signer.session()?;
        let private = find(s, ObjectClass::PRIVATE_KEY, &name.id)?;
        let public = find(s, ObjectClass::PUBLIC_KEY, &name.id)?;
        let (public, private) = match (public, private) {
            (Some(public), Some(private)) => (public, private),
            (None, None) => {
                tracing::info!(label = %name.label, "generating the audit checkpoint key in the token");
                generate(s, &name)?
            }
            // Half a pair: something other than p11kms removed or made one half. Making
            // a new pair beside it would hide that; the operator must look.
            _ => return Err(HsmError::HalfKeyPair(name.label)),
        };
        let point = ec_point(s, public)?;
        signer.public_point = point;
        signer.key = Some(private);
        Ok(signer)
    }

    /// The public key as an uncompressed SEC1 point (0x04 || X || Y, 65 bytes).
    pub(crate) fn public_point(&self) -> &[u8] {
        &self.public_point
    }

    /// Signs the SHA-256 `digest` with CKM_ECDSA and returns the raw signature r || s
    /// (64 bytes). The digest is computed by the caller: plain CKM_ECDSA is offered by
    /// every EC token, CKM_ECDSA_SHA256 not by all. A lost session is reopened and the
    /// signature tried once more.
    pub(crate) fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, HsmError> {
        let health = Arc::clone(&self.health);
        let _g = health.enter();
        match self.try_sign(digest) {
            Err(e) if e.is_session_lost() || e.is_stale_handle() => {
                tracing::warn!(error = %e, "the checkpoint signer's session was lost; reopening and retrying once");
                self.session = None;
                self.key = None;
                self.try_sign(digest)
            }
            other => other,
        }
    }

    fn try_sign(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, HsmError> {
        let key = match self.key {
            Some(k) => k,
            None => {
                let id = self.name.id.clone();
                let label = self.name.label.clone();
                let k = find(self.session()?, ObjectClass::PRIVATE_KEY, &id)?
                    .ok_or(HsmError::HalfKeyPair(label))?;
                self.key = Some(k);
                k
            }
        };
        self.session()?
            .sign(&Mechanism::Ecdsa, key, digest)
            .map_err(HsmError::from_call)
    }

    /// The signing session, opened (again) when needed. Call with the health guard held.
    fn session(&mut self) -> Result<&Session, HsmError> {
        match self.health.staleness(self.stamp) {
            Staleness::Current => {}
            // The token was replaced: a new session finds the key again (or fails).
            Staleness::Close => {
                self.session = None;
                self.key = None;
            }
            // The module was re-initialised: the session's number may be another's now.
            Staleness::Forget => {
                if let Some(s) = self.session.take() {
                    std::mem::forget(s);
                }
                self.key = None;
            }
        }
        if self.session.is_none() {
            self.stamp = self.health.stamp();
            let s = self
                .ctx
                .open_rw_session(self.health.slot())
                .map_err(HsmError::from_call)?;
            login(&s, &self.pin)?;
            self.session = Some(s);
        }
        self.session.as_ref().ok_or(HsmError::PoolStopped)
    }
}

impl Drop for EcSigner {
    fn drop(&mut self) {
        let health = Arc::clone(&self.health);
        let _g = health.enter();
        if self.health.staleness(self.stamp) == Staleness::Forget {
            if let Some(s) = self.session.take() {
                std::mem::forget(s);
            }
        }
    }
}

/// Refuses a token that cannot make P-256 keys or sign with ECDSA, before anything is
/// made in it.
fn probe(module: &Module, slot: Slot) -> Result<(), HsmError> {
    for (m, name) in [
        (MechanismType::ECC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"),
        (MechanismType::ECDSA, "CKM_ECDSA"),
    ] {
        match module.ctx().get_mechanism_info(slot, m) {
            Ok(_) => {}
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::MechanismInvalid, _)) => {
                return Err(HsmError::MissingSigningMechanism(name))
            }
            Err(e) => return Err(HsmError::Pkcs11(e)),
        }
    }
    Ok(())
}

fn find(s: &Session, class: ObjectClass, id: &[u8]) -> Result<Option<ObjectHandle>, HsmError> {
    let found = s
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Token(true),
            Attribute::Id(id.to_vec()),
        ])
        .map_err(HsmError::from_call)?;
    // SoftHSM2 may list one object twice (see session.rs); any handle is the object.
    Ok(found.first().copied())
}

fn generate(s: &Session, name: &SigningKeyName) -> Result<(ObjectHandle, ObjectHandle), HsmError> {
    let public = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
        Attribute::EcParams(P256_PARAMS.to_vec()),
        Attribute::Id(name.id.clone()),
        Attribute::Label(name.label.clone().into_bytes()),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::KeyType(KeyType::EC),
        Attribute::Id(name.id.clone()),
        Attribute::Label(name.label.clone().into_bytes()),
    ];
    s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
        .map_err(HsmError::from_call)
}

/// CKA_EC_POINT as an uncompressed point. PKCS#11 says the attribute is the DER OCTET
/// STRING holding the point; a few modules return the bare point; both are accepted.
fn ec_point(s: &Session, public: ObjectHandle) -> Result<Vec<u8>, HsmError> {
    let attrs = s
        .get_attributes(public, &[AttributeType::EcPoint])
        .map_err(HsmError::from_call)?;
    let raw = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .unwrap_or_default();
    let point = match raw.as_slice() {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest.to_vec(),
        p if p.len() == 65 => p.to_vec(),
        _ => Vec::new(),
    };
    match point.first() {
        Some(0x04) => Ok(point),
        _ => Err(HsmError::BadPublicKey),
    }
}
