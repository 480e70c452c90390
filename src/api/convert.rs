//! Wire ↔ domain conversions that are not one-liners.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::authz::GrantConstraints;
use crate::domain::{EncryptionContext, KeyMetadata};
use crate::proto;
use crate::vault::{GrantPage, KmsError};

/// A wire map as an encryption context, or a ValidationException naming the field.
pub(super) fn context(
    field: &str,
    map: HashMap<String, String>,
) -> Result<EncryptionContext, KmsError> {
    EncryptionContext::new(map).map_err(|e| KmsError::validation(format!("{field}: {e}")))
}

pub(super) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

pub(super) fn key_metadata(m: KeyMetadata) -> proto::KeyMetadata {
    let (key_manager, multi_region) = (m.key_manager().as_str().into(), m.multi_region());
    let owned = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<String>>();
    let encryption_algorithms = owned(m.encryption_algorithms());
    let signing_algorithms = owned(&m.signing_algorithms());
    let mac_algorithms = owned(&m.mac_algorithms());
    let key_agreement_algorithms = owned(m.key_agreement_algorithms());
    proto::KeyMetadata {
        aws_account_id: m.account.to_string(),
        key_id: m.key_id.to_string(),
        arn: m.arn.to_string(),
        creation_date: Some(timestamp(m.creation_date)),
        enabled: m.enabled(),
        description: m.description,
        key_usage: m.key_usage.as_str().into(),
        key_state: m.key_state.as_str().into(),
        deletion_date: m.deletion_date.map(timestamp),
        origin: m.origin.as_str().into(),
        key_manager,
        key_spec: m.key_spec.as_str().into(),
        encryption_algorithms,
        multi_region,
        signing_algorithms,
        mac_algorithms,
        key_agreement_algorithms,
        expiration_model: m
            .expiration_model
            .map(|e| e.as_str().to_owned())
            .unwrap_or_default(),
        valid_to: m.valid_to.map(timestamp),
    }
}

/// Wire constraints → domain; an empty map means "no such constraint".
pub(super) fn grant_constraints(c: proto::GrantConstraints) -> GrantConstraints {
    let some = |m: HashMap<String, String>| (!m.is_empty()).then(|| m.into_iter().collect());
    GrantConstraints {
        encryption_context_subset: some(c.encryption_context_subset),
        encryption_context_equals: some(c.encryption_context_equals),
    }
}

pub(super) fn grant_page(page: GrantPage) -> proto::ListGrantsResponse {
    let grants = page
        .grants
        .into_iter()
        .map(|g| proto::GrantListEntry {
            key_id: g.key_arn.to_string(),
            grant_id: g.grant_id,
            name: g.name,
            creation_date: Some(timestamp(g.creation_date)),
            grantee_principal: g.grantee_principal,
            retiring_principal: g.retiring_principal.unwrap_or_default(),
            issuing_account: g.issuing_account,
            operations: g.operations,
            constraints: g.constraints.map(|c| proto::GrantConstraints {
                encryption_context_subset: c
                    .encryption_context_subset
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                encryption_context_equals: c
                    .encryption_context_equals
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            }),
        })
        .collect();
    proto::ListGrantsResponse {
        grants,
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker.unwrap_or_default(),
    }
}

/// An alias as ListAliases shows it.
pub(super) fn alias_entry(a: crate::vault::AliasEntry) -> proto::AliasListEntry {
    proto::AliasListEntry {
        alias_name: a.alias_name,
        alias_arn: a.alias_arn,
        target_key_id: a.target_key_id.to_string(),
        creation_date: Some(timestamp(a.creation_date)),
        last_updated_date: Some(timestamp(a.last_updated_date)),
    }
}

/// An access key as IAM shows it; the secret only when there is one (CreateAccessKey).
pub(super) fn access_key(
    m: crate::vault::AccessKeyMetadata,
    secret: Option<&crate::domain::SecretAccessKey>,
) -> proto::AccessKey {
    proto::AccessKey {
        user_name: m.user_name.unwrap_or_default(),
        access_key_id: m.access_key_id.to_string(),
        status: m.status.as_str().into(),
        // Copied straight into the message, whose Drop wipes it.
        secret_access_key: secret.map(|s| s.expose().to_owned()).unwrap_or_default(),
        create_date: Some(timestamp(m.create_date)),
        principal_arn: m.principal_arn,
    }
}
