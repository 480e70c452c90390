//! `p11kms tag …`: a key's tags.

use serde_json::json;

use p11kms::client::KmsClient;
use p11kms::proto;

use super::{done, print_json, reply, tags_from_pairs, tags_json, CliResult};
use crate::cli::TagCmd;

pub(super) async fn run(c: &mut KmsClient, cmd: TagCmd) -> CliResult {
    match cmd {
        TagCmd::Add { key_id, tags } => {
            let tags = tags_from_pairs(tags);
            let req = proto::TagResourceRequest { key_id, tags };
            done(c.tag_resource(req).await)
        }
        TagCmd::Remove { key_id, tag_keys } => {
            let req = proto::UntagResourceRequest { key_id, tag_keys };
            done(c.untag_resource(req).await)
        }
        TagCmd::List { key_id } => {
            let req = proto::ListResourceTagsRequest {
                key_id,
                limit: None,
                marker: String::new(),
            };
            let r = reply(c.list_resource_tags(req).await)?;
            print_json(&json!({ "Tags": tags_json(r.tags), "Truncated": r.truncated }))
        }
    }
}
