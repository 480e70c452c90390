//! From AWS's signing and MAC algorithms to PKCS#11 mechanisms, and the encodings that
//! differ between the two: ECDSA signatures (PKCS#11's r‖s, AWS's DER), PKCS#1 v1.5's
//! DigestInfo for a signature over a digest, and the public key as a DER
//! SubjectPublicKeyInfo built from the token's attributes.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::types::Ulong;

use crate::domain::{Curve, Hash, MacAlgorithm, SignatureScheme, SigningAlgorithm};

/// What the token signs or verifies: a mechanism and the bytes to give it.
pub(super) struct SignInput {
    pub(super) mechanism: Mechanism<'static>,
    pub(super) data: Vec<u8>,
}

/// What a Sign or Verify call is given: the message itself, or its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signed {
    /// The message, hashed in the token when it can (else by p11kms).
    Message,
    /// A digest as long as the algorithm's hash.
    Digest,
}

fn hash_mechanism(h: Hash) -> MechanismType {
    match h {
        Hash::Sha224 => MechanismType::SHA224,
        Hash::Sha256 => MechanismType::SHA256,
        Hash::Sha384 => MechanismType::SHA384,
        Hash::Sha512 => MechanismType::SHA512,
    }
}

fn mgf(h: Hash) -> PkcsMgfType {
    match h {
        Hash::Sha224 => PkcsMgfType::MGF1_SHA224,
        Hash::Sha256 => PkcsMgfType::MGF1_SHA256,
        Hash::Sha384 => PkcsMgfType::MGF1_SHA384,
        Hash::Sha512 => PkcsMgfType::MGF1_SHA512,
    }
}

/// The digest of `data` under `h`, computed by p11kms (for tokens without the
/// hash-and-sign mechanism).
pub(crate) fn digest(h: Hash, data: &[u8]) -> Vec<u8> {
    use aws_lc_rs::digest;
    let alg = match h {
        Hash::Sha224 => &digest::SHA224,
        Hash::Sha256 => &digest::SHA256,
        Hash::Sha384 => &digest::SHA384,
        Hash::Sha512 => &digest::SHA512,
    };
    digest::digest(alg, data).as_ref().to_vec()
}

/// The DER DigestInfo prefix (RFC 8017, 9.2 note 1) that PKCS#1 v1.5 signs before a
/// digest: CKM_RSA_PKCS signs exactly the bytes it is given.
pub(super) fn digest_info_prefix(h: Hash) -> &'static [u8] {
    match h {
        Hash::Sha224 => &[
            0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x04, 0x05, 0x00, 0x04, 0x1c,
        ],
        Hash::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        Hash::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        Hash::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    }
}

/// The mechanism that hashes and signs in one call, when PKCS#11 has one.
pub(super) fn combined(alg: SigningAlgorithm) -> Mechanism<'static> {
    let h = alg.hash();
    let pss = PkcsPssParams {
        hash_alg: hash_mechanism(h),
        mgf: mgf(h),
        s_len: Ulong::from(h.len() as u64),
    };
    match (alg.scheme(), h) {
        (SignatureScheme::RsaPkcs1, Hash::Sha384) => Mechanism::Sha384RsaPkcs,
        (SignatureScheme::RsaPkcs1, Hash::Sha512) => Mechanism::Sha512RsaPkcs,
        (SignatureScheme::RsaPkcs1, _) => Mechanism::Sha256RsaPkcs,
        (SignatureScheme::RsaPss, Hash::Sha384) => Mechanism::Sha384RsaPkcsPss(pss),
        (SignatureScheme::RsaPss, Hash::Sha512) => Mechanism::Sha512RsaPkcsPss(pss),
        (SignatureScheme::RsaPss, _) => Mechanism::Sha256RsaPkcsPss(pss),
        (SignatureScheme::Ecdsa, Hash::Sha384) => Mechanism::EcdsaSha384,
        (SignatureScheme::Ecdsa, Hash::Sha512) => Mechanism::EcdsaSha512,
        (SignatureScheme::Ecdsa, _) => Mechanism::EcdsaSha256,
    }
}

