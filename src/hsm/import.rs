//! Imported key material: the RSA wrapping keys GetParametersForImport makes in the
//! token, and the unwrapping of material into the token with C_UnwrapKey, so that the
//! daemon never holds the material in plaintext.
//!
//! RSAES_OAEP_* unwraps the material with the wrapping key in one call.
//! RSA_AES_KEY_WRAP_* unwraps the ephemeral AES key with the wrapping key into a
//! session object that can only unwrap, then the material with that key (AES key wrap
//! with padding, RFC 5649, which SoftHSM2 offers as CKM_AES_KEY_WRAP_PAD), and destroys
//! the ephemeral key. Whether the token can do the requested algorithm is proven when
//! the wrapping key is made: a test value is wrapped with it in software and unwrapped
//! in the token, so a token that cannot (SoftHSM2's OAEP takes SHA-1 only) is refused
//! before anyone wraps material for it.
//!
//! A re-import must bring the same material: what proves it without seeing either is
//! the import check, made by the first import and kept by the store (see
//! [`ImportCheck`]).

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use zeroize::Zeroizing;

use super::material::Part;
use super::session::{gcm_decrypt_raw, gcm_encrypt, WorkerSession};
use super::{signature, HsmError, MaterialRef, OaepHash};
use crate::domain::{Curve, Hash, KeySpec, KeyUsage, MacAlgorithm, MaterialKind};

/// CKA_ID prefix of wrapping keys: never 20 bytes long, so never read as key material.
const WRAPPING_ID_PREFIX: &[u8] = b"p11kms-import-wrapping/";
/// CKA_LABEL prefix of wrapping keys, followed by `<key id>/<id hex>/until/<unix seconds>`.
const WRAPPING_LABEL_PREFIX: &str = "p11kms/import-wrapping-key/";
/// Wrapping keys kept per KMS key: each GetParametersForImport makes one (an RSA key
/// generation and a token object for 24 hours), so a caller may not fill the token;
/// past this, the one that expires first goes, and its import token stops working.
const MAX_WRAPPING_KEYS_PER_KEY: usize = 10;
/// AAD of the AES-GCM import check of symmetric material.
const CHECK_AAD: &[u8] = b"p11kms imported key material check v1";
/// What HMAC material is asked to MAC for its import check.
const CHECK_MESSAGE: &[u8] = b"p11kms imported key material check v1";

/// One RSA wrapping key in the token: its id, and when it may be destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WrappingKeyRef {
    /// The KMS key it is for.
    pub(crate) key_id: crate::domain::KeyId,
    /// Random, from the import token.
    pub(crate) id: [u8; 16],
    /// When its import token expires (seconds since the epoch); the sweep destroys
    /// the key after that.
    pub(crate) valid_to_secs: u64,
}

impl WrappingKeyRef {
    fn cka_id(&self) -> Vec<u8> {
        let mut id = WRAPPING_ID_PREFIX.to_vec();
        id.extend_from_slice(&self.id);
        id
    }

    fn label(&self) -> String {
        format!(
            "{WRAPPING_LABEL_PREFIX}{}/{}/until/{}",
            self.key_id,
            crate::domain::to_hex(&self.id),
            self.valid_to_secs
        )
    }

    /// The wrapping key a label made by [`Self::label`] names.
    fn from_label(label: &str) -> Option<Self> {
        let rest = label.strip_prefix(WRAPPING_LABEL_PREFIX)?;
        let (key_id, rest) = rest.split_once('/')?;
        let (id, until) = rest.split_once("/until/")?;
        let id: [u8; 16] = crate::domain::from_hex(id)?.try_into().ok()?;
        Some(Self {
            key_id: key_id.parse().ok()?,
            id,
            valid_to_secs: until.parse().ok()?,
        })
    }
}

/// How the material travels (a WrappingAlgorithm, in the token's terms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wrapping {
    /// The hash of the RSAES-OAEP step.
    pub(crate) hash: OaepHash,
    /// Whether the material is under an ephemeral AES key (RFC 5649).
    pub(crate) aes_key_wrap: bool,
}

impl Wrapping {
    fn describe(self) -> String {
        let oaep = match self.hash {
            OaepHash::Sha1 => "RSA-OAEP with SHA-1",
            OaepHash::Sha256 => "RSA-OAEP with SHA-256",
        };
        if self.aes_key_wrap {
            format!("unwrap keys with {oaep} and then AES key wrap with padding (CKM_AES_KEY_WRAP_PAD, RFC 5649)")
        } else {
            format!("unwrap keys with {oaep}")
        }
    }
}

/// Proof that material imported again is the material first imported, made without
/// reading either: for AES material, an AES-GCM encryption of random bytes under it
/// (IV || ciphertext || tag) that only the same key opens; for HMAC material, its MAC
/// of a fixed message.
pub(crate) type ImportCheck = Vec<u8>;

