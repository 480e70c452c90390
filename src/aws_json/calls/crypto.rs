//! Cryptographic calls: Encrypt, Decrypt, the data keys, ReEncrypt, GenerateRandom.

use std::sync::Arc;

use super::{context, key_id_of, Call};
use crate::aws_json::shapes::*;
use crate::vault::{
    Caller, DataKeyInput, DecryptInput, EncryptInput, KmsError, ReEncryptInput, Vault,
};

impl Call for EncryptRequest {
    type Input = EncryptInput;
    type Output = EncryptResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<EncryptInput, KmsError> {
        no_dry_run(self.dry_run)?;
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let plaintext = r.need("plaintext", self.plaintext);
        r.check()?;
        Ok(EncryptInput {
            key_id,
            plaintext: plaintext.0,
            context: context("EncryptionContext", self.encryption_context)?,
            grant_tokens: self.grant_tokens.unwrap_or_default(),
            algorithm: self.encryption_algorithm.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: EncryptInput,
    ) -> Result<Self::Output, KmsError> {
        let out = vault.encrypt(&caller, input).await?;
        Ok(EncryptResponse {
            ciphertext_blob: out.ciphertext_blob,
            key_id: out.key_arn.to_string(),
            encryption_algorithm: out.encryption_algorithm.into(),
        })
    }
}

impl Call for DecryptRequest {
    type Input = DecryptInput;
    type Output = DecryptResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<DecryptInput, KmsError> {
        no_dry_run(self.dry_run)?;
        refuse("Recipient", &self.recipient)?;
        let mut r = Required::default();
        // Optional in botocore's model, but p11kms has no other way to name what to
        // decrypt (AWS's is a Recipient's), so its absence is AWS's null-member error.
        let blob = r.need("ciphertextBlob", self.ciphertext_blob);
        r.check()?;
        Ok(DecryptInput {
            ciphertext_blob: blob.0,
            context: context("EncryptionContext", self.encryption_context)?,
            grant_tokens: self.grant_tokens.unwrap_or_default(),
            key_id: self.key_id.unwrap_or_default(),
            algorithm: self.encryption_algorithm.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: DecryptInput,
    ) -> Result<Self::Output, KmsError> {
        let out = vault.decrypt(&caller, input).await?;
        Ok(DecryptResponse {
            key_id: out.key_arn.to_string(),
            plaintext: out.plaintext,
            encryption_algorithm: out.encryption_algorithm.into(),
        })
    }
}

/// GenerateDataKey's and GenerateDataKeyWithoutPlaintext's common check.
fn data_key_input(req: GenerateDataKeyRequest) -> Result<DataKeyInput, KmsError> {
    no_dry_run(req.dry_run)?;
    refuse("Recipient", &req.recipient)?;
    let key_id = Required::one("keyId", req.key_id)?;
    Ok(DataKeyInput {
        key_id,
        context: context("EncryptionContext", req.encryption_context)?,
        number_of_bytes: req.number_of_bytes,
        key_spec: req.key_spec.unwrap_or_default(),
        grant_tokens: req.grant_tokens.unwrap_or_default(),
    })
}

impl Call for GenerateDataKeyRequest {
    type Input = DataKeyInput;
    type Output = GenerateDataKeyResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<DataKeyInput, KmsError> {
        data_key_input(self)
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: DataKeyInput,
    ) -> Result<Self::Output, KmsError> {
        let out = vault.generate_data_key(&caller, input, true).await?;
        Ok(GenerateDataKeyResponse {
            ciphertext_blob: out.ciphertext_blob,
            // Always present with_plaintext; an empty one would be a vault bug, and
            // AWS's shape has the member either way.
            plaintext: Some(out.plaintext.unwrap_or_default()),
            key_id: out.key_arn.to_string(),
        })
    }
}

impl Call for GenerateDataKeyWithoutPlaintextRequest {
    type Input = DataKeyInput;
    type Output = GenerateDataKeyResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.0.key_id)
    }

    fn validate(self) -> Result<DataKeyInput, KmsError> {
        // AWS's shape has no Recipient here; an SDK never sends one.
        data_key_input(self.0)
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: DataKeyInput,
    ) -> Result<Self::Output, KmsError> {
        let out = vault.generate_data_key(&caller, input, false).await?;
        Ok(GenerateDataKeyResponse {
            ciphertext_blob: out.ciphertext_blob,
            plaintext: None,
            key_id: out.key_arn.to_string(),
        })
    }
}

impl Call for ReEncryptRequest {
    type Input = ReEncryptInput;
    type Output = ReEncryptResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.destination_key_id)
    }

    fn validate(self) -> Result<ReEncryptInput, KmsError> {
        no_dry_run(self.dry_run)?;
        let mut r = Required::default();
        let blob = r.need("ciphertextBlob", self.ciphertext_blob);
        let destination_key_id = r.need("destinationKeyId", self.destination_key_id);
        r.check()?;
        Ok(ReEncryptInput {
            ciphertext_blob: blob.0,
            source_context: context("SourceEncryptionContext", self.source_encryption_context)?,
            source_key_id: self.source_key_id.unwrap_or_default(),
            destination_key_id,
            destination_context: context(
                "DestinationEncryptionContext",
                self.destination_encryption_context,
            )?,
            source_algorithm: self.source_encryption_algorithm.unwrap_or_default(),
            destination_algorithm: self.destination_encryption_algorithm.unwrap_or_default(),
            grant_tokens: self.grant_tokens.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: ReEncryptInput,
    ) -> Result<Self::Output, KmsError> {
        let out = vault.re_encrypt(&caller, input).await?;
        Ok(ReEncryptResponse {
            ciphertext_blob: out.ciphertext_blob,
            source_key_id: out.source_key_arn.to_string(),
            key_id: out.key_arn.to_string(),
            source_encryption_algorithm: out.source_algorithm.into(),
            destination_encryption_algorithm: out.destination_algorithm.into(),
        })
    }
}

impl Call for GenerateRandomRequest {
    type Input = Option<i32>;
    type Output = GenerateRandomResponse;

    fn validate(self) -> Result<Option<i32>, KmsError> {
        refuse("CustomKeyStoreId", &self.custom_key_store_id)?;
        refuse("Recipient", &self.recipient)?;
        Ok(self.number_of_bytes)
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        n: Option<i32>,
    ) -> Result<Self::Output, KmsError> {
        let plaintext = vault.generate_random(&caller, n).await?;
        Ok(GenerateRandomResponse { plaintext })
    }
}
