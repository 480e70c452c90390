//! Tag calls, for keys (AWS's) and principals (p11kms's).

use std::sync::Arc;

use super::{key_id_of, Call};
use crate::aws_json::shapes::*;
use crate::vault::{Caller, KmsError, Vault};

/// Tags as the vault takes them; each tag needs both members, as AWS's Tag shape says.
fn pairs(tags: Vec<Tag>) -> Result<Vec<(String, String)>, KmsError> {
    let mut r = Required::default();
    let pairs = tags
        .into_iter()
        .map(|t| (r.need("tagKey", t.tag_key), r.need("tagValue", t.tag_value)))
        .collect();
    r.check()?;
    Ok(pairs)
}

/// The vault's pairs in AWS's shape.
fn shapes(pairs: Vec<(String, String)>) -> Vec<Tag> {
    pairs
        .into_iter()
        .map(|(k, v)| Tag {
            tag_key: Some(k),
            tag_value: Some(v),
        })
        .collect()
}

impl Call for TagResourceRequest {
    type Input = (String, Vec<(String, String)>);
    type Output = Empty;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let tags = r.need("tags", self.tags);
        r.check()?;
        Ok((key_id, pairs(tags)?))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key, tags): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault.tag_resource(&caller, &key, tags).await?;
        Ok(Empty {})
    }
}

impl Call for UntagResourceRequest {
    type Input = (String, Vec<String>);
    type Output = Empty;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let keys = r.need("tagKeys", self.tag_keys);
        r.check()?;
        Ok((key_id, keys))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key, keys): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault.untag_resource(&caller, &key, keys).await?;
        Ok(Empty {})
    }
}

impl Call for ListResourceTagsRequest {
    type Input = (String, Option<i32>, String);
    type Output = ListTagsResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let key_id = Required::one("keyId", self.key_id)?;
        Ok((key_id, self.limit, self.marker.unwrap_or_default()))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key, limit, marker): Self::Input,
    ) -> Result<Self::Output, KmsError> {
        let page = vault
            .list_resource_tags(&caller, &key, limit, &marker)
            .await?;
        Ok(ListTagsResponse {
            tags: shapes(page.tags),
            truncated: Some(page.next_marker.is_some()),
            next_marker: page.next_marker,
        })
    }
}

impl Call for TagPrincipalRequest {
    type Input = (String, Vec<(String, String)>);
    type Output = Empty;

    fn validate(self) -> Result<Self::Input, KmsError> {
        let mut r = Required::default();
        let arn = r.need("principalArn", self.principal_arn);
        let tags = r.need("tags", self.tags);
        r.check()?;
        Ok((arn, pairs(tags)?))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (arn, tags): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault.tag_principal(&caller, &arn, tags).await?;
        Ok(Empty {})
    }
}

impl Call for UntagPrincipalRequest {
    type Input = (String, Vec<String>);
    type Output = Empty;

    fn validate(self) -> Result<Self::Input, KmsError> {
        let mut r = Required::default();
        let arn = r.need("principalArn", self.principal_arn);
        let keys = r.need("tagKeys", self.tag_keys);
        r.check()?;
        Ok((arn, keys))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (arn, keys): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault.untag_principal(&caller, &arn, keys).await?;
        Ok(Empty {})
    }
}

impl Call for ListPrincipalTagsRequest {
    type Input = String;
    type Output = ListTagsResponse;

    fn validate(self) -> Result<String, KmsError> {
        super::policies::principal(self.0)
    }

    async fn run(vault: Arc<Vault>, caller: Caller, arn: String) -> Result<Self::Output, KmsError> {
        let tags = vault.list_principal_tags(&caller, &arn).await?;
        Ok(ListTagsResponse {
            tags: shapes(tags),
            next_marker: None,
            truncated: None,
        })
    }
}