impl WorkerSession {
    /// Makes an RSA wrapping key pair of `bits`: the private half a token object that
    /// can only unwrap, the public half read out and destroyed. Proves that the token
    /// can unwrap with `wrapping` (destroying the key when it cannot). Returns the public
    /// key as DER SubjectPublicKeyInfo.
    pub(crate) fn make_wrapping_key(
        &mut self,
        w: &WrappingKeyRef,
        bits: u32,
        wrapping: Wrapping,
    ) -> Result<Vec<u8>, HsmError> {
        let m = self.mechanisms();
        let mut lacking = [
            MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            MechanismType::RSA_PKCS_OAEP,
        ]
        .into_iter()
        .filter(|t| !m.offers(*t))
        .collect::<Vec<_>>();
        if wrapping.aes_key_wrap && !m.offers(MechanismType::AES_KEY_WRAP_PAD) {
            lacking.push(MechanismType::AES_KEY_WRAP_PAD);
        }
        if !lacking.is_empty() {
            return Err(HsmError::Unsupported(format!(
                "{} (it does not offer {})",
                wrapping.describe(),
                lacking
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let (id, label) = (w.cka_id(), w.label().into_bytes());
        let s = self.session()?;
        let mut kept: Vec<(WrappingKeyRef, ObjectHandle)> = wrapping_keys(s)?
            .into_iter()
            .filter(|(k, _)| k.key_id == w.key_id)
            .collect();
        kept.sort_by_key(|(k, _)| k.valid_to_secs);
        let excess = (kept.len() + 1).saturating_sub(MAX_WRAPPING_KEYS_PER_KEY);
        for (_, h) in kept.into_iter().take(excess) {
            match s.destroy_object(h) {
                Ok(()) | Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                Err(e) => return Err(HsmError::from_call(e)),
            }
        }
        let public = [
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::ModulusBits(Ulong::from(u64::from(bits))),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            Attribute::Encrypt(false),
            Attribute::Verify(false),
            Attribute::Wrap(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Sign(false),
            Attribute::Decrypt(false),
            Attribute::Unwrap(true),
            Attribute::Derive(false),
            Attribute::SignRecover(false),
            // RSA-OAEP only: the key unwraps nothing by any other mechanism.
            Attribute::AllowedMechanisms(vec![MechanismType::RSA_PKCS_OAEP]),
            Attribute::Id(id),
            Attribute::Label(label),
        ];
        // SoftHSM2 fails a token object made while other sessions read the token now
        // and then (see `HsmError::retry_generation`): tried again briefly.
        let mut attempt = 0u32;
        let (pub_h, priv_h) = loop {
            match s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private) {
                Ok(pair) => break pair,
                Err(CkError::Pkcs11(RvError::GeneralError | RvError::TemplateInconsistent, _))
                    if attempt < 3 =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5 * u64::from(attempt)));
                }
                Err(e) => return Err(HsmError::from_call(e)),
            }
        };
        let mut leaked = false;
        let spki = super::key_ops::rsa_spki_of(s, pub_h);
        if s.destroy_object(pub_h).is_err() {
            leaked = true;
        }
        let proven = spki.and_then(|spki| {
            prove_unwrap(s, priv_h, &spki, (bits, wrapping), &mut leaked)?;
            Ok(spki)
        });
        if proven.is_err() {
            let _ = s.destroy_object(priv_h);
        }
        if leaked {
            self.reset();
        }
        proven
    }

    /// Unwraps `wrapped` with wrapping key `w` into material `m` of a key of `spec` and
    /// `usage`: checked (its size or key, and against `prior` when the key had material
    /// before) in a session object first, then made a token object (for a key pair, the
    /// private half unwrapped and the public half made from what the check learnt).
    /// With `replace` (the store records no material for the key) whatever the token
    /// holds under the material's CKA_ID is a leftover and is destroyed first; without,
    /// the objects the token holds are the recorded material, and only missing ones are
    /// made. Returns the import check to keep.
    pub(crate) fn import_material(
        &mut self,
        m: &MaterialRef,
        (spec, usage): (KeySpec, KeyUsage),
        w: &WrappingKeyRef,
        (bits, wrapping): (u32, Wrapping),
        wrapped: &[u8],
        (prior, replace): (Option<&[u8]>, bool),
    ) -> Result<ImportCheck, HsmError> {
        let offers_kwp = self.mechanisms().offers(MechanismType::AES_KEY_WRAP_PAD);
        let mut leaked = false;
        let out = self.session().and_then(|s| {
            let job = Import {
                s,
                m,
                kind: spec.material(),
                mac: spec.mac_algorithm(),
                usage,
                bits,
                wrapping,
                wrapped,
                offers_kwp,
            };
            job.run(w, prior, replace, &mut leaked)
        });
        if leaked {
            // A session object this call made could not be destroyed: the session goes,
            // and every session object with it.
            self.reset();
        }
        out
    }

    /// Destroys the wrapping keys whose import tokens expired before `now_secs`.
    /// Returns how many.
    pub(crate) fn destroy_expired_wrapping_keys(
        &mut self,
        now_secs: u64,
    ) -> Result<usize, HsmError> {
        let s = self.session()?;
        let mut destroyed = 0;
        for (w, h) in wrapping_keys(s)? {
            if w.valid_to_secs < now_secs {
                match s.destroy_object(h) {
                    Ok(()) => destroyed += 1,
                    Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                    Err(e) => return Err(HsmError::from_call(e)),
                }
            }
        }
        Ok(destroyed)
    }
}

/// One import's unwrap, checks and token objects, on one session.
struct Import<'a> {
    s: &'a Session,
    m: &'a MaterialRef,
    kind: MaterialKind,
    /// The MAC algorithm of an HMAC key.
    mac: Option<MacAlgorithm>,
    usage: KeyUsage,
    bits: u32,
    wrapping: Wrapping,
    wrapped: &'a [u8],
    offers_kwp: bool,
}

