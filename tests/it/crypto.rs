//! Round trips of every RPC over gRPC + mTLS against SoftHSM2.

use std::collections::HashSet;

use p11kms::proto;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn create_describe_and_list_keys() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let created = c
        .create_key(proto::CreateKeyRequest {
            description: "payroll".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(created.aws_account_id, ACCOUNT);
    assert_eq!(
        created.arn,
        format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{}", created.key_id)
    );
    assert_eq!(created.key_spec, "SYMMETRIC_DEFAULT");
    assert_eq!(created.key_usage, "ENCRYPT_DECRYPT");
    assert_eq!(created.key_state, "Enabled");
    assert_eq!(created.origin, "AWS_KMS");
    assert_eq!(created.key_manager, "CUSTOMER");
    assert_eq!(created.encryption_algorithms, vec!["SYMMETRIC_DEFAULT"]);
    assert!(created.enabled);
    assert!(created.creation_date.unwrap().seconds > 1_700_000_000);

    for key_id in [created.key_id.clone(), created.arn.clone()] {
        let described = describe(&mut c, &key_id).await;
        assert_eq!(described, created);
    }

    let mut all = HashSet::from([created.key_id.clone()]);
    for _ in 0..4 {
        all.insert(create_key(&mut c).await.key_id);
    }
    // Pages of two: 2 + 2 + 1, each marker continuing where the last page ended.
    let mut seen = HashSet::new();
    let mut marker = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_keys(proto::ListKeysRequest {
                limit: Some(2),
                marker: marker.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.keys.len() <= 2);
        for k in &page.keys {
            assert_eq!(
                k.key_arn,
                format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{}", k.key_id)
            );
            assert!(seen.insert(k.key_id.clone()), "listed twice: {}", k.key_id);
        }
        if !page.truncated {
            assert!(page.next_marker.is_empty());
            break;
        }
        marker = page.next_marker;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, all);
    let everything = c
        .list_keys(proto::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(everything.keys.len(), 5);
    assert!(!everything.truncated);
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_and_decrypt_round_trip_with_context() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let context = [("app", "payroll"), ("env", "prod")];
    for size in [1usize, 17, 4096] {
        let plaintext: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let enc = c
            .encrypt(encrypt_req(&key.key_id, &plaintext, &context))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(enc.key_id, key.arn);
        assert_eq!(enc.encryption_algorithm, "SYMMETRIC_DEFAULT");
        assert_eq!(enc.ciphertext_blob.len(), size + 52, "documented overhead");
        let dec = c
            .decrypt(decrypt_req(&enc.ciphertext_blob, &context))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(dec.plaintext, plaintext);
        assert_eq!(dec.key_id, key.arn);
    }
    // KeyId on Decrypt is optional, and may be the id or the ARN of the right key.
    let blob = encrypt(&mut c, &key.arn, b"by arn", &[]).await;
    for key_id in [key.key_id.clone(), key.arn.clone()] {
        let mut req = decrypt_req(&blob, &[]);
        req.key_id = key_id;
        assert_eq!(
            c.decrypt(req).await.unwrap().into_inner().plaintext,
            b"by arn"
        );
    }
    // Fresh IVs: the same plaintext never gives the same blob.
    let a = encrypt(&mut c, &key.key_id, b"same", &[]).await;
    let b = encrypt(&mut c, &key.key_id, b"same", &[]).await;
    assert_ne!(a, b);
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_data_key_round_trips() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let context = [("bucket", "photos")];
    for (spec, n, len) in [
        ("AES_256", None, 32),
        ("AES_128", None, 16),
        ("", Some(1), 1),
        ("", Some(1024), 1024),
    ] {
        let r = c
            .generate_data_key(proto::GenerateDataKeyRequest {
                key_id: key.key_id.clone(),
                encryption_context: ctx(&context),
                number_of_bytes: n,
                key_spec: spec.into(),
                grant_tokens: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.plaintext.len(), len);
        assert_eq!(r.key_id, key.arn);
        assert_eq!(
            decrypt(&mut c, &r.ciphertext_blob, &context).await,
            r.plaintext
        );
    }
    let r = c
        .generate_data_key_without_plaintext(proto::GenerateDataKeyWithoutPlaintextRequest {
            key_id: key.arn.clone(),
            encryption_context: ctx(&context),
            number_of_bytes: None,
            key_spec: "AES_256".into(),
            grant_tokens: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.key_id, key.arn);
    assert_eq!(
        decrypt(&mut c, &r.ciphertext_blob, &context).await.len(),
        32
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn re_encrypt_moves_a_blob_across_keys_and_contexts() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let k1 = create_key(&mut c).await;
    let k2 = create_key(&mut c).await;
    let blob = encrypt(&mut c, &k1.key_id, b"move me", &[("v", "1")]).await;

    let r = c
        .re_encrypt(proto::ReEncryptRequest {
            ciphertext_blob: blob.clone(),
            source_encryption_context: ctx(&[("v", "1")]),
            destination_key_id: k2.key_id.clone(),
            destination_encryption_context: ctx(&[("v", "2")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.source_key_id, k1.arn);
    assert_eq!(r.key_id, k2.arn);
    assert_eq!(r.source_encryption_algorithm, "SYMMETRIC_DEFAULT");
    assert_eq!(r.destination_encryption_algorithm, "SYMMETRIC_DEFAULT");
    let dec = c
        .decrypt(decrypt_req(&r.ciphertext_blob, &[("v", "2")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dec.plaintext, b"move me");
    assert_eq!(dec.key_id, k2.arn);
    // The new blob is bound to the new context only.
    assert_kms_error(
        c.decrypt(decrypt_req(&r.ciphertext_blob, &[("v", "1")]))
            .await,
        "InvalidCiphertextException",
    );

    // Same key, changed context.
    let same = c
        .re_encrypt(proto::ReEncryptRequest {
            ciphertext_blob: blob.clone(),
            source_encryption_context: ctx(&[("v", "1")]),
            source_key_id: k1.arn.clone(),
            destination_key_id: k1.key_id.clone(),
            destination_encryption_context: ctx(&[("v", "3")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decrypt(&mut c, &same.ciphertext_blob, &[("v", "3")]).await,
        b"move me"
    );

    // Wrong source context, wrong SourceKeyId, no destination.
    let bad = |source_ctx: &[(&str, &str)], source_key: &str, dest: &str| proto::ReEncryptRequest {
        ciphertext_blob: blob.clone(),
        source_encryption_context: ctx(source_ctx),
        source_key_id: source_key.into(),
        destination_key_id: dest.into(),
        ..Default::default()
    };
    assert_kms_error(
        c.re_encrypt(bad(&[("v", "9")], "", &k2.key_id)).await,
        "InvalidCiphertextException",
    );
    assert_kms_error(
        c.re_encrypt(bad(&[("v", "1")], &k2.key_id, &k2.key_id))
            .await,
        "IncorrectKeyException",
    );
    assert_kms_error(
        c.re_encrypt(bad(&[("v", "1")], "", "")).await,
        "ValidationException",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_random_returns_fresh_bytes_of_the_asked_length() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    for n in [1, 32, 1024] {
        let r = c
            .generate_random(proto::GenerateRandomRequest {
                number_of_bytes: Some(n),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.plaintext.len(), n as usize);
    }
    let a = c
        .generate_random(proto::GenerateRandomRequest {
            number_of_bytes: Some(32),
        })
        .await
        .unwrap()
        .into_inner();
    let b = c
        .generate_random(proto::GenerateRandomRequest {
            number_of_bytes: Some(32),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(a.plaintext, b.plaintext);
    for n in [None, Some(0), Some(1025), Some(-1)] {
        assert_kms_error(
            c.generate_random(proto::GenerateRandomRequest { number_of_bytes: n })
                .await,
            "ValidationException",
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_carry_a_request_id() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let ok = c
        .list_keys(proto::ListKeysRequest::default())
        .await
        .unwrap();
    let rid = ok
        .metadata()
        .get("x-amzn-requestid")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(rid.len(), 36);
    let err = c
        .describe_key(proto::DescribeKeyRequest {
            key_id: "nope".into(),
            grant_tokens: vec![],
        })
        .await
        .unwrap_err();
    assert!(err.metadata().get("x-amzn-requestid").is_some());
}
