//! `p11kms policy …` and `p11kms principal …`: identity policies and principal tags, the
//! two things an account attaches to its roles and users.

use serde_json::json;

use p11kms::client::KmsClient;
use p11kms::proto;

use super::{done, print_json, reply, tags_from_pairs, tags_json, CliResult, NOT_A_CLIENT_COMMAND};
use crate::cli::io::{print_line, read_input};
use crate::cli::{PolicyCmd, PrincipalCmd};

pub(super) async fn policy(c: &mut KmsClient, cmd: PolicyCmd) -> CliResult {
    match cmd {
        PolicyCmd::Put {
            principal,
            name,
            file,
            ..
        } => {
            let policy_document = String::from_utf8(read_input(&file)?.to_vec())?;
            let req = proto::PutPrincipalPolicyRequest {
                principal_arn: principal,
                policy_name: name,
                policy_document,
            };
            done(c.put_principal_policy(req).await)
        }
        PolicyCmd::Get {
            principal, name, ..
        } => {
            let req = proto::GetPrincipalPolicyRequest {
                principal_arn: principal,
                policy_name: name,
            };
            let r = reply(c.get_principal_policy(req).await)?;
            print_line(&r.policy_document)?;
            Ok(())
        }
        PolicyCmd::List { principal, .. } => {
            let req = proto::ListPrincipalPoliciesRequest {
                principal_arn: principal,
            };
            let r = reply(c.list_principal_policies(req).await)?;
            print_json(&json!({ "PolicyNames": r.policy_names }))
        }
        PolicyCmd::Delete {
            principal, name, ..
        } => {
            let req = proto::DeletePrincipalPolicyRequest {
                principal_arn: principal,
                policy_name: name,
            };
            done(c.delete_principal_policy(req).await)
        }
        // Offline evaluation: `cli::run` handles it without a daemon.
        PolicyCmd::Eval { .. } => Err(NOT_A_CLIENT_COMMAND.into()),
    }
}

pub(super) async fn principal(c: &mut KmsClient, cmd: PrincipalCmd) -> CliResult {
    match cmd {
        PrincipalCmd::Tag {
            principal, tags, ..
        } => {
            let req = proto::TagPrincipalRequest {
                principal_arn: principal,
                tags: tags_from_pairs(tags),
            };
            done(c.tag_principal(req).await)
        }
        PrincipalCmd::Untag {
            principal, keys, ..
        } => {
            let req = proto::UntagPrincipalRequest {
                principal_arn: principal,
                tag_keys: keys,
            };
            done(c.untag_principal(req).await)
        }
        PrincipalCmd::Tags { principal, .. } => {
            let req = proto::ListPrincipalTagsRequest {
                principal_arn: principal,
            };
            let r = reply(c.list_principal_tags(req).await)?;
            print_json(&json!({ "Tags": tags_json(r.tags) }))
        }
    }
}
