//! Alias calls.

use std::sync::Arc;

use super::{key_id_of, Call};
use crate::aws_json::shapes::*;
use crate::vault::{Caller, KmsError, ListAliasesInput, Vault};

/// AliasName and TargetKeyId, both required.
fn alias_and_target(req: CreateAliasRequest) -> Result<(String, String), KmsError> {
    let mut r = Required::default();
    let alias = r.need("aliasName", req.alias_name);
    let target = r.need("targetKeyId", req.target_key_id);
    r.check()?;
    Ok((alias, target))
}

impl Call for CreateAliasRequest {
    type Input = (String, String);
    type Output = Empty;

    fn key_id(&self) -> String {
        key_id_of(&self.target_key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        alias_and_target(self)
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (alias, target): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault.create_alias(&caller, &alias, &target).await?;
        Ok(Empty {})
    }
}

impl Call for UpdateAliasRequest {
    type Input = (String, String);
    type Output = Empty;

    fn key_id(&self) -> String {
        key_id_of(&self.0.target_key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        alias_and_target(self.0)
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (alias, target): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault.update_alias(&caller, &alias, &target).await?;
        Ok(Empty {})
    }
}

impl Call for DeleteAliasRequest {
    type Input = String;
    type Output = Empty;

    fn key_id(&self) -> String {
        key_id_of(&self.alias_name)
    }

    fn validate(self) -> Result<String, KmsError> {
        let alias = Required::one("aliasName", self.alias_name)?;
        Ok(alias)
    }

    async fn run(vault: Arc<Vault>, caller: Caller, alias: String) -> Result<Empty, KmsError> {
        vault.delete_alias(&caller, &alias).await?;
        Ok(Empty {})
    }
}

impl Call for ListAliasesRequest {
    type Input = ListAliasesInput;
    type Output = ListAliasesResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<ListAliasesInput, KmsError> {
        Ok(ListAliasesInput {
            key_id: self.key_id.unwrap_or_default(),
            limit: self.limit,
            marker: self.marker.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: ListAliasesInput,
    ) -> Result<Self::Output, KmsError> {
        let out = vault.list_aliases(&caller, input).await?;
        Ok(ListAliasesResponse {
            aliases: out
                .aliases
                .into_iter()
                .map(|a| AliasListEntry {
                    alias_name: a.alias_name,
                    alias_arn: a.alias_arn,
                    target_key_id: a.target_key_id.to_string(),
                    creation_date: epoch(a.creation_date),
                    last_updated_date: epoch(a.last_updated_date),
                })
                .collect(),
            truncated: out.next_marker.is_some(),
            next_marker: out.next_marker,
        })
    }
}
