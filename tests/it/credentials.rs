//! Access keys for SigV4: who may manage them, IAM's quota, and that the secret is
//! nowhere in clear but the CreateAccessKey answer (not the database, trail or log).

use p11kms::proto;
use serde_json::json;

use crate::harness::*;
use crate::secrets_scan;

fn user(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:user/{name}")
}

async fn try_create(
    c: &mut p11kms::client::KmsClient,
    principal: &str,
) -> Result<tonic::Response<proto::CreateAccessKeyResponse>, tonic::Status> {
    let r = c
        .create_access_key(proto::CreateAccessKeyRequest {
            principal_arn: principal.into(),
        })
        .await;
    if let Ok(r) = &r {
        if let Some(k) = &r.get_ref().access_key {
            secrets_scan::issued_secret(&k.secret_access_key);
        }
    }
    r
}

async fn create(c: &mut p11kms::client::KmsClient, principal: &str) -> proto::AccessKey {
    try_create(c, principal)
        .await
        .unwrap()
        .into_inner()
        .access_key
        .take()
        .unwrap()
}

async fn list(c: &mut p11kms::client::KmsClient, principal: &str) -> Vec<proto::AccessKey> {
    c.list_access_keys(proto::ListAccessKeysRequest {
        principal_arn: principal.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .access_key_metadata
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_root_creates_lists_and_deletes_access_keys_and_the_secret_stays_sealed() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut root = d.admin().await;
    let alice = user(ACCOUNT, "Alice");
    let k1 = create(&mut root, &alice).await;
    assert_eq!(k1.access_key_id.len(), 20);
    assert!(k1.access_key_id.starts_with("AKIA"));
    assert_eq!(k1.secret_access_key.len(), 40);
    assert_eq!(k1.status, "Active");
    assert_eq!(k1.user_name, "Alice");
    assert!(!format!("{k1:?}").contains(&k1.secret_access_key));
    let k2 = create(&mut root, &alice).await;
    assert_ne!(k1.secret_access_key, k2.secret_access_key);
    // IAM's quota: two per principal.
    assert_kms_error(
        try_create(&mut root, &alice).await,
        "LimitExceededException",
    );

    let listed = list(&mut root, &alice).await;
    let ids: Vec<_> = listed.iter().map(|k| k.access_key_id.clone()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&k1.access_key_id) && ids.contains(&k2.access_key_id));
    assert!(listed.iter().all(|k| k.secret_access_key.is_empty()));

    root.delete_access_key(proto::DeleteAccessKeyRequest {
        access_key_id: k1.access_key_id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(list(&mut root, &alice).await.len(), 1);
    assert_kms_error(
        root.delete_access_key(proto::DeleteAccessKeyRequest {
            access_key_id: k1.access_key_id.clone(),
        })
        .await,
        "NotFoundException",
    );
    assert_kms_error(
        root.delete_access_key(proto::DeleteAccessKeyRequest {
            access_key_id: "not-a-key".into(),
        })
        .await,
        "ValidationException",
    );
    // Room again for a new one.
    create(&mut root, &alice).await;

    let log = d.stop();
    for k in [&k1, &k2] {
        assert!(!log.contains(&k.secret_access_key), "a secret in the log");
    }
    // The database (and its WAL) never holds a secret in clear.
    for f in ["p11kms.db", "p11kms.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(f)) {
            for k in [&k1, &k2] {
                assert!(!contains(&bytes, k.secret_access_key.as_bytes()), "{f}");
            }
        }
    }
    // The sealing key is in the token: sensitive, not extractable.
    let objects = dir.token_objects();
    let seal = objects
        .iter()
        .find(|o| o["label"] == "p11kms/secret-seal")
        .expect("the secret-sealing key");
    assert_eq!(seal["sensitive"], true);
    assert_eq!(seal["extractable"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_policies_decide_who_else_manages_access_keys() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut root = d.admin().await;
    let bob = user(ACCOUNT, "Bob");
    let mut as_bob = d.client_as(&bob).await;
    // No identity policy: denied, even for its own keys.
    assert_kms_error(try_create(&mut as_bob, &bob).await, "AccessDeniedException");
    put_identity_policy(
        &mut root,
        &bob,
        "own-keys",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["iam:CreateAccessKey", "iam:ListAccessKeys"], "Resource": bob}]}),
    )
    .await;
    let k = create(&mut as_bob, &bob).await;
    // ListAccessKeys without a principal: the caller's own.
    assert_eq!(list(&mut as_bob, "").await.len(), 1);
    // Not allowed on another user, nor on the account root.
    assert_kms_error(
        try_create(&mut as_bob, &user(ACCOUNT, "Carol")).await,
        "AccessDeniedException",
    );
    assert_kms_error(
        as_bob
            .delete_access_key(proto::DeleteAccessKeyRequest {
                access_key_id: k.access_key_id.clone(),
            })
            .await,
        "AccessDeniedException",
    );
    // An explicit Deny wins over the Allow.
    put_identity_policy(
        &mut root,
        &bob,
        "deny",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
            "Action": "iam:CreateAccessKey", "Resource": "*"}]}),
    )
    .await;
    assert_kms_error(try_create(&mut as_bob, &bob).await, "AccessDeniedException");
    // Even iam:* on * never reaches the root's own keys.
    let admin = user(ACCOUNT, "Admin");
    put_identity_policy(&mut root, &admin, "all", allow(&["iam:*"])).await;
    let mut as_admin = d.client_as(&admin).await;
    assert_kms_error(
        try_create(&mut as_admin, &root_of(ACCOUNT)).await,
        "AccessDeniedException",
    );
    create(&mut as_admin, &user(ACCOUNT, "Carol")).await;
    // The root may make its own.
    create(&mut root, &root_of(ACCOUNT)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_accounts_root_cannot_manage_this_accounts_access_keys() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut root = d.admin().await;
    let alice = user(ACCOUNT, "Alice");
    let k = create(&mut root, &alice).await;
    let mut other = d.client_as(&root_of(OTHER_ACCOUNT)).await;
    assert_kms_error(
        try_create(&mut other, &alice).await,
        "AccessDeniedException",
    );
    assert_kms_error(
        other
            .list_access_keys(proto::ListAccessKeysRequest {
                principal_arn: alice.clone(),
            })
            .await,
        "AccessDeniedException",
    );
    // Another account's key is not even visible.
    assert_kms_error(
        other
            .delete_access_key(proto::DeleteAccessKeyRequest {
                access_key_id: k.access_key_id.clone(),
            })
            .await,
        "NotFoundException",
    );
}
