//! Key specs, key usages and the algorithms each combination supports, as AWS KMS's key
//! spec reference lists them. The one place that says which spec may do what.

aws_enum!(
    /// What a key is for: one usage per key, fixed at creation.
    pub KeyUsage {
        /// Encrypt and decrypt (symmetric and RSA keys).
        EncryptDecrypt = "ENCRYPT_DECRYPT",
        /// Sign and verify (RSA and ECC keys).
        SignVerify = "SIGN_VERIFY",
        /// Generate and verify MACs (HMAC keys).
        GenerateVerifyMac = "GENERATE_VERIFY_MAC",
        /// Derive shared secrets (NIST ECC keys).
        KeyAgreement = "KEY_AGREEMENT",
    }
);

aws_enum!(
    /// The key's type. SYMMETRIC_DEFAULT is AES-256-GCM inside the HSM; the others are
    /// RSA and EC key pairs and HMAC secret keys, every private or secret part made in
    /// the token.
    pub KeySpec {
        /// AES-256-GCM.
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        /// RSA, 2048-bit modulus.
        Rsa2048 = "RSA_2048",
        /// RSA, 3072-bit modulus.
        Rsa3072 = "RSA_3072",
        /// RSA, 4096-bit modulus.
        Rsa4096 = "RSA_4096",
        /// NIST P-256 (secp256r1).
        EccNistP256 = "ECC_NIST_P256",
        /// NIST P-384 (secp384r1).
        EccNistP384 = "ECC_NIST_P384",
        /// NIST P-521 (secp521r1).
        EccNistP521 = "ECC_NIST_P521",
        /// secp256k1.
        EccSecgP256k1 = "ECC_SECG_P256K1",
        /// HMAC with SHA-224, a 224-bit key.
        Hmac224 = "HMAC_224",
        /// HMAC with SHA-256, a 256-bit key.
        Hmac256 = "HMAC_256",
        /// HMAC with SHA-384, a 384-bit key.
        Hmac384 = "HMAC_384",
        /// HMAC with SHA-512, a 512-bit key.
        Hmac512 = "HMAC_512",
    }
);

aws_enum!(
    /// A Sign/Verify algorithm.
    pub SigningAlgorithm {
        /// RSASSA-PSS with SHA-256 (MGF1 SHA-256, 32-byte salt).
        RsassaPssSha256 = "RSASSA_PSS_SHA_256",
        /// RSASSA-PSS with SHA-384.
        RsassaPssSha384 = "RSASSA_PSS_SHA_384",
        /// RSASSA-PSS with SHA-512.
        RsassaPssSha512 = "RSASSA_PSS_SHA_512",
        /// RSASSA-PKCS1-v1_5 with SHA-256.
        RsassaPkcs1V15Sha256 = "RSASSA_PKCS1_V1_5_SHA_256",
        /// RSASSA-PKCS1-v1_5 with SHA-384.
        RsassaPkcs1V15Sha384 = "RSASSA_PKCS1_V1_5_SHA_384",
        /// RSASSA-PKCS1-v1_5 with SHA-512.
        RsassaPkcs1V15Sha512 = "RSASSA_PKCS1_V1_5_SHA_512",
        /// ECDSA with SHA-256.
        EcdsaSha256 = "ECDSA_SHA_256",
        /// ECDSA with SHA-384.
        EcdsaSha384 = "ECDSA_SHA_384",
        /// ECDSA with SHA-512.
        EcdsaSha512 = "ECDSA_SHA_512",
    }
);

aws_enum!(
    /// A GenerateMac/VerifyMac algorithm.
    pub MacAlgorithm {
        /// HMAC-SHA-224.
        HmacSha224 = "HMAC_SHA_224",
        /// HMAC-SHA-256.
        HmacSha256 = "HMAC_SHA_256",
        /// HMAC-SHA-384.
        HmacSha384 = "HMAC_SHA_384",
        /// HMAC-SHA-512.
        HmacSha512 = "HMAC_SHA_512",
    }
);

aws_enum!(
    /// What a Sign or Verify request's Message is.
    pub(crate) MessageType {
        /// The message itself: hashed in the token (at most 4096 bytes).
        Raw = "RAW",
        /// A digest of the message, as long as the algorithm's hash.
        Digest = "DIGEST",
    }
);