/// The mechanism that signs a digest it is given.
fn over_digest(alg: SigningAlgorithm, digest: &[u8]) -> SignInput {
    let h = alg.hash();
    match alg.scheme() {
        SignatureScheme::RsaPkcs1 => {
            let mut data = digest_info_prefix(h).to_vec();
            data.extend_from_slice(digest);
            SignInput {
                mechanism: Mechanism::RsaPkcs,
                data,
            }
        }
        SignatureScheme::RsaPss => SignInput {
            mechanism: Mechanism::RsaPkcsPss(PkcsPssParams {
                hash_alg: hash_mechanism(h),
                mgf: mgf(h),
                s_len: Ulong::from(h.len() as u64),
            }),
            data: digest.to_vec(),
        },
        SignatureScheme::Ecdsa => SignInput {
            mechanism: Mechanism::Ecdsa,
            data: digest.to_vec(),
        },
    }
}

/// What to give the token to sign or verify `data` with `alg`. `offers` says whether
/// the token has a mechanism: a message is hashed in the token when it offers the
/// hash-and-sign mechanism, and here otherwise.
pub(super) fn sign_input(
    alg: SigningAlgorithm,
    signed: Signed,
    data: &[u8],
    offers: impl Fn(MechanismType) -> bool,
) -> SignInput {
    match signed {
        Signed::Digest => over_digest(alg, data),
        Signed::Message => {
            let mechanism = combined(alg);
            if offers(mechanism.mechanism_type()) {
                SignInput {
                    mechanism,
                    data: data.to_vec(),
                }
            } else {
                over_digest(alg, &digest(alg.hash(), data))
            }
        }
    }
}

/// The HMAC mechanism of a MAC algorithm.
pub(super) fn mac_mechanism(alg: MacAlgorithm) -> Mechanism<'static> {
    match alg.hash() {
        Hash::Sha224 => Mechanism::Sha224Hmac,
        Hash::Sha256 => Mechanism::Sha256Hmac,
        Hash::Sha384 => Mechanism::Sha384Hmac,
        Hash::Sha512 => Mechanism::Sha512Hmac,
    }
}

/// PKCS#11's ECDSA signature r‖s as the DER `SEQUENCE { r INTEGER, s INTEGER }` that AWS
/// returns. None when the token's answer is not two equal halves.
pub(crate) fn ecdsa_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Some(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_bigint_bytes(r, true);
            w.next().write_bigint_bytes(s, true);
        })
    }))
}

/// A DER ECDSA signature as PKCS#11's r‖s for `curve`, each half left-padded to the
/// field length. None for anything that is not such a signature: strict DER, positive
/// integers that fit the field, no trailing bytes.
pub(crate) fn ecdsa_from_der(der: &[u8], curve: Curve) -> Option<Vec<u8>> {
    let n = curve.field_len();
    let (r, s) = yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let a = r.next().read_bigint_bytes()?;
            let b = r.next().read_bigint_bytes()?;
            Ok((a, b))
        })
    })
    .ok()?;
    let mut out = Vec::with_capacity(2 * n);
    for (bytes, positive) in [r, s] {
        // yasna gives the two's-complement bytes, a leading zero sign byte included:
        // dropped with the other leading zeros. Zero is not a valid r or s.
        let start = bytes.iter().position(|b| *b != 0)?;
        let bytes = bytes.get(start..)?;
        if !positive || bytes.len() > n {
            return None;
        }
        out.resize(out.len() + n - bytes.len(), 0);
        out.extend_from_slice(bytes);
    }
    Some(out)
}

/// rsaEncryption, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113_549, 1, 1, 1];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10_045, 2, 1];

/// An RSA public key as DER SubjectPublicKeyInfo (RFC 8017 A.1.1 inside RFC 5280's SPKI).
pub(crate) fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let key = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_bigint_bytes(modulus, true);
            w.next().write_bigint_bytes(exponent, true);
        })
    });
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&yasna::models::ObjectIdentifier::from_slice(RSA_ENCRYPTION));
                w.next().write_null();
            });
            w.next().write_bitvec_bytes(&key, key.len() * 8);
        })
    })
}

/// An EC public key (an uncompressed point) as DER SubjectPublicKeyInfo (RFC 5480).
pub(crate) fn ec_spki(curve: Curve, point: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&yasna::models::ObjectIdentifier::from_slice(EC_PUBLIC_KEY));
                w.next().write_der(curve.oid_der());
            });
            w.next().write_bitvec_bytes(point, point.len() * 8);
        })
    })
}

