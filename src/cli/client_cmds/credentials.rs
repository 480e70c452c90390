//! `p11kms credentials …`: access keys for the AWS JSON listener, printed as
//! `aws iam create-access-key` and `aws iam list-access-keys` print them.

use serde_json::{json, Map, Value};

use p11kms::client::KmsClient;
use p11kms::proto;

use super::{done, print_json, reply, CliResult};
use crate::cli::CredentialsCmd;

/// A CreateDate as IAM's JSON shows it: RFC 3339 in UTC, `Z`.
fn create_date(t: Option<prost_types::Timestamp>) -> Value {
    super::date(t).map_or(Value::Null, Value::String)
}

/// One access key in IAM's shape; `UserName` only for users and roles.
fn access_key(k: &proto::AccessKey, with_secret: bool) -> Value {
    let mut m = Map::new();
    if !k.user_name.is_empty() {
        m.insert("UserName".into(), json!(k.user_name));
    }
    m.insert("AccessKeyId".into(), json!(k.access_key_id));
    m.insert("Status".into(), json!(k.status));
    if with_secret {
        m.insert("SecretAccessKey".into(), json!(k.secret_access_key));
    }
    m.insert("CreateDate".into(), create_date(k.create_date));
    Value::Object(m)
}

pub(super) async fn run(c: &mut KmsClient, cmd: CredentialsCmd) -> CliResult {
    match cmd {
        CredentialsCmd::Create { principal } => {
            let req = proto::CreateAccessKeyRequest {
                principal_arn: principal,
            };
            let r = reply(c.create_access_key(req).await)?;
            let k = r.access_key.unwrap_or_default();
            print_json(&json!({ "AccessKey": access_key(&k, true) }))
        }
        CredentialsCmd::List { principal } => {
            let req = proto::ListAccessKeysRequest {
                principal_arn: principal.unwrap_or_default(),
            };
            let r = reply(c.list_access_keys(req).await)?;
            let keys: Vec<Value> = r
                .access_key_metadata
                .iter()
                .map(|k| access_key(k, false))
                .collect();
            print_json(&json!({ "AccessKeyMetadata": keys }))
        }
        CredentialsCmd::Delete { access_key_id } => {
            let req = proto::DeleteAccessKeyRequest { access_key_id };
            done(c.delete_access_key(req).await)
        }
    }
}

/// What `dev issue-credentials` prints: the same shape as `credentials create`.
pub(crate) fn issued_json(k: &p11kms::AccessKey) -> Value {
    let created = time::OffsetDateTime::from(k.metadata.create_date)
        .replace_nanosecond(0)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    let mut m = Map::new();
    if let Some(name) = &k.metadata.user_name {
        m.insert("UserName".into(), json!(name));
    }
    m.insert(
        "AccessKeyId".into(),
        json!(k.metadata.access_key_id.as_str()),
    );
    m.insert("Status".into(), json!(k.metadata.status.as_str()));
    m.insert("SecretAccessKey".into(), json!(k.secret.expose()));
    m.insert("CreateDate".into(), json!(created));
    json!({ "AccessKey": Value::Object(m) })
}