/// A hash function the signing and MAC algorithms use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hash {
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// The digest length in bytes.
    pub fn len(self) -> usize {
        match self {
            Self::Sha224 => 28,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

/// The padding family of a signing algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// RSASSA-PSS, salt as long as the hash.
    RsaPss,
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1,
    /// ECDSA, DER-encoded (r, s) as AWS returns it.
    Ecdsa,
}

impl SigningAlgorithm {
    /// The hash the algorithm signs with.
    pub fn hash(self) -> Hash {
        match self {
            Self::RsassaPssSha256 | Self::RsassaPkcs1V15Sha256 | Self::EcdsaSha256 => Hash::Sha256,
            Self::RsassaPssSha384 | Self::RsassaPkcs1V15Sha384 | Self::EcdsaSha384 => Hash::Sha384,
            Self::RsassaPssSha512 | Self::RsassaPkcs1V15Sha512 | Self::EcdsaSha512 => Hash::Sha512,
        }
    }

    /// The padding family.
    pub fn scheme(self) -> SignatureScheme {
        match self {
            Self::RsassaPssSha256 | Self::RsassaPssSha384 | Self::RsassaPssSha512 => {
                SignatureScheme::RsaPss
            }
            Self::RsassaPkcs1V15Sha256
            | Self::RsassaPkcs1V15Sha384
            | Self::RsassaPkcs1V15Sha512 => SignatureScheme::RsaPkcs1,
            Self::EcdsaSha256 | Self::EcdsaSha384 | Self::EcdsaSha512 => SignatureScheme::Ecdsa,
        }
    }
}

impl MacAlgorithm {
    /// The hash the HMAC uses.
    pub fn hash(self) -> Hash {
        match self {
            Self::HmacSha224 => Hash::Sha224,
            Self::HmacSha256 => Hash::Sha256,
            Self::HmacSha384 => Hash::Sha384,
            Self::HmacSha512 => Hash::Sha512,
        }
    }
}

/// The RSA signing algorithms, every RSA size alike.
const RSA_SIGNING: &[SigningAlgorithm] = &[
    SigningAlgorithm::RsassaPssSha256,
    SigningAlgorithm::RsassaPssSha384,
    SigningAlgorithm::RsassaPssSha512,
    SigningAlgorithm::RsassaPkcs1V15Sha256,
    SigningAlgorithm::RsassaPkcs1V15Sha384,
    SigningAlgorithm::RsassaPkcs1V15Sha512,
];

/// The EC curves p11kms makes keys on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Curve {
    /// secp256r1.
    P256,
    /// secp384r1.
    P384,
    /// secp521r1.
    P521,
    /// secp256k1.
    Secp256k1,
}

impl Curve {
    /// The length in bytes of a field element (and of r and s in a signature).
    pub fn field_len(self) -> usize {
        match self {
            Self::P256 | Self::Secp256k1 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// The DER of the curve's object identifier (CKA_EC_PARAMS, SPKI parameters).
    pub fn oid_der(self) -> &'static [u8] {
        match self {
            // 1.2.840.10045.3.1.7
            Self::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            // 1.3.132.0.34
            Self::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            // 1.3.132.0.35
            Self::P521 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
            // 1.3.132.0.10
            Self::Secp256k1 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a],
        }
    }
}

/// What kind of object a spec's material is in the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaterialKind {
    /// An AES-256 secret key.
    Aes256,
    /// A generic secret of this many bytes, for HMAC.
    Hmac(usize),
    /// An RSA key pair with a modulus of this many bits.
    Rsa(usize),
    /// An EC key pair.
    Ec(Curve),
}

