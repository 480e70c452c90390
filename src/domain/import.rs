//! The vocabulary of importing key material (GetParametersForImport, ImportKeyMaterial):
//! wrapping algorithms, wrapping key specs and expiration models, with AWS's spellings,
//! and which wrapping algorithm may carry which key material.

use super::{KeySpec, MaterialKind};

aws_enum!(
    /// How key material is protected on its way into the HSM.
    pub(crate) WrappingAlgorithm {
        /// RSAES-OAEP with SHA-1 (hash and MGF1) straight over the material.
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        /// RSAES-OAEP with SHA-256 straight over the material.
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
        /// An ephemeral AES-256 key under RSAES-OAEP-SHA-1, then the material under that
        /// key with AES key wrap with padding (RFC 5649).
        RsaAesKeyWrapSha1 = "RSA_AES_KEY_WRAP_SHA_1",
        /// As RSA_AES_KEY_WRAP_SHA_1, with RSAES-OAEP-SHA-256.
        RsaAesKeyWrapSha256 = "RSA_AES_KEY_WRAP_SHA_256"
    }
);

aws_enum!(
    /// The size of the RSA wrapping key GetParametersForImport makes.
    pub(crate) WrappingKeySpec {
        /// RSA 2048.
        Rsa2048 = "RSA_2048",
        /// RSA 3072.
        Rsa3072 = "RSA_3072",
        /// RSA 4096.
        Rsa4096 = "RSA_4096"
    }
);

aws_enum!(
    /// Whether imported key material expires.
    pub ExpirationModel {
        /// It is destroyed at ValidTo.
        Expires = "KEY_MATERIAL_EXPIRES",
        /// It stays until deleted.
        DoesNotExpire = "KEY_MATERIAL_DOES_NOT_EXPIRE"
    }
);

/// Wrapping algorithms AWS had and no longer accepts, or has only in China Regions: a
/// valid request p11kms refuses as unsupported rather than as malformed.
pub(crate) const RETIRED_WRAPPING_ALGORITHMS: &[&str] = &["RSAES_PKCS1_V1_5", "SM2PKE"];

impl WrappingAlgorithm {
    /// Whether its RSAES-OAEP step hashes with SHA-256 (else SHA-1), for MGF1 too.
    pub(crate) fn oaep_sha256(self) -> bool {
        matches!(self, Self::RsaesOaepSha256 | Self::RsaAesKeyWrapSha256)
    }

    /// Whether the material travels under an ephemeral AES key (RFC 5649).
    pub(crate) fn uses_aes_key_wrap(self) -> bool {
        matches!(self, Self::RsaAesKeyWrapSha1 | Self::RsaAesKeyWrapSha256)
    }

    /// Why this algorithm cannot carry material of `spec` with a wrapping key of
    /// `wrapping`, as AWS refuses it; None when it can. RSA private keys are too long
    /// for RSAES-OAEP alone, and so is a P-521 private key for a 2048-bit wrapping key.
    pub(crate) fn refuses(self, spec: KeySpec, wrapping: WrappingKeySpec) -> Option<String> {
        if self.uses_aes_key_wrap() {
            return None;
        }
        match spec.material() {
            MaterialKind::Rsa(_) => Some(format!(
                "{} cannot wrap RSA private keys: use RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256",
                self.as_str()
            )),
            MaterialKind::Ec(_)
                if spec == KeySpec::EccNistP521 && wrapping == WrappingKeySpec::Rsa2048 =>
            {
                Some(format!(
                    "{} with an RSA_2048 wrapping key cannot wrap ECC_NIST_P521 key material: use a larger wrapping key or an RSA_AES_KEY_WRAP algorithm",
                    self.as_str()
                ))
            }
            _ => None,
        }
    }
}

impl WrappingKeySpec {
    /// The modulus length in bits.
    pub(crate) fn bits(self) -> u32 {
        match self {
            Self::Rsa2048 => 2048,
            Self::Rsa3072 => 3072,
            Self::Rsa4096 => 4096,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_material_needs_aes_key_wrap_and_p521_a_larger_key_for_oaep() {
        use WrappingAlgorithm as W;
        for alg in W::ALL {
            for spec in KeySpec::ALL {
                for wrapping in WrappingKeySpec::ALL {
                    let refused = alg.refuses(*spec, *wrapping).is_some();
                    let expected = !alg.uses_aes_key_wrap()
                        && (matches!(spec.material(), MaterialKind::Rsa(_))
                            || (*spec == KeySpec::EccNistP521
                                && *wrapping == WrappingKeySpec::Rsa2048));
                    assert_eq!(refused, expected, "{alg:?} {spec:?} {wrapping:?}");
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for a in WrappingAlgorithm::ALL {
            assert_eq!(WrappingAlgorithm::parse(a.as_str()), Some(*a));
        }
        assert_eq!(WrappingAlgorithm::parse("RSAES_PKCS1_V1_5"), None);
        assert_eq!(WrappingKeySpec::Rsa3072.bits(), 3072);
        assert_eq!(
            ExpirationModel::parse("KEY_MATERIAL_EXPIRES"),
            Some(ExpirationModel::Expires)
        );
    }
}
