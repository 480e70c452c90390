//! ListGrants (by key, policy-controlled) and ListRetirableGrants (by retiring
//! principal, within the caller's account).

use super::token::decode_id;
use super::Vault;
use crate::authz::Action;
use crate::vault::marker::{Listing, MarkerKey};
use std::time::SystemTime;

use crate::authz::GrantConstraints;
use crate::domain::KeyArn;
use crate::identity::Principal;
use crate::store::GrantRecord;
use crate::vault::authorize::Authz;
use crate::vault::{validate, Caller, KmsError};

/// One grant as ListGrants and ListRetirableGrants show it (AWS's GrantListEntry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantEntry {
    /// 64 hex characters.
    pub grant_id: String,
    /// The ARN of the key it is on.
    pub key_arn: KeyArn,
    /// Name given at creation ("" when none).
    pub name: String,
    /// Grantee principal ARN.
    pub grantee_principal: String,
    /// Retiring principal ARN, when one was named.
    pub retiring_principal: Option<String>,
    /// Grant operation names.
    pub operations: Vec<String>,
    /// Encryption-context constraint.
    pub constraints: Option<GrantConstraints>,
    /// Account root ARN of the account that created it.
    pub issuing_account: String,
    /// When it was created.
    pub creation_date: SystemTime,
}

impl GrantEntry {
    fn new(g: GrantRecord, key_arn: KeyArn) -> Self {
        Self {
            grant_id: g.grant_id,
            key_arn,
            name: g.name,
            grantee_principal: g.grantee,
            retiring_principal: g.retiring,
            operations: g.operations,
            constraints: g.constraints,
            issuing_account: g.issuing_account,
            creation_date: g.creation_date,
        }
    }
}

/// A page of grants.
#[derive(Debug)]
pub struct GrantPage {
    /// The grants, by grant id.
    pub grants: Vec<GrantEntry>,
    /// Marker for the next page, when truncated.
    pub next_marker: Option<String>,
}

/// ListGrants parameters.
#[derive(Debug, Default)]
pub struct ListGrantsInput {
    /// The key (id, ARN, alias name or alias ARN).
    pub key_id: String,
    /// Page size, 1..100; 50 when absent (as AWS).
    pub limit: Option<i32>,
    /// NextMarker from the previous page; empty for the first page.
    pub marker: String,
    /// Only this grant; empty for all.
    pub grant_id: String,
    /// Only grants to this principal; empty for all.
    pub grantee_principal: String,
}

/// ListRetirableGrants parameters.
#[derive(Debug, Default)]
pub struct ListRetirableGrantsInput {
    /// The retiring principal (of the caller's account).
    pub retiring_principal: String,
    /// Page size, 1..100; 50 when absent (as AWS).
    pub limit: Option<i32>,
    /// NextMarker from the previous page; empty for the first page.
    pub marker: String,
}

/// AWS: Limit 1..100, default 50.
fn limit(l: Option<i32>) -> Result<usize, KmsError> {
    match l {
        None => Ok(50),
        Some(n) => validate::count("Limit", n, 1, 100),
    }
}

/// The grant id a marker continues after ("" for the first page): a marker holds the
/// last grant id of the previous page (see `marker`).
fn position_after(markers: &MarkerKey, listing: &Listing<'_>, m: &str) -> Result<String, KmsError> {
    let after: Option<String> = markers.open(listing, m)?;
    Ok(after.unwrap_or_default())
}

fn page(
    markers: &MarkerKey,
    listing: &Listing<'_>,
    mut grants: Vec<GrantRecord>,
    limit: usize,
) -> (Vec<GrantRecord>, Option<String>) {
    let truncated = grants.len() > limit;
    grants.truncate(limit);
    let next = if truncated {
        grants.last().map(|g| markers.issue(listing, &g.grant_id))
    } else {
        None
    };
    (grants, next)
}

impl Vault {
    /// ListGrants, optionally filtered by GrantId and GranteePrincipal.
    pub async fn list_grants(
        &self,
        caller: &Caller,
        input: ListGrantsInput,
    ) -> Result<GrantPage, KmsError> {
        let limit = limit(input.limit)?;
        let listing = Listing::new("ListGrants", &input.key_id);
        let after = position_after(&self.markers, &listing, &input.marker)?;
        let (grant_id, grantee) = (input.grant_id.as_str(), input.grantee_principal.as_str());
        if !grant_id.is_empty() && decode_id(grant_id).is_none() {
            return Err(KmsError::InvalidGrantId(
                "a grant id is 64 hexadecimal characters".into(),
            ));
        }
        if !grantee.is_empty() {
            grantee
                .parse::<Principal>()
                .map_err(|e| KmsError::validation(format!("GranteePrincipal: {e}")))?;
        }
        let key = self.resolve(caller, &input.key_id).await?;
        self.authorize(caller, Authz::key(Action::LIST_GRANTS, &key))
            .await?;
        let id = key.key_id();
        let all = self.store_call(move |s| s.grants_for_key(&id)).await?;
        let matching: Vec<GrantRecord> = all
            .into_iter()
            .filter(|g| g.grant_id.as_str() > after.as_str())
            .filter(|g| grant_id.is_empty() || g.grant_id == grant_id)
            .filter(|g| grantee.is_empty() || g.grantee == grantee)
            .take(limit + 1)
            .collect();
        let (grants, next_marker) = page(&self.markers, &listing, matching, limit);
        let arn = self.arn_of(&key);
        Ok(GrantPage {
            grants: grants
                .into_iter()
                .map(|g| GrantEntry::new(g, arn.clone()))
                .collect(),
            next_marker,
        })
    }

    /// ListRetirableGrants: grants a principal of the caller's account may retire.
    pub async fn list_retirable_grants(
        &self,
        caller: &Caller,
        input: ListRetirableGrantsInput,
    ) -> Result<GrantPage, KmsError> {
        let limit = limit(input.limit)?;
        let listing = Listing::new("ListRetirableGrants", &input.retiring_principal);
        let after = position_after(&self.markers, &listing, &input.marker)?;
        let retiring: Principal = input
            .retiring_principal
            .parse()
            .map_err(|e| KmsError::validation(format!("RetiringPrincipal: {e}")))?;
        if retiring.account() != caller.principal.account() {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: kms:ListRetirableGrants for {retiring} because it belongs to another account",
                caller.principal
            )));
        }
        self.authorize(caller, Authz::account(Action::LIST_RETIRABLE_GRANTS))
            .await?;
        let who = retiring.arn().to_owned();
        let found = self
            .store_call(move |s| s.retirable_grants(&who, &after, limit + 1))
            .await?;
        let (grants, next_marker) = page(&self.markers, &listing, found, limit);
        let mut out = Vec::with_capacity(grants.len());
        for g in grants {
            let account = match self.key(g.key_id).await? {
                Some(k) => k.account().clone(),
                None => continue,
            };
            let arn = self.arn(&account, g.key_id);
            out.push(GrantEntry::new(g, arn));
        }
        Ok(GrantPage {
            grants: out,
            next_marker,
        })
    }
}
