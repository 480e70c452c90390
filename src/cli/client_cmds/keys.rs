//! `p11kms key …`: create, describe and list keys; enable and disable them, change their
//! description; rotation, deletion and the key policy.

use serde_json::{json, Value};

use p11kms::client::KmsClient;
use p11kms::proto;

use super::{date, done, print_json, print_page, reply, CliResult};
use crate::cli::io::{print_line, read_input};
use crate::cli::KeyCmd;

pub(super) async fn run(c: &mut KmsClient, cmd: KeyCmd) -> CliResult {
    match cmd {
        KeyCmd::Create {
            description,
            key_spec,
            key_usage,
            policy_file,
            bypass_policy_lockout_safety_check,
            origin,
            ..
        } => {
            // No file: an empty policy, for which the daemon applies AWS's default key policy.
            let policy = match policy_file {
                Some(f) => String::from_utf8(read_input(&f)?.to_vec())?,
                None => String::new(),
            };
            let req = proto::CreateKeyRequest {
                description,
                key_spec,
                key_usage,
                policy,
                bypass_policy_lockout_safety_check,
                origin,
            };
            let r = reply(c.create_key(req).await)?;
            print_json(&json!({ "KeyMetadata": metadata_json(r.key_metadata) }))
        }
        KeyCmd::Describe { key_id, .. } => {
            let req = proto::DescribeKeyRequest {
                key_id,
                grant_tokens: vec![],
            };
            let r = reply(c.describe_key(req).await)?;
            print_json(&json!({ "KeyMetadata": metadata_json(r.key_metadata) }))
        }
        KeyCmd::List {
            limit, marker, all, ..
        } => list(c, limit, marker, all).await,
        KeyCmd::Enable { key_id } => {
            let req = proto::EnableKeyRequest { key_id };
            done(c.enable_key(req).await)
        }
        KeyCmd::Disable { key_id } => {
            let req = proto::DisableKeyRequest { key_id };
            done(c.disable_key(req).await)
        }
        KeyCmd::UpdateDescription {
            key_id,
            description,
        } => {
            let req = proto::UpdateKeyDescriptionRequest {
                key_id,
                description,
            };
            done(c.update_key_description(req).await)
        }
        KeyCmd::ScheduleDeletion {
            key_id,
            pending_window_in_days,
        } => schedule_deletion(c, key_id, pending_window_in_days).await,
        KeyCmd::CancelDeletion { key_id } => {
            let req = proto::CancelKeyDeletionRequest { key_id };
            let r = reply(c.cancel_key_deletion(req).await)?;
            print_json(&json!({ "KeyId": r.key_id }))
        }
        KeyCmd::Rotate { key_id } => {
            let req = proto::RotateKeyOnDemandRequest { key_id };
            let r = reply(c.rotate_key_on_demand(req).await)?;
            print_json(&json!({ "KeyId": r.key_id }))
        }
        KeyCmd::EnableRotation {
            key_id,
            rotation_period_in_days,
        } => {
            let req = proto::EnableKeyRotationRequest {
                key_id,
                rotation_period_in_days,
            };
            done(c.enable_key_rotation(req).await)
        }
        KeyCmd::DisableRotation { key_id } => {
            let req = proto::DisableKeyRotationRequest { key_id };
            done(c.disable_key_rotation(req).await)
        }
        KeyCmd::RotationStatus { key_id } => rotation_status(c, key_id).await,
        KeyCmd::ListRotations { key_id } => list_rotations(c, key_id).await,
        KeyCmd::GetPolicy { key_id, .. } => {
            let req = proto::GetKeyPolicyRequest {
                key_id,
                policy_name: String::new(),
            };
            let r = reply(c.get_key_policy(req).await)?;
            print_line(&r.policy)?;
            Ok(())
        }
        KeyCmd::PutPolicy {
            key_id,
            policy_file,
            bypass_policy_lockout_safety_check,
            ..
        } => {
            let policy = String::from_utf8(read_input(&policy_file)?.to_vec())?;
            let req = proto::PutKeyPolicyRequest {
                key_id,
                policy_name: String::new(),
                policy,
                bypass_policy_lockout_safety_check,
            };
            done(c.put_key_policy(req).await)
        }
    }
}

fn metadata_json(m: Option<proto::KeyMetadata>) -> Value {
    let Some(m) = m else { return Value::Null };
    let mut out = json!({
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
    });
    // The algorithm lists a key of another kind has, as AWS shows them: only when set.
    for (name, list) in [
        ("SigningAlgorithms", m.signing_algorithms),
        ("MacAlgorithms", m.mac_algorithms),
        ("KeyAgreementAlgorithms", m.key_agreement_algorithms),
    ] {
        if let (false, Some(obj)) = (list.is_empty(), out.as_object_mut()) {
            obj.insert(name.into(), json!(list));
        }
    }
    // Imported material's terms, as AWS shows them: only when the key has some.
    if let (false, Some(obj)) = (m.expiration_model.is_empty(), out.as_object_mut()) {
        obj.insert("ExpirationModel".into(), json!(m.expiration_model));
        if let Some(t) = date(m.valid_to) {
            obj.insert("ValidTo".into(), json!(t));
        }
    }
    out
}

/// Lists one page, or with `all` follows NextMarker and prints every key as one page.
async fn list(c: &mut KmsClient, limit: Option<i32>, mut marker: String, all: bool) -> CliResult {
    let mut keys = Vec::new();
    loop {
        let req = proto::ListKeysRequest {
            limit,
            marker: marker.clone(),
        };
        let r = reply(c.list_keys(req).await)?;
        keys.extend(
            r.keys
                .into_iter()
                .map(|k| json!({ "KeyId": k.key_id, "KeyArn": k.key_arn })),
        );
        if !(all && r.truncated) {
            return print_page("Keys", keys, r.truncated, r.next_marker);
        }
        marker = r.next_marker;
    }
}

async fn schedule_deletion(
    c: &mut KmsClient,
    key_id: String,
    pending_window_in_days: Option<i32>,
) -> CliResult {
    let req = proto::ScheduleKeyDeletionRequest {
        key_id,
        pending_window_in_days,
    };
    let r = reply(c.schedule_key_deletion(req).await)?;
    print_json(&json!({
        "KeyId": r.key_id,
        "DeletionDate": date(r.deletion_date),
        "KeyState": r.key_state,
        "PendingWindowInDays": r.pending_window_in_days,
    }))
}

async fn rotation_status(c: &mut KmsClient, key_id: String) -> CliResult {
    let req = proto::GetKeyRotationStatusRequest { key_id };
    let r = reply(c.get_key_rotation_status(req).await)?;
    print_json(&json!({
        "KeyId": r.key_id,
        "KeyRotationEnabled": r.key_rotation_enabled,
        "RotationPeriodInDays": r.rotation_period_in_days,
        "NextRotationDate": date(r.next_rotation_date),
    }))
}

async fn list_rotations(c: &mut KmsClient, key_id: String) -> CliResult {
    let req = proto::ListKeyRotationsRequest {
        key_id,
        limit: Some(1000),
        marker: String::new(),
    };
    let r = reply(c.list_key_rotations(req).await)?;
    let rotations: Vec<Value> = r
        .rotations
        .into_iter()
        .map(|x| {
            json!({
                "KeyId": x.key_id,
                "RotationDate": date(x.rotation_date),
                "RotationType": x.rotation_type,
            })
        })
        .collect();
    print_json(&json!({ "Rotations": rotations, "Truncated": r.truncated }))
}
