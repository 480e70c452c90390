//! Cryptographic shapes: Encrypt, Decrypt, the data keys, ReEncrypt, GenerateRandom.
//! Answers that carry plaintext hold it as `Plaintext` (zeroized, length-only Debug)
//! and write it as base64 through a zeroizing buffer.

use serde::{Deserialize, Serialize};

use super::{Blob, SecretBlob, StringMap};
use crate::domain::Plaintext;

/// Encrypt.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct EncryptRequest {
    pub key_id: Option<String>,
    pub plaintext: Option<SecretBlob>,
    pub encryption_context: Option<StringMap>,
    pub grant_tokens: Option<Vec<String>>,
    pub encryption_algorithm: Option<String>,
    pub dry_run: Option<bool>,
}

/// Encrypt's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct EncryptResponse {
    #[serde(serialize_with = "super::blob")]
    pub ciphertext_blob: Vec<u8>,
    pub key_id: String,
    pub encryption_algorithm: String,
}

/// Decrypt.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct DecryptRequest {
    pub ciphertext_blob: Option<Blob>,
    pub encryption_context: Option<StringMap>,
    pub grant_tokens: Option<Vec<String>>,
    pub key_id: Option<String>,
    pub encryption_algorithm: Option<String>,
    pub recipient: Option<serde_json::Value>,
    pub dry_run: Option<bool>,
}

/// Decrypt's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct DecryptResponse {
    pub key_id: String,
    #[serde(serialize_with = "super::secret")]
    pub plaintext: Plaintext,
    pub encryption_algorithm: String,
}

/// GenerateDataKey and GenerateDataKeyWithoutPlaintext (which has no Recipient).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GenerateDataKeyRequest {
    pub key_id: Option<String>,
    pub encryption_context: Option<StringMap>,
    pub number_of_bytes: Option<i32>,
    pub key_spec: Option<String>,
    pub grant_tokens: Option<Vec<String>>,
    pub recipient: Option<serde_json::Value>,
    pub dry_run: Option<bool>,
}

/// GenerateDataKeyWithoutPlaintext: the same members as GenerateDataKey.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub(in crate::aws_json) struct GenerateDataKeyWithoutPlaintextRequest(pub GenerateDataKeyRequest);

/// GenerateDataKey's answer, and (without Plaintext) GenerateDataKeyWithoutPlaintext's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GenerateDataKeyResponse {
    #[serde(serialize_with = "super::blob")]
    pub ciphertext_blob: Vec<u8>,
    #[serde(
        serialize_with = "super::secret_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub plaintext: Option<Plaintext>,
    pub key_id: String,
}

/// ReEncrypt.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ReEncryptRequest {
    pub ciphertext_blob: Option<Blob>,
    pub source_encryption_context: Option<StringMap>,
    pub source_key_id: Option<String>,
    pub destination_key_id: Option<String>,
    pub destination_encryption_context: Option<StringMap>,
    pub source_encryption_algorithm: Option<String>,
    pub destination_encryption_algorithm: Option<String>,
    pub grant_tokens: Option<Vec<String>>,
    pub dry_run: Option<bool>,
}

/// ReEncrypt's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ReEncryptResponse {
    #[serde(serialize_with = "super::blob")]
    pub ciphertext_blob: Vec<u8>,
    pub source_key_id: String,
    pub key_id: String,
    pub source_encryption_algorithm: String,
    pub destination_encryption_algorithm: String,
}

/// GenerateRandom.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GenerateRandomRequest {
    pub number_of_bytes: Option<i32>,
    pub custom_key_store_id: Option<String>,
    pub recipient: Option<serde_json::Value>,
}

/// GenerateRandom's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GenerateRandomResponse {
    #[serde(serialize_with = "super::secret")]
    pub plaintext: Plaintext,
}
