//! What a worker session does with asymmetric and HMAC key material: sign and verify,
//! MACs, public keys, RSAES-OAEP and ECDH. The session itself (opening, the handle
//! cache, AES) is `session`; the mechanisms and encodings are `signature` and `oaep`.

use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::types::Ulong;
use zeroize::Zeroizing;

use super::material::Part;
use super::session::WorkerSession;
use super::{signature, HsmError, MaterialRef, OaepHash, Signed};
use crate::domain::{
    Curve, MacAlgorithm, MaterialKind, Plaintext, SignatureScheme, SigningAlgorithm,
};

impl WorkerSession {
    /// Signs with the private half of `m`; an ECDSA signature comes back DER-encoded.
    pub(crate) fn sign(
        &mut self,
        m: &MaterialRef,
        alg: SigningAlgorithm,
        signed: Signed,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let key = self.part(m, Part::Private)?;
        let input = signature::sign_input(alg, signed, data, |t| self.mechanisms().offers(t));
        let raw = self
            .session()?
            .sign(&input.mechanism, key, &input.data)
            .map_err(|e| HsmError::from_input(e, "message"))?;
        match alg.scheme() {
            SignatureScheme::Ecdsa => {
                signature::ecdsa_to_der(&raw).ok_or(HsmError::Malformed("ECDSA signature"))
            }
            _ => Ok(raw),
        }
    }

    /// Verifies with the public half of `m`: Ok(false) for a signature that does not
    /// verify, or that is not one at all. `signature` is DER for ECDSA, as AWS's.
    pub(crate) fn verify(
        &mut self,
        m: &MaterialRef,
        alg: SigningAlgorithm,
        curve: Option<Curve>,
        signed: Signed,
        data: &[u8],
        signature: &[u8],
    ) -> Result<bool, HsmError> {
        let raw;
        let signature = match (alg.scheme(), curve) {
            (SignatureScheme::Ecdsa, Some(c)) => match signature::ecdsa_from_der(signature, c) {
                Some(r) => {
                    raw = r;
                    &raw[..]
                }
                None => return Ok(false),
            },
            _ => signature,
        };
        let key = self.part(m, Part::Public)?;
        let input = signature::sign_input(alg, signed, data, |t| self.mechanisms().offers(t));
        verdict(
            self.session()?
                .verify(&input.mechanism, key, &input.data, signature),
        )
    }

    /// HMAC of `data` under the secret key `m`.
    pub(crate) fn mac(
        &mut self,
        m: &MaterialRef,
        alg: MacAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let key = self.key(m)?;
        self.session()?
            .sign(&signature::mac_mechanism(alg), key, data)
            .map_err(HsmError::from_call)
    }

    /// Whether `mac` is the HMAC of `data` under `m`: computed by the token and compared
    /// here, in constant time. A token's own C_Verify may compare with memcmp (SoftHSM2
    /// does), which leaks how many leading bytes of a guess were right.
    pub(crate) fn verify_mac(
        &mut self,
        m: &MaterialRef,
        alg: MacAlgorithm,
        data: &[u8],
        mac: &[u8],
    ) -> Result<bool, HsmError> {
        use subtle::ConstantTimeEq;
        let want = Zeroizing::new(self.mac(m, alg, data)?);
        Ok(want.len() == mac.len() && bool::from(want.as_slice().ct_eq(mac)))
    }

    /// The public half of `m` as DER SubjectPublicKeyInfo, read from the token.
    pub(crate) fn public_key(
        &mut self,
        m: &MaterialRef,
        kind: MaterialKind,
    ) -> Result<Vec<u8>, HsmError> {
        match kind {
            MaterialKind::Rsa(_) => self.rsa_public_key(m),
            MaterialKind::Ec(curve) => {
                let key = self.part(m, Part::Public)?;
                let attrs = self
                    .session()?
                    .get_attributes(key, &[AttributeType::EcPoint])
                    .map_err(HsmError::from_call)?;
                let raw = attrs
                    .into_iter()
                    .find_map(|a| match a {
                        Attribute::EcPoint(p) => Some(p),
                        _ => None,
                    })
                    .unwrap_or_default();
                let point = signature::ec_point_attribute(&raw, curve)
                    .ok_or(HsmError::Malformed("EC public key"))?;
                Ok(signature::ec_spki(curve, &point))
            }
            MaterialKind::Aes256 | MaterialKind::Hmac(_) => {
                Err(HsmError::Malformed("public key (the key has none)"))
            }
        }
    }

