//! The p11kms keyring: data keys come from, and go back to, the daemon. A generator key
//! makes the data key (GenerateDataKey); each extra key encrypts the same data key
//! (Encrypt), so that any of them can decrypt the message alone, e.g. one key per site.
//!
//! Encrypted data key: provider id "p11kms", provider info = the key ARN the daemon
//! answered with, ciphertext = the daemon's ciphertext blob. The message's whole
//! encryption context goes with every call, so key policies and grants see it.
//!
//! On decrypt it also reads the encrypted data keys of the AWS Encryption SDK's AWS KMS
//! keyring (provider id "aws-kms", the same three fields): a message another SDK wrote
//! through p11kms's AWS JSON listener holds p11kms ciphertext blobs under that id.

use std::collections::{BTreeMap, HashMap};

use super::Keyring;
use crate::client::envelope::suite::DATA_KEY_LEN;
use crate::client::envelope::{
    BoxFuture, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials, EnvelopeError,
};
use crate::client::{describe_status, KmsClient};
use crate::domain::Plaintext;
use crate::proto;

/// The provider id of p11kms encrypted data keys.
pub const PROVIDER_ID: &str = "p11kms";

/// The provider id the AWS Encryption SDKs' AWS KMS keyrings write.
const AWS_KMS_PROVIDER_ID: &str = "aws-kms";

/// A keyring over p11kms keys.
#[derive(Clone)]
pub struct KmsKeyring {
    client: KmsClient,
    generator: Option<String>,
    keys: Vec<String>,
    grant_tokens: Vec<String>,
}

impl KmsKeyring {
    /// Encrypts under `generator` (key id, ARN or alias) and each of `extra`; decrypts
    /// only encrypted data keys of these keys (matched by ARN or key id).
    pub fn new(client: KmsClient, generator: impl Into<String>, extra: Vec<String>) -> Self {
        Self {
            client,
            generator: Some(generator.into()),
            keys: extra,
            grant_tokens: Vec::new(),
        }
    }

    /// A decrypt-only keyring that tries every p11kms encrypted data key, letting the
    /// daemon's policies decide.
    pub fn discovery(client: KmsClient) -> Self {
        Self {
            client,
            generator: None,
            keys: Vec::new(),
            grant_tokens: Vec::new(),
        }
    }

    /// Sends these grant tokens with every call.
    pub fn with_grant_tokens(mut self, tokens: Vec<String>) -> Self {
        self.grant_tokens = tokens;
        self
    }

    /// Whether this keyring may try an encrypted data key of `arn`.
    fn accepts(&self, arn: &str) -> bool {
        if self.generator.is_none() && self.keys.is_empty() {
            return true;
        }
        let key_id = arn.rsplit_once(":key/").map(|(_, id)| id);
        self.generator
            .iter()
            .chain(self.keys.iter())
            .any(|k| k == arn || Some(k.as_str()) == key_id)
    }