impl Import<'_> {
    fn run(
        &self,
        w: &WrappingKeyRef,
        prior: Option<&[u8]>,
        replace: bool,
        leaked: &mut bool,
    ) -> Result<ImportCheck, HsmError> {
        let s = self.s;
        let Some(wrapping_key) = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Token(true),
                Attribute::Id(w.cka_id()),
            ])
            .map_err(HsmError::from_call)?
            .first()
            .copied()
        else {
            return Err(HsmError::WrappingKeyMissing);
        };
        let template = material_template(self.kind, self.usage, None);
        let check_copy = match self.unwrap(wrapping_key, &template, leaked) {
            Ok(h) => h,
            Err(e) => return Err(self.refused(e, wrapping_key, leaked)),
        };
        let checked = match self.kind {
            MaterialKind::Aes256 => {
                check_aes(s, check_copy, prior, self.offers_kwp, leaked).map(|c| (c, None))
            }
            MaterialKind::Hmac(_) => self
                .mac
                .ok_or(HsmError::Malformed("MAC algorithm of an HMAC key"))
                .and_then(|mac| check_hmac(s, check_copy, mac, prior, self.offers_kwp, leaked))
                .map(|c| (c, None)),
            MaterialKind::Rsa(bits) => check_rsa(s, check_copy, bits, prior),
            MaterialKind::Ec(curve) => check_ec(s, check_copy, curve, prior, leaked),
        };
        // The checking copy never outlives the call, whatever the check said.
        if let Err(e) = s.destroy_object(check_copy) {
            tracing::warn!(error = %e, "could not destroy the session copy of imported material");
            *leaked = true;
            return Err(HsmError::from_call(e));
        }
        let (check, public) = checked?;
        let (secret_part, public_part) = match self.kind {
            MaterialKind::Aes256 | MaterialKind::Hmac(_) => (Part::Secret, None),
            _ => (Part::Private, Some(Part::Public)),
        };
        if replace {
            super::session::destroy_all(s, self.m, false)?;
        }
        let mut made = None;
        if replace || super::session::find_material(s, self.m, secret_part)?.is_empty() {
            let template = material_template(self.kind, self.usage, Some(self.m));
            made = Some(self.unwrap_to_token(wrapping_key, &template, leaked)?);
        }
        if let (Some(part), Some(public)) = (public_part, public) {
            if made.is_some() || super::session::find_material(s, self.m, part)?.is_empty() {
                let created = s
                    .create_object(&public.template(self.m, self.usage))
                    .map_err(HsmError::from_call);
                if let (Err(_), Some(private)) = (&created, made) {
                    // Half a key pair is no key: the private half goes too.
                    let _ = s.destroy_object(private);
                }
                created?;
            }
        }
        Ok(check)
    }

    fn unwrap(
        &self,
        wrapping_key: ObjectHandle,
        template: &[Attribute],
        leaked: &mut bool,
    ) -> Result<ObjectHandle, CkError> {
        unwrap(
            self.s,
            wrapping_key,
            (self.bits, self.wrapping),
            self.wrapped,
            template,
            leaked,
        )
    }

    /// The unwrap into the token object, after the same unwrap into the checking copy
    /// succeeded: a failure now is the token's, never the input's. SoftHSM2 fails a token
    /// object made while other sessions read the token now and then (as for key
    /// generation, `HsmError::retry_generation`): tried again briefly.
    fn unwrap_to_token(
        &self,
        wrapping_key: ObjectHandle,
        template: &[Attribute],
        leaked: &mut bool,
    ) -> Result<ObjectHandle, HsmError> {
        let mut attempt = 0u32;
        loop {
            match self.unwrap(wrapping_key, template, leaked) {
                Ok(h) => return Ok(h),
                Err(CkError::Pkcs11(RvError::GeneralError | RvError::TemplateInconsistent, _))
                    if attempt < 3 =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5 * u64::from(attempt)));
                }
                Err(e) => return Err(HsmError::from_call(e)),
            }
        }
    }

    /// What an unwrap of the caller's input that the token refused means. A lost
    /// session is that; a wrapping key gone is the import token's; material that is not
    /// a key of the spec (a PKCS#8 of another type) is IncorrectMaterial. A device or
    /// general error is ambiguous (kryoptic answers a bad OAEP block with
    /// CKR_DEVICE_ERROR, SoftHSM2 with CKR_GENERAL_ERROR): a test key wrapped in software
    /// for the same wrapping key is unwrapped too, and only if that works was the input
    /// at fault; else the token is, and the error says so.
    fn refused(&self, e: CkError, wrapping_key: ObjectHandle, leaked: &mut bool) -> HsmError {
        let CkError::Pkcs11(rv, f) = &e else {
            return HsmError::from_call(e);
        };
        tracing::info!(code = ?rv, function = ?f, "the token did not unwrap the material");
        match rv {
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::UserNotLoggedIn
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent => HsmError::from_call(e),
            RvError::UnwrappingKeyHandleInvalid => HsmError::WrappingKeyMissing,
            RvError::FunctionFailed
            | RvError::TemplateInconsistent
            | RvError::AttributeValueInvalid
            | RvError::KeyTypeInconsistent
            | RvError::KeySizeRange => HsmError::IncorrectMaterial(
                "the unwrapped key material is not a key of this key spec".into(),
            ),
            RvError::DeviceError | RvError::GeneralError => {
                let proven = super::key_ops::rsa_spki_of(self.s, wrapping_key).and_then(|spki| {
                    prove_unwrap(
                        self.s,
                        wrapping_key,
                        &spki,
                        (self.bits, self.wrapping),
                        leaked,
                    )
                });
                match proven {
                    Ok(()) => HsmError::WrappedKeyInvalid(format!("{rv:?}")),
                    Err(_) => HsmError::from_call(e),
                }
            }
            RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::WrappedKeyInvalid
            | RvError::WrappedKeyLenRange
            | RvError::DataInvalid
            | RvError::DataLenRange
            | RvError::ArgumentsBad
            | RvError::MechanismParamInvalid => HsmError::WrappedKeyInvalid(format!("{rv:?}")),
            _ => HsmError::from_call(e),
        }
    }
}

