//! The AES-GCM IV budget: when a material version has had its maximum number of
//! encryptions, new material is made in the HSM and every older blob still decrypts.
//! The limit is lowered through the configuration so that the test can reach it.

use crate::harness::*;

fn material_version(blob: &[u8]) -> u32 {
    u32::from_be_bytes(blob[20..24].try_into().unwrap())
}

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
    let id_hex: String = key.key_id.replace('-', "");
    let objects = dir.token_objects();
    let mine: Vec<_> = objects
        .iter()
        .filter(|o| o["id"].as_str().unwrap().starts_with(&id_hex))
        .collect();
    assert_eq!(mine.len(), 4, "one token object per material version");

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