    /// The public half of an RSA key `m` as DER SubjectPublicKeyInfo.
    fn rsa_public_key(&mut self, m: &MaterialRef) -> Result<Vec<u8>, HsmError> {
        let key = self.part(m, Part::Public)?;
        rsa_spki_of(self.session()?, key)
    }

    /// RSAES-OAEP decryption with the private half of `m` (MGF1 with the same hash,
    /// no label, as AWS). The token does the private-key operation; where it offers raw
    /// RSA (CKM_RSA_X_509) the OAEP decoding is p11kms's (`oaep`): one constant-time
    /// path and one error for every bad ciphertext, whatever the token. Tokens answer a
    /// failed decoding in their own ways (SoftHSM2 CKR_GENERAL_ERROR, kryoptic
    /// CKR_DEVICE_ERROR, which would read as a lost session), and SoftHSM2's OAEP takes
    /// SHA-1 only. A token without raw RSA gets CKM_RSA_PKCS_OAEP.
    pub(crate) fn rsa_decrypt(
        &mut self,
        m: &MaterialRef,
        hash: OaepHash,
        modulus_len: usize,
        ciphertext: &[u8],
    ) -> Result<Plaintext, HsmError> {
        let key = self.part(m, Part::Private)?;
        if self.mechanisms().raw_rsa() {
            match self
                .session()?
                .decrypt(&Mechanism::RsaX509, key, ciphertext)
            {
                Ok(raw) => {
                    let raw = Zeroizing::new(raw);
                    // CKM_RSA_X_509 may drop leading zero bytes; decoding needs all k.
                    let mut em = Zeroizing::new(vec![0u8; modulus_len.saturating_sub(raw.len())]);
                    em.extend_from_slice(&raw);
                    return super::oaep::decode(&em, hash)
                        .map(Plaintext::new)
                        .ok_or(HsmError::BadInput("ciphertext"));
                }
                // Raw RSA refuses only a ciphertext not below the modulus.
                Err(Error::Pkcs11(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::DataInvalid
                    | RvError::DataLenRange,
                    _,
                )) => return Err(HsmError::BadInput("ciphertext")),
                Err(e) => {
                    let e = HsmError::from_call(e);
                    if e.is_session_lost() || e.needs_reinit() {
                        return Err(e);
                    }
                    // Tokens answer a ciphertext not below the modulus with generic
                    // codes (SoftHSM2: CKR_GENERAL_ERROR), and kryoptic answers every
                    // raw RSA decryption so. Which one this is, a known-good input
                    // tells: the integer 2 is below every modulus. Only if that fails
                    // too does the token refuse raw RSA (OAEP from then on); otherwise
                    // the caller's ciphertext was bad.
                    let mut two = vec![0u8; modulus_len];
                    if let Some(last) = two.last_mut() {
                        *last = 2;
                    }
                    match self.session()?.decrypt(&Mechanism::RsaX509, key, &two) {
                        Ok(out) => {
                            drop(Zeroizing::new(out));
                            return Err(HsmError::BadInput("ciphertext"));
                        }
                        Err(_) => self.mechanisms().refuse_raw_rsa(&e),
                    }
                }
            }
        }
        self.session()?
            .decrypt(&hash.mechanism(), key, ciphertext)
            .map(Plaintext::new)
            .map_err(oaep_failure)
    }

    /// RSAES-OAEP encryption with the public half of `m`: in the token when its OAEP
    /// takes the hash, else with the token's public key in software (a public-key
    /// operation: nothing secret is involved).
    pub(crate) fn rsa_encrypt(
        &mut self,
        m: &MaterialRef,
        hash: OaepHash,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let key = self.part(m, Part::Public)?;
        match self.session()?.encrypt(&hash.mechanism(), key, plaintext) {
            Ok(c) => return Ok(c),
            Err(Error::Pkcs11(
                RvError::ArgumentsBad | RvError::MechanismParamInvalid | RvError::MechanismInvalid,
                cryptoki::context::Function::EncryptInit,
            )) => {}
            Err(e) => return Err(HsmError::from_input(e, "plaintext")),
        }
        let spki = self.rsa_public_key(m)?;
        software_oaep_encrypt(&spki, hash, plaintext)
    }

    /// ECDH (CKM_ECDH1_DERIVE, no KDF) between the private half of `m` and a peer's
    /// uncompressed point: the shared secret, the x coordinate of the shared point. The
    /// token derives it as a private session object readable only for this call, then
    /// destroys it.
    pub(crate) fn derive_shared_secret(
        &mut self,
        m: &MaterialRef,
        curve: Curve,
        peer_point: &[u8],
    ) -> Result<Plaintext, HsmError> {
        let key = self.part(m, Part::Private)?;
        let (value, destroyed) = ecdh(self.session()?, key, curve, peer_point);
        if !destroyed {
            // A readable secret must not outlive the call: the session goes, and every
            // session object with it.
            self.reset();
        }
        value
    }
}