/// Every wrapping key in the token, by its label.
fn wrapping_keys(s: &Session) -> Result<Vec<(WrappingKeyRef, ObjectHandle)>, HsmError> {
    // Only keys that can unwrap: the private halves of RSA material never can, so the
    // sweep does not read the label of every RSA key in the token.
    let found = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Token(true),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Unwrap(true),
        ])
        .map_err(HsmError::from_call)?;
    let mut out = Vec::new();
    for h in found {
        let label = match s.get_attributes(h, &[AttributeType::Label]) {
            Ok(attrs) => attrs.into_iter().find_map(|a| match a {
                Attribute::Label(l) => String::from_utf8(l).ok(),
                _ => None,
            }),
            // Destroyed meanwhile (another worker's sweep, or SoftHSM2 listing it twice).
            Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => None,
            Err(e) => return Err(HsmError::from_call(e)),
        };
        if let Some(w) = label.as_deref().and_then(WrappingKeyRef::from_label) {
            out.push((w, h));
        }
    }
    Ok(out)
}

/// Wraps a random AES key in software with the new wrapping key's public half, as an
/// importer would, and unwraps it in the token: Unsupported when the token cannot.
fn prove_unwrap(
    s: &Session,
    private: ObjectHandle,
    spki: &[u8],
    (bits, wrapping): (u32, Wrapping),
    leaked: &mut bool,
) -> Result<(), HsmError> {
    let mut test_key = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(test_key.as_mut_slice())
        .map_err(|_| HsmError::Malformed("random bytes"))?;
    let wrapped = if wrapping.aes_key_wrap {
        let mut kek = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(kek.as_mut_slice())
            .map_err(|_| HsmError::Malformed("random bytes"))?;
        let mut out = super::key_ops::software_oaep_encrypt(spki, wrapping.hash, kek.as_slice())?;
        out.extend(aes_kwp_wrap(kek.as_slice(), test_key.as_slice())?);
        out
    } else {
        super::key_ops::software_oaep_encrypt(spki, wrapping.hash, test_key.as_slice())?
    };
    let template = material_template(MaterialKind::Aes256, KeyUsage::EncryptDecrypt, None);
    match unwrap(s, private, (bits, wrapping), &wrapped, &template, leaked) {
        Ok(h) => {
            if let Err(e) = s.destroy_object(h) {
                *leaked = true;
                return Err(HsmError::from_call(e));
            }
            Ok(())
        }
        Err(
            e @ CkError::Pkcs11(
                RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent,
                _,
            ),
        ) => Err(HsmError::from_call(e)),
        Err(e) => {
            tracing::info!(error = %e, wrapping = %wrapping.describe(), "the token cannot unwrap a test key wrapped for it");
            Err(HsmError::Unsupported(wrapping.describe()))
        }
    }
}

