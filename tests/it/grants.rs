//! Grants over gRPC + mTLS against SoftHSM2: delegation without policy changes,
//! constraints, retiring and revoking, chaining, idempotency, pagination, tokens.

use std::collections::HashSet;

use serde_json::json;

use p11kms::client::KmsClient;
use p11kms::proto;

use crate::harness::*;

fn grant_req(key_id: &str, grantee: &str, ops: &[&str]) -> proto::CreateGrantRequest {
    proto::CreateGrantRequest {
        key_id: key_id.into(),
        grantee_principal: grantee.into(),
        operations: ops.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn subset(pairs: &[(&str, &str)]) -> Option<proto::GrantConstraints> {
    Some(proto::GrantConstraints {
        encryption_context_subset: ctx(pairs),
        ..Default::default()
    })
}

fn equals(pairs: &[(&str, &str)]) -> Option<proto::GrantConstraints> {
    Some(proto::GrantConstraints {
        encryption_context_equals: ctx(pairs),
        ..Default::default()
    })
}

async fn create_grant(
    c: &mut KmsClient,
    req: proto::CreateGrantRequest,
) -> proto::CreateGrantResponse {
    c.create_grant(req).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grantee_without_policy_decrypts_only_through_the_grant_and_its_constraint() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let job = role(ACCOUNT, "BatchJob");
    let mut j = d.client_as(&job).await;
    let it = [("Department", "IT")];
    let it_plus = [("Department", "IT"), ("Purpose", "Test")];
    let blob_it = encrypt(&mut admin, &key.key_id, b"it", &it).await;
    let blob_it_plus = encrypt(&mut admin, &key.key_id, b"it+", &it_plus).await;
    let blob_hr = encrypt(&mut admin, &key.key_id, b"hr", &[("Department", "HR")]).await;
    let blob_none = encrypt(&mut admin, &key.key_id, b"none", &[]).await;
    // No policy, no grant: nothing.
    assert_kms_error(
        j.decrypt(decrypt_req(&blob_it, &it)).await,
        "AccessDeniedException",
    );

    // Subset: every constraint pair present; more pairs are fine.
    let mut r = grant_req(&key.key_id, &job, &["Decrypt"]);
    r.constraints = subset(&it);
    let g = create_grant(&mut admin, r).await;
    assert_eq!(g.grant_id.len(), 64);
    assert_eq!(decrypt(&mut j, &blob_it, &it).await, b"it");
    assert_eq!(decrypt(&mut j, &blob_it_plus, &it_plus).await, b"it+");
    assert_kms_error(
        j.decrypt(decrypt_req(&blob_hr, &[("Department", "HR")]))
            .await,
        "AccessDeniedException",
    );
    assert_kms_error(
        j.decrypt(decrypt_req(&blob_none, &[])).await,
        "AccessDeniedException",
    );
    // Only the granted operation.
    assert_kms_error(
        j.encrypt(encrypt_req(&key.key_id, b"x", &it)).await,
        "AccessDeniedException",
    );
    admin
        .revoke_grant(proto::RevokeGrantRequest {
            key_id: key.key_id.clone(),
            grant_id: g.grant_id,
        })
        .await
        .unwrap();

    // Equals: exactly the constraint pairs.
    let mut r = grant_req(&key.key_id, &job, &["Decrypt"]);
    r.constraints = equals(&it);
    create_grant(&mut admin, r).await;
    assert_eq!(decrypt(&mut j, &blob_it, &it).await, b"it");
    assert_kms_error(
        j.decrypt(decrypt_req(&blob_it_plus, &it_plus)).await,
        "AccessDeniedException",
    );
    assert_kms_error(
        j.decrypt(decrypt_req(&blob_none, &[])).await,
        "AccessDeniedException",
    );
    // Values are case-sensitive.
    let blob_lower = encrypt(&mut admin, &key.key_id, b"lower", &[("Department", "it")]).await;
    assert_kms_error(
        j.decrypt(decrypt_req(&blob_lower, &[("Department", "it")]))
            .await,
        "AccessDeniedException",
    );

    // Listed with their details.
    let listed = admin
        .list_grants(proto::ListGrantsRequest {
            key_id: key.key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.grants.len(), 1);
    let e = &listed.grants[0];
    assert_eq!(
        (e.key_id.as_str(), e.grantee_principal.as_str()),
        (key.arn.as_str(), job.as_str())
    );
    assert_eq!(e.operations, vec!["Decrypt"]);
    assert_eq!(e.issuing_account, root_of(ACCOUNT));
    assert_eq!(
        e.constraints.as_ref().unwrap().encryption_context_equals,
        ctx(&it)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retiring_and_revoking_stop_access_at_once_and_only_the_right_principals_may() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let blob = encrypt(&mut admin, &key.key_id, b"secret", &[]).await;
    let (grantee, retirer, stranger) = (
        role(ACCOUNT, "Grantee"),
        role(ACCOUNT, "Retirer"),
        role(ACCOUNT, "Stranger"),
    );
    let mut g = d.client_as(&grantee).await;
    let mut r = d.client_as(&retirer).await;
    let mut s = d.client_as(&stranger).await;
    let new_grant = |ops: &[&str]| {
        let mut req = grant_req(&key.key_id, &grantee, ops);
        req.retiring_principal = retirer.clone();
        req
    };

    // Retire by token, as the retiring principal.
    let t = create_grant(&mut admin, new_grant(&["Decrypt"])).await;
    assert_eq!(decrypt(&mut g, &blob, &[]).await, b"secret");
    assert_kms_error(
        s.retire_grant(proto::RetireGrantRequest {
            grant_token: t.grant_token.clone(),
            ..Default::default()
        })
        .await,
        "AccessDeniedException",
    );
    assert_kms_error(
        g.retire_grant(proto::RetireGrantRequest {
            grant_token: t.grant_token.clone(),
            ..Default::default()
        })
        .await,
        "AccessDeniedException",
    );
    r.retire_grant(proto::RetireGrantRequest {
        grant_token: t.grant_token.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_kms_error(
        g.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );
    // The token of a retired grant is genuine but names nothing: it does not bring access back.
    let mut with_token = decrypt_req(&blob, &[]);
    with_token.grant_tokens = vec![t.grant_token.clone()];
    assert_kms_error(g.decrypt(with_token).await, "AccessDeniedException");
    assert_kms_error(
        r.retire_grant(proto::RetireGrantRequest {
            grant_token: t.grant_token,
            ..Default::default()
        })
        .await,
        "NotFoundException",
    );

    // Retire by key and grant id, as the grantee whose grant includes RetireGrant.
    let t = create_grant(&mut admin, new_grant(&["Decrypt", "RetireGrant"])).await;
    assert_eq!(decrypt(&mut g, &blob, &[]).await, b"secret");
    let by_id = proto::RetireGrantRequest {
        key_id: key.arn.clone(),
        grant_id: t.grant_id.clone(),
        ..Default::default()
    };
    assert_kms_error(s.retire_grant(by_id.clone()).await, "AccessDeniedException");
    g.retire_grant(by_id).await.unwrap();
    assert_kms_error(
        g.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );

    // The account that created a grant may retire it.
    let t = create_grant(&mut admin, new_grant(&["Decrypt"])).await;
    admin
        .retire_grant(proto::RetireGrantRequest {
            key_id: key.key_id.clone(),
            grant_id: t.grant_id,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_kms_error(
        g.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );

    // Revoke: by policy (kms:RevokeGrant), not by being named in the grant.
    let t = create_grant(&mut admin, new_grant(&["Decrypt"])).await;
    let revoke = proto::RevokeGrantRequest {
        key_id: key.key_id.clone(),
        grant_id: t.grant_id.clone(),
    };
    assert_kms_error(
        r.revoke_grant(revoke.clone()).await,
        "AccessDeniedException",
    );
    assert_kms_error(
        s.revoke_grant(revoke.clone()).await,
        "AccessDeniedException",
    );
    assert_eq!(decrypt(&mut g, &blob, &[]).await, b"secret");
    admin.revoke_grant(revoke.clone()).await.unwrap();
    assert_kms_error(
        g.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );
    assert_kms_error(admin.revoke_grant(revoke).await, "NotFoundException");

    // Malformed ids and empty requests.
    assert_kms_error(
        admin
            .revoke_grant(proto::RevokeGrantRequest {
                key_id: key.key_id.clone(),
                grant_id: "nope".into(),
            })
            .await,
        "InvalidGrantIdException",
    );
    assert_kms_error(
        admin
            .retire_grant(proto::RetireGrantRequest::default())
            .await,
        "ValidationException",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chained_grants_cannot_widen_operations_or_drop_constraints() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let (middle, end) = (role(ACCOUNT, "Middle"), role(ACCOUNT, "End"));
    let mut m = d.client_as(&middle).await;
    let mut parent = grant_req(&key.key_id, &middle, &["Decrypt", "Encrypt", "CreateGrant"]);
    parent.constraints = subset(&[("tenant", "t1")]);
    create_grant(&mut admin, parent).await;

    let child = |ops: &[&str], c: Option<proto::GrantConstraints>| {
        let mut r = grant_req(&key.key_id, &end, ops);
        r.constraints = c;
        r
    };
    // Wider operations, a dropped constraint, a looser one: refused.
    assert_kms_error(
        m.create_grant(child(
            &["Decrypt", "GenerateDataKey"],
            subset(&[("tenant", "t1")]),
        ))
        .await,
        "AccessDeniedException",
    );
    assert_kms_error(
        m.create_grant(child(&["Decrypt"], None)).await,
        "AccessDeniedException",
    );
    assert_kms_error(
        m.create_grant(child(&["Decrypt"], subset(&[("tenant", "t2")])))
            .await,
        "AccessDeniedException",
    );
    // Narrower: accepted, and it works only within both constraints.
    create_grant(
        &mut m,
        child(&["Decrypt"], subset(&[("tenant", "t1"), ("app", "x")])),
    )
    .await;
    let blob = encrypt(
        &mut m,
        &key.key_id,
        b"chained",
        &[("tenant", "t1"), ("app", "x")],
    )
    .await;
    let mut e = d.client_as(&end).await;
    assert_eq!(
        decrypt(&mut e, &blob, &[("tenant", "t1"), ("app", "x")]).await,
        b"chained"
    );
    assert_kms_error(
        e.encrypt(encrypt_req(
            &key.key_id,
            b"x",
            &[("tenant", "t1"), ("app", "x")],
        ))
        .await,
        "AccessDeniedException",
    );
    // The grantee of the child has no CreateGrant to pass on.
    assert_kms_error(
        e.create_grant(child(
            &["Decrypt"],
            subset(&[("tenant", "t1"), ("app", "x")]),
        ))
        .await,
        "AccessDeniedException",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_grant_by_name_is_idempotent_and_list_grants_pages_through_250() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let grantee = role(ACCOUNT, "Named");
    let mut named = grant_req(&key.key_id, &grantee, &["Decrypt", "Encrypt"]);
    named.name = "nightly-batch".into();
    let a = create_grant(&mut admin, named.clone()).await;
    let mut reordered = named.clone();
    reordered.operations = vec!["Encrypt".into(), "Decrypt".into()];
    let b = create_grant(&mut admin, reordered).await;
    assert_eq!(
        a.grant_id, b.grant_id,
        "same name, same parameters: same grant"
    );
    assert_ne!(
        a.grant_token, b.grant_token,
        "each call mints its own token"
    );
    let mut changed = named.clone();
    changed.operations = vec!["Decrypt".into()];
    let c = create_grant(&mut admin, changed).await;
    assert_ne!(
        a.grant_id, c.grant_id,
        "different parameters make a new grant"
    );

    for i in 0..248 {
        create_grant(
            &mut admin,
            grant_req(
                &key.key_id,
                &role(ACCOUNT, &format!("G{}", i % 40)),
                &["Decrypt"],
            ),
        )
        .await;
    }
    let mut seen = HashSet::new();
    let mut marker = String::new();
    let mut pages = 0;
    loop {
        let page = admin
            .list_grants(proto::ListGrantsRequest {
                key_id: key.key_id.clone(),
                limit: Some(100),
                marker: marker.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        for g in &page.grants {
            assert!(seen.insert(g.grant_id.clone()), "listed twice");
        }
        if !page.truncated {
            break;
        }
        marker = page.next_marker;
    }
    assert_eq!((seen.len(), pages), (250, 3));
    // Filters, and a made-up marker.
    let only = admin
        .list_grants(proto::ListGrantsRequest {
            key_id: key.key_id.clone(),
            grantee_principal: grantee.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only.grants.len(), 2);
    let one = admin
        .list_grants(proto::ListGrantsRequest {
            key_id: key.key_id.clone(),
            grant_id: a.grant_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.grants.len(), 1);
    assert_eq!(one.grants[0].name, "nightly-batch");
    assert_kms_error(
        admin
            .list_grants(proto::ListGrantsRequest {
                key_id: key.key_id.clone(),
                marker: "x".into(),
                ..Default::default()
            })
            .await,
        "InvalidMarkerException",
    );
    assert_kms_error(
        admin
            .list_grants(proto::ListGrantsRequest {
                key_id: key.key_id.clone(),
                limit: Some(101),
                ..Default::default()
            })
            .await,
        "ValidationException",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grant_tokens_must_be_genuine_and_bad_grant_requests_are_refused() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let t = create_grant(
        &mut admin,
        grant_req(&key.key_id, &role(ACCOUNT, "A"), &["Decrypt"]),
    )
    .await;
    // Another daemon's genuine token is foreign here.
    let other_dir = TestDir::new();
    let other = Daemon::start(&other_dir);
    let mut other_admin = other.admin().await;
    let other_key = create_key(&mut other_admin).await;
    let foreign = create_grant(
        &mut other_admin,
        grant_req(&other_key.key_id, &role(ACCOUNT, "A"), &["Decrypt"]),
    )
    .await;

    let mut tampered = t.grant_token.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(tampered).unwrap(),
        foreign.grant_token,
        "not-a-token".into(),
        "x".repeat(8192),
    ] {
        let mut r = encrypt_req(&key.key_id, b"x", &[]);
        r.grant_tokens = vec![bad.clone()];
        assert_kms_error(admin.encrypt(r).await, "InvalidGrantTokenException");
        assert_kms_error(
            admin
                .retire_grant(proto::RetireGrantRequest {
                    grant_token: bad,
                    ..Default::default()
                })
                .await,
            "InvalidGrantTokenException",
        );
    }
    let mut good = encrypt_req(&key.key_id, b"x", &[]);
    good.grant_tokens = vec![t.grant_token];
    admin.encrypt(good).await.unwrap();

    for (req, name) in [
        (
            grant_req(&key.key_id, &role(ACCOUNT, "A"), &["Sign"]),
            "ValidationException",
        ),
        (
            grant_req(&key.key_id, &role(ACCOUNT, "A"), &["decrypt"]),
            "ValidationException",
        ),
        (
            grant_req(&key.key_id, &role(ACCOUNT, "A"), &[]),
            "ValidationException",
        ),
        (
            grant_req(&key.key_id, "not-an-arn", &["Decrypt"]),
            "ValidationException",
        ),
        (
            grant_req(
                "1234abcd-12ab-34cd-56ef-1234567890ab",
                &role(ACCOUNT, "A"),
                &["Decrypt"],
            ),
            "NotFoundException",
        ),
    ] {
        assert_kms_error(admin.create_grant(req).await, name);
    }
    let mut too_many = grant_req(&key.key_id, &role(ACCOUNT, "A"), &["Decrypt"]);
    too_many.constraints = subset(
        &(0..9)
            .map(|i| (["a", "b", "c", "d", "e", "f", "g", "h", "i"][i], "v"))
            .collect::<Vec<_>>(),
    );
    assert_kms_error(admin.create_grant(too_many).await, "ValidationException");
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_account_grantee_and_grant_condition_keys() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let consumer = role(OTHER_ACCOUNT, "Consumer");
    let blob = encrypt(&mut admin, &key.key_id, b"for a partner", &[]).await;
    let mut c = d.client_as(&consumer).await;
    assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );
    // A grant lets another account's principal in with no identity policy of its own.
    let mut r = grant_req(&key.arn, &consumer, &["Decrypt"]);
    r.retiring_principal = consumer.clone();
    create_grant(&mut admin, r).await;
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"for a partner");
    let mut other_root = d.client_as(&root_of(OTHER_ACCOUNT)).await;
    let retirable = other_root
        .list_retirable_grants(proto::ListRetirableGrantsRequest {
            retiring_principal: consumer.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retirable.grants.len(), 1);
    assert_eq!(retirable.grants[0].key_id, key.arn);
    assert_kms_error(
        admin
            .list_retirable_grants(proto::ListRetirableGrantsRequest {
                retiring_principal: consumer.clone(),
                ..Default::default()
            })
            .await,
        "AccessDeniedException",
    );

    // kms:GrantOperations and kms:GranteePrincipal in a key policy.
    let granter = role(ACCOUNT, "Granter");
    let doc = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": root_of(ACCOUNT)}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "DecryptGrantsOnly", "Effect": "Allow", "Principal": {"AWS": &granter}, "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "DescribeKey"]},
                       "StringLike": {"kms:GranteePrincipal": "arn:aws:iam::111122223333:role/app-*"}}}]});
    admin
        .put_key_policy(proto::PutKeyPolicyRequest {
            key_id: key.key_id.clone(),
            policy: doc.to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut gr = d.client_as(&granter).await;
    create_grant(
        &mut gr,
        grant_req(&key.key_id, &role(ACCOUNT, "app-web"), &["Decrypt"]),
    )
    .await;
    assert_kms_error(
        gr.create_grant(grant_req(
            &key.key_id,
            &role(ACCOUNT, "app-web"),
            &["Decrypt", "Encrypt"],
        ))
        .await,
        "AccessDeniedException",
    );
    assert_kms_error(
        gr.create_grant(grant_req(
            &key.key_id,
            &role(ACCOUNT, "other"),
            &["Decrypt"],
        ))
        .await,
        "AccessDeniedException",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_key_refuses_everyone_grant_or_not_until_enabled() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let grantee = role(ACCOUNT, "Grantee");
    create_grant(
        &mut admin,
        grant_req(&key.key_id, &grantee, &["Decrypt", "Encrypt"]),
    )
    .await;
    let blob = encrypt(&mut admin, &key.key_id, b"state", &[]).await;
    let mut g = d.client_as(&grantee).await;
    assert_eq!(decrypt(&mut g, &blob, &[]).await, b"state");

    admin
        .disable_key(proto::DisableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
    let st = assert_kms_error(
        g.decrypt(decrypt_req(&blob, &[])).await,
        "DisabledException",
    );
    assert!(st.message().contains(&key.arn), "{}", st.message());
    assert_kms_error(
        g.encrypt(encrypt_req(&key.key_id, b"x", &[])).await,
        "DisabledException",
    );
    assert_kms_error(
        admin.decrypt(decrypt_req(&blob, &[])).await,
        "DisabledException",
    );
    assert_kms_error(
        admin
            .generate_data_key(proto::GenerateDataKeyRequest {
                key_id: key.key_id.clone(),
                key_spec: "AES_256".into(),
                ..Default::default()
            })
            .await,
        "DisabledException",
    );
    assert_kms_error(
        admin
            .create_grant(grant_req(&key.key_id, &grantee, &["Decrypt"]))
            .await,
        "DisabledException",
    );
    let described = describe(&mut admin, &key.key_id).await;
    assert_eq!(
        (described.key_state.as_str(), described.enabled),
        ("Disabled", false)
    );
    // The grantee may not switch the key back on; the state survives a restart.
    assert_kms_error(
        g.enable_key(proto::EnableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await,
        "AccessDeniedException",
    );
    d.stop();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let mut g = d.client_as(&grantee).await;
    assert_kms_error(
        g.decrypt(decrypt_req(&blob, &[])).await,
        "DisabledException",
    );
    admin
        .enable_key(proto::EnableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(decrypt(&mut g, &blob, &[]).await, b"state");
    // Idempotent, as AWS.
    admin
        .enable_key(proto::EnableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
}
