//! Authorization guardrails over the wire (issue 12): IAM's tag condition keys on
//! principal management, the request context (source address, algorithm keys, the
//! configured partition), policy documents that mean one thing, and request keys that
//! differ only in case.

use serde_json::json;

use p11kms::proto;

use crate::harness::*;

fn key_policy(statements: Vec<serde_json::Value>) -> String {
    let mut all = vec![
        json!({"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": root_of(ACCOUNT)}, "Action": "kms:*", "Resource": "*"}),
    ];
    all.extend(statements);
    json!({"Version": "2012-10-17", "Statement": all}).to_string()
}

fn tag_principal(target: &str, tags: &[(&str, &str)]) -> proto::TagPrincipalRequest {
    proto::TagPrincipalRequest {
        principal_arn: target.into(),
        tags: tags
            .iter()
            .map(|(k, v)| proto::Tag {
                tag_key: k.to_string(),
                tag_value: v.to_string(),
            })
            .collect(),
    }
}

/// IAM's documented guardrails now fire: tagging limited by aws:TagKeys and
/// aws:RequestTag, policy changes refused on a principal tagged protected, and a
/// principal allowed to tag itself cannot give itself a tag that opens an ABAC policy.
#[tokio::test(flavor = "multi_thread")]
async fn iam_tag_guardrails_hold_on_principal_management() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let dev = role(ACCOUNT, "Dev");
    let ops = role(ACCOUNT, "Ops");
    put_identity_policy(
        &mut admin,
        &dev,
        "self-service",
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["iam:TagRole", "iam:UntagRole", "iam:PutRolePolicy"], "Resource": "*"},
            {"Sid": "OnlyCostTags", "Effect": "Deny", "Action": ["iam:TagRole", "iam:UntagRole"], "Resource": "*",
             "Condition": {"ForAnyValue:StringNotLike": {"aws:TagKeys": ["cost-*"]}}},
            {"Sid": "NoFinance", "Effect": "Deny", "Action": "iam:TagRole", "Resource": "*",
             "Condition": {"StringEquals": {"aws:RequestTag/cost-center": "finance"}}},
            {"Sid": "Protected", "Effect": "Deny", "Action": "iam:PutRolePolicy", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/protected": "true"}}}]}),
    )
    .await;
    let mut c = d.client_as(&dev).await;
    // Giving itself team=finance: refused by the tag-key guardrail.
    let st = assert_kms_error(
        c.tag_principal(tag_principal(&dev, &[("team", "finance")]))
            .await,
        "AccessDeniedException",
    );
    assert!(st.message().contains("OnlyCostTags"), "{}", st.message());
    c.tag_principal(tag_principal(&dev, &[("cost-center", "eng")]))
        .await
        .unwrap();
    assert_kms_error(
        c.tag_principal(tag_principal(&dev, &[("cost-center", "finance")]))
            .await,
        "AccessDeniedException",
    );
    assert_kms_error(
        c.untag_principal(proto::UntagPrincipalRequest {
            principal_arn: dev.clone(),
            tag_keys: vec!["team".into()],
        })
        .await,
        "AccessDeniedException",
    );
    // aws:ResourceTag is the target principal's own tags.
    let doc = allow(&["kms:Decrypt"]).to_string();
    c.put_principal_policy(proto::PutPrincipalPolicyRequest {
        principal_arn: ops.clone(),
        policy_name: "p".into(),
        policy_document: doc.clone(),
    })
    .await
    .unwrap();
    admin
        .tag_principal(tag_principal(&ops, &[("protected", "true")]))
        .await
        .unwrap();
    let st = assert_kms_error(
        c.put_principal_policy(proto::PutPrincipalPolicyRequest {
            principal_arn: ops.clone(),
            policy_name: "p".into(),
            policy_document: doc,
        })
        .await,
        "AccessDeniedException",
    );
    assert!(st.message().contains("Protected"), "{}", st.message());
}

