//! GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext: an RSA or EC key pair for
//! use outside p11kms, its private key (PKCS#8 DER) encrypted under a symmetric KMS key
//! with the request's encryption context, exactly as a data key is.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;

use super::authorize::Authz;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{Curve, EncryptionContext, KeyArn, KeySpec, MaterialKind, Plaintext};

/// Parameters of both operations.
#[derive(Debug)]
pub struct DataKeyPairInput {
    /// The symmetric encryption key that encrypts the private key.
    pub key_id: String,
    /// Bound to the encrypted private key.
    pub context: EncryptionContext,
    /// RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521 or
    /// ECC_SECG_P256K1.
    pub key_pair_spec: String,
    /// Tokens of grants the caller relies on.
    pub grant_tokens: Vec<String>,
}

/// Result of both operations; `private_key_plaintext` is None for WithoutPlaintext.
#[derive(Debug)]
pub struct DataKeyPairOutput {
    /// The private key (PKCS#8 DER), encrypted under the KMS key.
    pub private_key_ciphertext_blob: Vec<u8>,
    /// The private key (PKCS#8 DER).
    pub private_key_plaintext: Option<Plaintext>,
    /// The public key (DER SubjectPublicKeyInfo).
    pub public_key: Vec<u8>,
    /// The KMS key.
    pub key_arn: KeyArn,
    /// The pair's spec.
    pub key_pair_spec: &'static str,
}

/// A pair of `spec` (an RSA or EC key spec), made by aws-lc: (PKCS#8 DER,
/// SubjectPublicKeyInfo DER).
fn generate(spec: KeySpec) -> Result<(Plaintext, Vec<u8>), KmsError> {
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    use aws_lc_rs::signature::{self as sig, EcdsaKeyPair};
    let failed = |_| KmsError::internal(std::io::Error::other("key pair generation failed"));
    let (private, public): (Vec<u8>, aws_lc_rs::encoding::PublicKeyX509Der<'static>) =
        match spec.material() {
            MaterialKind::Rsa(bits) => {
                let size = match bits {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    _ => return Err(KmsError::validation("KeyPairSpec has an unknown value")),
                };
                let pair = RsaKeyPair::generate(size).map_err(failed)?;
                let private: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                    pair.as_der().map_err(failed)?;
                let public = pair.public_key().as_der().map_err(failed)?;
                (private.as_ref().to_vec(), public)
            }
            MaterialKind::Ec(curve) => {
                let alg = match curve {
                    Curve::P256 => &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    Curve::P384 => &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
                    Curve::P521 => &sig::ECDSA_P521_SHA512_ASN1_SIGNING,
                    Curve::Secp256k1 => &sig::ECDSA_P256K1_SHA256_ASN1_SIGNING,
                };
                let pair = EcdsaKeyPair::generate(alg).map_err(failed)?;
                let private = pair.to_pkcs8v1().map_err(failed)?;
                let public = pair.public_key().as_der().map_err(failed)?;
                (private.as_ref().to_vec(), public)
            }
            MaterialKind::Aes256 | MaterialKind::Hmac(_) => {
                return Err(KmsError::validation("KeyPairSpec has an unknown value"))
            }
        };
    Ok((Plaintext::new(private), public.as_ref().to_vec()))
}

/// A KeyPairSpec: AWS spells them as the RSA and ECC key specs. UnsupportedOperation
/// for AWS's SM2.
fn key_pair_spec(s: &str) -> Result<KeySpec, KmsError> {
    match KeySpec::parse(s) {
        Some(spec) if matches!(spec.material(), MaterialKind::Rsa(_) | MaterialKind::Ec(_)) => {
            Ok(spec)
        }
        _ if s == "SM2" => Err(KmsError::UnsupportedOperation(
            "KeyPairSpec SM2 is not supported by p11kms".into(),
        )),
        _ if s.is_empty() => Err(KmsError::validation("KeyPairSpec is required")),
        _ => Err(KmsError::validation("KeyPairSpec has an unknown value")),
    }
}

impl Vault {
    /// GenerateDataKeyPair (with_plaintext) or GenerateDataKeyPairWithoutPlaintext.
    pub async fn generate_data_key_pair(
        &self,
        caller: &Caller,
        input: DataKeyPairInput,
        with_plaintext: bool,
    ) -> Result<DataKeyPairOutput, KmsError> {
        let spec = key_pair_spec(&input.key_pair_spec)?;
        self.check_grant_tokens(&input.grant_tokens)?;
        let action = if with_plaintext {
            Action::GENERATE_DATA_KEY_PAIR
        } else {
            Action::GENERATE_DATA_KEY_PAIR_WITHOUT_PLAINTEXT
        };
        let key = self.resolve(caller, &input.key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(
            caller,
            Authz::key(action, &key)
                .requested_as(&input.key_id)
                .with_context(&input.context)
                .with("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT")
                .with("kms:DataKeyPairSpec", spec.as_str()),
        )
        .await?;
        key.check_usable(&arn)?;
        key.check_symmetric_encryption(&arn)?;
        // RSA generation takes up to a second or two: off the runtime's threads.
        let (private, public_key) = tokio::task::spawn_blocking(move || generate(spec)).await??;
        let private_key_ciphertext_blob = self.seal(&key, &input.context, private.clone()).await?;
        Ok(DataKeyPairOutput {
            private_key_ciphertext_blob,
            private_key_plaintext: with_plaintext.then_some(private),
            public_key,
            key_arn: arn,
            key_pair_spec: spec.as_str(),
        })
    }
}
