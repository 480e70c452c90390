//! Bad requests get the AWS error name, never a panic, and the daemon keeps serving.

use p11kms::proto;

use crate::harness::*;

fn gdk(key_id: &str, n: Option<i32>, spec: &str) -> proto::GenerateDataKeyRequest {
    proto::GenerateDataKeyRequest {
        key_id: key_id.into(),
        encryption_context: Default::default(),
        number_of_bytes: n,
        key_spec: spec.into(),
        grant_tokens: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_aws_error_names_and_the_daemon_keeps_serving() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let k = key.key_id.as_str();

    // Plaintext bounds.
    assert_kms_error(
        c.encrypt(encrypt_req(k, b"", &[])).await,
        "ValidationException",
    );
    assert_kms_error(
        c.encrypt(encrypt_req(k, &[7u8; 4097], &[])).await,
        "ValidationException",
    );

    // Key ids: unknown, malformed, empty, aliases (not yet), foreign region, wrong account in ARN.
    let unknown = "1234abcd-12ab-34cd-56ef-1234567890ab";
    for (key_id, name) in [
        (unknown.to_string(), "NotFoundException"),
        (
            format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{unknown}"),
            "NotFoundException",
        ),
        ("not-a-key".to_string(), "NotFoundException"),
        (
            "1234ABCD-12AB-34CD-56EF-1234567890AB".to_string(),
            "NotFoundException",
        ),
        (
            "arn:aws:kms:us-east-1:111122223333:key/".to_string(),
            "NotFoundException",
        ),
        (String::new(), "ValidationException"),
        ("x".repeat(2049), "ValidationException"),
        ("alias/payroll".to_string(), "NotFoundException"),
        (
            format!("arn:aws:kms:eu-west-1:{ACCOUNT}:key/{k}"),
            "NotFoundException",
        ),
        (
            format!("arn:aws:kms:us-east-1:{OTHER_ACCOUNT}:key/{k}"),
            "NotFoundException",
        ),
    ] {
        let st = assert_kms_error(c.encrypt(encrypt_req(&key_id, b"x", &[])).await, name);
        // Malformed input is not echoed back (ARNs and key ids are, as AWS does).
        for echoed in ["not-a-key", "1234ABCD", "xxxxxxxxxxxxxxxx"] {
            if key_id.contains(echoed) {
                assert!(!st.message().contains(echoed), "{}", st.message());
            }
        }
    }

    // Data key sizes.
    for (n, spec) in [
        (Some(0), ""),
        (Some(1025), ""),
        (Some(32), "AES_256"),
        (None, ""),
        (None, "AES_512"),
    ] {
        assert_kms_error(
            c.generate_data_key(gdk(k, n, spec)).await,
            "ValidationException",
        );
    }
    assert_kms_error(
        c.generate_data_key_without_plaintext(proto::GenerateDataKeyWithoutPlaintextRequest {
            key_id: k.into(),
            number_of_bytes: Some(1025),
            ..Default::default()
        })
        .await,
        "ValidationException",
    );

    // Algorithms, grant tokens, oversized context.
    let mut r = encrypt_req(k, b"x", &[]);
    r.encryption_algorithm = "RSAES_OAEP_SHA_256".into();
    assert_kms_error(c.encrypt(r).await, "InvalidKeyUsageException");
    let mut r = encrypt_req(k, b"x", &[]);
    r.encryption_algorithm = "AES_GCM".into();
    assert_kms_error(c.encrypt(r).await, "ValidationException");
    let mut r = encrypt_req(k, b"x", &[]);
    r.grant_tokens = vec!["t".into(); 11];
    assert_kms_error(c.encrypt(r).await, "ValidationException");
    let big = "v".repeat(9000);
    assert_kms_error(
        c.encrypt(encrypt_req(k, b"x", &[("k", &big)])).await,
        "ValidationException",
    );

    // CreateKey parameters.
    for (spec, usage, origin, name) in [
        ("RSA_2048", "", "", "UnsupportedOperationException"),
        ("NOT_A_SPEC", "", "", "ValidationException"),
        ("", "SIGN_VERIFY", "", "UnsupportedOperationException"),
        ("", "encrypt_decrypt", "", "ValidationException"),
        ("", "", "EXTERNAL", "UnsupportedOperationException"),
    ] {
        assert_kms_error(
            c.create_key(proto::CreateKeyRequest {
                description: String::new(),
                key_usage: usage.into(),
                key_spec: spec.into(),
                origin: origin.into(),
                ..Default::default()
            })
            .await,
            name,
        );
    }
    assert_kms_error(
        c.create_key(proto::CreateKeyRequest {
            description: "d".repeat(8193),
            ..Default::default()
        })
        .await,
        "ValidationException",
    );

    // ListKeys bounds and markers.
    for limit in [0, 1001] {
        assert_kms_error(
            c.list_keys(proto::ListKeysRequest {
                limit: Some(limit),
                marker: String::new(),
            })
            .await,
            "ValidationException",
        );
    }
    assert_kms_error(
        c.list_keys(proto::ListKeysRequest {
            limit: None,
            marker: "garbage".into(),
        })
        .await,
        "InvalidMarkerException",
    );

    // Decrypt blob bounds.
    assert_kms_error(
        c.decrypt(decrypt_req(b"", &[])).await,
        "ValidationException",
    );
    assert_kms_error(
        c.decrypt(decrypt_req(&[b'p'; 6145], &[])).await,
        "ValidationException",
    );

    // Still serving.
    let blob = encrypt(&mut c, k, b"still here", &[]).await;
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"still here");
    assert!(!d.log().contains("panicked"));
}
