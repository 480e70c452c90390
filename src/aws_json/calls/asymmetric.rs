//! Asymmetric and HMAC calls: Sign, Verify, GetPublicKey, GenerateMac, VerifyMac,
//! DeriveSharedSecret.

use std::sync::Arc;

use super::{context, key_id_of, Call};
use crate::aws_json::shapes::*;
use crate::vault::{
    Caller, DataKeyPairInput, DeriveSharedSecretInput, KmsError, MacInput, SignInput, Vault,
};

impl Call for SignRequest {
    type Input = SignInput;
    type Output = SignResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<SignInput, KmsError> {
        no_dry_run(self.dry_run)?;
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let message = r.need("message", self.message);
        let signing_algorithm = r.need("signingAlgorithm", self.signing_algorithm);
        r.check()?;
        Ok(SignInput {
            key_id,
            message: message.0,
            message_type: self.message_type.unwrap_or_default(),
            signing_algorithm,
            grant_tokens: self.grant_tokens.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: SignInput,
    ) -> Result<SignResponse, KmsError> {
        let out = vault.sign(&caller, input).await?;
        Ok(SignResponse {
            key_id: out.key_arn.to_string(),
            signature: out.signature,
            signing_algorithm: out.signing_algorithm.as_str().into(),
        })
    }
}

impl Call for VerifyRequest {
    type Input = (SignInput, Vec<u8>);
    type Output = VerifyResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        no_dry_run(self.dry_run)?;
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let message = r.need("message", self.message);
        let signature = r.need("signature", self.signature);
        let signing_algorithm = r.need("signingAlgorithm", self.signing_algorithm);
        r.check()?;
        Ok((
            SignInput {
                key_id,
                message: message.0,
                message_type: self.message_type.unwrap_or_default(),
                signing_algorithm,
                grant_tokens: self.grant_tokens.unwrap_or_default(),
            },
            signature.0,
        ))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (input, signature): Self::Input,
    ) -> Result<VerifyResponse, KmsError> {
        let out = vault.verify(&caller, input, signature).await?;
        Ok(VerifyResponse {
            key_id: out.key_arn.to_string(),
            signature_valid: true,
            signing_algorithm: out.signing_algorithm.as_str().into(),
        })
    }
}

impl Call for GetPublicKeyRequest {
    type Input = (String, Vec<String>);
    type Output = GetPublicKeyResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let key_id = Required::one("keyId", self.key_id)?;
        Ok((key_id, self.grant_tokens.unwrap_or_default()))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key_id, grant_tokens): Self::Input,
    ) -> Result<GetPublicKeyResponse, KmsError> {
        let out = vault
            .get_public_key(&caller, &key_id, &grant_tokens)
            .await?;
        let owned = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
        Ok(GetPublicKeyResponse {
            key_id: out.key_arn.to_string(),
            public_key: out.public_key,
            customer_master_key_spec: out.key_spec.as_str().into(),
            key_spec: out.key_spec.as_str().into(),
            key_usage: out.key_usage.as_str().into(),
            encryption_algorithms: owned(out.encryption_algorithms),
            signing_algorithms: owned(out.signing_algorithms),
            key_agreement_algorithms: owned(out.key_agreement_algorithms),
        })
    }
}

