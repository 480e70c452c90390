//! GenerateMac and VerifyMac with an HMAC key in the HSM.

use super::authorize::Authz;
use super::keys::KeyEntry;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{KeyArn, KeyUsage, MacAlgorithm, Plaintext};

/// AWS: Message is 1 to 4096 bytes.
pub(crate) const MAX_MESSAGE: usize = 4096;

/// AWS: a MAC to verify is 1 to 6144 bytes.
pub(crate) const MAX_MAC: usize = 6144;

/// GenerateMac parameters (and VerifyMac's, with the MAC).
#[derive(Debug)]
pub struct MacInput {
    /// Key id, key ARN, alias name or alias ARN.
    pub key_id: String,
    /// The message (kept zeroized: it may be a secret being tagged).
    pub message: Plaintext,
    /// The key's MacAlgorithm.
    pub mac_algorithm: String,
    /// Tokens of grants the caller relies on.
    pub grant_tokens: Vec<String>,
}

/// GenerateMac's result (VerifyMac's has no `mac`).
#[derive(Debug)]
pub struct MacOutput {
    /// The key used.
    pub key_arn: KeyArn,
    /// The HMAC (empty for VerifyMac).
    pub mac: Vec<u8>,
    /// The algorithm used.
    pub mac_algorithm: MacAlgorithm,
}

impl Vault {
    /// The HMAC key a request names, authorized for `action`, usable, with `alg`.
    async fn mac_key(
        &self,
        caller: &Caller,
        action: Action,
        input: &MacInput,
    ) -> Result<(std::sync::Arc<KeyEntry>, KeyArn, MacAlgorithm), KmsError> {
        if input.message.is_empty() || input.message.len() > MAX_MESSAGE {
            return Err(KmsError::validation(format!(
                "Message must be between 1 and {MAX_MESSAGE} bytes"
            )));
        }
        if input.mac_algorithm.is_empty() {
            return Err(KmsError::validation("MacAlgorithm is required"));
        }
        let alg = MacAlgorithm::parse(&input.mac_algorithm).ok_or_else(|| {
            KmsError::validation(
                "MacAlgorithm must be HMAC_SHA_224, HMAC_SHA_256, HMAC_SHA_384 or HMAC_SHA_512",
            )
        })?;
        self.check_grant_tokens(&input.grant_tokens)?;
        let key = self.resolve(caller, &input.key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(
            caller,
            Authz::key(action, &key)
                .requested_as(&input.key_id)
                .with("kms:MacAlgorithm", alg.as_str()),
        )
        .await?;
        key.check_usable(&arn)?;
        let (spec, usage, _) = key.kind();
        if usage != KeyUsage::GenerateVerifyMac {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{arn} has KeyUsage {}; MACs need GENERATE_VERIFY_MAC",
                usage.as_str()
            )));
        }
        if spec.mac_algorithm() != Some(alg) {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{arn} ({}) does not support {}",
                spec.as_str(),
                alg.as_str()
            )));
        }
        Ok((key, arn, alg))
    }

    /// GenerateMac.
    pub async fn generate_mac(
        &self,
        caller: &Caller,
        input: MacInput,
    ) -> Result<MacOutput, KmsError> {
        let (key, arn, alg) = self.mac_key(caller, Action::GENERATE_MAC, &input).await?;
        let mac = self
            .hsm
            .mac(key.material_ref(key.current_version()), alg, input.message)
            .await?;
        Ok(MacOutput {
            key_arn: arn,
            mac,
            mac_algorithm: alg,
        })
    }

    /// VerifyMac: the token recomputes and compares.
    pub async fn verify_mac(
        &self,
        caller: &Caller,
        input: MacInput,
        mac: Vec<u8>,
    ) -> Result<MacOutput, KmsError> {
        if mac.is_empty() || mac.len() > MAX_MAC {
            return Err(KmsError::validation(format!(
                "Mac must be between 1 and {MAX_MAC} bytes"
            )));
        }
        let (key, arn, alg) = self.mac_key(caller, Action::VERIFY_MAC, &input).await?;
        let valid = self
            .hsm
            .verify_mac(
                key.material_ref(key.current_version()),
                alg,
                input.message,
                mac,
            )
            .await?;
        if !valid {
            return Err(KmsError::KmsInvalidMac(
                "the MAC does not verify for this key, MAC algorithm and message".into(),
            ));
        }
        Ok(MacOutput {
            key_arn: arn,
            mac: Vec::new(),
            mac_algorithm: alg,
        })
    }
}
