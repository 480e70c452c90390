//! Access key shapes (p11kms's CreateAccessKey, ListAccessKeys, DeleteAccessKey),
//! shaped like IAM's: what `aws iam create-access-key` prints, with the principal ARN
//! in place of IAM's UserName as the request member.

use serde::{Deserialize, Serialize, Serializer};

use crate::domain::SecretAccessKey;

/// CreateAccessKey.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct CreateAccessKeyRequest {
    pub principal_arn: Option<String>,
}

/// ListAccessKeys: without PrincipalArn, the caller's own keys.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ListAccessKeysRequest {
    pub principal_arn: Option<String>,
}

/// DeleteAccessKey.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct DeleteAccessKeyRequest {
    pub access_key_id: Option<String>,
}

/// One access key as IAM shows it; the secret only in CreateAccessKey's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct AccessKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    pub principal_arn: String,
    pub access_key_id: String,
    pub status: &'static str,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "secret_access_key"
    )]
    pub secret_access_key: Option<SecretAccessKey>,
    pub create_date: f64,
}

/// Writes the secret straight from its zeroizing holder into the answer.
fn secret_access_key<S: Serializer>(
    secret: &Option<SecretAccessKey>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(k) => s.serialize_str(k.expose()),
        None => s.serialize_none(),
    }
}

/// CreateAccessKey's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct CreateAccessKeyResponse {
    pub access_key: AccessKey,
}

/// ListAccessKeys' answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ListAccessKeysResponse {
    pub access_key_metadata: Vec<AccessKey>,
}