impl KeySpec {
    /// The usages AWS allows for this spec.
    pub fn usages(self) -> &'static [KeyUsage] {
        match self {
            Self::SymmetricDefault => &[KeyUsage::EncryptDecrypt],
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => {
                &[KeyUsage::EncryptDecrypt, KeyUsage::SignVerify]
            }
            Self::EccNistP256 | Self::EccNistP384 | Self::EccNistP521 => {
                &[KeyUsage::SignVerify, KeyUsage::KeyAgreement]
            }
            Self::EccSecgP256k1 => &[KeyUsage::SignVerify],
            Self::Hmac224 | Self::Hmac256 | Self::Hmac384 | Self::Hmac512 => {
                &[KeyUsage::GenerateVerifyMac]
            }
        }
    }

    /// What the token holds for a key of this spec.
    pub fn material(self) -> MaterialKind {
        match self {
            Self::SymmetricDefault => MaterialKind::Aes256,
            Self::Rsa2048 => MaterialKind::Rsa(2048),
            Self::Rsa3072 => MaterialKind::Rsa(3072),
            Self::Rsa4096 => MaterialKind::Rsa(4096),
            Self::EccNistP256 => MaterialKind::Ec(Curve::P256),
            Self::EccNistP384 => MaterialKind::Ec(Curve::P384),
            Self::EccNistP521 => MaterialKind::Ec(Curve::P521),
            Self::EccSecgP256k1 => MaterialKind::Ec(Curve::Secp256k1),
            Self::Hmac224 => MaterialKind::Hmac(28),
            Self::Hmac256 => MaterialKind::Hmac(32),
            Self::Hmac384 => MaterialKind::Hmac(48),
            Self::Hmac512 => MaterialKind::Hmac(64),
        }
    }

    /// Whether keys of this spec are the symmetric encryption keys (the only ones AWS
    /// rotates and makes data keys with).
    pub fn is_symmetric_encryption(self) -> bool {
        self == Self::SymmetricDefault
    }

    /// The EncryptionAlgorithms DescribeKey lists for a key of this spec and usage.
    pub fn encryption_algorithms(self, usage: KeyUsage) -> &'static [&'static str] {
        match (self.material(), usage) {
            (MaterialKind::Aes256, KeyUsage::EncryptDecrypt) => &["SYMMETRIC_DEFAULT"],
            (MaterialKind::Rsa(_), KeyUsage::EncryptDecrypt) => {
                &["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
            }
            _ => &[],
        }
    }

    /// The SigningAlgorithms of a key of this spec and usage.
    pub fn signing_algorithms(self, usage: KeyUsage) -> &'static [SigningAlgorithm] {
        if usage != KeyUsage::SignVerify {
            return &[];
        }
        match self.material() {
            MaterialKind::Rsa(_) => RSA_SIGNING,
            MaterialKind::Ec(Curve::P256 | Curve::Secp256k1) => &[SigningAlgorithm::EcdsaSha256],
            MaterialKind::Ec(Curve::P384) => &[SigningAlgorithm::EcdsaSha384],
            MaterialKind::Ec(Curve::P521) => &[SigningAlgorithm::EcdsaSha512],
            MaterialKind::Aes256 | MaterialKind::Hmac(_) => &[],
        }
    }

    /// The one MAC algorithm of an HMAC spec.
    pub fn mac_algorithm(self) -> Option<MacAlgorithm> {
        match self {
            Self::Hmac224 => Some(MacAlgorithm::HmacSha224),
            Self::Hmac256 => Some(MacAlgorithm::HmacSha256),
            Self::Hmac384 => Some(MacAlgorithm::HmacSha384),
            Self::Hmac512 => Some(MacAlgorithm::HmacSha512),
            _ => None,
        }
    }

    /// The KeyAgreementAlgorithms of a key of this spec and usage.
    pub fn key_agreement_algorithms(self, usage: KeyUsage) -> &'static [&'static str] {
        match (self.material(), usage) {
            // AWS: secp256k1 keys sign only.
            (MaterialKind::Ec(Curve::Secp256k1), _) => &[],
            (MaterialKind::Ec(_), KeyUsage::KeyAgreement) => &["ECDH"],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_lists_algorithms_for_each_of_its_usages_and_none_for_others() {
        for &spec in KeySpec::ALL {
            for &usage in KeyUsage::ALL {
                let count = spec.encryption_algorithms(usage).len()
                    + spec.signing_algorithms(usage).len()
                    + spec.key_agreement_algorithms(usage).len()
                    + usize::from(
                        usage == KeyUsage::GenerateVerifyMac && spec.mac_algorithm().is_some(),
                    );
                assert_eq!(
                    count > 0,
                    spec.usages().contains(&usage),
                    "{} {}",
                    spec.as_str(),
                    usage.as_str()
                );
            }
        }
    }

    #[test]
    fn ecdsa_hashes_follow_the_curve_as_aws() {
        let alg = |s: KeySpec| s.signing_algorithms(KeyUsage::SignVerify)[0];
        assert_eq!(alg(KeySpec::EccNistP256), SigningAlgorithm::EcdsaSha256);
        assert_eq!(alg(KeySpec::EccNistP384), SigningAlgorithm::EcdsaSha384);
        assert_eq!(alg(KeySpec::EccNistP521), SigningAlgorithm::EcdsaSha512);
        assert_eq!(alg(KeySpec::EccSecgP256k1), SigningAlgorithm::EcdsaSha256);
        assert_eq!(
            KeySpec::Rsa3072
                .signing_algorithms(KeyUsage::SignVerify)
                .len(),
            6
        );
    }
}