/// RFC 5649 AES key wrap with padding, in software (for the proof only).
fn aes_kwp_wrap(kek: &[u8], key: &[u8]) -> Result<Vec<u8>, HsmError> {
    use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded, AES_256};
    // Output: the key rounded up to 8 bytes, plus the 8-byte integrity block.
    let kek = AesKek::new(&AES_256, kek).map_err(|_| HsmError::Malformed("AES key"))?;
    let mut out = vec![0u8; key.len() + 16];
    let n = kek
        .wrap_with_padding(key, &mut out)
        .map_err(|_| HsmError::Malformed("wrapped key"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// C_UnwrapKey of `wrapped` per `wrapping` with the wrapping key `private` (of `bits`),
/// into an object of `template`, the token's answer as it gave it. The ephemeral AES key
/// of RSA_AES_KEY_WRAP is a session object that can only unwrap, destroyed at once (or
/// `leaked` is set, and the caller closes the session).
fn unwrap(
    s: &Session,
    private: ObjectHandle,
    (bits, wrapping): (u32, Wrapping),
    wrapped: &[u8],
    template: &[Attribute],
    leaked: &mut bool,
) -> Result<ObjectHandle, CkError> {
    let oaep = wrapping.hash.mechanism();
    if !wrapping.aes_key_wrap {
        return s.unwrap_key(&oaep, private, wrapped, template);
    }
    let modulus_len = (bits / 8) as usize;
    let Some((rsa_part, kwp_part)) = wrapped
        .split_at_checked(modulus_len)
        .filter(|(_, kwp)| !kwp.is_empty())
    else {
        // Shorter than the wrapped AES key and any material.
        return Err(CkError::Pkcs11(
            RvError::WrappedKeyLenRange,
            cryptoki::context::Function::UnwrapKey,
        ));
    };
    let ephemeral = s.unwrap_key(
        &oaep,
        private,
        rsa_part,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(true),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
        ],
    )?;
    let made = s.unwrap_key(&Mechanism::AesKeyWrapPad, ephemeral, kwp_part, template);
    if let Err(e) = s.destroy_object(ephemeral) {
        tracing::warn!(error = %e, "could not destroy an ephemeral import key");
        *leaked = true;
    }
    made
}

/// The template imported material is unwrapped into: a session copy to check (`m`
/// None) or the material's token object, as sensitive, non-extractable and narrow in
/// use as generated material (see `material`). The checking copy of an EC private key
/// may also sign and derive: its public point is learnt with both (see `check_ec`); an
/// RSA one may sign, to prove that its private half matches its public half.
fn material_template(
    kind: MaterialKind,
    usage: KeyUsage,
    m: Option<&MaterialRef>,
) -> Vec<Attribute> {
    let (id, label) = match m {
        Some(m) => (m.cka_id(), m.label().into_bytes()),
        None => (
            b"p11kms import check".to_vec(),
            b"p11kms import check".to_vec(),
        ),
    };
    let (sign, decrypt, derive) = match (kind, m) {
        (MaterialKind::Ec(_), None) => (true, false, true),
        (MaterialKind::Rsa(_), None) => (true, false, false),
        _ => (
            usage == KeyUsage::SignVerify,
            usage == KeyUsage::EncryptDecrypt,
            usage == KeyUsage::KeyAgreement,
        ),
    };
    let secret = matches!(kind, MaterialKind::Aes256 | MaterialKind::Hmac(_));
    let mut t = match kind {
        MaterialKind::Aes256 => super::session::aes_key_template(id, label).to_vec(),
        MaterialKind::Hmac(len) => super::material::hmac_template(id, label, len).to_vec(),
        MaterialKind::Rsa(_) => {
            super::material::private_template(id, label, KeyType::RSA, sign, decrypt, false)
                .to_vec()
        }
        MaterialKind::Ec(_) => {
            super::material::private_template(id, label, KeyType::EC, sign, false, derive).to_vec()
        }
    };
    if !secret {
        // Key pair generation takes the class from the call; unwrapping needs it said.
        t.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
    }
    // The length is the material's, whatever it is: checked after unwrapping.
    t.retain(|a| !matches!(a, Attribute::ValueLen(_)));
    if m.is_none() {
        // The checking copy lives in the session only; a secret one may be wrapped
        // (under a key of the token's that nobody sees) to learn its length where the
        // token does not report one (see `material_len`).
        for a in &mut t {
            match a {
                Attribute::Token(on) => *on = false,
                Attribute::Extractable(on) => *on = secret,
                _ => {}
            }
        }
    }
    t
}

/// The public half of an imported key pair, as the check learnt it.
enum PublicHalf {
    /// Modulus and public exponent.
    Rsa(Vec<u8>, Vec<u8>),
    /// Curve and uncompressed point.
    Ec(Curve, Vec<u8>),
}

impl PublicHalf {
    /// Its token object, as generated public halves are (see `material`).
    fn template(&self, m: &MaterialRef, usage: KeyUsage) -> Vec<Attribute> {
        let mut t = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(usage == KeyUsage::SignVerify),
            Attribute::Wrap(false),
            Attribute::Derive(false),
            Attribute::Id(m.cka_id()),
            Attribute::Label(m.label().into_bytes()),
        ];
        match self {
            Self::Rsa(n, e) => t.extend([
                Attribute::KeyType(KeyType::RSA),
                Attribute::Modulus(n.clone()),
                Attribute::PublicExponent(e.clone()),
                Attribute::Encrypt(usage == KeyUsage::EncryptDecrypt),
            ]),
            Self::Ec(curve, point) => t.extend([
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(curve.oid_der().to_vec()),
                Attribute::EcPoint(yasna::construct_der(|w| w.write_bytes(point))),
                Attribute::Encrypt(false),
            ]),
        }
        t
    }
}

