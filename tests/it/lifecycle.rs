//! Key lifecycle over the wire: descriptions (UpdateKeyDescription), scheduled deletion
//! with a moved clock, cancellation, and destruction of the material in the token.

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

fn objects_of(dir: &TestDir, key_id: &str) -> usize {
    let hex = key_id.replace('-', "");
    dir.token_objects()
        .iter()
        .filter(|o| o["id"].as_str().unwrap().starts_with(&hex))
        .count()
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
    dir.prepare();
    let offset = dir.path().join("clock-offset");
    dir.append_config(&format!(
        "\n[lifecycle]\nsweep_interval_secs = 1\nclock_offset_file = {:?}\n",
        offset.to_str().unwrap()
    ));
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
    assert!(objects_of(&dir, &doomed.key_id) > 0);
    std::fs::write(&offset, (8 * 86_400).to_string()).unwrap();
    let mut gone = false;
    for _ in 0..100 {
        let r = c
            .describe_key(proto::DescribeKeyRequest {
                key_id: doomed.key_id.clone(),
                grant_tokens: vec![],
            })
            .await;
        if r.is_err() {
            assert_kms_error(r, "NotFoundException");
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the key was not destroyed:\n{}", d.log());
    assert_eq!(
        objects_of(&dir, &doomed.key_id),
        0,
        "material left in the token"
    );
    assert!(
        objects_of(&dir, &other.key_id) > 0,
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
