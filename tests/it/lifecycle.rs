//! Key lifecycle over the wire: descriptions (UpdateKeyDescription), scheduled deletion
//! with a moved clock, cancellation, and destruction of the material in the token;
//! rotation on demand and on schedule.

use p11kms::client::KmsClient;
use p11kms::proto;

use crate::harness::*;

fn update_req(key_id: &str, description: &str) -> proto::UpdateKeyDescriptionRequest {
    proto::UpdateKeyDescriptionRequest {
        key_id: key_id.into(),
        description: description.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn update_key_description_on_enabled_and_disabled_keys() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let k = create_key(&mut c).await;
    c.create_alias(proto::CreateAliasRequest {
        alias_name: "alias/described".into(),
        target_key_id: k.key_id.clone(),
    })
    .await
    .unwrap();
    c.update_key_description(update_req("alias/described", "payroll, 2026 ✓"))
        .await
        .unwrap();
    assert_eq!(
        describe(&mut c, &k.key_id).await.description,
        "payroll, 2026 ✓"
    );
    // A disabled key can still be described and renamed.
    c.disable_key(proto::DisableKeyRequest {
        key_id: k.key_id.clone(),
    })
    .await
    .unwrap();
    c.update_key_description(update_req(&k.arn, ""))
        .await
        .unwrap();
    assert_eq!(describe(&mut c, &k.key_id).await.description, "");
    assert_kms_error(
        c.update_key_description(update_req(&k.key_id, &"x".repeat(8193)))
            .await,
        "ValidationException",
    );
    // Persisted.
    c.update_key_description(update_req(&k.key_id, "kept"))
        .await
        .unwrap();
    d.stop();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    assert_eq!(describe(&mut c, &k.key_id).await.description, "kept");
    // Needs kms:UpdateKeyDescription.
    let reader = role(ACCOUNT, "reader");
    put_identity_policy(&mut c, &reader, "ro", allow(&["kms:DescribeKey"])).await;
    let mut r = d.client_as(&reader).await;
    assert_kms_error(
        r.update_key_description(update_req(&k.key_id, "no")).await,
        "AccessDeniedException",
    );
}

fn schedule(key_id: &str, days: Option<i32>) -> proto::ScheduleKeyDeletionRequest {
    proto::ScheduleKeyDeletionRequest {
        key_id: key_id.into(),
        pending_window_in_days: days,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_deletion_cancel_and_destruction_after_the_window() {
    let dir = TestDir::new();
    let offset = dir.with_test_clock();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let doomed = create_key(&mut c).await;
    let other = create_key(&mut c).await;
    let blob = encrypt(&mut c, &doomed.key_id, b"old data", &[]).await;
    c.create_alias(proto::CreateAliasRequest {
        alias_name: "alias/doomed".into(),
        target_key_id: doomed.key_id.clone(),
    })
    .await
    .unwrap();

    for bad in [6, 31] {
        assert_kms_error(
            c.schedule_key_deletion(schedule(&doomed.key_id, Some(bad)))
                .await,
            "ValidationException",
        );
    }
    let r = c
        .schedule_key_deletion(schedule("alias/doomed", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            r.key_id.as_str(),
            r.key_state.as_str(),
            r.pending_window_in_days
        ),
        (doomed.arn.as_str(), "PendingDeletion", 30)
    );
    let days = (r.deletion_date.unwrap().seconds - d_now()) / 86_400;
    assert!((29..=30).contains(&days), "{days}");
    let m = describe(&mut c, &doomed.key_id).await;
    assert_eq!(
        (m.key_state.as_str(), m.enabled),
        ("PendingDeletion", false)
    );
    assert!(m.deletion_date.is_some());

    // Pending deletion: crypto and state changes refused with AWS's errors.
    assert_kms_error(
        c.encrypt(encrypt_req(&doomed.key_id, b"x", &[])).await,
        "KMSInvalidStateException",
    );
    assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[])).await,
        "KMSInvalidStateException",
    );
    assert_kms_error(
        c.enable_key(proto::EnableKeyRequest {
            key_id: doomed.key_id.clone(),
        })
        .await,
        "KMSInvalidStateException",
    );
    assert_kms_error(
        c.schedule_key_deletion(schedule(&doomed.key_id, Some(7)))
            .await,
        "KMSInvalidStateException",
    );
    assert_kms_error(
        c.update_key_description(update_req(&doomed.key_id, "x"))
            .await,
        "KMSInvalidStateException",
    );

    // Cancel: the key comes back Disabled, not Enabled.
    let r = c
        .cancel_key_deletion(proto::CancelKeyDeletionRequest {
            key_id: doomed.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.key_id, doomed.arn);
    let m = describe(&mut c, &doomed.key_id).await;
    assert_eq!(m.key_state, "Disabled");
    assert!(m.deletion_date.is_none());
    assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[])).await,
        "DisabledException",
    );
    assert_kms_error(
        c.cancel_key_deletion(proto::CancelKeyDeletionRequest {
            key_id: doomed.key_id.clone(),
        })
        .await,
        "KMSInvalidStateException",
    );
    c.enable_key(proto::EnableKeyRequest {
        key_id: doomed.key_id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"old data");

    // Scheduled again, and the clock moves past the window: the sweep destroys it.
    c.schedule_key_deletion(schedule(&doomed.key_id, Some(7)))
        .await
        .unwrap();
    assert!(dir.objects_of(&doomed.key_id) > 0);
    std::fs::write(&offset, (8 * 86_400).to_string()).unwrap();
    let describe_req = || proto::DescribeKeyRequest {
        key_id: doomed.key_id.clone(),
        grant_tokens: vec![],
    };
    eventually("the key's destruction", || {
        let (mut probe, req) = (c.clone(), describe_req());
        async move { probe.describe_key(req).await.is_err() }
    })
    .await;
    assert_kms_error(c.describe_key(describe_req()).await, "NotFoundException");
    assert_eq!(
        dir.objects_of(&doomed.key_id),
        0,
        "material left in the token"
    );
    assert!(
        dir.objects_of(&other.key_id) > 0,
        "another key's material was touched"
    );
    let st = assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[])).await,
        "NotFoundException",
    );
    assert!(st.message().contains(&doomed.arn), "{}", st.message());
    assert_kms_error(
        c.encrypt(encrypt_req("alias/doomed", b"x", &[])).await,
        "NotFoundException",
    );
    encrypt(&mut c, &other.key_id, b"still fine", &[]).await;
    // Gone for good, across a restart too.
    d.stop();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[])).await,
        "NotFoundException",
    );
}