    async fn generate(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<(Plaintext, EncryptedDataKey), EnvelopeError> {
        let req = proto::GenerateDataKeyRequest {
            key_id: key_id.to_owned(),
            encryption_context: to_map(context),
            number_of_bytes: Some(DATA_KEY_LEN as i32),
            key_spec: String::new(),
            grant_tokens: self.grant_tokens.clone(),
        };
        let mut resp = self
            .client
            .clone()
            .generate_data_key(req)
            .await
            .map_err(|s| failed("GenerateDataKey", key_id, &s))?
            .into_inner();
        let key = Plaintext::new(std::mem::take(&mut resp.plaintext));
        if key.len() != DATA_KEY_LEN {
            return Err(EnvelopeError::BadKeyring(
                "the daemon returned a data key of the wrong length",
            ));
        }
        let edk = EncryptedDataKey {
            provider_id: PROVIDER_ID.to_owned(),
            provider_info: resp.key_id.as_bytes().to_vec(),
            ciphertext: std::mem::take(&mut resp.ciphertext_blob),
        };
        Ok((key, edk))
    }

    async fn wrap(
        &self,
        key_id: &str,
        data_key: &Plaintext,
        context: &BTreeMap<String, String>,
    ) -> Result<EncryptedDataKey, EnvelopeError> {
        let req = proto::EncryptRequest {
            key_id: key_id.to_owned(),
            plaintext: data_key.expose().to_vec(),
            encryption_context: to_map(context),
            grant_tokens: self.grant_tokens.clone(),
            encryption_algorithm: String::new(),
        };
        let resp = self
            .client
            .clone()
            .encrypt(req)
            .await
            .map_err(|s| failed("Encrypt", key_id, &s))?
            .into_inner();
        Ok(EncryptedDataKey {
            provider_id: PROVIDER_ID.to_owned(),
            provider_info: resp.key_id.into_bytes(),
            ciphertext: resp.ciphertext_blob,
        })
    }

    async fn unwrap(
        &self,
        arn: &str,
        edk: &EncryptedDataKey,
        context: &BTreeMap<String, String>,
    ) -> Result<Plaintext, EnvelopeError> {
        let req = proto::DecryptRequest {
            ciphertext_blob: edk.ciphertext.clone(),
            encryption_context: to_map(context),
            grant_tokens: self.grant_tokens.clone(),
            key_id: arn.to_owned(),
            encryption_algorithm: String::new(),
        };
        let mut resp = self
            .client
            .clone()
            .decrypt(req)
            .await
            .map_err(|s| failed("Decrypt", arn, &s))?
            .into_inner();
        let key = Plaintext::new(std::mem::take(&mut resp.plaintext));
        // The daemon must have used the key the data key names: anything else means the
        // provider info was swapped.
        if resp.key_id != arn || key.len() != DATA_KEY_LEN {
            return Err(EnvelopeError::KeyringFailed(format!(
                "Decrypt with {arn} answered for another key or with a key of the wrong length"
            )));
        }
        Ok(key)
    }
}

fn to_map(context: &BTreeMap<String, String>) -> HashMap<String, String> {
    context
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A failed call as a keyring error: operation, key and the daemon's AWS error name.
fn failed(op: &str, key_id: &str, status: &tonic::Status) -> EnvelopeError {
    EnvelopeError::KeyringFailed(format!("{op} with {key_id}: {}", describe_status(status)))
}

impl Keyring for KmsKeyring {
    fn on_encrypt(
        &self,
        mut materials: EncryptionMaterials,
    ) -> BoxFuture<'_, Result<EncryptionMaterials, EnvelopeError>> {
        Box::pin(async move {
            let generator = self.generator.as_deref().ok_or(EnvelopeError::BadKeyring(
                "a discovery keyring cannot encrypt",
            ))?;
            match &materials.data_key {
                None => {
                    let (key, edk) = self.generate(generator, &materials.context).await?;
                    materials.data_key = Some(key);
                    materials.edks.push(edk);
                }
                Some(key) => {
                    let edk = self.wrap(generator, key, &materials.context).await?;
                    materials.edks.push(edk);
                }
            }
            for key_id in &self.keys {
                let key = materials.key()?;
                let edk = self.wrap(key_id, key, &materials.context).await?;
                materials.edks.push(edk);
            }
            Ok(materials)
        })
    }

    fn on_decrypt<'a>(
        &'a self,
        mut materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> BoxFuture<'a, Result<DecryptionMaterials, EnvelopeError>> {
        Box::pin(async move {
            if materials.data_key.is_some() {
                return Ok(materials);
            }
            let mut failures = Vec::new();
            let ours = |e: &&EncryptedDataKey| {
                e.provider_id == PROVIDER_ID || e.provider_id == AWS_KMS_PROVIDER_ID
            };
            for edk in edks.iter().filter(ours) {
                let Ok(arn) = std::str::from_utf8(&edk.provider_info) else {
                    continue;
                };
                if !self.accepts(arn) {
                    continue;
                }
                match self.unwrap(arn, edk, &materials.context).await {
                    Ok(key) => {
                        materials.data_key = Some(key);
                        return Ok(materials);
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            if failures.is_empty() {
                Ok(materials)
            } else {
                Err(EnvelopeError::KeyringFailed(failures.join("; ")))
            }
        })
    }
}
