//! `p11kms alias …`: names for keys.

use serde_json::json;

use p11kms::client::KmsClient;
use p11kms::proto;

use super::{date, done, print_page, reply, CliResult};
use crate::cli::AliasCmd;

pub(super) async fn run(c: &mut KmsClient, cmd: AliasCmd) -> CliResult {
    match cmd {
        AliasCmd::Create {
            alias_name,
            target_key_id,
        } => {
            let req = proto::CreateAliasRequest {
                alias_name,
                target_key_id,
            };
            done(c.create_alias(req).await)
        }
        AliasCmd::Update {
            alias_name,
            target_key_id,
        } => {
            let req = proto::UpdateAliasRequest {
                alias_name,
                target_key_id,
            };
            done(c.update_alias(req).await)
        }
        AliasCmd::Delete { alias_name } => {
            let req = proto::DeleteAliasRequest { alias_name };
            done(c.delete_alias(req).await)
        }
        AliasCmd::List {
            key_id,
            limit,
            marker,
            all,
        } => list(c, key_id, limit, marker, all).await,
    }
}

/// Lists one page, or with `all` follows NextMarker and prints every alias as one page.
async fn list(
    c: &mut KmsClient,
    key_id: String,
    limit: Option<i32>,
    mut marker: String,
    all: bool,
) -> CliResult {
    let mut aliases = Vec::new();
    loop {
        let req = proto::ListAliasesRequest {
            key_id: key_id.clone(),
            limit,
            marker: marker.clone(),
        };
        let r = reply(c.list_aliases(req).await)?;
        aliases.extend(r.aliases.into_iter().map(|a| {
            json!({
                "AliasName": a.alias_name,
                "AliasArn": a.alias_arn,
                "TargetKeyId": a.target_key_id,
                "CreationDate": date(a.creation_date),
                "LastUpdatedDate": date(a.last_updated_date),
            })
        }));
        if !(all && r.truncated) {
            return print_page("Aliases", aliases, r.truncated, r.next_marker);
        }
        marker = r.next_marker;
    }
}
