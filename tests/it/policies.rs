//! Key policies, identity policies and conditions over gRPC + mTLS, one test per
//! scenario of the authorization issue, plus the key-policy and principal RPCs.

use serde_json::json;
use tonic::metadata::MetadataValue;

use p11kms::proto;

use crate::harness::*;

const ROOT_STATEMENT: &str = "Enable IAM User Permissions";

fn root_statement(account: &str) -> serde_json::Value {
    json!({"Sid": ROOT_STATEMENT, "Effect": "Allow", "Principal": {"AWS": root_of(account)}, "Action": "kms:*", "Resource": "*"})
}

fn policy(statements: Vec<serde_json::Value>) -> String {
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

async fn create_key_with_policy(
    c: &mut p11kms::client::KmsClient,
    doc: String,
) -> proto::KeyMetadata {
    c.create_key(proto::CreateKeyRequest {
        policy: doc,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .key_metadata
    .unwrap()
}

/// (a) A DBA role that may only Encrypt and two service roles that may only Decrypt with
/// their own service name in the encryption context; neither reads the other's secret.
#[tokio::test(flavor = "multi_thread")]
async fn dba_encrypts_and_each_service_decrypts_only_its_own_secret() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let (dba, svc_a, svc_b) = (
        role(ACCOUNT, "DBA"),
        role(ACCOUNT, "ServiceA"),
        role(ACCOUNT, "ServiceB"),
    );
    let service_stmt = |arn: &str, name: &str| {
        json!({"Sid": format!("Decrypt{name}"), "Effect": "Allow", "Principal": {"AWS": arn}, "Action": "kms:Decrypt",
               "Resource": "*", "Condition": {"StringEquals": {"kms:EncryptionContext:service": name}}})
    };
    let key = create_key_with_policy(
        &mut admin,
        policy(vec![
            root_statement(ACCOUNT),
            json!({"Sid": "DBAEncrypt", "Effect": "Allow", "Principal": {"AWS": &dba}, "Action": "kms:Encrypt", "Resource": "*"}),
            service_stmt(&svc_a, "ServiceA"),
            service_stmt(&svc_b, "ServiceB"),
        ]),
    )
    .await;
    let mut dba_c = d.client_as(&dba).await;
    let secret_a = encrypt(
        &mut dba_c,
        &key.key_id,
        b"password-a",
        &[("service", "ServiceA")],
    )
    .await;
    let secret_b = encrypt(
        &mut dba_c,
        &key.key_id,
        b"password-b",
        &[("service", "ServiceB")],
    )
    .await;
    assert_kms_error(
        dba_c
            .decrypt(decrypt_req(&secret_a, &[("service", "ServiceA")]))
            .await,
        "AccessDeniedException",
    );

    let mut a = d.client_as(&svc_a).await;
    let mut b = d.client_as(&svc_b).await;
    assert_eq!(
        decrypt(&mut a, &secret_a, &[("service", "ServiceA")]).await,
        b"password-a"
    );
    assert_eq!(
        decrypt(&mut b, &secret_b, &[("service", "ServiceB")]).await,
        b"password-b"
    );
    // The other's secret, with its true context: the policy refuses.
    assert_kms_error(
        a.decrypt(decrypt_req(&secret_b, &[("service", "ServiceB")]))
            .await,
        "AccessDeniedException",
    );
    assert_kms_error(
        b.decrypt(decrypt_req(&secret_a, &[("service", "ServiceA")]))
            .await,
        "AccessDeniedException",
    );
    // The other's secret, claiming its own context: the policy allows, the ciphertext does not.
    assert_kms_error(
        a.decrypt(decrypt_req(&secret_b, &[("service", "ServiceA")]))
            .await,
        "InvalidCiphertextException",
    );
    assert_kms_error(
        a.encrypt(encrypt_req(&key.key_id, b"x", &[("service", "ServiceA")]))
            .await,
        "AccessDeniedException",
    );
}

/// (b) A narrow key policy with DenyEveryoneElse: an account-wide kms:* identity policy
/// does not get through.
#[tokio::test(flavor = "multi_thread")]
async fn deny_everyone_else_beats_an_account_wide_identity_policy() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let (key_admin, user, snoop) = (
        role(ACCOUNT, "KeyAdmin"),
        role(ACCOUNT, "KeyUser"),
        role(ACCOUNT, "Snoop"),
    );
    let key = create_key_with_policy(
        &mut admin,
        policy(vec![
            root_statement(ACCOUNT),
            json!({"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": &key_admin}, "Action": "kms:*", "Resource": "*"}),
            json!({"Sid": "User", "Effect": "Allow", "Principal": {"AWS": &user}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}),
            json!({"Sid": "DenyEveryoneElse", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
                   "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [&key_admin, &user, root_of(ACCOUNT)]}}}),
        ]),
    )
    .await;
    put_identity_policy(&mut admin, &snoop, "everything", allow(&["kms:*"])).await;
    let mut s = d.client_as(&snoop).await;
    let st = assert_kms_error(
        s.encrypt(encrypt_req(&key.key_id, b"x", &[])).await,
        "AccessDeniedException",
    );
    assert!(
        st.message().contains("DenyEveryoneElse"),
        "{}",
        st.message()
    );
    assert_kms_error(
        s.describe_key(proto::DescribeKeyRequest {
            key_id: key.key_id.clone(),
            grant_tokens: vec![],
        })
        .await,
        "AccessDeniedException",
    );
    // Keys without that statement still obey the identity policy.
    let open = create_key(&mut admin).await;
    encrypt(&mut s, &open.key_id, b"fine", &[]).await;

    let mut u = d.client_as(&user).await;
    let blob = encrypt(&mut u, &key.key_id, b"user data", &[]).await;
    assert_eq!(decrypt(&mut u, &blob, &[]).await, b"user data");
}

/// (c) Separation of duties: the key admin manages but cannot use the key; the key user
/// uses but cannot manage it; taking the user out of the key policy stops it at once.
#[tokio::test(flavor = "multi_thread")]
async fn separation_of_duties_and_revocation_by_key_policy() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let (key_admin, user) = (role(ACCOUNT, "KeyAdmin"), role(ACCOUNT, "KeyUser"));
    let admin_stmt = json!({"Sid": "KeyAdministrators", "Effect": "Allow", "Principal": {"AWS": &key_admin},
        "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Revoke*",
                   "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
                   "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"],
        "Resource": "*"});
    let user_stmt = json!({"Sid": "KeyUsers", "Effect": "Allow", "Principal": {"AWS": &user},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*"});
    let key = create_key_with_policy(
        &mut admin,
        policy(vec![root_statement(ACCOUNT), admin_stmt.clone(), user_stmt]),
    )
    .await;
    put_identity_policy(
        &mut admin,
        &key_admin,
        "no-crypto",
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
            {"Sid": "NoCrypto", "Effect": "Deny", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"], "Resource": "*"}]}),
    )
    .await;

    let mut ka = d.client_as(&key_admin).await;
    let mut u = d.client_as(&user).await;
    let blob = encrypt(&mut u, &key.key_id, b"payload", &[]).await;
    // The admin manages...
    ka.describe_key(proto::DescribeKeyRequest {
        key_id: key.key_id.clone(),
        grant_tokens: vec![],
    })
    .await
    .unwrap();
    ka.get_key_policy(proto::GetKeyPolicyRequest {
        key_id: key.key_id.clone(),
        policy_name: String::new(),
    })
    .await
    .unwrap();
    // ...but never uses.
    let st = assert_kms_error(
        ka.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );
    assert!(
        st.message().contains("explicit deny") && st.message().contains("NoCrypto"),
        "{}",
        st.message()
    );
    assert_kms_error(
        ka.encrypt(encrypt_req(&key.key_id, b"x", &[])).await,
        "AccessDeniedException",
    );
    assert_kms_error(
        ka.generate_data_key_without_plaintext(proto::GenerateDataKeyWithoutPlaintextRequest {
            key_id: key.key_id.clone(),
            key_spec: "AES_256".into(),
            ..Default::default()
        })
        .await,
        "AccessDeniedException",
    );
    // The user uses but does not manage.
    assert_kms_error(
        put_key_policy(&mut u, &key.key_id, policy(vec![root_statement(ACCOUNT)]))
            .await
            .map(tonic::Response::new),
        "AccessDeniedException",
    );

    // The admin takes the user out of the key policy: the next call fails.
    put_key_policy(
        &mut ka,
        &key.key_id,
        policy(vec![root_statement(ACCOUNT), admin_stmt]),
    )
    .await
    .unwrap();
    assert_kms_error(
        u.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );
}

/// (d) Cross-account use needs the key policy in the key's account AND an identity
/// policy in the caller's account.
#[tokio::test(flavor = "multi_thread")]
async fn cross_account_use_needs_both_sides() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let consumer = role(OTHER_ACCOUNT, "Consumer");
    let consumer_stmt = json!({"Sid": "ExternalConsumer", "Effect": "Allow", "Principal": {"AWS": &consumer},
        "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*"});
    let key = create_key_with_policy(
        &mut admin,
        policy(vec![root_statement(ACCOUNT), consumer_stmt]),
    )
    .await;
    let blob = encrypt(&mut admin, &key.key_id, b"shared", &[]).await;
    let mut c = d.client_as(&consumer).await;

    // Key policy only: denied.
    let st = assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );
    assert!(
        st.message()
            .contains("no identity policy in the caller's account"),
        "{}",
        st.message()
    );
    // Both sides: allowed.
    let mut other_root = d.client_as(&root_of(OTHER_ACCOUNT)).await;
    put_identity_policy(
        &mut other_root,
        &consumer,
        "use-partner-key",
        allow(&["kms:Decrypt", "kms:DescribeKey"]),
    )
    .await;
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"shared");
    // Identity policy only: denied again once the key policy drops the consumer.
    put_key_policy(
        &mut admin,
        &key.key_id,
        policy(vec![root_statement(ACCOUNT)]),
    )
    .await
    .unwrap();
    let st = assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );
    assert!(
        st.message().contains("does not allow the caller's account"),
        "{}",
        st.message()
    );
    // The key policy may trust the whole account instead; its identity policies decide.
    let account_stmt = json!({"Sid": "PartnerAccount", "Effect": "Allow", "Principal": {"AWS": OTHER_ACCOUNT}, "Action": "kms:Decrypt", "Resource": "*"});
    put_key_policy(
        &mut admin,
        &key.key_id,
        policy(vec![root_statement(ACCOUNT), account_stmt]),
    )
    .await
    .unwrap();
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"shared");
    let mut stranger = d.client_as(&role(OTHER_ACCOUNT, "Stranger")).await;
    assert_kms_error(
        stranger.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );
}