/// The uncompressed point of an EC SubjectPublicKeyInfo on `curve` (a peer's key for
/// DeriveSharedSecret). None when it is not one: another algorithm or curve, a
/// compressed or wrong-length point, trailing bytes.
pub(crate) fn ec_point_from_spki(der: &[u8], curve: Curve) -> Option<Vec<u8>> {
    let (alg, params, point) = yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let (alg, params) = r.next().read_sequence(|r| {
                let alg = r.next().read_oid()?;
                let params = r.next().read_der()?;
                Ok((alg, params))
            })?;
            let (point, bits) = r.next().read_bitvec_bytes()?;
            Ok((alg, params, (point, bits)))
        })
    })
    .ok()?;
    let (point, bits) = point;
    let want = 1 + 2 * curve.field_len();
    (alg.components().as_slice() == EC_PUBLIC_KEY
        && params == curve.oid_der()
        && bits == point.len() * 8
        && point.len() == want
        && point.first() == Some(&0x04))
    .then_some(point)
}

/// Whether `point` (uncompressed) is a point on `curve`, as aws-lc parses a peer's key
/// for ECDH: a point off the curve would give the token's derivation an invalid-curve
/// input. secp256k1 is never a KEY_AGREEMENT curve.
pub(crate) fn ec_point_on_curve(curve: Curve, point: &[u8]) -> bool {
    use aws_lc_rs::agreement::{
        ParsedPublicKey, UnparsedPublicKey, ECDH_P256, ECDH_P384, ECDH_P521,
    };
    let alg = match curve {
        Curve::P256 => &ECDH_P256,
        Curve::P384 => &ECDH_P384,
        Curve::P521 => &ECDH_P521,
        Curve::Secp256k1 => return false,
    };
    ParsedPublicKey::try_from(&UnparsedPublicKey::new(alg, point)).is_ok()
}

/// CKA_EC_POINT as an uncompressed point. PKCS#11 says the attribute is the DER OCTET
/// STRING holding the point; a few modules return the bare point; both are accepted.
pub(crate) fn ec_point_attribute(raw: &[u8], curve: Curve) -> Option<Vec<u8>> {
    let want = 1 + 2 * curve.field_len();
    if raw.len() == want && raw.first() == Some(&0x04) {
        return Some(raw.to_vec());
    }
    let inner = yasna::parse_der(raw, |r| r.read_bytes()).ok()?;
    (inner.len() == want && inner.first() == Some(&0x04)).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_convert_both_ways_with_high_bits_and_leading_zeros() {
        for curve in [Curve::P256, Curve::P384, Curve::P521] {
            let n = curve.field_len();
            let mut raw = vec![0u8; 2 * n];
            raw[0] = 0x00;
            raw[1] = 0x01;
            raw[n - 1] = 0x7f;
            raw[n] = 0xff; // s with its high bit set needs a sign byte in DER
            raw[2 * n - 1] = 0x02;
            let der = ecdsa_to_der(&raw).unwrap();
            assert_eq!(ecdsa_from_der(&der, curve).unwrap(), raw);
        }
    }

    #[test]
    fn malformed_ecdsa_signatures_are_refused() {
        let raw = vec![0x11u8; 64];
        let der = ecdsa_to_der(&raw).unwrap();
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(ecdsa_from_der(&trailing, Curve::P256).is_none());
        assert!(ecdsa_from_der(&der[..der.len() - 1], Curve::P256).is_none());
        assert!(ecdsa_from_der(&[], Curve::P256).is_none());
        // A P-384 signature is too long for P-256.
        let long = ecdsa_to_der(&[0x22u8; 96]).unwrap();
        assert!(ecdsa_from_der(&long, Curve::P256).is_none());
        // Zero r.
        let zero = ecdsa_to_der(&[&[0u8; 32][..], &[1u8; 32][..]].concat()).unwrap();
        assert!(ecdsa_from_der(&zero, Curve::P256).is_none());
    }

    #[test]
    fn ec_spki_round_trips_and_refuses_another_curve() {
        let mut point = vec![0x04];
        point.extend_from_slice(&[7u8; 64]);
        let spki = ec_spki(Curve::P256, &point);
        assert_eq!(ec_point_from_spki(&spki, Curve::P256).unwrap(), point);
        assert!(ec_point_from_spki(&spki, Curve::P384).is_none());
        assert!(ec_point_from_spki(&spki[..spki.len() - 1], Curve::P256).is_none());
        assert_eq!(
            ec_point_attribute(
                &yasna::construct_der(|w| w.write_bytes(&point)),
                Curve::P256
            )
            .unwrap(),
            point
        );
    }

    proptest::proptest! {
        #[test]
        fn der_parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = ecdsa_from_der(&bytes, Curve::P521);
            let _ = ec_point_from_spki(&bytes, Curve::P256);
            let _ = ec_point_attribute(&bytes, Curve::P384);
        }
    }
}
