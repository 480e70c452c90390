//! Shapes of the asymmetric and HMAC calls: Sign, Verify, GetPublicKey, GenerateMac,
//! VerifyMac, DeriveSharedSecret.

use serde::{Deserialize, Serialize};

use super::{Blob, SecretBlob};
use crate::domain::Plaintext;

/// Sign.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct SignRequest {
    pub key_id: Option<String>,
    pub message: Option<Blob>,
    pub message_type: Option<String>,
    pub grant_tokens: Option<Vec<String>>,
    pub signing_algorithm: Option<String>,
    pub dry_run: Option<bool>,
}

/// Sign's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct SignResponse {
    pub key_id: String,
    #[serde(serialize_with = "super::blob")]
    pub signature: Vec<u8>,
    pub signing_algorithm: String,
}

/// Verify.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct VerifyRequest {
    pub key_id: Option<String>,
    pub message: Option<Blob>,
    pub message_type: Option<String>,
    pub signature: Option<Blob>,
    pub signing_algorithm: Option<String>,
    pub grant_tokens: Option<Vec<String>>,
    pub dry_run: Option<bool>,
}

/// Verify's answer (only for a valid signature).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct VerifyResponse {
    pub key_id: String,
    pub signature_valid: bool,
    pub signing_algorithm: String,
}

/// GetPublicKey.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GetPublicKeyRequest {
    pub key_id: Option<String>,
    pub grant_tokens: Option<Vec<String>>,
}

/// GetPublicKey's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GetPublicKeyResponse {
    pub key_id: String,
    #[serde(serialize_with = "super::blob")]
    pub public_key: Vec<u8>,
    /// Deprecated by AWS but still returned beside KeySpec.
    pub customer_master_key_spec: String,
    pub key_spec: String,
    pub key_usage: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub encryption_algorithms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signing_algorithms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_agreement_algorithms: Vec<String>,
}

/// GenerateMac.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GenerateMacRequest {
    pub message: Option<SecretBlob>,
    pub key_id: Option<String>,
    pub mac_algorithm: Option<String>,
    pub grant_tokens: Option<Vec<String>>,
    pub dry_run: Option<bool>,
}

/// GenerateMac's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GenerateMacResponse {
    #[serde(serialize_with = "super::blob")]
    pub mac: Vec<u8>,
    pub mac_algorithm: String,
    pub key_id: String,
}

/// VerifyMac.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct VerifyMacRequest {
    pub message: Option<SecretBlob>,
    pub key_id: Option<String>,
    pub mac_algorithm: Option<String>,
    pub mac: Option<Blob>,
    pub grant_tokens: Option<Vec<String>>,
    pub dry_run: Option<bool>,
}

/// VerifyMac's answer (only for a valid MAC).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct VerifyMacResponse {
    pub key_id: String,
    pub mac_valid: bool,
    pub mac_algorithm: String,
}

/// DeriveSharedSecret.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct DeriveSharedSecretRequest {
    pub key_id: Option<String>,
    pub key_agreement_algorithm: Option<String>,
    pub public_key: Option<Blob>,
    pub grant_tokens: Option<Vec<String>>,
    pub dry_run: Option<bool>,
    pub recipient: Option<serde_json::Value>,
}

/// DeriveSharedSecret's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct DeriveSharedSecretResponse {
    pub key_id: String,
    #[serde(serialize_with = "super::secret")]
    pub shared_secret: Plaintext,
    pub key_agreement_algorithm: String,
    pub key_origin: String,
}

/// GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext (which has no Recipient).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GenerateDataKeyPairRequest {
    pub encryption_context: Option<super::StringMap>,
    pub key_id: Option<String>,
    pub key_pair_spec: Option<String>,
    pub grant_tokens: Option<Vec<String>>,
    pub recipient: Option<serde_json::Value>,
    pub dry_run: Option<bool>,
}

/// GenerateDataKeyPairWithoutPlaintext: the same members.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub(in crate::aws_json) struct GenerateDataKeyPairWithoutPlaintextRequest(
    pub GenerateDataKeyPairRequest,
);

/// GenerateDataKeyPair's answer, and (without PrivateKeyPlaintext) the other's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GenerateDataKeyPairResponse {
    #[serde(serialize_with = "super::blob")]
    pub private_key_ciphertext_blob: Vec<u8>,
    #[serde(
        serialize_with = "super::secret_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub private_key_plaintext: Option<Plaintext>,
    #[serde(serialize_with = "super::blob")]
    pub public_key: Vec<u8>,
    pub key_id: String,
    pub key_pair_spec: String,
}
