//! Key lifecycle shapes: CreateKey, DescribeKey, ListKeys, enabling, description,
//! deletion and rotation.

use serde::{Deserialize, Serialize};

use super::Tag;

/// Requests whose only member is KeyId.
macro_rules! key_id_only {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub(in crate::aws_json) struct $name {
            pub key_id: Option<String>,
        }
    )*};
}

key_id_only!(
    /// EnableKey.
    EnableKeyRequest,
    /// DisableKey.
    DisableKeyRequest,
    /// CancelKeyDeletion.
    CancelKeyDeletionRequest,
    /// DisableKeyRotation.
    DisableKeyRotationRequest,
    /// GetKeyRotationStatus.
    GetKeyRotationStatusRequest,
    /// RotateKeyOnDemand.
    RotateKeyOnDemandRequest,
);

/// CreateKey.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct CreateKeyRequest {
    pub policy: Option<String>,
    pub description: Option<String>,
    pub key_usage: Option<String>,
    /// The deprecated name of KeySpec, which older SDKs still send.
    pub customer_master_key_spec: Option<String>,
    pub key_spec: Option<String>,
    pub origin: Option<String>,
    pub custom_key_store_id: Option<String>,
    pub bypass_policy_lockout_safety_check: Option<bool>,
    pub tags: Option<Vec<Tag>>,
    pub multi_region: Option<bool>,
    pub xks_key_id: Option<String>,
}

/// KeyMetadata as CreateKey and DescribeKey return it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct KeyMetadata {
    #[serde(rename = "AWSAccountId")]
    pub aws_account_id: String,
    pub key_id: String,
    pub arn: String,
    pub creation_date: f64,
    pub enabled: bool,
    pub description: String,
    pub key_usage: String,
    pub key_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<f64>,
    pub origin: String,
    pub key_manager: String,
    /// Deprecated by AWS but still returned beside KeySpec, with the same value.
    pub customer_master_key_spec: String,
    pub key_spec: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub encryption_algorithms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signing_algorithms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mac_algorithms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_agreement_algorithms: Vec<String>,
    pub multi_region: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<f64>,
}

/// CreateKey's and DescribeKey's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct KeyMetadataResponse {
    pub key_metadata: KeyMetadata,
}

/// DescribeKey.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct DescribeKeyRequest {
    pub key_id: Option<String>,
    pub grant_tokens: Option<Vec<String>>,
}

/// ListKeys.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ListKeysRequest {
    pub limit: Option<i32>,
    pub marker: Option<String>,
}

/// One key in ListKeys.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct KeyListEntry {
    pub key_id: String,
    pub key_arn: String,
}

/// ListKeys' answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ListKeysResponse {
    pub keys: Vec<KeyListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

/// An answer with no members.
#[derive(Debug, Default, Serialize)]
pub(in crate::aws_json) struct Empty {}

/// An answer with only KeyId (CancelKeyDeletion, RotateKeyOnDemand).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct KeyIdResponse {
    pub key_id: String,
}

/// UpdateKeyDescription.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct UpdateKeyDescriptionRequest {
    pub key_id: Option<String>,
    pub description: Option<String>,
}

/// ScheduleKeyDeletion.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ScheduleKeyDeletionRequest {
    pub key_id: Option<String>,
    pub pending_window_in_days: Option<i32>,
}

/// ScheduleKeyDeletion's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ScheduleKeyDeletionResponse {
    pub key_id: String,
    pub deletion_date: f64,
    pub key_state: String,
    pub pending_window_in_days: i32,
}

/// EnableKeyRotation.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct EnableKeyRotationRequest {
    pub key_id: Option<String>,
    pub rotation_period_in_days: Option<i32>,
}

/// GetKeyRotationStatus's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GetKeyRotationStatusResponse {
    pub key_rotation_enabled: bool,
    pub key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_period_in_days: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<f64>,
}

/// ListKeyRotations.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ListKeyRotationsRequest {
    pub key_id: Option<String>,
    pub limit: Option<i32>,
    pub marker: Option<String>,
}

/// One rotation in ListKeyRotations.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct RotationsListEntry {
    pub key_id: String,
    pub rotation_date: f64,
    pub rotation_type: String,
}

/// ListKeyRotations' answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ListKeyRotationsResponse {
    pub rotations: Vec<RotationsListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}
