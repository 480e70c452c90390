//! The XKS proxy API's request and response bodies (JSON; binary fields in standard,
//! padded base64). Unknown members are ignored: AWS KMS may add requestMetadata fields.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::Plaintext;

/// `requestMetadata`: who asked AWS KMS for what. Only the signature vouches for it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestMetadata {
    /// The KMS API that caused the call (CreateKey, Encrypt, KmsHealthCheck…).
    pub(crate) kms_operation: String,
    /// AWS KMS's request id, as in the customer's CloudTrail.
    pub(crate) kms_request_id: String,
    /// The principal that called AWS KMS (absent for GetHealthStatus).
    #[serde(default)]
    pub(crate) aws_principal_arn: Option<String>,
    /// The AWS KMS key.
    #[serde(default)]
    pub(crate) kms_key_arn: Option<String>,
    /// The AWS service that called AWS KMS for the principal.
    #[serde(default)]
    pub(crate) kms_via_service: Option<String>,
    /// The VPC the call came from.
    #[serde(default)]
    pub(crate) aws_source_vpc: Option<String>,
    /// The VPC endpoint the call came through.
    #[serde(default)]
    pub(crate) aws_source_vpce: Option<String>,
}

/// A body that carries only requestMetadata (GetHealthStatus, GetKeyMetadata).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetadataOnly {
    pub(crate) request_metadata: RequestMetadata,
}

/// A request body, which always carries requestMetadata.
pub(crate) trait WithMetadata {
    fn request_metadata(&self) -> &RequestMetadata;
}

macro_rules! with_metadata {
    ($($t:ty),*) => {$(
        impl WithMetadata for $t {
            fn request_metadata(&self) -> &RequestMetadata {
                &self.request_metadata
            }
        }
    )*};
}
with_metadata!(MetadataOnly, EncryptRequest, DecryptRequest);

/// Encrypt's request. The plaintext is decoded straight into a buffer wiped on drop,
/// whose Debug shows its length only.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EncryptRequest {
    pub(crate) request_metadata: RequestMetadata,
    #[serde(deserialize_with = "plaintext")]
    pub(crate) plaintext: Plaintext,
    pub(crate) encryption_algorithm: String,
    #[serde(default, deserialize_with = "base64_opt")]
    pub(crate) additional_authenticated_data: Option<Vec<u8>>,
    #[serde(default)]
    pub(crate) ciphertext_data_integrity_value_algorithm: Option<String>,
}

/// Decrypt's request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DecryptRequest {
    pub(crate) request_metadata: RequestMetadata,
    #[serde(deserialize_with = "base64")]
    pub(crate) ciphertext: Vec<u8>,
    pub(crate) encryption_algorithm: String,
    #[serde(deserialize_with = "base64")]
    pub(crate) initialization_vector: Vec<u8>,
    #[serde(deserialize_with = "base64")]
    pub(crate) authentication_tag: Vec<u8>,
    #[serde(default, deserialize_with = "base64_opt")]
    pub(crate) additional_authenticated_data: Option<Vec<u8>>,
    #[serde(default, deserialize_with = "base64_opt")]
    pub(crate) ciphertext_metadata: Option<Vec<u8>>,
}

/// GetKeyMetadata's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyMetadataResponse {
    pub(crate) key_spec: &'static str,
    pub(crate) key_usage: Vec<&'static str>,
    pub(crate) key_status: &'static str,
}

/// Encrypt's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EncryptResponse {
    pub(crate) ciphertext: String,
    pub(crate) initialization_vector: String,
    pub(crate) authentication_tag: String,
    pub(crate) ciphertext_metadata: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ciphertext_data_integrity_value: Option<String>,
}

/// Decrypt's answer, borrowing the base64 plaintext from a buffer wiped on drop.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DecryptResponse<'a> {
    pub(crate) plaintext: &'a str,
}

/// GetHealthStatus's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HealthResponse {
    pub(crate) xks_proxy_fleet_size: u32,
    pub(crate) xks_proxy_vendor: &'static str,
    pub(crate) xks_proxy_model: String,
    pub(crate) ekm_vendor: &'static str,
    pub(crate) ekm_fleet_details: Vec<EkmInstance>,
}

/// One key manager behind the proxy: here, the PKCS#11 token.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EkmInstance {
    pub(crate) id: String,
    pub(crate) model: &'static str,
    pub(crate) health_status: &'static str,
}

/// Standard base64, as the specification requires.
pub(crate) fn encode(b: &[u8]) -> String {
    STANDARD.encode(b)
}

fn plaintext<'de, D: Deserializer<'de>>(d: D) -> Result<Plaintext, D::Error> {
    let s = zeroize::Zeroizing::new(String::deserialize(d)?);
    STANDARD
        .decode(s.as_bytes())
        .map(Plaintext::new)
        .map_err(|_| serde::de::Error::custom("a field is not valid base64"))
}

fn base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = zeroize::Zeroizing::new(String::deserialize(d)?);
    STANDARD
        .decode(s.as_bytes())
        .map_err(|_| serde::de::Error::custom("a field is not valid base64"))
}

fn base64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    match Option::<String>::deserialize(d)?.map(zeroize::Zeroizing::new) {
        None => Ok(None),
        Some(s) => STANDARD
            .decode(s.as_bytes())
            .map(Some)
            .map_err(|_| serde::de::Error::custom("a field is not valid base64")),
    }
}
