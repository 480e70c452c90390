//! What a key's material is in the token, by key spec and usage: one AES or HMAC secret
//! key, or an RSA or EC key pair whose two halves share the material's CKA_ID. Every
//! secret or private part is sensitive and never extractable; each part may do only
//! what the key's usage needs.

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::Session;
use cryptoki::types::Ulong;

use super::session::aes_key_template;
use super::{HsmError, MaterialRef};
use crate::domain::{KeySpec, KeyUsage, MaterialKind};

/// Which object of a material a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    /// The AES or HMAC secret key.
    Secret,
    /// The private half of a key pair.
    Private,
    /// The public half of a key pair.
    Public,
}

impl Part {
    /// The object class to find it by.
    pub(super) fn class(self) -> ObjectClass {
        match self {
            Self::Secret => ObjectClass::SECRET_KEY,
            Self::Private => ObjectClass::PRIVATE_KEY,
            Self::Public => ObjectClass::PUBLIC_KEY,
        }
    }
}

/// What a key of `spec` and `usage` is made with and can do, as PKCS#11 mechanisms the
/// token must offer. Signing mechanisms that hash in the token are not required: a
/// token without them gets the message hashed by p11kms and signed with the plain one.
pub(crate) fn required_mechanisms(spec: KeySpec, usage: KeyUsage) -> Vec<MechanismType> {
    use MechanismType as M;
    match (spec.material(), usage) {
        // Checked at start-up already: the daemon does not start without them.
        (MaterialKind::Aes256, _) => vec![],
        (MaterialKind::Hmac(_), _) => {
            let mac = match spec.mac_algorithm().map(|a| a.hash()) {
                Some(crate::domain::Hash::Sha224) => M::SHA224_HMAC,
                Some(crate::domain::Hash::Sha384) => M::SHA384_HMAC,
                Some(crate::domain::Hash::Sha512) => M::SHA512_HMAC,
                _ => M::SHA256_HMAC,
            };
            vec![M::GENERIC_SECRET_KEY_GEN, mac]
        }
        (MaterialKind::Rsa(_), KeyUsage::EncryptDecrypt) => {
            vec![M::RSA_PKCS_KEY_PAIR_GEN, M::RSA_PKCS_OAEP]
        }
        (MaterialKind::Rsa(_), _) => {
            vec![M::RSA_PKCS_KEY_PAIR_GEN, M::RSA_PKCS, M::RSA_PKCS_PSS]
        }
        (MaterialKind::Ec(_), KeyUsage::KeyAgreement) => {
            vec![M::ECC_KEY_PAIR_GEN, M::ECDH1_DERIVE]
        }
        (MaterialKind::Ec(_), _) => vec![M::ECC_KEY_PAIR_GEN, M::ECDSA],
    }
}

/// Makes the material `m` of a key of `spec` and `usage` in the token. Any object left
/// with this CKA_ID is destroyed first by the caller (see `WorkerSession::generate`).
pub(super) fn generate(
    s: &Session,
    m: &MaterialRef,
    spec: KeySpec,
    usage: KeyUsage,
) -> Result<(), HsmError> {
    let (id, label) = (m.cka_id(), m.label().into_bytes());
    let call = match spec.material() {
        MaterialKind::Aes256 => s
            .generate_key(&Mechanism::AesKeyGen, &aes_key_template(id, label))
            .map(drop),
        MaterialKind::Hmac(len) => s
            .generate_key(
                &Mechanism::GenericSecretKeyGen,
                &hmac_template(id, label, len),
            )
            .map(drop),
        MaterialKind::Rsa(bits) => {
            let sign = usage == KeyUsage::SignVerify;
            let public = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::ModulusBits(Ulong::from(bits as u64)),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                Attribute::Verify(sign),
                Attribute::Encrypt(!sign),
                Attribute::Wrap(false),
                Attribute::Id(id.clone()),
                Attribute::Label(label.clone()),
            ];
            let private = private_template(id, label, KeyType::RSA, sign, !sign, false);
            s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
                .map(drop)
        }
        MaterialKind::Ec(curve) => {
            let (sign, derive) = (
                usage == KeyUsage::SignVerify,
                usage == KeyUsage::KeyAgreement,
            );
            let public = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::EcParams(curve.oid_der().to_vec()),
                Attribute::Verify(sign),
                Attribute::Encrypt(false),
                Attribute::Wrap(false),
                Attribute::Derive(false),
                Attribute::Id(id.clone()),
                Attribute::Label(label.clone()),
            ];
            let private = private_template(id, label, KeyType::EC, sign, false, derive);
            s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
                .map(drop)
        }
    };
    call.map_err(|e| HsmError::from_generation(e, spec))
}

/// A private half: private, sensitive, never extractable, doing only what its usage says.
pub(super) fn private_template(
    id: Vec<u8>,
    label: Vec<u8>,
    key_type: KeyType,
    sign: bool,
    decrypt: bool,
    derive: bool,
) -> [Attribute; 12] {
    [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::KeyType(key_type),
        Attribute::Sign(sign),
        Attribute::Decrypt(decrypt),
        Attribute::Unwrap(false),
        Attribute::Derive(derive),
        Attribute::SignRecover(false),
        Attribute::Id(id),
        Attribute::Label(label),
    ]
}

/// An HMAC key: a generic secret of `len` bytes that can sign and verify and nothing else.
pub(super) fn hmac_template(id: Vec<u8>, label: Vec<u8>, len: usize) -> [Attribute; 16] {
    [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(Ulong::from(len as u64)),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Sign(true),
        Attribute::Verify(true),
        Attribute::Derive(false),
        Attribute::Id(id),
        Attribute::Label(label),
    ]
}