/// ECDH of the private key `key` with `peer_point` (uncompressed) into a private
/// session secret, read out and destroyed at once; the flag says whether it was
/// destroyed (when not, the caller must close the session).
pub(super) fn ecdh(
    s: &cryptoki::session::Session,
    key: cryptoki::object::ObjectHandle,
    curve: Curve,
    peer_point: &[u8],
) -> (Result<Plaintext, HsmError>, bool) {
    use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
    use cryptoki::object::KeyType;
    let params = Ecdh1DeriveParams::new(EcKdf::null(), peer_point);
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(Ulong::from(curve.field_len() as u64)),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    let derived = match s.derive_key(&Mechanism::Ecdh1Derive(params), key, &template) {
        Ok(h) => h,
        Err(e) => return (Err(HsmError::from_input(e, "public key")), true),
    };
    // cryptoki copies CKA_VALUE out of buffers it does not wipe: a copy of the
    // secret may stay in freed memory until reused (no safe way around it here).
    let value = s.get_attributes(derived, &[AttributeType::Value]);
    let destroyed = match s.destroy_object(derived) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "could not destroy a derived shared secret; closing the session");
            false
        }
    };
    let value = value.map_err(HsmError::from_call).and_then(|attrs| {
        attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(Plaintext::new(v)),
                _ => None,
            })
            .ok_or(HsmError::Malformed("derived secret"))
    });
    (value, destroyed)
}

/// DER SubjectPublicKeyInfo of an RSA key object, from its CKA_MODULUS and
/// CKA_PUBLIC_EXPONENT (public attributes of a private key too).
pub(super) fn rsa_spki_of(
    s: &cryptoki::session::Session,
    public: cryptoki::object::ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    let (mut n, mut e) = (None, None);
    for a in s
        .get_attributes(
            public,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )
        .map_err(HsmError::from_call)?
    {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            _ => {}
        }
    }
    match (n, e) {
        (Some(n), Some(e)) => Ok(signature::rsa_spki(&n, &e)),
        _ => Err(HsmError::Malformed("RSA public key")),
    }
}

/// RSA-OAEP encryption with aws-lc, for tokens whose OAEP takes SHA-1 only.
pub(super) fn software_oaep_encrypt(
    spki: &[u8],
    hash: OaepHash,
    plaintext: &[u8],
) -> Result<Vec<u8>, HsmError> {
    use aws_lc_rs::rsa::{
        OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
    };
    let alg = match hash {
        OaepHash::Sha1 => &OAEP_SHA1_MGF1SHA1,
        OaepHash::Sha256 => &OAEP_SHA256_MGF1SHA256,
    };
    let key = PublicEncryptingKey::from_der(spki)
        .ok()
        .and_then(|k| OaepPublicEncryptingKey::new(k).ok())
        .ok_or(HsmError::Malformed("RSA public key"))?;
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(alg, plaintext, &mut out, None)
        .map_err(|_| HsmError::BadInput("plaintext"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// A failed CKM_RSA_PKCS_OAEP decryption: a ciphertext that does not decode under this
/// key and hash. Tokens answer it with generic codes too, for decoding fails inside the
/// mechanism (SoftHSM2: CKR_GENERAL_ERROR; kryoptic: CKR_DEVICE_ERROR, from C_Decrypt
/// after C_DecryptInit took the key): the session and key are fine, and reading it as
/// a lost session would let bad ciphertexts mark the token down.
fn oaep_failure(e: Error) -> HsmError {
    use cryptoki::context::Function;
    match e {
        Error::Pkcs11(
            RvError::GeneralError | RvError::FunctionFailed | RvError::DeviceError,
            Function::Decrypt,
        ) => HsmError::BadInput("ciphertext"),
        e => HsmError::from_input(e, "ciphertext"),
    }
}

/// A C_Verify answer as a verdict: a signature that does not match (or has the wrong
/// length) is Ok(false), not an error.
fn verdict(res: Result<(), Error>) -> Result<bool, HsmError> {
    match res {
        Ok(()) => Ok(true),
        Err(Error::Pkcs11(RvError::SignatureInvalid | RvError::SignatureLenRange, _)) => Ok(false),
        Err(e) => Err(HsmError::from_input(e, "message")),
    }
}
