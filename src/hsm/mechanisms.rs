//! What the token can do: its mechanism list, read once at start. CreateKey refuses a
//! key spec whose mechanisms the token lacks (instead of making a key nobody can use),
//! and signing hashes in the token only where the token offers the combined mechanism.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use cryptoki::mechanism::MechanismType;
use cryptoki::slot::Slot;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;

use super::module::login;
use super::{HsmError, Module};
use crate::domain::{Curve, KeySpec, KeyUsage, MaterialKind, Pin};

/// Every mechanism whose presence decides something (`offers`): what asymmetric and
/// HMAC keys need, the hash-and-sign mechanisms, raw RSA. AES is checked at start-up
/// apart (the daemon does not start without it). A mechanism missing here reads as not
/// offered: the test below keeps the list whole.
const INTERESTING: [MechanismType; 23] = [
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
    MechanismType::AES_KEY_WRAP_PAD,
];

/// The token's mechanisms, and the curves it makes EC keys on.
#[derive(Debug, Default)]
pub(crate) struct Mechanisms {
    offered: HashSet<u64>,
    curves: Vec<Curve>,
    /// Set when the token lists CKM_RSA_X_509 but refuses it for p11kms's keys.
    raw_rsa_refused: AtomicBool,
}

impl Mechanisms {
    /// Reads the slot's mechanism list (C_GetMechanismList).
    // CK_MECHANISM_TYPE is a C unsigned long: u64 here, u32 on some platforms.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn probe(module: &Module, slot: Slot, pin: &Pin) -> Result<Self, HsmError> {
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
                // Start-up does not fail for what only asymmetric and HMAC keys need.
                Err(e) => {
                    tracing::warn!(mechanism = %m, error = %e, "C_GetMechanismInfo failed; taking the mechanism as not offered");
                }
            }
        }
        let mut me = Self {
            offered,
            curves: Vec::new(),
            raw_rsa_refused: AtomicBool::new(false),
        };
        if me.offers(MechanismType::ECC_KEY_PAIR_GEN) {
            me.curves = curves(module, slot, pin)?;
        }
        Ok(me)
    }

    /// Whether the token offers `m`.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn offers(&self, m: MechanismType) -> bool {
        self.offered.contains(&u64::from(*m))
    }

    /// Whether RSA decryption may use raw RSA (see `WorkerSession::rsa_decrypt`).
    pub(crate) fn raw_rsa(&self) -> bool {
        self.offers(MechanismType::RSA_X_509) && !self.raw_rsa_refused.load(Ordering::Relaxed)
    }

    /// The token refused raw RSA for a key: RSA decryption uses its OAEP from now on.
    pub(crate) fn refuse_raw_rsa(&self, e: &HsmError) {
        if !self.raw_rsa_refused.swap(true, Ordering::Relaxed) {
            tracing::info!(error = %e, "the token refuses CKM_RSA_X_509 for p11kms's keys; RSA decryption uses CKM_RSA_PKCS_OAEP");
        }
    }

    /// Ok when the token offers everything a key of `spec` and `usage` needs; else the
    /// first mechanism it lacks, by name.
    pub(crate) fn serve(&self, spec: KeySpec, usage: KeyUsage) -> Result<(), String> {
        if let MaterialKind::Ec(c) = spec.material() {
            if !self.curves.contains(&c) {
                return Err(format!("EC keys on the curve of {}", spec.as_str()));
            }
        }
        match super::material::required_mechanisms(spec, usage)
            .into_iter()
            .find(|m| !self.offers(*m))
        {
            None => Ok(()),
            Some(m) => Err(m.to_string()),
        }
    }
}

/// The curves the token makes key pairs on: one throw-away session key pair each. No
/// mechanism flag says which named curves a token has (kryoptic has no secp256k1 and
/// answers CKR_GENERAL_ERROR), so asking is the only way to know before a CreateKey.
fn curves(module: &Module, slot: Slot, pin: &Pin) -> Result<Vec<Curve>, HsmError> {
    let s = module
        .ctx()
        .open_rw_session(slot)
        .map_err(HsmError::Pkcs11)?;
    login(&s, pin)?;
    let mut out = Vec::new();
    for curve in [Curve::P256, Curve::P384, Curve::P521, Curve::Secp256k1] {
        let public = [
            Attribute::Token(false),
            Attribute::EcParams(curve.oid_der().to_vec()),
            Attribute::Verify(true),
        ];
        let private = [
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
        ];
        if let Ok((a, b)) = s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private) {
            let _ = s.destroy_object(a);
            let _ = s.destroy_object(b);
            out.push(curve);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SigningAlgorithm;

    #[test]
    fn every_mechanism_asked_about_is_probed() {
        let probed = |m: MechanismType| INTERESTING.contains(&m);
        for &spec in KeySpec::ALL {
            for &usage in spec.usages() {
                for m in super::super::material::required_mechanisms(spec, usage) {
                    assert!(probed(m), "{m} ({} {})", spec.as_str(), usage.as_str());
                }
            }
        }
        for &alg in SigningAlgorithm::ALL {
            let m = super::super::signature::combined(alg).mechanism_type();
            assert!(probed(m), "{m} ({})", alg.as_str());
        }
        assert!(probed(MechanismType::RSA_X_509));
        assert!(probed(MechanismType::AES_KEY_WRAP_PAD), "imports");
    }
}
