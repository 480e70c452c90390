//! mTLS identity: no certificate, a foreign CA and a certificate without a principal are
//! refused; principals may use only their own account's keys until policies land.

use p11kms::client::{connect, Identity};
use p11kms::proto;

use crate::harness::*;

/// A call through an identity that the daemon must refuse: either the TLS handshake or
/// the first call fails.
async fn refused(d: &Daemon, identity: &std::path::Path) -> Option<tonic::Status> {
    match connect(&d.endpoint(), &Identity::from_dir(identity).unwrap()).await {
        Err(e) => {
            assert!(
                matches!(e, p11kms::client::ClientError::Transport { .. }),
                "{e:?}"
            );
            None
        }
        Ok(mut c) => Some(
            c.list_keys(proto::ListKeysRequest::default())
                .await
                .expect_err("must be refused"),
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_without_a_valid_certificate_are_refused() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);

    // No client certificate at all: a TLS client that only trusts the server.
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca));
    let channel = tonic::transport::Endpoint::from_shared(d.endpoint())
        .unwrap()
        .tls_config(tls)
        .unwrap();
    // TLS 1.3 may let the client finish its handshake before the server's refusal
    // arrives: then the first call fails, at the transport, never with a vault answer.
    if let Ok(ch) = channel.connect().await {
        let mut c = proto::key_management_service_client::KeyManagementServiceClient::new(ch);
        let st = c
            .list_keys(proto::ListKeysRequest::default())
            .await
            .expect_err("no cert must be refused");
        assert!(
            p11kms::client::error_name(&st).is_none(),
            "refused at TLS, not by the vault: {st:?}"
        );
        // The failure comes from the transport (the code varies: Unavailable, Unknown,
        // Cancelled, depending on when the alert lands), never from a handler.
        assert!(std::error::Error::source(&st).is_some(), "{st:?}");
    }

    // A certificate from another CA (another dev directory's), naming a valid principal.
    let stranger = TestDir::new();
    stranger.prepare();
    let foreign = identity_for(stranger.path(), Some(&role(ACCOUNT, "Intruder")));
    // The identity's ca.pem is the stranger's CA: point it at the real server CA so that
    // only the client side is foreign.
    std::fs::copy(dir.path().join("ca.pem"), foreign.join("ca.pem")).unwrap();
    if let Some(st) = refused(&d, &foreign).await {
        assert!(
            p11kms::client::error_name(&st).is_none(),
            "refused at TLS, not by the vault: {st:?}"
        );
    }

    // A certificate from the right CA that names no principal.
    let anonymous = identity_for(dir.path(), None);
    let st = refused(&d, &anonymous)
        .await
        .expect("the handshake succeeds; the request is refused");
    assert_eq!(st.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        p11kms::client::error_name(&st),
        Some("UnrecognizedClientException")
    );
    assert!(
        st.message().contains("URI subject alternative name"),
        "{}",
        st.message()
    );

    // The daemon still serves good clients.
    let mut admin = d.admin().await;
    create_key(&mut admin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_key_policy_delegates_to_identity_policies_and_keeps_accounts_apart() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let blob = encrypt(&mut admin, &key.key_id, b"mine", &[]).await;

    // A role of the key's account: nothing until an identity policy allows it.
    let app_arn = role(ACCOUNT, "App");
    let mut app = d.client_as(&app_arn).await;
    let st = assert_kms_error(
        app.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );
    assert!(
        st.message().contains("identity policies"),
        "{}",
        st.message()
    );
    put_identity_policy(&mut admin, &app_arn, "decrypt", allow(&["kms:Decrypt"])).await;
    assert_eq!(decrypt(&mut app, &blob, &[]).await, b"mine");
    assert_kms_error(
        app.encrypt(encrypt_req(&key.arn, b"x", &[])).await,
        "AccessDeniedException",
    );

    // Another account: by ARN it is AccessDenied, naming principal, action and key, even
    // with an identity policy of its own, since the key policy does not allow it.
    let outsider_arn = role(OTHER_ACCOUNT, "Outsider");
    let mut other_root = d.client_as(&root_of(OTHER_ACCOUNT)).await;
    put_identity_policy(&mut other_root, &outsider_arn, "all-kms", allow(&["kms:*"])).await;
    let mut outsider = d.client_as(&outsider_arn).await;
    let st = assert_kms_error(
        outsider.encrypt(encrypt_req(&key.arn, b"x", &[])).await,
        "AccessDeniedException",
    );
    assert!(st.message().contains(&outsider_arn), "{}", st.message());
    assert!(st.message().contains("kms:Encrypt"), "{}", st.message());
    assert!(st.message().contains(&key.arn), "{}", st.message());
    assert_kms_error(
        outsider.decrypt(decrypt_req(&blob, &[])).await,
        "AccessDeniedException",
    );
    assert_kms_error(
        outsider
            .describe_key(proto::DescribeKeyRequest {
                key_id: key.arn.clone(),
                grant_tokens: vec![],
            })
            .await,
        "AccessDeniedException",
    );
    // A bare key id names a key in the caller's own account, where there is none.
    assert_kms_error(
        outsider.encrypt(encrypt_req(&key.key_id, b"x", &[])).await,
        "NotFoundException",
    );

    // The outsider's own keys live in its own account and are the only ones it lists.
    let own = create_key(&mut outsider).await;
    assert_eq!(own.aws_account_id, OTHER_ACCOUNT);
    let listed = outsider
        .list_keys(proto::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .keys
            .iter()
            .map(|k| k.key_id.clone())
            .collect::<Vec<_>>(),
        vec![own.key_id]
    );

    // One account's root cannot manage another account's principals.
    assert_kms_error(
        admin
            .put_principal_policy(proto::PutPrincipalPolicyRequest {
                principal_arn: outsider_arn.clone(),
                policy_name: "x".into(),
                policy_document: allow(&["kms:*"]).to_string(),
            })
            .await,
        "AccessDeniedException",
    );
}
