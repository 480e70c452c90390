//! Tag shapes: keys' tags (AWS's TagResource, UntagResource, ListResourceTags) and
//! principals' tags (p11kms's TagPrincipal, UntagPrincipal, ListPrincipalTags).

use serde::{Deserialize, Serialize};

/// One tag, both ways.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct Tag {
    pub tag_key: Option<String>,
    pub tag_value: Option<String>,
}

/// TagResource.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct TagResourceRequest {
    pub key_id: Option<String>,
    pub tags: Option<Vec<Tag>>,
}

/// UntagResource.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct UntagResourceRequest {
    pub key_id: Option<String>,
    pub tag_keys: Option<Vec<String>>,
}

/// ListResourceTags.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ListResourceTagsRequest {
    pub key_id: Option<String>,
    pub limit: Option<i32>,
    pub marker: Option<String>,
}

/// ListResourceTags' answer, and (without the page members) ListPrincipalTags'.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct ListTagsResponse {
    pub tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

/// TagPrincipal (p11kms).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct TagPrincipalRequest {
    pub principal_arn: Option<String>,
    pub tags: Option<Vec<Tag>>,
}

/// UntagPrincipal (p11kms).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct UntagPrincipalRequest {
    pub principal_arn: Option<String>,
    pub tag_keys: Option<Vec<String>>,
}
