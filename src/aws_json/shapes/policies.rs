//! Key policy shapes (AWS's) and principal policy shapes (p11kms's own operations, in
//! the same style, since p11kms has no IAM to hold identity policies).

use serde::{Deserialize, Serialize};

/// GetKeyPolicy.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GetKeyPolicyRequest {
    pub key_id: Option<String>,
    pub policy_name: Option<String>,
}

/// GetKeyPolicy's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GetKeyPolicyResponse {
    pub policy: String,
    pub policy_name: String,
}

/// PutKeyPolicy.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct PutKeyPolicyRequest {
    pub key_id: Option<String>,
    pub policy_name: Option<String>,
    pub policy: Option<String>,
    pub bypass_policy_lockout_safety_check: Option<bool>,
}

/// ListKeyPolicies.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ListKeyPoliciesRequest {
    pub key_id: Option<String>,
    pub limit: Option<i32>,
    pub marker: Option<String>,
}

/// ListKeyPolicies' answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ListKeyPoliciesResponse {
    pub policy_names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

/// PutPrincipalPolicy (p11kms).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct PutPrincipalPolicyRequest {
    pub principal_arn: Option<String>,
    pub policy_name: Option<String>,
    pub policy_document: Option<String>,
}

/// GetPrincipalPolicy and DeletePrincipalPolicy (p11kms).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct PrincipalPolicyRequest {
    pub principal_arn: Option<String>,
    pub policy_name: Option<String>,
}

/// DeletePrincipalPolicy (p11kms): the members of GetPrincipalPolicy.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub(in crate::aws_json) struct DeletePrincipalPolicyRequest(pub PrincipalPolicyRequest);

/// GetPrincipalPolicy's answer (p11kms).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct GetPrincipalPolicyResponse {
    pub principal_arn: String,
    pub policy_name: String,
    pub policy_document: String,
}

/// ListPrincipalPolicies and ListPrincipalTags (p11kms): only PrincipalArn.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct PrincipalRequest {
    pub principal_arn: Option<String>,
}

/// ListPrincipalTags (p11kms): the members of ListPrincipalPolicies.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub(in crate::aws_json) struct ListPrincipalTagsRequest(pub PrincipalRequest);

/// ListPrincipalPolicies' answer (p11kms).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ListPrincipalPoliciesResponse {
    pub policy_names: Vec<String>,
}