/// An imported RSA private key: its size must be the key spec's; the import check is
/// its public key (DER SPKI), which a re-import must match.
fn check_rsa(
    s: &Session,
    h: ObjectHandle,
    bits: usize,
    prior: Option<&[u8]>,
) -> Result<(ImportCheck, Option<PublicHalf>), HsmError> {
    let (mut n, mut e) = (None, None);
    for a in s
        .get_attributes(h, &[AttributeType::Modulus, AttributeType::PublicExponent])
        .map_err(HsmError::from_call)?
    {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            _ => {}
        }
    }
    let (Some(n), Some(e)) = (n, e) else {
        return Err(HsmError::Malformed("RSA private key's public attributes"));
    };
    let significant: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
    let modulus_bits = significant.first().map_or(0, |top| {
        (significant.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    if modulus_bits != bits {
        return Err(HsmError::IncorrectMaterial(format!(
            "the RSA private key is {modulus_bits} bits; this key spec needs {bits}"
        )));
    }
    let spki = signature::rsa_spki(&n, &e);
    // The token keeps a PKCS#8's fields as given: a signature that the public key
    // verifies proves that the private half is this public key's.
    let mut message = [0u8; 32];
    aws_lc_rs::rand::fill(&mut message).map_err(|_| HsmError::Malformed("random bytes"))?;
    let mut digest_info = signature::digest_info_prefix(crate::domain::Hash::Sha256).to_vec();
    digest_info.extend_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &message).as_ref(),
    );
    let signed = s.sign(&Mechanism::RsaPkcs, h, &digest_info);
    let verified = signed.ok().is_some_and(|sig| {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            &spki,
        )
        .verify(&message, &sig)
        .is_ok()
    });
    if !verified {
        return Err(HsmError::IncorrectMaterial(
            "the RSA private key does not match its own public key".into(),
        ));
    }
    same_public(prior, &spki)?;
    Ok((spki, Some(PublicHalf::Rsa(n, e))))
}

/// An imported EC private key: on the key spec's curve; its public point learnt
/// without the private scalar leaving the token: ECDH with the curve's generator gives
/// the point's x (d·G), aws-lc decompresses both candidate points, and a signature the
/// token makes with the key tells which one it is. The import check is its DER SPKI.
fn check_ec(
    s: &Session,
    h: ObjectHandle,
    curve: Curve,
    prior: Option<&[u8]>,
    leaked: &mut bool,
) -> Result<(ImportCheck, Option<PublicHalf>), HsmError> {
    let params = s
        .get_attributes(h, &[AttributeType::EcParams])
        .map_err(HsmError::from_call)?
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcParams(p) => Some(p),
            _ => None,
        })
        .unwrap_or_default();
    if params != curve.oid_der() {
        return Err(HsmError::IncorrectMaterial(
            "the EC private key is not on this key spec's curve".into(),
        ));
    }
    let (x, destroyed) = super::key_ops::ecdh(s, h, curve, &generator(curve)?);
    if !destroyed {
        *leaked = true;
    }
    let x = x?;
    let (verifying, hash) = ecdsa_fixed(curve);
    let mut message = [0u8; 32];
    aws_lc_rs::rand::fill(&mut message).map_err(|_| HsmError::Malformed("random bytes"))?;
    let digest = aws_lc_rs::digest::digest(hash, &message);
    let rs = s
        .sign(&Mechanism::Ecdsa, h, digest.as_ref())
        .map_err(HsmError::from_call)?;
    for prefix in [0x02u8, 0x03] {
        let mut compressed = vec![prefix];
        compressed.extend_from_slice(x.expose());
        let Ok(parsed) = aws_lc_rs::signature::ParsedPublicKey::new(verifying, &compressed) else {
            continue;
        };
        if parsed.verify_sig(&message, &rs).is_err() {
            continue;
        }
        let spki = aws_lc_rs::encoding::AsDer::as_der(&parsed)
            .map_err(|_| HsmError::Malformed("EC public key"))?
            .as_ref()
            .to_vec();
        let point = signature::ec_point_from_spki(&spki, curve)
            .ok_or(HsmError::Malformed("EC public key"))?;
        same_public(prior, &spki)?;
        return Ok((spki, Some(PublicHalf::Ec(curve, point))));
    }
    Err(HsmError::Malformed(
        "EC public key (no candidate point verifies)",
    ))
}

/// The generator of `curve`, uncompressed: the public key of the private scalar 1, as
/// aws-lc computes it (an RFC 5915 ECPrivateKey without its public key).
fn generator(curve: Curve) -> Result<Vec<u8>, HsmError> {
    use aws_lc_rs::signature::{
        EcdsaKeyPair, KeyPair, ECDSA_P256K1_SHA256_FIXED_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
        ECDSA_P384_SHA384_FIXED_SIGNING, ECDSA_P521_SHA512_FIXED_SIGNING,
    };
    let alg = match curve {
        Curve::P256 => &ECDSA_P256_SHA256_FIXED_SIGNING,
        Curve::P384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
        Curve::P521 => &ECDSA_P521_SHA512_FIXED_SIGNING,
        Curve::Secp256k1 => &ECDSA_P256K1_SHA256_FIXED_SIGNING,
    };
    let mut one = vec![0u8; curve.field_len()];
    if let Some(last) = one.last_mut() {
        *last = 1;
    }
    let der = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(1);
            w.next().write_bytes(&one);
            w.next()
                .write_tagged(yasna::Tag::context(0), |w| w.write_der(curve.oid_der()));
        })
    });
    let pair = EcdsaKeyPair::from_private_key_der(alg, &der)
        .map_err(|_| HsmError::Malformed("curve generator"))?;
    Ok(pair.public_key().as_ref().to_vec())
}

