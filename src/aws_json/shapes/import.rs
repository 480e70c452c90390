//! Shapes of bring-your-own-key: GetParametersForImport, ImportKeyMaterial,
//! DeleteImportedKeyMaterial.

use serde::{Deserialize, Serialize};

use super::Blob;

/// GetParametersForImport.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GetParametersForImportRequest {
    pub key_id: Option<String>,
    pub wrapping_algorithm: Option<String>,
    pub wrapping_key_spec: Option<String>,
}

/// GetParametersForImport's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GetParametersForImportResponse {
    pub key_id: String,
    #[serde(serialize_with = "super::blob")]
    pub import_token: Vec<u8>,
    #[serde(serialize_with = "super::blob")]
    pub public_key: Vec<u8>,
    pub parameters_valid_to: f64,
}

/// ImportKeyMaterial.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ImportKeyMaterialRequest {
    pub key_id: Option<String>,
    pub import_token: Option<Blob>,
    pub encrypted_key_material: Option<Blob>,
    /// Seconds since the epoch (AWS JSON timestamps are numbers).
    pub valid_to: Option<f64>,
    pub expiration_model: Option<String>,
    /// AWS's newer members for multiple materials per key: p11kms keeps one.
    pub import_type: Option<String>,
    pub key_material_description: Option<String>,
    pub key_material_id: Option<String>,
}

/// ImportKeyMaterial's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ImportKeyMaterialResponse {
    pub key_id: String,
}

/// DeleteImportedKeyMaterial.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct DeleteImportedKeyMaterialRequest {
    pub key_id: Option<String>,
    pub key_material_id: Option<String>,
}

/// DeleteImportedKeyMaterial's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct DeleteImportedKeyMaterialResponse {
    pub key_id: String,
}
