//! `p11kms grant …`: create, list, retire and revoke grants.

use serde_json::{json, Value};

use p11kms::client::KmsClient;
use p11kms::proto;

use super::{ctx, done, print_json, reply, CliResult};
use crate::cli::GrantCmd;

pub(super) async fn run(c: &mut KmsClient, cmd: GrantCmd) -> CliResult {
    match cmd {
        GrantCmd::Create {
            key_id,
            grantee,
            operations,
            retiring,
            subset,
            equals,
            name,
        } => {
            // No context pairs: no constraints at all, rather than empty ones.
            let constraints =
                (!subset.is_empty() || !equals.is_empty()).then(|| proto::GrantConstraints {
                    encryption_context_subset: ctx(subset),
                    encryption_context_equals: ctx(equals),
                });
            let req = proto::CreateGrantRequest {
                key_id,
                grantee_principal: grantee,
                retiring_principal: retiring.unwrap_or_default(),
                operations,
                constraints,
                grant_tokens: vec![],
                name,
            };
            let r = reply(c.create_grant(req).await)?;
            print_json(&json!({ "GrantId": r.grant_id, "GrantToken": r.grant_token }))
        }
        GrantCmd::List { key_id } => list(c, key_id).await,
        GrantCmd::ListRetirable { retiring } => {
            let req = proto::ListRetirableGrantsRequest {
                retiring_principal: retiring,
                limit: Some(100),
                marker: String::new(),
            };
            let r = reply(c.list_retirable_grants(req).await)?;
            let grants: Vec<Value> = r.grants.into_iter().map(grant_json).collect();
            print_json(&json!({ "Grants": grants, "Truncated": r.truncated }))
        }
        GrantCmd::Retire {
            token,
            key_id,
            grant_id,
        } => {
            // Unset fields go as empty strings, which the daemon reads as absent.
            let req = proto::RetireGrantRequest {
                grant_token: token.unwrap_or_default(),
                key_id: key_id.unwrap_or_default(),
                grant_id: grant_id.unwrap_or_default(),
            };
            done(c.retire_grant(req).await)
        }
        GrantCmd::Revoke { key_id, grant_id } => {
            let req = proto::RevokeGrantRequest { key_id, grant_id };
            done(c.revoke_grant(req).await)
        }
    }
}

/// Follows NextMarker to the end: a key's grants are printed whole.
async fn list(c: &mut KmsClient, key_id: String) -> CliResult {
    let mut grants = Vec::new();
    let mut marker = String::new();
    loop {
        let req = proto::ListGrantsRequest {
            key_id: key_id.clone(),
            limit: Some(100),
            marker,
            ..Default::default()
        };
        let r = reply(c.list_grants(req).await)?;
        grants.extend(r.grants.into_iter().map(grant_json));
        if !r.truncated {
            break;
        }
        marker = r.next_marker;
    }
    print_json(&json!({ "Grants": grants }))
}

fn grant_json(g: proto::GrantListEntry) -> Value {
    // Only the constraints that are set, as the AWS CLI prints them.
    let mut constraints = serde_json::Map::new();
    if let Some(c) = g.constraints {
        if !c.encryption_context_subset.is_empty() {
            constraints.insert(
                "EncryptionContextSubset".into(),
                json!(c.encryption_context_subset),
            );
        }
        if !c.encryption_context_equals.is_empty() {
            constraints.insert(
                "EncryptionContextEquals".into(),
                json!(c.encryption_context_equals),
            );
        }
    }
    json!({
        "KeyId": g.key_id,
        "GrantId": g.grant_id,
        "Name": g.name,
        "GranteePrincipal": g.grantee_principal,
        "RetiringPrincipal": g.retiring_principal,
        "IssuingAccount": g.issuing_account,
        "Operations": g.operations,
        "Constraints": constraints,
    })
}