/// aws-lc's ECDSA verification with r || s signatures on `curve`, and its hash.
fn ecdsa_fixed(
    curve: Curve,
) -> (
    &'static aws_lc_rs::signature::EcdsaVerificationAlgorithm,
    &'static aws_lc_rs::digest::Algorithm,
) {
    use aws_lc_rs::digest::{SHA256, SHA384, SHA512};
    use aws_lc_rs::signature::{
        ECDSA_P256K1_SHA256_FIXED, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
        ECDSA_P521_SHA512_FIXED,
    };
    match curve {
        Curve::P256 => (&ECDSA_P256_SHA256_FIXED, &SHA256),
        Curve::P384 => (&ECDSA_P384_SHA384_FIXED, &SHA384),
        Curve::P521 => (&ECDSA_P521_SHA512_FIXED, &SHA512),
        Curve::Secp256k1 => (&ECDSA_P256K1_SHA256_FIXED, &SHA256),
    }
}

/// IncorrectMaterial unless `spki` is the public key imported before (when there was
/// one).
fn same_public(prior: Option<&[u8]>, spki: &[u8]) -> Result<(), HsmError> {
    match prior {
        Some(p) if p != spki => Err(different()),
        _ => Ok(()),
    }
}

/// A throw-away AES-256 session key, sensitive, that can wrap (`wrap`) or be wrapped
/// (`extractable`) and nothing else.
fn session_aes_key(s: &Session, wrap: bool, extractable: bool) -> Result<ObjectHandle, CkError> {
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(Ulong::from(32u64)),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(extractable),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(wrap),
            Attribute::Unwrap(false),
        ],
    )
}

/// The length of the unwrapped material `h` without reading it, as a range: exact
/// where the token reports CKA_VALUE_LEN; else (SoftHSM2 leaves it 0 on unwrapped keys)
/// to within 8 bytes, from the length of its AES key wrap with padding under a session
/// key of the token's own (RFC 5649 rounds up to 8 bytes and adds 8).
fn material_len(
    s: &Session,
    h: ObjectHandle,
    offers_kwp: bool,
    leaked: &mut bool,
) -> Result<std::ops::RangeInclusive<usize>, HsmError> {
    let reported = s
        .get_attributes(h, &[AttributeType::ValueLen])
        .map_err(HsmError::from_call)?
        .into_iter()
        .find_map(|a| match a {
            Attribute::ValueLen(n) => Some(u64::from(n) as usize),
            _ => None,
        })
        .unwrap_or(0);
    if reported > 0 {
        return Ok(reported..=reported);
    }
    if !offers_kwp {
        return Err(HsmError::Unsupported(
            "tell the length of unwrapped key material (it reports no CKA_VALUE_LEN and offers no CKM_AES_KEY_WRAP_PAD)".into(),
        ));
    }
    let kek = session_aes_key(s, true, false).map_err(HsmError::from_call)?;
    // The mechanism is RFC 5649 on SoftHSM2; PKCS#11 2.40 gave the name to RFC 3394
    // over PKCS#7 padding, which lengthens differently. So a session key of known
    // length (32 bytes) is wrapped first: 40 bytes out is RFC 5649.
    let known = session_aes_key(s, false, true);
    let calibration = known
        .as_ref()
        .ok()
        .map(|k| s.wrap_key(&Mechanism::AesKeyWrapPad, kek, *k));
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, kek, h);
    for made in [Some(kek), known.ok()].into_iter().flatten() {
        if s.destroy_object(made).is_err() {
            *leaked = true;
        }
    }
    if !matches!(calibration, Some(Ok(ref c)) if c.len() == 40) {
        return Err(HsmError::Unsupported(
            "tell the length of unwrapped key material (it reports no CKA_VALUE_LEN, and its CKM_AES_KEY_WRAP_PAD is not RFC 5649)".into(),
        ));
    }
    let n = wrapped.map_err(HsmError::from_call)?.len();
    let upper = n.saturating_sub(8);
    Ok(upper.saturating_sub(7).max(1)..=upper)
}

