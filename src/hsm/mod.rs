//! The PKCS#11 backend: the only module that knows cryptoki. Master key material is made
//! and used inside the token; this module hands out ciphertexts, plaintexts and random
//! bytes, never key bytes. Knows nothing of policies or the wire.

mod dispatch;
mod error;
mod health;
mod import;
mod inline;
mod key_ops;
mod material;
mod mechanisms;
mod module;
mod oaep;
mod pool;
mod secret_seal;
mod session;
mod signature;
mod signing;
mod supervisor;

pub(crate) use error::HsmError;
pub(crate) use import::{Wrapping, WrappingKeyRef};
pub(crate) use module::TokenObject;
pub use module::{Module, ModuleEnv, TokenSelector};
pub(crate) use pool::{
    default_inline_sessions, DEFAULT_CALL_TIMEOUT, DEFAULT_HEALTH_CHECK, DEFAULT_SESSIONS,
};
pub use pool::{HsmPool, PoolConfig};
pub(crate) use signature::{ec_point_from_spki, ec_point_on_curve, Signed};
pub(crate) use signing::{EcSigner, SigningKeyName};

use crate::domain::{KeyId, MaterialVersion};

/// One key-material version in the token, found by its CKA_ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaterialRef {
    /// The KMS key.
    pub key_id: KeyId,
    /// Which material version.
    pub version: MaterialVersion,
}

/// Which session copies to drop in every session of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forget {
    /// One material version (its token object is about to be destroyed here).
    Material(MaterialRef),
    /// Every version of a key (another daemon is destroying it).
    Key(KeyId),
    /// Every copy (announcements may have been missed).
    All,
}

impl Forget {
    /// Whether the session copy of `m` is one to drop.
    fn covers(&self, m: &MaterialRef) -> bool {
        match self {
            Self::Material(x) => x == m,
            Self::Key(id) => m.key_id == *id,
            Self::All => true,
        }
    }
}

impl MaterialRef {
    /// CKA_ID: the 16 key-id bytes then the version as u32 big-endian. Stable across
    /// restarts, so the daemon finds its objects again without any label look-up.
    pub fn cka_id(&self) -> Vec<u8> {
        let mut id = self.key_id.as_bytes().to_vec();
        id.extend_from_slice(&self.version.0.to_be_bytes());
        id
    }

    /// The material a CKA_ID made by [`Self::cka_id`] names; None for any other id.
    pub fn from_cka_id(id: &[u8]) -> Option<Self> {
        let (key, version) = id.split_first_chunk::<16>()?;
        let version: [u8; 4] = version.try_into().ok()?;
        Some(Self {
            key_id: KeyId::from_bytes(*key),
            version: MaterialVersion(u32::from_be_bytes(version)),
        })
    }

    /// CKA_ID of a worker's session copy: the material's id and a marker byte, so that no
    /// look-up by the material's own id can match it.
    pub fn copy_id(&self) -> Vec<u8> {
        let mut id = self.cka_id();
        id.push(0xC0);
        id
    }

    /// CKA_LABEL, for operators browsing the token with other tools.
    pub fn label(&self) -> String {
        format!("p11kms/{}/v{}", self.key_id, self.version.0)
    }
}

/// The hash of RSAES-OAEP (and of its MGF1), as AWS's RSAES_OAEP_SHA_1 and _SHA_256 name
/// it; the label is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OaepHash {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl OaepHash {
    /// The hash's length in bytes (the OAEP overhead is twice it plus two).
    pub(crate) fn len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    fn mechanism(self) -> cryptoki::mechanism::Mechanism<'static> {
        use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
        use cryptoki::mechanism::{Mechanism, MechanismType};
        let (hash, mgf) = match self {
            Self::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
            Self::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        };
        Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
    }
}
