//! The AES-GCM IV budget: when a material version has had its maximum number of
//! encryptions, new material is made in the HSM and every older blob still decrypts.
//! The limit is lowered through the configuration so that the test can reach it.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn spent_material_is_replaced_and_old_blobs_still_decrypt() {
    let dir = TestDir::new();
    dir.prepare()
        .append_config("\n[limits]\nmax_encryptions_per_material = 3\n");
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;

    let mut blobs = Vec::new();
    for i in 0..10u8 {
        blobs.push(encrypt(&mut c, &key.key_id, &[i; 8], &[]).await);
    }
    let versions: Vec<u32> = blobs.iter().map(|b| material_version(b)).collect();
    assert_eq!(versions, vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 4]);
    for (i, b) in blobs.iter().enumerate() {
        assert_eq!(decrypt(&mut c, b, &[]).await, vec![i as u8; 8]);
    }
    assert_eq!(
        dir.objects_of(&key.key_id),
        4,
        "one token object per material version"
    );

    // After a restart the spent part of a reservation is never reused: version 4 had
    // used 1 of 3, but a restart counts all 3 as used, so the next blob is version 5.
    d.stop();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let after = encrypt(&mut c, &key.key_id, b"after", &[]).await;
    assert_eq!(material_version(&after), 5);
    for (i, b) in blobs.iter().enumerate() {
        assert_eq!(decrypt(&mut c, b, &[]).await, vec![i as u8; 8]);
    }
    assert!(d.stop().contains("made new material"));
}

/// Parallel encryptions never use one material version more than the limit allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_encryptions_respect_the_budget() {
    let dir = TestDir::new();
    dir.prepare()
        .append_config("\n[limits]\nmax_encryptions_per_material = 3\n");
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let mut tasks = Vec::new();
    for i in 0..99u8 {
        let mut c = admin.clone();
        let k = key.key_id.clone();
        tasks.push(tokio::spawn(async move {
            let r = c.encrypt(encrypt_req(&k, &[i; 4], &[])).await;
            (i, r.map(|r| r.into_inner().ciphertext_blob))
        }));
    }
    let mut per_version = std::collections::BTreeMap::<u32, usize>::new();
    let mut blobs = Vec::new();
    for t in tasks {
        let (i, blob) = t.await.unwrap();
        let blob = blob.unwrap_or_else(|e| {
            panic!(
                "{e:?}\n--- token ---\n{:?}\n--- daemon log ---\n{}",
                dir.token_objects(),
                d.log()
            )
        });
        *per_version.entry(material_version(&blob)).or_default() += 1;
        blobs.push((i, blob));
    }
    assert!(per_version.values().all(|&n| n <= 3), "{per_version:?}");
    assert_eq!(per_version.len(), 33, "{per_version:?}");
    for (i, blob) in blobs {
        assert_eq!(decrypt(&mut admin, &blob, &[]).await, vec![i; 4]);
    }
}
