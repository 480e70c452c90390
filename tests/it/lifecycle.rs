//! Key lifecycle over the wire: descriptions (UpdateKeyDescription).

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
