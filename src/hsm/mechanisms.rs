//! What the token can do: its mechanism list, read once at start. CreateKey refuses a
//! key spec whose mechanisms the token lacks (instead of making a key nobody can use),
//! and signing hashes in the token only where the token offers the combined mechanism.

use std::collections::HashSet;

use cryptoki::mechanism::MechanismType;
use cryptoki::slot::Slot;

use super::{HsmError, Module};
use crate::domain::{KeySpec, KeyUsage};

/// Every mechanism p11kms may use for customer keys.
const INTERESTING: [MechanismType; 26] = [
    MechanismType::AES_KEY_GEN,
    MechanismType::AES_GCM,
    MechanismType::GENERIC_SECRET_KEY_GEN,
    MechanismType::SHA224_HMAC,
    MechanismType::SHA256_HMAC,
    MechanismType::SHA384_HMAC,
    MechanismType::SHA512_HMAC,
    MechanismType::RSA_PKCS_KEY_PAIR_GEN,
    MechanismType::RSA_PKCS,
    MechanismType::RSA_PKCS_PSS,
    MechanismType::RSA_PKCS_OAEP,
    MechanismType::RSA_X_509,
    MechanismType::SHA256_RSA_PKCS,
    MechanismType::SHA384_RSA_PKCS,
    MechanismType::SHA512_RSA_PKCS,
    MechanismType::SHA256_RSA_PKCS_PSS,
    MechanismType::SHA384_RSA_PKCS_PSS,
    MechanismType::SHA512_RSA_PKCS_PSS,
    MechanismType::ECC_KEY_PAIR_GEN,
    MechanismType::ECDSA,
    MechanismType::ECDSA_SHA256,
    MechanismType::ECDSA_SHA384,
    MechanismType::ECDSA_SHA512,
    MechanismType::ECDH1_DERIVE,
    MechanismType::SHA1,
    MechanismType::SHA256,
];

/// The token's mechanisms.
#[derive(Debug, Default)]
pub(crate) struct Mechanisms {
    offered: HashSet<u64>,
}

impl Mechanisms {
    /// Reads the slot's mechanism list (C_GetMechanismList).
    // CK_MECHANISM_TYPE is a C unsigned long: u64 here, u32 on some platforms.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn probe(module: &Module, slot: Slot) -> Result<Self, HsmError> {
        // Asked one by one (C_GetMechanismInfo) rather than listed: a list holds
        // vendor mechanisms that cryptoki logs as errors it cannot name.
        let mut offered = HashSet::new();
        for m in INTERESTING {
            match module.ctx().get_mechanism_info(slot, m) {
                Ok(_) => {
                    offered.insert(u64::from(*m));
                }
                Err(cryptoki::error::Error::Pkcs11(
                    cryptoki::error::RvError::MechanismInvalid,
                    _,
                )) => {}
                Err(e) => return Err(HsmError::Pkcs11(e)),
            }
        }
        Ok(Self { offered })
    }

    /// Whether the token offers `m`.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn offers(&self, m: MechanismType) -> bool {
        self.offered.contains(&u64::from(*m))
    }

    /// Ok when the token offers everything a key of `spec` and `usage` needs; else the
    /// first mechanism it lacks, by name.
    pub(crate) fn serve(&self, spec: KeySpec, usage: KeyUsage) -> Result<(), String> {
        match super::material::required_mechanisms(spec, usage)
            .into_iter()
            .find(|m| !self.offers(*m))
        {
            None => Ok(()),
            Some(m) => Err(m.to_string()),
        }
    }
}