fn d_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn rotations(
    c: &mut KmsClient,
    key_id: &str,
    limit: Option<i32>,
    marker: &str,
) -> proto::ListKeyRotationsResponse {
    c.list_key_rotations(proto::ListKeyRotationsRequest {
        key_id: key_id.into(),
        limit,
        marker: marker.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn rotations_on_demand_and_on_schedule_keep_every_generation_readable() {
    let dir = TestDir::new();
    let offset = dir.with_test_clock();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let k = create_key(&mut c).await;
    let mut blobs = vec![encrypt(&mut c, &k.key_id, b"gen 1", &[]).await];
    assert_eq!(material_version(&blobs[0]), 1);

    for bad in [89, 2561] {
        assert_kms_error(
            c.enable_key_rotation(proto::EnableKeyRotationRequest {
                key_id: k.key_id.clone(),
                rotation_period_in_days: Some(bad),
            })
            .await,
            "ValidationException",
        );
    }
    c.enable_key_rotation(proto::EnableKeyRotationRequest {
        key_id: k.key_id.clone(),
        rotation_period_in_days: None,
    })
    .await
    .unwrap();
    let st = c
        .get_key_rotation_status(proto::GetKeyRotationStatusRequest {
            key_id: k.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(st.key_rotation_enabled);
    assert_eq!(st.rotation_period_in_days, Some(365));
    let days = (st.next_rotation_date.unwrap().seconds - d_now()) / 86_400;
    assert!((364..=365).contains(&days), "{days}");

    // Two rotations on demand.
    for generation in 2..=3u32 {
        let r = c
            .rotate_key_on_demand(proto::RotateKeyOnDemandRequest {
                key_id: k.key_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.key_id, k.arn);
        let b = encrypt(
            &mut c,
            &k.key_id,
            format!("gen {generation}").as_bytes(),
            &[],
        )
        .await;
        assert_eq!(material_version(&b), generation);
        blobs.push(b);
    }
    // The third on schedule, once the clock passes the rotation date.
    std::fs::write(&offset, (366 * 86_400).to_string()).unwrap();
    eventually("the scheduled rotation", || {
        let (mut probe, id) = (c.clone(), k.key_id.clone());
        async move { rotations(&mut probe, &id, None, "").await.rotations.len() == 3 }
    })
    .await;
    let b = encrypt(&mut c, &k.key_id, b"gen 4", &[]).await;
    assert_eq!(material_version(&b), 4);
    blobs.push(b);

    let all = rotations(&mut c, &k.key_id, None, "").await;
    let kinds: Vec<_> = all
        .rotations
        .iter()
        .map(|r| r.rotation_type.as_str())
        .collect();
    assert_eq!(kinds, ["ON_DEMAND", "ON_DEMAND", "AUTOMATIC"]);
    assert!(all.rotations.iter().all(|r| r.key_id == k.arn));
    let page = rotations(&mut c, &k.key_id, Some(2), "").await;
    assert!(page.truncated);
    assert_eq!(page.rotations.len(), 2);
    let rest = rotations(&mut c, &k.key_id, Some(2), &page.next_marker).await;
    assert_eq!(rest.rotations.len(), 1);
    assert_eq!(rest.rotations[0].rotation_type, "AUTOMATIC");
    // The schedule moved a period on from the rotation.
    let st = c
        .get_key_rotation_status(proto::GetKeyRotationStatusRequest {
            key_id: k.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let days = (st.next_rotation_date.unwrap().seconds - d_now()) / 86_400;
    assert!((365 + 364..=365 + 366).contains(&days), "{days}");

    // Every generation decrypts; ReEncrypt moves an old blob to the newest material.
    for (i, b) in blobs.iter().enumerate() {
        assert_eq!(
            decrypt(&mut c, b, &[]).await,
            format!("gen {}", i + 1).as_bytes()
        );
    }
    let moved = c
        .re_encrypt(proto::ReEncryptRequest {
            ciphertext_blob: blobs[0].clone(),
            destination_key_id: k.key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(material_version(&moved.ciphertext_blob), 4);
    assert_eq!(decrypt(&mut c, &moved.ciphertext_blob, &[]).await, b"gen 1");
    // All four versions are token objects; none was exported or destroyed.
    let mine = dir.objects_of(&k.key_id);
    assert_eq!(mine, 4);

    // Rotation changes need an enabled key.
    c.disable_key(proto::DisableKeyRequest {
        key_id: k.key_id.clone(),
    })
    .await
    .unwrap();
    assert_kms_error(
        c.rotate_key_on_demand(proto::RotateKeyOnDemandRequest {
            key_id: k.key_id.clone(),
        })
        .await,
        "DisabledException",
    );
    assert_kms_error(
        c.disable_key_rotation(proto::DisableKeyRotationRequest {
            key_id: k.key_id.clone(),
        })
        .await,
        "DisabledException",
    );
}

/// One operation of the key-state table, run against `key`.
async fn run_op(c: &mut KmsClient, op: &str, key: &str, blob: &[u8]) -> Result<(), tonic::Status> {
    let k = key.to_string();
    match op {
        "Encrypt" => c.encrypt(encrypt_req(&k, b"x", &[])).await.map(|_| ()),
        "GenerateDataKey" => c
            .generate_data_key(proto::GenerateDataKeyRequest {
                key_id: k,
                number_of_bytes: Some(32),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "Decrypt" => c.decrypt(decrypt_req(blob, &[])).await.map(|_| ()),
        "DescribeKey" => c
            .describe_key(proto::DescribeKeyRequest {
                key_id: k,
                grant_tokens: vec![],
            })
            .await
            .map(|_| ()),
        "GetKeyPolicy" => c
            .get_key_policy(proto::GetKeyPolicyRequest {
                key_id: k,
                policy_name: String::new(),
            })
            .await
            .map(|_| ()),
        "PutKeyPolicy" => {
            let policy = c
                .get_key_policy(proto::GetKeyPolicyRequest {
                    key_id: k.clone(),
                    policy_name: String::new(),
                })
                .await?
                .into_inner()
                .policy;
            c.put_key_policy(proto::PutKeyPolicyRequest {
                key_id: k,
                policy_name: String::new(),
                policy,
                bypass_policy_lockout_safety_check: false,
            })
            .await
            .map(|_| ())
        }
        "CreateGrant" => c
            .create_grant(proto::CreateGrantRequest {
                key_id: k,
                grantee_principal: role(ACCOUNT, "grantee"),
                operations: vec!["Decrypt".into()],
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "ListGrants" => c
            .list_grants(proto::ListGrantsRequest {
                key_id: k,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "EnableKeyRotation" => c
            .enable_key_rotation(proto::EnableKeyRotationRequest {
                key_id: k,
                rotation_period_in_days: None,
            })
            .await
            .map(|_| ()),
        "GetKeyRotationStatus" => c
            .get_key_rotation_status(proto::GetKeyRotationStatusRequest { key_id: k })
            .await
            .map(|_| ()),
        "RotateKeyOnDemand" => c
            .rotate_key_on_demand(proto::RotateKeyOnDemandRequest { key_id: k })
            .await
            .map(|_| ()),
        "TagResource" => c
            .tag_resource(proto::TagResourceRequest {
                key_id: k,
                tags: vec![proto::Tag {
                    tag_key: "t".into(),
                    tag_value: "v".into(),
                }],
            })
            .await
            .map(|_| ()),
        "ListResourceTags" => c
            .list_resource_tags(proto::ListResourceTagsRequest {
                key_id: k,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "CreateAlias" => c
            .create_alias(proto::CreateAliasRequest {
                alias_name: format!("alias/state-{}", &k[..8]),
                target_key_id: k,
            })
            .await
            .map(|_| ()),
        "UpdateKeyDescription" => c
            .update_key_description(update_req(&k, "d"))
            .await
            .map(|_| ()),
        "EnableKey" => c
            .enable_key(proto::EnableKeyRequest { key_id: k })
            .await
            .map(|_| ()),
        "DisableKey" => c
            .disable_key(proto::DisableKeyRequest { key_id: k })
            .await
            .map(|_| ()),
        "ScheduleKeyDeletion" => c
            .schedule_key_deletion(schedule(&k, Some(7)))
            .await
            .map(|_| ()),
        "CancelKeyDeletion" => c
            .cancel_key_deletion(proto::CancelKeyDeletionRequest { key_id: k })
            .await
            .map(|_| ()),
        other => panic!("no such operation {other}"),
    }
}

/// AWS's key-state table for these operations: Ok, or the error name, per state
/// (Enabled, Disabled, PendingDeletion).
const STATE_TABLE: &[(&str, [&str; 3])] = &[
    (
        "Encrypt",
        ["ok", "DisabledException", "KMSInvalidStateException"],
    ),
    (
        "GenerateDataKey",
        ["ok", "DisabledException", "KMSInvalidStateException"],
    ),
    (
        "Decrypt",
        ["ok", "DisabledException", "KMSInvalidStateException"],
    ),
    (
        "CreateGrant",
        ["ok", "DisabledException", "KMSInvalidStateException"],
    ),
    (
        "EnableKeyRotation",
        ["ok", "DisabledException", "KMSInvalidStateException"],
    ),
    (
        "RotateKeyOnDemand",
        ["ok", "DisabledException", "KMSInvalidStateException"],
    ),
    (
        "GetKeyRotationStatus",
        ["ok", "ok", "KMSInvalidStateException"],
    ),
    ("DescribeKey", ["ok", "ok", "ok"]),
    ("GetKeyPolicy", ["ok", "ok", "ok"]),
    ("PutKeyPolicy", ["ok", "ok", "ok"]),
    ("ListGrants", ["ok", "ok", "ok"]),
    ("ListResourceTags", ["ok", "ok", "ok"]),
    ("TagResource", ["ok", "ok", "KMSInvalidStateException"]),
    ("CreateAlias", ["ok", "ok", "KMSInvalidStateException"]),
    (
        "UpdateKeyDescription",
        ["ok", "ok", "KMSInvalidStateException"],
    ),
    ("EnableKey", ["ok", "ok", "KMSInvalidStateException"]),
    ("DisableKey", ["ok", "ok", "KMSInvalidStateException"]),
    (
        "ScheduleKeyDeletion",
        ["ok", "ok", "KMSInvalidStateException"],
    ),
    (
        "CancelKeyDeletion",
        ["KMSInvalidStateException", "KMSInvalidStateException", "ok"],
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_state_and_operation_gives_the_aws_answer() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let mut wrong = Vec::new();
    for (op, expected) in STATE_TABLE {
        for (state, want) in ["Enabled", "Disabled", "PendingDeletion"]
            .iter()
            .zip(expected)
        {
            // A fresh key per cell: some operations change the state.
            let k = create_key(&mut c).await;
            let blob = encrypt(&mut c, &k.key_id, b"x", &[]).await;
            match *state {
                "Disabled" => {
                    c.disable_key(proto::DisableKeyRequest {
                        key_id: k.key_id.clone(),
                    })
                    .await
                    .unwrap();
                }
                "PendingDeletion" => {
                    c.schedule_key_deletion(schedule(&k.key_id, None))
                        .await
                        .unwrap();
                }
                _ => {}
            }
            let got = match run_op(&mut c, op, &k.key_id, &blob).await {
                Ok(()) => "ok".to_string(),
                Err(st) => p11kms::client::error_name(&st)
                    .unwrap_or("transport")
                    .to_string(),
            };
            if got != *want {
                wrong.push(format!("{op} on {state}: {got}, AWS says {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