/// Principal tags follow IAM's rules: no `*` or `?` (a tag value substituted into
/// `${aws:PrincipalTag/…}` must never become a wildcard), no control characters, and
/// keys that differ only in case are one tag.
#[tokio::test(flavor = "multi_thread")]
async fn principal_tags_follow_iam_rules() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let app = role(ACCOUNT, "App");
    for (k, v) in [
        ("team", "*"),
        ("team", "fin?nce"),
        ("te*m", "x"),
        ("team", "a\nb"),
        ("aws:team", "x"),
    ] {
        assert_kms_error(
            admin.tag_principal(tag_principal(&app, &[(k, v)])).await,
            "ValidationException",
        );
    }
    assert_kms_error(
        admin
            .tag_principal(tag_principal(&app, &[("team", "a"), ("Team", "b")]))
            .await,
        "ValidationException",
    );
    admin
        .tag_principal(tag_principal(
            &app,
            &[("team", "blue"), ("cost", "a b:c/d=e+f-g@h_i.j")],
        ))
        .await
        .unwrap();
    admin
        .tag_principal(tag_principal(&app, &[("Team", "red")]))
        .await
        .unwrap();
    let tags = admin
        .list_principal_tags(proto::ListPrincipalTagsRequest {
            principal_arn: app.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tags;
    let mut pairs: Vec<(String, String)> =
        tags.into_iter().map(|t| (t.tag_key, t.tag_value)).collect();
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            ("Team".to_string(), "red".to_string()),
            ("cost".to_string(), "a b:c/d=e+f-g@h_i.j".to_string())
        ]
    );
}