/// The size check of unwrapped AES material and its import check: against `prior` when
/// given (IncorrectMaterial when it differs), else a new one.
fn check_aes(
    s: &Session,
    h: ObjectHandle,
    prior: Option<&[u8]>,
    offers_kwp: bool,
    leaked: &mut bool,
) -> Result<ImportCheck, HsmError> {
    let len = material_len(s, h, offers_kwp, leaked)?;
    // A length known to within 8 bytes is exact here: AES keys are 16, 24 or 32 bytes,
    // and using the key below fails for any other length.
    if !len.contains(&32) {
        return Err(HsmError::IncorrectMaterial(format!(
            "symmetric key material must be 256 bits (32 bytes), not {} bytes",
            len.end()
        )));
    }
    match prior.map(|p| p.split_at_checked(12)) {
        Some(Some((iv, sealed))) => match gcm_decrypt_raw(s, h, iv, CHECK_AAD, sealed) {
            Ok(_) => Ok(prior.unwrap_or_default().to_vec()),
            Err(_) => Err(different()),
        },
        Some(None) => Err(HsmError::Malformed("stored import check")),
        None => {
            let mut iv = [0u8; 12];
            s.generate_random_slice(&mut iv)
                .map_err(HsmError::from_call)?;
            let mut value = Zeroizing::new([0u8; 32]);
            s.generate_random_slice(value.as_mut_slice())
                .map_err(HsmError::from_call)?;
            let sealed = gcm_encrypt(s, h, &iv, CHECK_AAD, value.as_slice()).map_err(|e| {
                tracing::info!(error = %e, "imported AES material does not encrypt");
                HsmError::IncorrectMaterial(
                    "symmetric key material must be 256 bits (32 bytes)".into(),
                )
            })?;
            let mut out = iv.to_vec();
            out.extend(sealed);
            Ok(out)
        }
    }
}

/// The size check of unwrapped HMAC material of a key with MAC algorithm `alg` (AWS:
/// from the hash's length to its block size) and its import check, its MAC of a fixed
/// message, compared with `prior` in constant time when given.
fn check_hmac(
    s: &Session,
    h: ObjectHandle,
    alg: MacAlgorithm,
    prior: Option<&[u8]>,
    offers_kwp: bool,
    leaked: &mut bool,
) -> Result<ImportCheck, HsmError> {
    let len = material_len(s, h, offers_kwp, leaked)?;
    let (min, max) = hmac_material_len(alg.hash());
    // Where the length is known to within 8 bytes only, a length that may be in range
    // passes here; SoftHSM2 (the token that reports no length) then refuses a key
    // shorter than the hash when it computes the MAC below.
    if *len.end() < min || *len.start() > max {
        return Err(HsmError::IncorrectMaterial(format!(
            "HMAC key material for this key spec must be {min} to {max} bytes, not {}",
            len.end()
        )));
    }
    let mac = s
        .sign(&signature::mac_mechanism(alg), h, CHECK_MESSAGE)
        .map_err(|e| match e {
            // SoftHSM2 refuses an HMAC key shorter than the hash: what the 8-byte-wide
            // measure above let through.
            CkError::Pkcs11(RvError::KeySizeRange, _) => HsmError::IncorrectMaterial(format!(
                "HMAC key material for this key spec must be {min} to {max} bytes"
            )),
            e => HsmError::from_call(e),
        })?;
    match prior {
        Some(p) => {
            use subtle::ConstantTimeEq;
            if p.len() == mac.len() && bool::from(p.ct_eq(&mac)) {
                Ok(mac)
            } else {
                Err(different())
            }
        }
        None => Ok(mac),
    }
}

fn different() -> HsmError {
    HsmError::IncorrectMaterial(
        "this is not the key material that was imported into this key before; a key takes only its own material".into(),
    )
}

/// AWS's sizes for imported HMAC material of a key whose MAC hashes with `hash`: from
/// the hash's length to its block size.
fn hmac_material_len(hash: Hash) -> (usize, usize) {
    let block = match hash {
        Hash::Sha224 | Hash::Sha256 => 64,
        Hash::Sha384 | Hash::Sha512 => 128,
    };
    (hash.len(), block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_key_labels_round_trip_and_nothing_else_reads_as_one() {
        let w = WrappingKeyRef {
            key_id: crate::domain::KeyId::generate(),
            id: [0xab; 16],
            valid_to_secs: 1_800_000_000,
        };
        assert_eq!(WrappingKeyRef::from_label(&w.label()), Some(w));
        assert_ne!(w.cka_id().len(), 20, "never a material's CKA_ID length");
        assert!(MaterialRef::from_cka_id(&w.cka_id()).is_none());
        for other in [
            "p11kms/abc/v1",
            "p11kms/import-wrapping-key/zz/until/5",
            "p11kms/import-wrapping-key/abababababababababababababababab/until/x",
            "p11kms/import-wrapping-key/abab/until/5",
            "p11kms/import-wrapping-key/not-a-key/abababababababababababababababab/until/5",
        ] {
            assert_eq!(WrappingKeyRef::from_label(other), None, "{other}");
        }
    }

    #[test]
    fn hmac_material_sizes_run_from_the_hash_to_the_block() {
        assert_eq!(hmac_material_len(Hash::Sha224), (28, 64));
        assert_eq!(hmac_material_len(Hash::Sha256), (32, 64));
        assert_eq!(hmac_material_len(Hash::Sha384), (48, 128));
        assert_eq!(hmac_material_len(Hash::Sha512), (64, 128));
    }
}