impl Call for GenerateMacRequest {
    type Input = MacInput;
    type Output = GenerateMacResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<MacInput, KmsError> {
        no_dry_run(self.dry_run)?;
        let mut r = Required::default();
        let message = r.need("message", self.message);
        let key_id = r.need("keyId", self.key_id);
        let mac_algorithm = r.need("macAlgorithm", self.mac_algorithm);
        r.check()?;
        Ok(MacInput {
            key_id,
            message: message.0,
            mac_algorithm,
            grant_tokens: self.grant_tokens.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: MacInput,
    ) -> Result<GenerateMacResponse, KmsError> {
        let out = vault.generate_mac(&caller, input).await?;
        Ok(GenerateMacResponse {
            mac: out.mac,
            mac_algorithm: out.mac_algorithm.as_str().into(),
            key_id: out.key_arn.to_string(),
        })
    }
}

impl Call for VerifyMacRequest {
    type Input = (MacInput, Vec<u8>);
    type Output = VerifyMacResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        no_dry_run(self.dry_run)?;
        let mut r = Required::default();
        let message = r.need("message", self.message);
        let key_id = r.need("keyId", self.key_id);
        let mac_algorithm = r.need("macAlgorithm", self.mac_algorithm);
        let mac = r.need("mac", self.mac);
        r.check()?;
        Ok((
            MacInput {
                key_id,
                message: message.0,
                mac_algorithm,
                grant_tokens: self.grant_tokens.unwrap_or_default(),
            },
            mac.0,
        ))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (input, mac): Self::Input,
    ) -> Result<VerifyMacResponse, KmsError> {
        let out = vault.verify_mac(&caller, input, mac).await?;
        Ok(VerifyMacResponse {
            key_id: out.key_arn.to_string(),
            mac_valid: true,
            mac_algorithm: out.mac_algorithm.as_str().into(),
        })
    }
}

impl Call for DeriveSharedSecretRequest {
    type Input = DeriveSharedSecretInput;
    type Output = DeriveSharedSecretResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<DeriveSharedSecretInput, KmsError> {
        no_dry_run(self.dry_run)?;
        refuse("Recipient", &self.recipient)?;
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let key_agreement_algorithm = r.need("keyAgreementAlgorithm", self.key_agreement_algorithm);
        let public_key = r.need("publicKey", self.public_key);
        r.check()?;
        Ok(DeriveSharedSecretInput {
            key_id,
            key_agreement_algorithm,
            public_key: public_key.0,
            grant_tokens: self.grant_tokens.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: DeriveSharedSecretInput,
    ) -> Result<DeriveSharedSecretResponse, KmsError> {
        let out = vault.derive_shared_secret(&caller, input).await?;
        Ok(DeriveSharedSecretResponse {
            key_id: out.key_arn.to_string(),
            shared_secret: out.shared_secret,
            key_agreement_algorithm: "ECDH".into(),
            key_origin: out.key_origin.as_str().into(),
        })
    }
}

/// Both data key pair calls' check.
fn data_key_pair_input(req: GenerateDataKeyPairRequest) -> Result<DataKeyPairInput, KmsError> {
    no_dry_run(req.dry_run)?;
    refuse("Recipient", &req.recipient)?;
    let mut r = Required::default();
    let key_id = r.need("keyId", req.key_id);
    let key_pair_spec = r.need("keyPairSpec", req.key_pair_spec);
    r.check()?;
    Ok(DataKeyPairInput {
        key_id,
        context: context("EncryptionContext", req.encryption_context)?,
        key_pair_spec,
        grant_tokens: req.grant_tokens.unwrap_or_default(),
    })
}

async fn data_key_pair(
    vault: Arc<Vault>,
    caller: Caller,
    input: DataKeyPairInput,
    with_plaintext: bool,
) -> Result<GenerateDataKeyPairResponse, KmsError> {
    let out = vault
        .generate_data_key_pair(&caller, input, with_plaintext)
        .await?;
    Ok(GenerateDataKeyPairResponse {
        private_key_ciphertext_blob: out.private_key_ciphertext_blob,
        private_key_plaintext: out.private_key_plaintext,
        public_key: out.public_key,
        key_id: out.key_arn.to_string(),
        key_pair_spec: out.key_pair_spec.into(),
    })
}

impl Call for GenerateDataKeyPairRequest {
    type Input = DataKeyPairInput;
    type Output = GenerateDataKeyPairResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<DataKeyPairInput, KmsError> {
        data_key_pair_input(self)
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: DataKeyPairInput,
    ) -> Result<GenerateDataKeyPairResponse, KmsError> {
        data_key_pair(vault, caller, input, true).await
    }
}

impl Call for GenerateDataKeyPairWithoutPlaintextRequest {
    type Input = DataKeyPairInput;
    type Output = GenerateDataKeyPairResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.0.key_id)
    }

    fn validate(self) -> Result<DataKeyPairInput, KmsError> {
        data_key_pair_input(self.0)
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: DataKeyPairInput,
    ) -> Result<GenerateDataKeyPairResponse, KmsError> {
        data_key_pair(vault, caller, input, false).await
    }
}
