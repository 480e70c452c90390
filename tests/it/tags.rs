//! Key tags over the wire: TagResource, UntagResource, ListResourceTags, AWS's tag rules
//! and limits, and attribute-based access control with aws:ResourceTag, aws:RequestTag
//! and aws:TagKeys.

use p11kms::client::KmsClient;
use p11kms::proto;

use crate::harness::*;

fn tag(k: &str, v: &str) -> proto::Tag {
    proto::Tag {
        tag_key: k.into(),
        tag_value: v.into(),
    }
}

async fn tag_key(
    c: &mut KmsClient,
    key_id: &str,
    tags: Vec<proto::Tag>,
) -> Result<(), tonic::Status> {
    c.tag_resource(proto::TagResourceRequest {
        key_id: key_id.into(),
        tags,
    })
    .await
    .map(|_| ())
}

async fn tags_of(
    c: &mut KmsClient,
    key_id: &str,
    limit: Option<i32>,
    marker: &str,
) -> proto::ListResourceTagsResponse {
    c.list_resource_tags(proto::ListResourceTagsRequest {
        key_id: key_id.into(),
        limit,
        marker: marker.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_are_added_listed_removed_and_checked() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let k = create_key(&mut c).await;
    tag_key(
        &mut c,
        &k.key_id,
        vec![tag("team", "payments"), tag("env", "prod")],
    )
    .await
    .unwrap();
    tag_key(&mut c, &k.arn, vec![tag("env", "dev")])
        .await
        .unwrap();
    let all = tags_of(&mut c, &k.key_id, None, "").await;
    let got: Vec<_> = all
        .tags
        .iter()
        .map(|t| (t.tag_key.as_str(), t.tag_value.as_str()))
        .collect();
    assert_eq!(got, [("env", "dev"), ("team", "payments")]);
    let page = tags_of(&mut c, &k.key_id, Some(1), "").await;
    assert!(page.truncated);
    assert_eq!(page.tags.len(), 1);
    assert_eq!(page.tags[0].tag_key, "env");
    let rest = tags_of(&mut c, &k.key_id, Some(1), &page.next_marker).await;
    assert_eq!(rest.tags[0].tag_key, "team");
    assert!(!rest.truncated);

    for bad in [
        tag("aws:team", "x"),
        tag("", "x"),
        tag("semi;colon", "x"),
        tag("k", &"v".repeat(257)),
    ] {
        let r = c
            .tag_resource(proto::TagResourceRequest {
                key_id: k.key_id.clone(),
                tags: vec![bad],
            })
            .await;
        assert_kms_error(r, "TagException");
    }
    let many: Vec<_> = (0..49).map(|i| tag(&format!("t{i}"), "v")).collect();
    let r = c
        .tag_resource(proto::TagResourceRequest {
            key_id: k.key_id.clone(),
            tags: many,
        })
        .await;
    assert_kms_error(r, "LimitExceededException");
    assert_eq!(
        tags_of(&mut c, &k.key_id, None, "").await.tags.len(),
        2,
        "all or none"
    );

    c.untag_resource(proto::UntagResourceRequest {
        key_id: k.key_id.clone(),
        tag_keys: vec!["env".into(), "absent".into()],
    })
    .await
    .unwrap();
    assert_eq!(tags_of(&mut c, &k.key_id, None, "").await.tags.len(), 1);

    // Kept across a restart; refused on a key pending deletion.
    d.stop();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    assert_eq!(
        tags_of(&mut c, &k.key_id, None, "").await.tags[0].tag_key,
        "team"
    );
    c.schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
        key_id: k.key_id.clone(),
        pending_window_in_days: Some(7),
    })
    .await
    .unwrap();
    assert_kms_error(
        c.tag_resource(proto::TagResourceRequest {
            key_id: k.key_id.clone(),
            tags: vec![tag("x", "y")],
        })
        .await,
        "KMSInvalidStateException",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn abac_decrypt_only_where_the_key_tag_matches_the_principal_tag() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let payments = create_key(&mut admin).await;
    let ops = create_key(&mut admin).await;
    tag_key(&mut admin, &payments.key_id, vec![tag("team", "payments")])
        .await
        .unwrap();
    tag_key(&mut admin, &ops.key_id, vec![tag("team", "ops")])
        .await
        .unwrap();
    let blob_p = encrypt(&mut admin, &payments.key_id, b"p", &[]).await;
    let blob_o = encrypt(&mut admin, &ops.key_id, b"o", &[]).await;

    let alice = role(ACCOUNT, "alice");
    admin
        .tag_principal(proto::TagPrincipalRequest {
            principal_arn: alice.clone(),
            tags: vec![tag("team", "payments")],
        })
        .await
        .unwrap();
    put_identity_policy(
        &mut admin,
        &alice,
        "abac",
        serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:ResourceTag/team": "${aws:PrincipalTag/team}"}}
        }]}),
    )
    .await;
    let mut c = d.client_as(&alice).await;
    assert_eq!(decrypt(&mut c, &blob_p, &[]).await, b"p");
    assert_kms_error(
        c.decrypt(decrypt_req(&blob_o, &[])).await,
        "AccessDeniedException",
    );
    // Retagging the key changes the answer at once.
    tag_key(&mut admin, &ops.key_id, vec![tag("team", "payments")])
        .await
        .unwrap();
    assert_eq!(decrypt(&mut c, &blob_o, &[]).await, b"o");
    admin
        .untag_resource(proto::UntagResourceRequest {
            key_id: payments.key_id.clone(),
            tag_keys: vec!["team".into()],
        })
        .await
        .unwrap();
    assert_kms_error(
        c.decrypt(decrypt_req(&blob_p, &[])).await,
        "AccessDeniedException",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_tag_and_tag_keys_conditions_govern_tagging() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let k = create_key(&mut admin).await;
    let tagger = role(ACCOUNT, "tagger");
    put_identity_policy(
        &mut admin,
        &tagger,
        "env-only",
        serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": ["kms:TagResource", "kms:UntagResource"],
            "Resource": "*",
            "Condition": {
                "StringEquals": {"aws:RequestTag/env": ["dev", "test"]},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}
            }
        }, {
            "Effect": "Allow",
            "Action": "kms:UntagResource",
            "Resource": "*",
            "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}
        }]}),
    )
    .await;
    let mut c = d.client_as(&tagger).await;
    tag_key(&mut c, &k.key_id, vec![tag("env", "dev")])
        .await
        .unwrap();
    assert_kms_error(
        c.tag_resource(proto::TagResourceRequest {
            key_id: k.key_id.clone(),
            tags: vec![tag("env", "prod")],
        })
        .await,
        "AccessDeniedException",
    );
    assert_kms_error(
        c.tag_resource(proto::TagResourceRequest {
            key_id: k.key_id.clone(),
            tags: vec![tag("env", "dev"), tag("owner", "x")],
        })
        .await,
        "AccessDeniedException",
    );
    assert_kms_error(
        c.untag_resource(proto::UntagResourceRequest {
            key_id: k.key_id.clone(),
            tag_keys: vec!["owner".into()],
        })
        .await,
        "AccessDeniedException",
    );
    c.untag_resource(proto::UntagResourceRequest {
        key_id: k.key_id.clone(),
        tag_keys: vec!["env".into()],
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_manages_tags() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let k = create_key(&mut c).await;
    let run = |args: &[&str]| {
        let o = run_cli(dir.path(), args, b"");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    run(&[
        "tag",
        "add",
        "--key-id",
        &k.key_id,
        "--tag",
        "team=payments",
        "--tag",
        "env=dev",
    ]);
    run(&["tag", "remove", "--key-id", &k.key_id, "--tag-key", "env"]);
    let listed: serde_json::Value =
        serde_json::from_str(&run(&["tag", "list", "--key-id", &k.key_id])).unwrap();
    assert_eq!(
        listed["Tags"],
        serde_json::json!([{"TagKey": "team", "TagValue": "payments"}])
    );
    drop(d);
}
