//! DeriveSharedSecret: ECDH between the private half of a KEY_AGREEMENT key in the HSM
//! and a peer's public key.

use super::authorize::Authz;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{KeyArn, KeyUsage, MaterialKind, Origin, Plaintext};

/// AWS: PublicKey is 1 to 8192 bytes.
const MAX_PUBLIC_KEY: usize = 8192;

/// DeriveSharedSecret parameters.
#[derive(Debug, Default)]
pub struct DeriveSharedSecretInput {
    /// Key id, key ARN, alias name or alias ARN.
    pub key_id: String,
    /// ECDH.
    pub key_agreement_algorithm: String,
    /// The peer's public key, DER SubjectPublicKeyInfo on the key's curve.
    pub public_key: Vec<u8>,
    /// Tokens of grants the caller relies on.
    pub grant_tokens: Vec<String>,
}

/// DeriveSharedSecret's result.
#[derive(Debug)]
pub struct DeriveSharedSecretOutput {
    /// The key used.
    pub key_arn: KeyArn,
    /// The raw shared secret (the x coordinate of the shared point).
    pub shared_secret: Plaintext,
    /// The key's origin.
    pub key_origin: Origin,
}

impl Vault {
    /// DeriveSharedSecret.
    pub async fn derive_shared_secret(
        &self,
        caller: &Caller,
        input: DeriveSharedSecretInput,
    ) -> Result<DeriveSharedSecretOutput, KmsError> {
        match input.key_agreement_algorithm.as_str() {
            "ECDH" => {}
            "" => return Err(KmsError::validation("KeyAgreementAlgorithm is required")),
            _ => return Err(KmsError::validation("KeyAgreementAlgorithm must be ECDH")),
        }
        if input.public_key.is_empty() || input.public_key.len() > MAX_PUBLIC_KEY {
            return Err(KmsError::validation(format!(
                "PublicKey must be between 1 and {MAX_PUBLIC_KEY} bytes"
            )));
        }
        self.check_grant_tokens(&input.grant_tokens)?;
        let key = self.resolve(caller, &input.key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(
            caller,
            Authz::key(Action::DERIVE_SHARED_SECRET, &key)
                .requested_as(&input.key_id)
                .with("kms:KeyAgreementAlgorithm", "ECDH"),
        )
        .await?;
        key.check_usable(&arn)?;
        let (spec, usage, origin) = key.kind();
        let curve = match (spec.material(), usage) {
            (MaterialKind::Ec(c), KeyUsage::KeyAgreement) => c,
            _ => {
                return Err(KmsError::InvalidKeyUsage(format!(
                    "{arn} has KeyUsage {}; DeriveSharedSecret needs KEY_AGREEMENT",
                    usage.as_str()
                )))
            }
        };
        let point = crate::hsm::ec_point_from_spki(&input.public_key, curve)
            .filter(|p| crate::hsm::ec_point_on_curve(curve, p))
            .ok_or_else(|| {
            KmsError::validation(format!(
                "PublicKey must be a DER SubjectPublicKeyInfo of an uncompressed point on the key's curve ({}), and the point must lie on it",
                spec.as_str()
            ))
        })?;
        let shared_secret = self
            .hsm
            .derive_shared_secret(key.material_ref(key.current_version()), curve, point)
            .await?;
        Ok(DeriveSharedSecretOutput {
            key_arn: arn,
            shared_secret,
            key_origin: origin,
        })
    }
}
