//! Aliases over the wire: crypto by alias name and alias ARN, UpdateAlias repointing,
//! AWS's naming rules, listing, authorization on both the alias and the key, restarts.

use p11kms::client::KmsClient;
use p11kms::proto;

use crate::harness::*;

fn alias_arn(name: &str) -> String {
    format!("arn:aws:kms:us-east-1:{ACCOUNT}:{name}")
}

async fn create_alias(c: &mut KmsClient, name: &str, key: &str) {
    c.create_alias(proto::CreateAliasRequest {
        alias_name: name.into(),
        target_key_id: key.into(),
    })
    .await
    .unwrap_or_else(|e| panic!("create alias {name}: {e:?}"));
}

fn list_req(key_id: &str, limit: Option<i32>, marker: &str) -> proto::ListAliasesRequest {
    proto::ListAliasesRequest {
        key_id: key_id.into(),
        limit,
        marker: marker.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crypto_by_alias_name_and_alias_arn_and_update_repoints() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let k1 = create_key(&mut c).await;
    let k2 = create_key(&mut c).await;
    create_alias(&mut c, "alias/app/prod", &k1.key_id).await;

    let blob1 = encrypt(&mut c, "alias/app/prod", b"one", &[("a", "b")]).await;
    let arn = alias_arn("alias/app/prod");
    let mut req = decrypt_req(&blob1, &[("a", "b")]);
    req.key_id = arn.clone();
    let out = c.decrypt(req).await.unwrap().into_inner();
    assert_eq!(out.plaintext, b"one");
    assert_eq!(out.key_id, k1.arn);
    assert_eq!(describe(&mut c, &arn).await.key_id, k1.key_id);
    let gdk = c
        .generate_data_key(proto::GenerateDataKeyRequest {
            key_id: arn.clone(),
            number_of_bytes: Some(32),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gdk.key_id, k1.arn);

    // Repointed: new encryptions use the new key, old blobs still decrypt.
    c.update_alias(proto::UpdateAliasRequest {
        alias_name: "alias/app/prod".into(),
        target_key_id: k2.arn.clone(),
    })
    .await
    .unwrap();
    let r = c
        .encrypt(encrypt_req("alias/app/prod", b"two", &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.key_id, k2.arn);
    assert_eq!(decrypt(&mut c, &blob1, &[("a", "b")]).await, b"one");
    // Decrypt naming the alias (now key 2) refuses a blob of key 1.
    let mut req = decrypt_req(&blob1, &[("a", "b")]);
    req.key_id = "alias/app/prod".into();
    assert_kms_error(c.decrypt(req).await, "IncorrectKeyException");

    // Survives a restart.
    d.stop();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    assert_eq!(describe(&mut c, "alias/app/prod").await.key_id, k2.key_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn names_follow_aws_rules_and_mistakes_get_aws_errors() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let k = create_key(&mut c).await;
    for bad in [
        "alias/aws/s3",
        "no-prefix",
        "alias/",
        "alias/has space",
        "alias/dot.ted",
        &format!("alias/{}", "x".repeat(251)),
    ] {
        let r = c
            .create_alias(proto::CreateAliasRequest {
                alias_name: bad.into(),
                target_key_id: k.key_id.clone(),
            })
            .await;
        assert_kms_error(r, "InvalidAliasNameException");
    }
    create_alias(&mut c, "alias/ok", &k.key_id).await;
    let again = c
        .create_alias(proto::CreateAliasRequest {
            alias_name: "alias/ok".into(),
            target_key_id: k.key_id.clone(),
        })
        .await;
    assert_kms_error(again, "AlreadyExistsException");
    let by_alias = c
        .create_alias(proto::CreateAliasRequest {
            alias_name: "alias/other".into(),
            target_key_id: "alias/ok".into(),
        })
        .await;
    assert_kms_error(by_alias, "ValidationException");
    let missing_key = c
        .create_alias(proto::CreateAliasRequest {
            alias_name: "alias/other".into(),
            target_key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".into(),
        })
        .await;
    assert_kms_error(missing_key, "NotFoundException");
    assert_kms_error(
        c.encrypt(encrypt_req("alias/none", b"x", &[])).await,
        "NotFoundException",
    );
    assert_kms_error(
        c.delete_alias(proto::DeleteAliasRequest {
            alias_name: "alias/none".into(),
        })
        .await,
        "NotFoundException",
    );
    assert_kms_error(
        c.update_alias(proto::UpdateAliasRequest {
            alias_name: "alias/none".into(),
            target_key_id: k.key_id.clone(),
        })
        .await,
        "NotFoundException",
    );
    // Deleted: the name no longer resolves, the key is untouched.
    c.delete_alias(proto::DeleteAliasRequest {
        alias_name: "alias/ok".into(),
    })
    .await
    .unwrap();
    assert_kms_error(
        c.encrypt(encrypt_req("alias/ok", b"x", &[])).await,
        "NotFoundException",
    );
    encrypt(&mut c, &k.key_id, b"x", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_aliases_pages_and_filters_by_key() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let a = create_key(&mut c).await;
    let b = create_key(&mut c).await;
    for (n, k) in [("alias/c", &b), ("alias/a", &a), ("alias/b", &a)] {
        create_alias(&mut c, n, &k.key_id).await;
    }
    let p1 = c
        .list_aliases(list_req("", Some(2), ""))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = p1.aliases.iter().map(|x| x.alias_name.as_str()).collect();
    assert_eq!(names, ["alias/a", "alias/b"]);
    assert!(p1.truncated);
    assert_eq!(p1.aliases[0].alias_arn, alias_arn("alias/a"));
    assert_eq!(p1.aliases[0].target_key_id, a.key_id);
    assert!(p1.aliases[0].creation_date.is_some());
    let p2 = c
        .list_aliases(list_req("", Some(2), &p1.next_marker))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p2.aliases.len(), 1);
    assert_eq!(p2.aliases[0].alias_name, "alias/c");
    assert!(!p2.truncated);
    let of_a = c
        .list_aliases(list_req(&a.arn, None, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(of_a.aliases.len(), 2);
    assert_kms_error(
        c.list_aliases(list_req("", Some(101), "")).await,
        "ValidationException",
    );
    assert_kms_error(
        c.list_aliases(list_req("", None, "not a marker")).await,
        "InvalidMarkerException",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn managing_an_alias_needs_permission_on_the_alias_and_the_key() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let k = create_key(&mut admin).await;
    let other = create_key(&mut admin).await;
    let ops = role(ACCOUNT, "ops");
    put_identity_policy(
        &mut admin,
        &ops,
        "team-aliases",
        serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": ["kms:CreateAlias", "kms:DeleteAlias"],
            "Resource": [alias_arn("alias/team-*"), k.arn]
        }]}),
    )
    .await;
    let mut c = d.client_as(&ops).await;
    create_alias(&mut c, "alias/team-a", &k.key_id).await;
    // Not this alias name.
    assert_kms_error(
        c.create_alias(proto::CreateAliasRequest {
            alias_name: "alias/other".into(),
            target_key_id: k.key_id.clone(),
        })
        .await,
        "AccessDeniedException",
    );
    // Not this key.
    assert_kms_error(
        c.create_alias(proto::CreateAliasRequest {
            alias_name: "alias/team-b".into(),
            target_key_id: other.key_id.clone(),
        })
        .await,
        "AccessDeniedException",
    );
    // An alias is not a permission to use the key.
    assert_kms_error(
        c.encrypt(encrypt_req("alias/team-a", b"x", &[])).await,
        "AccessDeniedException",
    );
    c.delete_alias(proto::DeleteAliasRequest {
        alias_name: "alias/team-a".into(),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_manages_aliases() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let k = create_key(&mut c).await;
    let cli = |args: &[&str]| {
        let o = run_cli(dir.path(), args, b"");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    cli(&[
        "alias",
        "create",
        "--alias-name",
        "alias/cli",
        "--target-key-id",
        &k.key_id,
    ]);
    let listed: serde_json::Value = serde_json::from_str(&cli(&["alias", "list"])).unwrap();
    assert_eq!(listed["Aliases"][0]["AliasName"], "alias/cli");
    assert_eq!(listed["Aliases"][0]["TargetKeyId"], k.key_id.as_str());
    let described: serde_json::Value =
        serde_json::from_str(&cli(&["key", "describe", "--key-id", "alias/cli"])).unwrap();
    assert_eq!(described["KeyMetadata"]["KeyId"], k.key_id.as_str());
    cli(&["alias", "delete", "--alias-name", "alias/cli"]);
    let listed: serde_json::Value = serde_json::from_str(&cli(&["alias", "list"])).unwrap();
    assert_eq!(listed["Aliases"].as_array().unwrap().len(), 0);
    drop(d);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_alias_and_resource_aliases_conditions() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let k = create_key(&mut admin).await;
    let spare = create_key(&mut admin).await;
    create_alias(&mut admin, "alias/finance-app", &k.key_id).await;
    create_alias(&mut admin, "alias/other", &k.key_id).await;
    let app = role(ACCOUNT, "finance");
    put_identity_policy(
        &mut admin,
        &app,
        "by-alias",
        serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"StringLike": {"kms:RequestAlias": "alias/finance-*"}}},
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/finance-app"}}}
        ]}),
    )
    .await;
    let mut c = d.client_as(&app).await;
    // kms:RequestAlias: only when the request names the key by a matching alias.
    let blob = encrypt(&mut c, "alias/finance-app", b"pay", &[]).await;
    encrypt(&mut c, &alias_arn("alias/finance-app"), b"pay", &[]).await;
    for other in [k.key_id.as_str(), "alias/other"] {
        assert_kms_error(
            c.encrypt(encrypt_req(other, b"x", &[])).await,
            "AccessDeniedException",
        );
    }
    // kms:ResourceAliases: whatever the request names, the key must carry the alias.
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"pay");
    admin
        .update_alias(proto::UpdateAliasRequest {
            alias_name: "alias/finance-app".into(),
            target_key_id: spare.key_id.clone(),
        })
        .await
        .unwrap();
    assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_has_at_most_fifty_aliases() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let k = create_key(&mut c).await;
    let other = create_key(&mut c).await;
    for i in 0..50 {
        create_alias(&mut c, &format!("alias/n{i}"), &k.key_id).await;
    }
    assert_kms_error(
        c.create_alias(proto::CreateAliasRequest {
            alias_name: "alias/one-too-many".into(),
            target_key_id: k.key_id.clone(),
        })
        .await,
        "LimitExceededException",
    );
    create_alias(&mut c, "alias/elsewhere", &other.key_id).await;
    assert_kms_error(
        c.update_alias(proto::UpdateAliasRequest {
            alias_name: "alias/elsewhere".into(),
            target_key_id: k.key_id.clone(),
        })
        .await,
        "LimitExceededException",
    );
    // Deleting one makes room.
    c.delete_alias(proto::DeleteAliasRequest {
        alias_name: "alias/n0".into(),
    })
    .await
    .unwrap();
    create_alias(&mut c, "alias/one-more", &k.key_id).await;
}
