//! Keys and blobs survive graceful restarts and crashes.

use p11kms::proto;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn keys_created_before_a_restart_still_decrypt_after_it() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let blob = encrypt(&mut c, &key.key_id, b"durable", &[("a", "b")]).await;
    let gdk = c
        .generate_data_key(proto::GenerateDataKeyRequest {
            key_id: key.key_id.clone(),
            key_spec: "AES_256".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let data_key = gdk.plaintext.clone();
    let objects_before = dir.token_objects().len();
    d.stop();

    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    assert_eq!(decrypt(&mut c, &blob, &[("a", "b")]).await, b"durable");
    assert_eq!(decrypt(&mut c, &gdk.ciphertext_blob, &[]).await, data_key);
    let described = describe(&mut c, &key.key_id).await;
    assert_eq!(described, key);
    // The restart reused the token rather than making a new one.
    assert_eq!(dir.token_objects().len(), objects_before);
    encrypt(&mut c, &key.key_id, b"new after restart", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loses_no_key_that_a_client_was_told_about() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let mut blobs = Vec::new();
    for i in 0..5u8 {
        let key = create_key(&mut c).await;
        blobs.push((
            encrypt(&mut c, &key.key_id, &[i; 10], &[]).await,
            vec![i; 10],
        ));
    }
    d.crash();

    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    for (blob, plaintext) in blobs {
        assert_eq!(decrypt(&mut c, &blob, &[]).await, plaintext);
    }
    let keys = c
        .list_keys(proto::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 5);
}
