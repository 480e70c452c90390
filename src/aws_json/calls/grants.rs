//! Grant calls.

use std::sync::Arc;

use super::{key_id_of, Call};
use crate::aws_json::shapes::*;
use crate::vault::{
    Caller, CreateGrantInput, GrantPage, KmsError, ListGrantsInput, ListRetirableGrantsInput, Vault,
};

/// Wire constraints → the vault's; an empty map means "no such constraint", as over
/// gRPC, so that a grant means the same whichever transport made it.
fn constraints(c: GrantConstraints) -> Result<crate::authz::GrantConstraints, KmsError> {
    refuse("SourceArn", &c.source_arn)?;
    let some = |m: Option<StringMap>| m.filter(|m| !m.is_empty()).map(|m| m.into_iter().collect());
    Ok(crate::authz::GrantConstraints {
        encryption_context_subset: some(c.encryption_context_subset),
        encryption_context_equals: some(c.encryption_context_equals),
    })
}

fn page(page: GrantPage) -> ListGrantsResponse {
    let grants = page
        .grants
        .into_iter()
        .map(|g| GrantListEntry {
            key_id: g.key_arn.to_string(),
            grant_id: g.grant_id,
            name: g.name,
            creation_date: epoch(g.creation_date),
            grantee_principal: g.grantee_principal,
            retiring_principal: g.retiring_principal,
            issuing_account: g.issuing_account,
            operations: g.operations,
            constraints: g.constraints.map(|c| GrantConstraints {
                encryption_context_subset: c
                    .encryption_context_subset
                    .map(|m| m.into_iter().collect()),
                encryption_context_equals: c
                    .encryption_context_equals
                    .map(|m| m.into_iter().collect()),
                source_arn: None,
            }),
        })
        .collect();
    ListGrantsResponse {
        grants,
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    }
}

impl Call for CreateGrantRequest {
    type Input = CreateGrantInput;
    type Output = CreateGrantResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<CreateGrantInput, KmsError> {
        no_dry_run(self.dry_run)?;
        refuse("GranteeServicePrincipal", &self.grantee_service_principal)?;
        refuse("RetiringServicePrincipal", &self.retiring_service_principal)?;
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let operations = r.need("operations", self.operations);
        // Optional in the model only because a service principal may stand in for it.
        let grantee_principal = r.need("granteePrincipal", self.grantee_principal);
        r.check()?;
        Ok(CreateGrantInput {
            key_id,
            grantee_principal,
            retiring_principal: self.retiring_principal.unwrap_or_default(),
            operations,
            constraints: self.constraints.map(constraints).transpose()?,
            grant_tokens: self.grant_tokens.unwrap_or_default(),
            name: self.name.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: CreateGrantInput,
    ) -> Result<Self::Output, KmsError> {
        let (grant_id, grant_token) = vault.create_grant(&caller, input).await?;
        Ok(CreateGrantResponse {
            grant_token,
            grant_id,
        })
    }
}

impl Call for ListGrantsRequest {
    type Input = ListGrantsInput;
    type Output = ListGrantsResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<ListGrantsInput, KmsError> {
        refuse("GranteeServicePrincipal", &self.grantee_service_principal)?;
        let key_id = Required::one("keyId", self.key_id)?;
        Ok(ListGrantsInput {
            key_id,
            limit: self.limit,
            marker: self.marker.unwrap_or_default(),
            grant_id: self.grant_id.unwrap_or_default(),
            grantee_principal: self.grantee_principal.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: ListGrantsInput,
    ) -> Result<Self::Output, KmsError> {
        Ok(page(vault.list_grants(&caller, input).await?))
    }
}

impl Call for ListRetirableGrantsRequest {
    type Input = ListRetirableGrantsInput;
    type Output = ListGrantsResponse;

    fn validate(self) -> Result<ListRetirableGrantsInput, KmsError> {
        refuse("RetiringServicePrincipal", &self.retiring_service_principal)?;
        let retiring_principal = Required::one("retiringPrincipal", self.retiring_principal)?;
        Ok(ListRetirableGrantsInput {
            retiring_principal,
            limit: self.limit,
            marker: self.marker.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: ListRetirableGrantsInput,
    ) -> Result<Self::Output, KmsError> {
        Ok(page(vault.list_retirable_grants(&caller, input).await?))
    }
}

impl Call for RetireGrantRequest {
    type Input = (String, String, String);
    type Output = Empty;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        no_dry_run(self.dry_run)?;
        // Either a token or KeyId with GrantId: the vault checks which it was given.
        Ok((
            self.grant_token.unwrap_or_default(),
            self.key_id.unwrap_or_default(),
            self.grant_id.unwrap_or_default(),
        ))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (token, key, grant): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault.retire_grant(&caller, &token, &key, &grant).await?;
        Ok(Empty {})
    }
}

impl Call for RevokeGrantRequest {
    type Input = (String, String);
    type Output = Empty;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        no_dry_run(self.dry_run)?;
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let grant_id = r.need("grantId", self.grant_id);
        r.check()?;
        Ok((key_id, grant_id))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key, grant): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault.revoke_grant(&caller, &key, &grant).await?;
        Ok(Empty {})
    }
}