/// (e) kms:ViaService: a trusted service calls on behalf of a principal; the same
/// principal calling directly, or an untrusted caller claiming to relay, is refused.
#[tokio::test(flavor = "multi_thread")]
async fn via_service_only_through_a_trusted_service() {
    let dir = TestDir::new();
    let store = role(ACCOUNT, "ObjectStore");
    dir.prepare().append_config(&format!(
        "\n[[trusted_services]]\nprincipal = \"{store}\"\nname = \"s3.us-east-1.amazonaws.com\"\naccounts = [\"{ACCOUNT}\"]\n"
    ));
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let app = role(ACCOUNT, "App");
    let key = create_key_with_policy(
        &mut admin,
        policy(vec![
            root_statement(ACCOUNT),
            json!({"Sid": "ViaS3", "Effect": "Allow", "Principal": {"AWS": &app}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
                   "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}}),
        ]),
    )
    .await;
    let on_behalf = |req: proto::EncryptRequest, who: &str| {
        let mut r = tonic::Request::new(req);
        r.metadata_mut().insert(
            "x-p11kms-on-behalf-of",
            MetadataValue::try_from(who).unwrap(),
        );
        r
    };
    let mut svc = d.client_as(&store).await;
    let enc = svc
        .encrypt(on_behalf(
            encrypt_req(&key.key_id, b"object key", &[]),
            &app,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(enc.key_id, key.arn);

    // The same principal directly: no kms:ViaService, refused.
    let mut direct = d.client_as(&app).await;
    assert_kms_error(
        direct.encrypt(encrypt_req(&key.key_id, b"x", &[])).await,
        "AccessDeniedException",
    );
    // An untrusted caller cannot claim to relay.
    let mut fake = d.client_as(&role(ACCOUNT, "NotAService")).await;
    let st = assert_kms_error(
        fake.encrypt(on_behalf(encrypt_req(&key.key_id, b"x", &[]), &app))
            .await,
        "AccessDeniedException",
    );
    assert!(
        st.message().contains("not a trusted service"),
        "{}",
        st.message()
    );
    // The trusted service acting for someone the policy does not name: refused.
    assert_kms_error(
        svc.encrypt(on_behalf(
            encrypt_req(&key.key_id, b"x", &[]),
            &role(ACCOUNT, "Other"),
        ))
        .await,
        "AccessDeniedException",
    );
    // Scope: never as an account root (which the key policy allows everything), and
    // never for an account it does not serve, even where the key policy would allow.
    let st = assert_kms_error(
        svc.encrypt(on_behalf(
            encrypt_req(&key.key_id, b"x", &[]),
            &root_of(ACCOUNT),
        ))
        .await,
        "AccessDeniedException",
    );
    assert!(st.message().contains("account root"), "{}", st.message());
    let st = assert_kms_error(
        svc.encrypt(on_behalf(
            encrypt_req(&key.key_id, b"x", &[]),
            &format!("arn:aws-us-gov:iam::{ACCOUNT}:role/App"),
        ))
        .await,
        "AccessDeniedException",
    );
    assert!(
        st.message().contains("another partition"),
        "{}",
        st.message()
    );
    let partner = role(OTHER_ACCOUNT, "Partner");
    let mut owner = d.admin().await;
    put_key_policy(
        &mut owner,
        &key.key_id,
        policy(vec![
            root_statement(ACCOUNT),
            json!({"Effect": "Allow", "Principal": {"AWS": &partner}, "Action": "kms:*", "Resource": "*"}),
        ]),
    )
    .await
    .unwrap();
    put_identity_policy(
        &mut d.client_as(&root_of(OTHER_ACCOUNT)).await,
        &partner,
        "all",
        allow(&["kms:*"]),
    )
    .await;
    let st = assert_kms_error(
        svc.encrypt(on_behalf(encrypt_req(&key.arn, b"x", &[]), &partner))
            .await,
        "AccessDeniedException",
    );
    assert!(st.message().contains("other accounts"), "{}", st.message());
    // The partner itself may (the policy allows it): only the relay is refused.
    d.client_as(&partner)
        .await
        .encrypt(encrypt_req(&key.arn, b"x", &[]))
        .await
        .unwrap();
}

/// (f) The lockout safety check on CreateKey and PutKeyPolicy.
#[tokio::test(flavor = "multi_thread")]
async fn lockout_safety_check() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let app_only = policy(vec![
        json!({"Effect": "Allow", "Principal": {"AWS": role(ACCOUNT, "App")}, "Action": "kms:*", "Resource": "*"}),
    ]);
    let st = assert_kms_error(
        admin
            .create_key(proto::CreateKeyRequest {
                policy: app_only.clone(),
                ..Default::default()
            })
            .await,
        "MalformedPolicyDocumentException",
    );
    assert!(
        st.message()
            .contains("will not allow you to update the key policy"),
        "{}",
        st.message()
    );
    let keys = admin
        .list_keys(proto::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert!(keys.is_empty(), "a refused CreateKey creates nothing");

    let key = create_key(&mut admin).await;
    let st = assert_kms_error(
        put_key_policy(&mut admin, &key.key_id, app_only.clone())
            .await
            .map(tonic::Response::new),
        "MalformedPolicyDocumentException",
    );
    assert!(st.message().contains("will not allow"), "{}", st.message());
    // With the bypass flag the caller locks itself out, on purpose.
    admin
        .put_key_policy(proto::PutKeyPolicyRequest {
            key_id: key.key_id.clone(),
            policy_name: String::new(),
            policy: app_only.clone(),
            bypass_policy_lockout_safety_check: true,
        })
        .await
        .unwrap();
    assert_kms_error(
        put_key_policy(
            &mut admin,
            &key.key_id,
            policy(vec![root_statement(ACCOUNT)]),
        )
        .await
        .map(tonic::Response::new),
        "AccessDeniedException",
    );
    let bypassed = admin
        .create_key(proto::CreateKeyRequest {
            policy: app_only,
            bypass_policy_lockout_safety_check: true,
            ..Default::default()
        })
        .await;
    bypassed.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn key_policy_rpcs_round_trip_and_refuse_malformed_documents() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let get = |name: &str| proto::GetKeyPolicyRequest {
        key_id: key.key_id.clone(),
        policy_name: name.into(),
    };
    let default: serde_json::Value = serde_json::from_str(
        &admin
            .get_key_policy(get(""))
            .await
            .unwrap()
            .into_inner()
            .policy,
    )
    .unwrap();
    assert_eq!(
        default["Statement"][0]["Principal"]["AWS"],
        root_of(ACCOUNT)
    );
    assert_eq!(default["Statement"][0]["Action"], "kms:*");

    let doc = format!(
        "{{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [{}]\n}}",
        root_statement(ACCOUNT)
    );
    put_key_policy(&mut admin, &key.arn, doc.clone())
        .await
        .unwrap();
    let got = admin
        .get_key_policy(get("default"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.policy, doc, "the document comes back exactly as put");
    assert_eq!(got.policy_name, "default");
    let names = admin
        .list_key_policies(proto::ListKeyPoliciesRequest {
            key_id: key.key_id.clone(),
            limit: None,
            marker: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names.policy_names, vec!["default"]);
    assert_kms_error(
        admin.get_key_policy(get("other")).await,
        "NotFoundException",
    );

    for (doc, where_) in [
        (r#"{"Statement":[{"Sid":"Bad","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEqualz":{"a":"b"}}}]}"#.to_string(), "Statement[0] (Sid \"Bad\").Condition.StringEqualz"),
        (r#"{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#.to_string(), "Statement[0].Principal"),
        ("not json".to_string(), "not valid JSON"),
    ] {
        let st = assert_kms_error(put_key_policy(&mut admin, &key.key_id, doc).await.map(tonic::Response::new), "MalformedPolicyDocumentException");
        assert!(st.message().contains(where_), "{}", st.message());
    }
    // Over the key policy quota (32 KiB) but within the Policy member's 131,072
    // characters: AWS's LimitExceededException.
    let huge = policy(vec![
        json!({"Sid": "x".repeat(33_000), "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}),
    ]);
    assert_kms_error(
        put_key_policy(&mut admin, &key.key_id, huge)
            .await
            .map(tonic::Response::new),
        "LimitExceededException",
    );
    // Refused documents changed nothing.
    assert_eq!(
        admin
            .get_key_policy(get(""))
            .await
            .unwrap()
            .into_inner()
            .policy,
        doc
    );
}

/// aws:PrincipalTag: tags put by the account root reach conditions and policy variables.
#[tokio::test(flavor = "multi_thread")]
async fn principal_tags_drive_attribute_based_access() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let app = role(ACCOUNT, "App");
    let key = create_key_with_policy(
        &mut admin,
        policy(vec![
            root_statement(ACCOUNT),
            json!({"Sid": "OwnTeam", "Effect": "Allow", "Principal": {"AWS": &app}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
                   "Condition": {"StringEquals": {"kms:EncryptionContext:team": "${aws:PrincipalTag/team}"}}}),
        ]),
    )
    .await;
    let mut c = d.client_as(&app).await;
    // Untagged: the variable has no value and matches nothing.
    assert_kms_error(
        c.encrypt(encrypt_req(&key.key_id, b"x", &[("team", "blue")]))
            .await,
        "AccessDeniedException",
    );
    admin
        .tag_principal(proto::TagPrincipalRequest {
            principal_arn: app.clone(),
            tags: vec![proto::Tag {
                tag_key: "team".into(),
                tag_value: "blue".into(),
            }],
        })
        .await
        .unwrap();
    let blob = encrypt(&mut c, &key.key_id, b"blue data", &[("team", "blue")]).await;
    assert_eq!(
        decrypt(&mut c, &blob, &[("team", "blue")]).await,
        b"blue data"
    );
    assert_kms_error(
        c.encrypt(encrypt_req(&key.key_id, b"x", &[("team", "red")]))
            .await,
        "AccessDeniedException",
    );
    let tags = admin
        .list_principal_tags(proto::ListPrincipalTagsRequest {
            principal_arn: app.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        tags.tags,
        vec![proto::Tag {
            tag_key: "team".into(),
            tag_value: "blue".into()
        }]
    );
    admin
        .untag_principal(proto::UntagPrincipalRequest {
            principal_arn: app.clone(),
            tag_keys: vec!["team".into()],
        })
        .await
        .unwrap();
    assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[("team", "blue")])).await,
        "AccessDeniedException",
    );
    // A principal cannot tag itself without permission.
    assert_kms_error(
        c.tag_principal(proto::TagPrincipalRequest {
            principal_arn: app.clone(),
            tags: vec![proto::Tag {
                tag_key: "team".into(),
                tag_value: "blue".into(),
            }],
        })
        .await,
        "AccessDeniedException",
    );
}

/// Identity policies are managed by the account root, or by whoever its identity
/// policies allow the IAM action on the principal.
#[tokio::test(flavor = "multi_thread")]
async fn identity_policies_are_managed_by_root_or_delegates() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let (iam_admin, app) = (role(ACCOUNT, "IamAdmin"), role(ACCOUNT, "App"));
    let mut ia = d.client_as(&iam_admin).await;
    let put = |doc: String| proto::PutPrincipalPolicyRequest {
        principal_arn: app.clone(),
        policy_name: "use".into(),
        policy_document: doc,
    };
    assert_kms_error(
        ia.put_principal_policy(put(allow(&["kms:*"]).to_string()))
            .await,
        "AccessDeniedException",
    );
    put_identity_policy(
        &mut admin,
        &iam_admin,
        "manage-app",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
               "Action": ["iam:PutRolePolicy", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:DeleteRolePolicy"],
               "Resource": app}]}),
    )
    .await;
    ia.put_principal_policy(put(allow(&["kms:Encrypt"]).to_string()))
        .await
        .unwrap();
    let listed = ia
        .list_principal_policies(proto::ListPrincipalPoliciesRequest {
            principal_arn: app.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.policy_names, vec!["use"]);
    let got = ia
        .get_principal_policy(proto::GetPrincipalPolicyRequest {
            principal_arn: app.clone(),
            policy_name: "use".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.policy_document, allow(&["kms:Encrypt"]).to_string());
    // Only that role: not others.
    assert_kms_error(
        ia.put_principal_policy(proto::PutPrincipalPolicyRequest {
            principal_arn: role(ACCOUNT, "Other"),
            policy_name: "x".into(),
            policy_document: allow(&["kms:*"]).to_string(),
        })
        .await,
        "AccessDeniedException",
    );
    // The policy works, and deleting it revokes at once.
    let key = create_key(&mut admin).await;
    let mut a = d.client_as(&app).await;
    encrypt(&mut a, &key.key_id, b"x", &[]).await;
    ia.delete_principal_policy(proto::DeletePrincipalPolicyRequest {
        principal_arn: app.clone(),
        policy_name: "use".into(),
    })
    .await
    .unwrap();
    assert_kms_error(
        a.encrypt(encrypt_req(&key.key_id, b"x", &[])).await,
        "AccessDeniedException",
    );
    // Malformed and misplaced documents.
    let st = assert_kms_error(
        admin.put_principal_policy(put(json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}]}).to_string())).await,
        "MalformedPolicyDocumentException",
    );
    assert!(
        st.message().contains("must not name a principal"),
        "{}",
        st.message()
    );
    assert_kms_error(
        admin
            .put_principal_policy(proto::PutPrincipalPolicyRequest {
                principal_arn: root_of(ACCOUNT),
                policy_name: "x".into(),
                policy_document: allow(&["kms:*"]).to_string(),
            })
            .await,
        "ValidationException",
    );
    assert_kms_error(
        admin
            .get_principal_policy(proto::GetPrincipalPolicyRequest {
                principal_arn: app.clone(),
                policy_name: "use".into(),
            })
            .await,
        "NotFoundException",
    );
}
