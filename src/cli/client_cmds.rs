//! Client commands: connect as an identity, make one call, print the AWS-CLI-like result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use serde_json::{json, Value};

use p11kms::client::KmsClient;
use p11kms::proto;

use super::io::{decode_b64, parse_pair, read_input, write_output, B64};
use super::{
    AliasCmd, Command, ConfigCmd, Conn, GrantCmd, KeyCmd, PolicyCmd, PrincipalCmd, TagCmd,
};

type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Args, Debug)]
pub(crate) struct EncryptArgs {
    /// Key id or key ARN.
    #[arg(long)]
    key_id: String,
    /// Plaintext file, or - for stdin.
    #[arg(long = "in", default_value = "-")]
    input: PathBuf,
    /// Where to write the blob, or - for stdout.
    #[arg(long = "out", default_value = "-")]
    output: PathBuf,
    /// Write the blob as binary instead of base64.
    #[arg(long)]
    raw: bool,
    /// Encryption context pair KEY=VALUE (repeatable).
    #[arg(long = "context", short = 'c', value_parser = parse_pair)]
    context: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub(crate) struct DecryptArgs {
    /// Blob file (base64 unless --raw-input), or - for stdin.
    #[arg(long = "in", default_value = "-")]
    input: PathBuf,
    /// Where to write the plaintext, or - for stdout.
    #[arg(long = "out", default_value = "-")]
    output: PathBuf,
    /// The input blob is binary.
    #[arg(long)]
    raw_input: bool,
    /// Write the plaintext as base64.
    #[arg(long)]
    base64: bool,
    /// The key that must have encrypted the blob (optional).
    #[arg(long, default_value = "")]
    key_id: String,
    /// Encryption context pair KEY=VALUE (repeatable).
    #[arg(long = "context", short = 'c', value_parser = parse_pair)]
    context: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub(crate) struct DataKeyArgs {
    /// Key id or key ARN.
    #[arg(long)]
    key_id: String,
    /// AES_256 or AES_128 (default AES_256 unless --number-of-bytes).
    #[arg(long, conflicts_with = "number_of_bytes")]
    key_spec: Option<String>,
    /// Data key length in bytes (1..1024).
    #[arg(long)]
    number_of_bytes: Option<i32>,
    /// Return only the encrypted data key.
    #[arg(long)]
    without_plaintext: bool,
    /// Encryption context pair KEY=VALUE (repeatable).
    #[arg(long = "context", short = 'c', value_parser = parse_pair)]
    context: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub(crate) struct ReEncryptArgs {
    /// Blob file (base64 unless --raw-input), or - for stdin.
    #[arg(long = "in", default_value = "-")]
    input: PathBuf,
    /// The input blob is binary.
    #[arg(long)]
    raw_input: bool,
    /// Destination key id or ARN.
    #[arg(long)]
    destination_key_id: String,
    /// Source context pair KEY=VALUE (repeatable).
    #[arg(long = "source-context", value_parser = parse_pair)]
    source_context: Vec<(String, String)>,
    /// Destination context pair KEY=VALUE (repeatable).
    #[arg(long = "destination-context", value_parser = parse_pair)]
    destination_context: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub(crate) struct RandomArgs {
    /// How many bytes (1..1024).
    #[arg(long, default_value_t = 32)]
    number_of_bytes: i32,
    /// Print hex instead of base64.
    #[arg(long)]
    hex: bool,
}

/// Finds endpoint and identity: flags and env first, then the dev directory.
pub(crate) async fn client(conn: &Conn) -> Result<KmsClient, Box<dyn std::error::Error>> {
    Ok(p11kms::client::connect_default(
        conn.endpoint.as_deref(),
        conn.identity.as_deref(),
        conn.data_dir.as_deref(),
    )
    .await?)
}

fn ctx(pairs: Vec<(String, String)>) -> HashMap<String, String> {
    pairs.into_iter().collect()
}

fn read_blob(path: &Path, raw: bool) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let bytes = read_input(path)?;
    Ok(if raw {
        bytes.to_vec()
    } else {
        decode_b64(&bytes)?
    })
}

/// A timestamp as the AWS CLI prints it (RFC 3339), or null.
fn date(t: Option<prost_types::Timestamp>) -> Option<String> {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

fn metadata_json(m: Option<proto::KeyMetadata>) -> Value {
    let Some(m) = m else { return Value::Null };
    json!({
        "AWSAccountId": m.aws_account_id,
        "KeyId": m.key_id,
        "Arn": m.arn,
        "CreationDate": date(m.creation_date),
        "Enabled": m.enabled,
        "Description": m.description,
        "KeyUsage": m.key_usage,
        "KeyState": m.key_state,
        "DeletionDate": date(m.deletion_date),
        "Origin": m.origin,
        "KeyManager": m.key_manager,
        "KeySpec": m.key_spec,
        "EncryptionAlgorithms": m.encryption_algorithms,
        "MultiRegion": m.multi_region,
    })
}

fn grant_json(g: proto::GrantListEntry) -> Value {
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

fn print_json(v: &Value) -> CliResult {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A failed call, shown as AWS CLI users expect: the error name, then the message.
#[derive(Debug)]
struct CallFailed(tonic::Status);

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&p11kms::client::describe_status(&self.0))
    }
}

impl std::error::Error for CallFailed {}

fn call_failed(s: tonic::Status) -> Box<dyn std::error::Error> {
    Box::new(CallFailed(s))
}

pub(crate) fn run(conn: &Conn, cmd: Command) -> CliResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut c = client(conn).await?;
        match cmd {
            Command::Key(KeyCmd::Create { description, policy_file, bypass_policy_lockout_safety_check, .. }) => {
                let policy = match policy_file {
                    Some(f) => String::from_utf8(read_input(&f)?.to_vec())?,
                    None => String::new(),
                };
                let r = c
                    .create_key(proto::CreateKeyRequest {
                        description,
                        policy,
                        bypass_policy_lockout_safety_check,
                        ..Default::default()
                    })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                print_json(&json!({ "KeyMetadata": metadata_json(r.key_metadata) }))
            }
            Command::Key(KeyCmd::Describe { key_id, .. }) => {
                let r = c
                    .describe_key(proto::DescribeKeyRequest { key_id, grant_tokens: vec![] })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                print_json(&json!({ "KeyMetadata": metadata_json(r.key_metadata) }))
            }
            Command::Key(KeyCmd::List { limit, mut marker, all, .. }) => {
                let mut keys = Vec::new();
                loop {
                    let r = c
                        .list_keys(proto::ListKeysRequest { limit, marker: marker.clone() })
                        .await
                        .map_err(call_failed)?
                        .into_inner();
                    keys.extend(r.keys.into_iter().map(|k| json!({ "KeyId": k.key_id, "KeyArn": k.key_arn })));
                    if !(all && r.truncated) {
                        let out = if r.truncated {
                            json!({ "Keys": keys, "Truncated": true, "NextMarker": r.next_marker })
                        } else {
                            json!({ "Keys": keys, "Truncated": false })
                        };
                        return print_json(&out);
                    }
                    marker = r.next_marker;
                }
            }
            Command::Key(KeyCmd::ScheduleDeletion { key_id, pending_window_in_days }) => {
                let r = c
                    .schedule_key_deletion(proto::ScheduleKeyDeletionRequest { key_id, pending_window_in_days })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                print_json(&json!({
                    "KeyId": r.key_id,
                    "DeletionDate": date(r.deletion_date),
                    "KeyState": r.key_state,
                    "PendingWindowInDays": r.pending_window_in_days,
                }))
            }
            Command::Key(KeyCmd::CancelDeletion { key_id }) => {
                let r = c
                    .cancel_key_deletion(proto::CancelKeyDeletionRequest { key_id })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                print_json(&json!({ "KeyId": r.key_id }))
            }
            Command::Key(KeyCmd::Rotate { key_id }) => {
                let r = c
                    .rotate_key_on_demand(proto::RotateKeyOnDemandRequest { key_id })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                print_json(&json!({ "KeyId": r.key_id }))
            }
            Command::Key(KeyCmd::EnableRotation { key_id, rotation_period_in_days }) => {
                c.enable_key_rotation(proto::EnableKeyRotationRequest { key_id, rotation_period_in_days })
                    .await
                    .map_err(call_failed)?;
                Ok(())
            }
            Command::Key(KeyCmd::DisableRotation { key_id }) => {
                c.disable_key_rotation(proto::DisableKeyRotationRequest { key_id }).await.map_err(call_failed)?;
                Ok(())
            }
            Command::Key(KeyCmd::RotationStatus { key_id }) => {
                let r = c
                    .get_key_rotation_status(proto::GetKeyRotationStatusRequest { key_id })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                print_json(&json!({
                    "KeyId": r.key_id,
                    "KeyRotationEnabled": r.key_rotation_enabled,
                    "RotationPeriodInDays": r.rotation_period_in_days,
                    "NextRotationDate": date(r.next_rotation_date),
                }))
            }
            Command::Key(KeyCmd::ListRotations { key_id }) => {
                let r = c
                    .list_key_rotations(proto::ListKeyRotationsRequest { key_id, limit: Some(1000), marker: String::new() })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                let rotations: Vec<Value> = r
                    .rotations
                    .into_iter()
                    .map(|x| json!({ "KeyId": x.key_id, "RotationDate": date(x.rotation_date), "RotationType": x.rotation_type }))
                    .collect();
                print_json(&json!({ "Rotations": rotations, "Truncated": r.truncated }))
            }
            Command::Key(KeyCmd::UpdateDescription { key_id, description }) => {
                c.update_key_description(proto::UpdateKeyDescriptionRequest { key_id, description })
                    .await
                    .map_err(call_failed)?;
                Ok(())
            }
            Command::Tag(TagCmd::Add { key_id, tags }) => {
                let tags = tags.into_iter().map(|(tag_key, tag_value)| proto::Tag { tag_key, tag_value }).collect();
                c.tag_resource(proto::TagResourceRequest { key_id, tags }).await.map_err(call_failed)?;
                Ok(())
            }
            Command::Tag(TagCmd::Remove { key_id, tag_keys }) => {
                c.untag_resource(proto::UntagResourceRequest { key_id, tag_keys }).await.map_err(call_failed)?;
                Ok(())
            }
            Command::Tag(TagCmd::List { key_id }) => {
                let r = c
                    .list_resource_tags(proto::ListResourceTagsRequest { key_id, limit: None, marker: String::new() })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                let tags: Vec<Value> =
                    r.tags.into_iter().map(|t| json!({ "TagKey": t.tag_key, "TagValue": t.tag_value })).collect();
                print_json(&json!({ "Tags": tags, "Truncated": r.truncated }))
            }
            Command::Alias(AliasCmd::Create { alias_name, target_key_id }) => {
                c.create_alias(proto::CreateAliasRequest { alias_name, target_key_id })
                    .await
                    .map_err(call_failed)?;
                Ok(())
            }
            Command::Alias(AliasCmd::Update { alias_name, target_key_id }) => {
                c.update_alias(proto::UpdateAliasRequest { alias_name, target_key_id })
                    .await
                    .map_err(call_failed)?;
                Ok(())
            }
            Command::Alias(AliasCmd::Delete { alias_name }) => {
                c.delete_alias(proto::DeleteAliasRequest { alias_name }).await.map_err(call_failed)?;
                Ok(())
            }
            Command::Alias(AliasCmd::List { key_id, limit, mut marker, all }) => {
                let mut aliases = Vec::new();
                loop {
                    let r = c
                        .list_aliases(proto::ListAliasesRequest { key_id: key_id.clone(), limit, marker: marker.clone() })
                        .await
                        .map_err(call_failed)?
                        .into_inner();
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
                        let out = if r.truncated {
                            json!({ "Aliases": aliases, "Truncated": true, "NextMarker": r.next_marker })
                        } else {
                            json!({ "Aliases": aliases, "Truncated": false })
                        };
                        return print_json(&out);
                    }
                    marker = r.next_marker;
                }
            }
            Command::Encrypt(a) => {
                let plaintext = read_input(&a.input)?;
                let r = c
                    .encrypt(proto::EncryptRequest {
                        key_id: a.key_id,
                        plaintext: plaintext.to_vec(),
                        encryption_context: ctx(a.context),
                        grant_tokens: vec![],
                        encryption_algorithm: String::new(),
                    })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                if a.raw {
                    write_output(&a.output, &r.ciphertext_blob)?;
                } else {
                    write_output(&a.output, format!("{}\n", B64.encode(&r.ciphertext_blob)).as_bytes())?;
                }
                Ok(())
            }
            Command::Decrypt(a) => {
                let blob = read_blob(&a.input, a.raw_input)?;
                let r = c
                    .decrypt(proto::DecryptRequest {
                        ciphertext_blob: blob,
                        encryption_context: ctx(a.context),
                        key_id: a.key_id,
                        ..Default::default()
                    })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                if a.base64 {
                    let text = zeroize::Zeroizing::new(format!("{}\n", B64.encode(&r.plaintext)));
                    write_output(&a.output, text.as_bytes())?;
                } else {
                    write_output(&a.output, &r.plaintext)?;
                }
                Ok(())
            }
            Command::GenerateDataKey(a) => {
                let key_spec = match (&a.key_spec, a.number_of_bytes) {
                    (Some(s), _) => s.clone(),
                    (None, Some(_)) => String::new(),
                    (None, None) => "AES_256".into(),
                };
                let context = ctx(a.context);
                if a.without_plaintext {
                    let r = c
                        .generate_data_key_without_plaintext(proto::GenerateDataKeyWithoutPlaintextRequest {
                            key_id: a.key_id,
                            encryption_context: context,
                            number_of_bytes: a.number_of_bytes,
                            key_spec,
                            grant_tokens: vec![],
                        })
                        .await
                        .map_err(call_failed)?
                        .into_inner();
                    print_json(&json!({ "CiphertextBlob": B64.encode(&r.ciphertext_blob), "KeyId": r.key_id }))
                } else {
                    let r = c
                        .generate_data_key(proto::GenerateDataKeyRequest {
                            key_id: a.key_id,
                            encryption_context: context,
                            number_of_bytes: a.number_of_bytes,
                            key_spec,
                            grant_tokens: vec![],
                        })
                        .await
                        .map_err(call_failed)?
                        .into_inner();
                    // The user asked for the data key on stdout; that is the point.
                    print_json(&json!({
                        "CiphertextBlob": B64.encode(&r.ciphertext_blob),
                        "Plaintext": B64.encode(&r.plaintext),
                        "KeyId": r.key_id,
                    }))
                }
            }
            Command::ReEncrypt(a) => {
                let blob = read_blob(&a.input, a.raw_input)?;
                let r = c
                    .re_encrypt(proto::ReEncryptRequest {
                        ciphertext_blob: blob,
                        source_encryption_context: ctx(a.source_context),
                        destination_key_id: a.destination_key_id,
                        destination_encryption_context: ctx(a.destination_context),
                        ..Default::default()
                    })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                print_json(&json!({
                    "CiphertextBlob": B64.encode(&r.ciphertext_blob),
                    "SourceKeyId": r.source_key_id,
                    "KeyId": r.key_id,
                }))
            }
            Command::Random(a) => {
                let r = c
                    .generate_random(proto::GenerateRandomRequest { number_of_bytes: Some(a.number_of_bytes) })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                if a.hex {
                    println!("{}", r.plaintext.iter().map(|b| format!("{b:02x}")).collect::<String>());
                } else {
                    println!("{}", B64.encode(&r.plaintext));
                }
                Ok(())
            }
                        Command::Key(KeyCmd::Enable { key_id }) => {
                c.enable_key(proto::EnableKeyRequest { key_id }).await.map_err(call_failed)?;
                Ok(())
            }
            Command::Key(KeyCmd::Disable { key_id }) => {
                c.disable_key(proto::DisableKeyRequest { key_id }).await.map_err(call_failed)?;
                Ok(())
            }
            Command::Key(KeyCmd::GetPolicy { key_id, .. }) => {
                let r = c
                    .get_key_policy(proto::GetKeyPolicyRequest { key_id, policy_name: String::new() })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                println!("{}", r.policy);
                Ok(())
            }
            Command::Key(KeyCmd::PutPolicy { key_id, policy_file, bypass_policy_lockout_safety_check, .. }) => {
                let policy = String::from_utf8(read_input(&policy_file)?.to_vec())?;
                c.put_key_policy(proto::PutKeyPolicyRequest {
                    key_id,
                    policy_name: String::new(),
                    policy,
                    bypass_policy_lockout_safety_check,
                })
                .await
                .map_err(call_failed)?;
                Ok(())
            }
            Command::Policy(PolicyCmd::Put { principal, name, file, .. }) => {
                let policy_document = String::from_utf8(read_input(&file)?.to_vec())?;
                c.put_principal_policy(proto::PutPrincipalPolicyRequest {
                    principal_arn: principal,
                    policy_name: name,
                    policy_document,
                })
                .await
                .map_err(call_failed)?;
                Ok(())
            }
            Command::Policy(PolicyCmd::Get { principal, name, .. }) => {
                let r = c
                    .get_principal_policy(proto::GetPrincipalPolicyRequest { principal_arn: principal, policy_name: name })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                println!("{}", r.policy_document);
                Ok(())
            }
            Command::Policy(PolicyCmd::List { principal, .. }) => {
                let r = c
                    .list_principal_policies(proto::ListPrincipalPoliciesRequest { principal_arn: principal })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                print_json(&json!({ "PolicyNames": r.policy_names }))
            }
            Command::Policy(PolicyCmd::Delete { principal, name, .. }) => {
                c.delete_principal_policy(proto::DeletePrincipalPolicyRequest { principal_arn: principal, policy_name: name })
                    .await
                    .map_err(call_failed)?;
                Ok(())
            }
            Command::Principal(PrincipalCmd::Tag { principal, tags, .. }) => {
                let tags = tags.into_iter().map(|(tag_key, tag_value)| proto::Tag { tag_key, tag_value }).collect();
                c.tag_principal(proto::TagPrincipalRequest { principal_arn: principal, tags })
                    .await
                    .map_err(call_failed)?;
                Ok(())
            }
            Command::Principal(PrincipalCmd::Untag { principal, keys, .. }) => {
                c.untag_principal(proto::UntagPrincipalRequest { principal_arn: principal, tag_keys: keys })
                    .await
                    .map_err(call_failed)?;
                Ok(())
            }
            Command::Principal(PrincipalCmd::Tags { principal, .. }) => {
                let r = c
                    .list_principal_tags(proto::ListPrincipalTagsRequest { principal_arn: principal })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                let tags: Vec<_> =
                    r.tags.into_iter().map(|t| json!({ "TagKey": t.tag_key, "TagValue": t.tag_value })).collect();
                print_json(&json!({ "Tags": tags }))
            }
                        Command::Grant(GrantCmd::Create { key_id, grantee, operations, retiring, subset, equals, name }) => {
                let constraints = (!subset.is_empty() || !equals.is_empty()).then(|| proto::GrantConstraints {
                    encryption_context_subset: ctx(subset),
                    encryption_context_equals: ctx(equals),
                });
                let r = c
                    .create_grant(proto::CreateGrantRequest {
                        key_id,
                        grantee_principal: grantee,
                        retiring_principal: retiring.unwrap_or_default(),
                        operations,
                        constraints,
                        grant_tokens: vec![],
                        name,
                    })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                print_json(&json!({ "GrantId": r.grant_id, "GrantToken": r.grant_token }))
            }
            Command::Grant(GrantCmd::List { key_id }) => {
                let mut grants = Vec::new();
                let mut marker = String::new();
                loop {
                    let r = c
                        .list_grants(proto::ListGrantsRequest { key_id: key_id.clone(), limit: Some(100), marker, ..Default::default() })
                        .await
                        .map_err(call_failed)?
                        .into_inner();
                    grants.extend(r.grants.into_iter().map(grant_json));
                    if !r.truncated {
                        break;
                    }
                    marker = r.next_marker;
                }
                print_json(&json!({ "Grants": grants }))
            }
            Command::Grant(GrantCmd::ListRetirable { retiring }) => {
                let r = c
                    .list_retirable_grants(proto::ListRetirableGrantsRequest { retiring_principal: retiring, limit: Some(100), marker: String::new() })
                    .await
                    .map_err(call_failed)?
                    .into_inner();
                print_json(&json!({ "Grants": r.grants.into_iter().map(grant_json).collect::<Vec<_>>(), "Truncated": r.truncated }))
            }
            Command::Grant(GrantCmd::Retire { token, key_id, grant_id }) => {
                c.retire_grant(proto::RetireGrantRequest {
                    grant_token: token.unwrap_or_default(),
                    key_id: key_id.unwrap_or_default(),
                    grant_id: grant_id.unwrap_or_default(),
                })
                .await
                .map_err(call_failed)?;
                Ok(())
            }
            Command::Grant(GrantCmd::Revoke { key_id, grant_id }) => {
                c.revoke_grant(proto::RevokeGrantRequest { key_id, grant_id }).await.map_err(call_failed)?;
                Ok(())
            }
                        Command::Config(ConfigCmd::EncryptValue { key_id, context, input }) => {
                let mut value = read_input(&input)?;
                if value.last() == Some(&b'\n') {
                    value.pop();
                }
                let ctx = context.into_iter().collect();
                let p = p11kms::client::config::encrypt_value(&mut c, &key_id, &value, &ctx).await?;
                println!("{p}");
                Ok(())
            }
            Command::Config(ConfigCmd::Render { file, out, force }) => {
                let text = std::fs::read_to_string(&file)?;
                let format = p11kms::client::config::Format::from_path(&file);
                let rendered = p11kms::client::config::render(&mut c, &text, format).await?;
                match out {
                    None => write_output(Path::new("-"), rendered.as_bytes())?,
                    Some(path) => super::io::write_private_atomically(&path, rendered.as_bytes(), force)?,
                }
                Ok(())
            }
            Command::Serve(_)
            | Command::Dev(_)
            | Command::Policy(PolicyCmd::Eval { .. })
            | Command::EncryptFile(_)
            | Command::DecryptFile(_) => {
                Err("not a client command".into())
            }
        }
    })
}