/// An IPv4 client of a dual-stack `[::]` listener is seen as a.b.c.d, so an
/// IpAddress condition on its IPv4 network fires.
#[tokio::test(flavor = "multi_thread")]
async fn source_ip_is_ipv4_on_a_dual_stack_listener() {
    let dir = TestDir::new();
    let d = Daemon::start_listening(&dir, "[::]:0", &[]);
    assert!(d.addr.is_ipv6(), "{}", d.addr);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    encrypt(&mut admin, &key.key_id, b"before", &[]).await;
    put_key_policy(
        &mut admin,
        &key.key_id,
        key_policy(vec![json!({"Sid": "NotFromLoopback", "Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}})]),
    )
    .await
    .unwrap();
    let st = assert_kms_error(
        admin.encrypt(encrypt_req(&key.key_id, b"x", &[])).await,
        "AccessDeniedException",
    );
    assert!(st.message().contains("NotFromLoopback"), "{}", st.message());
}

/// kms:EncryptionAlgorithm is set for GenerateDataKey*, and kms:ReEncryptOnSameKey for
/// ReEncrypt, as AWS sets them.
#[tokio::test(flavor = "multi_thread")]
async fn algorithm_and_same_key_condition_keys_are_set() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let app = role(ACCOUNT, "App");
    let key = create_key(&mut admin).await;
    let other = create_key(&mut admin).await;
    let app_statements = || {
        vec![
            json!({"Effect": "Allow", "Principal": {"AWS": &app}, "Action": ["kms:GenerateDataKey*", "kms:Encrypt"], "Resource": "*",
                "Condition": {"StringEquals": {"kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}}}),
            json!({"Effect": "Allow", "Principal": {"AWS": &app}, "Action": "kms:ReEncrypt*", "Resource": "*"}),
            json!({"Sid": "NoSameKey", "Effect": "Deny", "Principal": "*", "Action": "kms:ReEncrypt*", "Resource": "*",
                "Condition": {"Bool": {"kms:ReEncryptOnSameKey": "true"}}}),
        ]
    };
    for k in [&key, &other] {
        put_key_policy(&mut admin, &k.key_id, key_policy(app_statements()))
            .await
            .unwrap();
    }
    let mut c = d.client_as(&app).await;
    for without in [false, true] {
        if without {
            c.generate_data_key_without_plaintext(proto::GenerateDataKeyWithoutPlaintextRequest {
                key_id: key.key_id.clone(),
                number_of_bytes: Some(32),
                ..Default::default()
            })
            .await
            .unwrap();
        } else {
            c.generate_data_key(proto::GenerateDataKeyRequest {
                key_id: key.key_id.clone(),
                number_of_bytes: Some(32),
                ..Default::default()
            })
            .await
            .unwrap();
        }
    }
    let blob = encrypt(&mut c, &key.key_id, b"secret", &[]).await;
    let re = |dest: &str| proto::ReEncryptRequest {
        ciphertext_blob: blob.clone(),
        destination_key_id: dest.into(),
        ..Default::default()
    };
    let st = assert_kms_error(c.re_encrypt(re(&key.key_id)).await, "AccessDeniedException");
    assert!(st.message().contains("NoSameKey"), "{}", st.message());
    c.re_encrypt(re(&other.key_id)).await.unwrap();
}

/// A bare account id in a Principal means that account's root in the configured
/// partition: with `partition = "aws-us-gov"`, an account-id Deny fires.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_id_principal_means_the_root_in_the_configured_partition() {
    let dir = TestDir::new();
    dir.prepare()
        .edit_config(|c| drop(c.insert("partition".into(), "aws-us-gov".into())));
    let d = Daemon::start(&dir);
    let root = format!("arn:aws-us-gov:iam::{ACCOUNT}:root");
    let mut admin = d.connect_dir(&identity_for(dir.path(), Some(&root))).await;
    let key = create_key(&mut admin).await;
    assert!(key.arn.starts_with("arn:aws-us-gov:kms:"), "{}", key.arn);
    encrypt(&mut admin, &key.key_id, b"x", &[]).await;
    let doc = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": &root}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "AccountDeny", "Effect": "Deny", "Principal": {"AWS": ACCOUNT}, "Action": "kms:Encrypt", "Resource": "*"}]});
    put_key_policy(&mut admin, &key.key_id, doc.to_string())
        .await
        .unwrap();
    let st = assert_kms_error(
        admin.encrypt(encrypt_req(&key.key_id, b"x", &[])).await,
        "AccessDeniedException",
    );
    assert!(st.message().contains("AccountDeny"), "{}", st.message());
}

/// A policy means one thing: a duplicate JSON key, or a principal with a wildcard
/// (which would never match, so a Deny written that way would do nothing), is refused
/// with MalformedPolicyDocumentException naming where.
#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_policies_are_malformed() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let dup = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
        {"Sid":"X","Effect":"Deny","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#;
    let st = assert_kms_error(
        put_key_policy(&mut admin, &key.key_id, dup.into())
            .await
            .map(tonic::Response::new),
        "MalformedPolicyDocumentException",
    );
    assert!(
        st.message().contains("duplicate key \"Effect\""),
        "{}",
        st.message()
    );
    let wild = key_policy(vec![json!({"Sid": "NoContractors", "Effect": "Deny",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/contractor-*")}, "Action": "kms:*", "Resource": "*"})]);
    let st = assert_kms_error(
        put_key_policy(&mut admin, &key.key_id, wild)
            .await
            .map(tonic::Response::new),
        "MalformedPolicyDocumentException",
    );
    assert!(st.message().contains("NoContractors"), "{}", st.message());
    // Identity policies too.
    let st = assert_kms_error(
        admin
            .put_principal_policy(proto::PutPrincipalPolicyRequest {
                principal_arn: role(ACCOUNT, "App"),
                policy_name: "p".into(),
                policy_document: r#"{"Statement":[{"Effect":"Deny","Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#.into(),
            })
            .await,
        "MalformedPolicyDocumentException",
    );
    assert!(st.message().contains("duplicate key"), "{}", st.message());
    // A grant constraint key is bounded like its value.
    let mut req = proto::CreateGrantRequest {
        key_id: key.key_id.clone(),
        grantee_principal: role(ACCOUNT, "G"),
        operations: vec!["Decrypt".into()],
        ..Default::default()
    };
    req.constraints = Some(proto::GrantConstraints {
        encryption_context_subset: ctx(&[(&"k".repeat(385), "v")]),
        ..Default::default()
    });
    assert_kms_error(admin.create_grant(req).await, "ValidationException");
}

/// Keys that differ only in case cannot hide one another: in an encryption context, in
/// a grant's Equals constraint, and in the tags of one TagResource call.
#[tokio::test(flavor = "multi_thread")]
async fn keys_that_differ_only_in_case_cannot_hide_one_another() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let app = role(ACCOUNT, "App");
    put_key_policy(
        &mut admin,
        &key.key_id,
        key_policy(vec![
            json!({"Effect": "Allow", "Principal": {"AWS": &app}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
                "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "A"}}}),
            json!({"Sid": "NotTenantB", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
                "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "B"}}}),
            json!({"Sid": "NoFinanceTag", "Effect": "Deny", "Principal": "*", "Action": "kms:TagResource", "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestTag/team": "finance"}}}),
            json!({"Sid": "NotFinanceKeys", "Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
                "Condition": {"StringEquals": {"aws:ResourceTag/team": "finance"}}}),
        ]),
    )
    .await
    .unwrap();
    let mut c = d.client_as(&app).await;
    // The app's Allow needs tenant A: a context that also says TENANT=B is not enough.
    let both = [("TENANT", "B"), ("tenant", "A")];
    assert_kms_error(
        c.encrypt(encrypt_req(&key.key_id, b"x", &both)).await,
        "AccessDeniedException",
    );
    let blob = encrypt(&mut c, &key.key_id, b"x", &[("tenant", "A")]).await;
    // The root may encrypt under both pairs; the Deny sees TENANT=B on Decrypt.
    let both_blob = encrypt(&mut admin, &key.key_id, b"y", &both).await;
    let st = assert_kms_error(
        admin.decrypt(decrypt_req(&both_blob, &both)).await,
        "AccessDeniedException",
    );
    assert!(st.message().contains("NotTenantB"), "{}", st.message());
    // A grant's Equals constraint compares every pair.
    let grantee = role(ACCOUNT, "Grantee");
    admin
        .create_grant(proto::CreateGrantRequest {
            key_id: key.key_id.clone(),
            grantee_principal: grantee.clone(),
            operations: vec!["Decrypt".into()],
            constraints: Some(proto::GrantConstraints {
                encryption_context_equals: ctx(&[("tenant", "A")]),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut g = d.client_as(&grantee).await;
    assert_eq!(decrypt(&mut g, &blob, &[("tenant", "A")]).await, b"x");
    let mixed = encrypt(
        &mut admin,
        &key.key_id,
        b"z",
        &[("TENANT", "A"), ("tenant", "A")],
    )
    .await;
    assert_kms_error(
        g.decrypt(decrypt_req(&mixed, &[("TENANT", "A"), ("tenant", "A")]))
            .await,
        "AccessDeniedException",
    );
    // Tags: Team=finance beside team=eng in one call is seen; a repeated key is refused.
    let tag = |pairs: &[(&str, &str)]| proto::TagResourceRequest {
        key_id: key.key_id.clone(),
        tags: pairs
            .iter()
            .map(|(k, v)| proto::Tag {
                tag_key: k.to_string(),
                tag_value: v.to_string(),
            })
            .collect(),
    };
    let st = assert_kms_error(
        admin
            .tag_resource(tag(&[("team", "eng"), ("Team", "finance")]))
            .await,
        "AccessDeniedException",
    );
    assert!(st.message().contains("NoFinanceTag"), "{}", st.message());
    assert_kms_error(
        admin
            .tag_resource(tag(&[("team", "eng"), ("team", "ops")]))
            .await,
        "ValidationException",
    );
    // Stored tags that fold together are all seen as aws:ResourceTag/team.
    admin.tag_resource(tag(&[("team", "eng")])).await.unwrap();
    encrypt(&mut admin, &key.key_id, b"ok", &[]).await;
    let mut root2 = d.admin().await;
    // Tagging Team=finance directly is refused by the Deny on the request tag, so the
    // test adds it under a policy without that statement.
    put_key_policy(
        &mut root2,
        &key.key_id,
        key_policy(vec![json!({"Sid": "NotFinanceKeys", "Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
            "Condition": {"StringEquals": {"aws:ResourceTag/team": "finance"}}})]),
    )
    .await
    .unwrap();
    root2
        .tag_resource(tag(&[("Team", "finance")]))
        .await
        .unwrap();
    let st = assert_kms_error(
        root2.encrypt(encrypt_req(&key.key_id, b"x", &[])).await,
        "AccessDeniedException",
    );
    assert!(st.message().contains("NotFinanceKeys"), "{}", st.message());
}
