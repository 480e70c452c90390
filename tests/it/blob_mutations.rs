//! Every damaged blob is InvalidCiphertextException over the wire: truncated, extended,
//! bit-flipped at every byte, wrong version, foreign, spliced, or the wrong context.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn every_mutation_of_a_blob_is_invalid_ciphertext() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let context = [("purpose", "mutations")];
    let blob = encrypt(
        &mut c,
        &key.key_id,
        b"a secret of 32 bytes, exactly!!!",
        &context,
    )
    .await;
    assert_eq!(
        decrypt(&mut c, &blob, &context).await,
        b"a secret of 32 bytes, exactly!!!"
    );

    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for n in 1..blob.len() {
        cases.push((format!("truncated to {n}"), blob[..n].to_vec()));
    }
    for extra in [1usize, 16] {
        let mut b = blob.clone();
        b.extend(std::iter::repeat_n(0xAB, extra));
        cases.push((format!("extended by {extra}"), b));
    }
    for i in 0..blob.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = blob.clone();
            b[i] ^= bit;
            cases.push((format!("bit {bit:#x} of byte {i} flipped"), b));
        }
    }
    let mut v2 = blob.clone();
    v2[3] = 2;
    cases.push(("format version 2".into(), v2));
    cases.push((
        "foreign (AWS-shaped) blob".into(),
        [vec![1, 2, 2, 0], vec![0x55; 180]].concat(),
    ));
    cases.push((
        "random bytes".into(),
        (0..120u8).map(|i| i.wrapping_mul(37)).collect(),
    ));
    let other = encrypt(
        &mut c,
        &key.key_id,
        b"another secret of 32 bytes......",
        &context,
    )
    .await;
    cases.push((
        "IV of another blob".into(),
        [&blob[..24], &other[24..36], &blob[36..]].concat(),
    ));
    let k2 = create_key(&mut c).await;
    let under_k2 = encrypt(
        &mut c,
        &k2.key_id,
        b"a secret of 32 bytes, exactly!!!",
        &context,
    )
    .await;
    cases.push((
        "header naming another key".into(),
        [&under_k2[..24], &blob[24..]].concat(),
    ));

    for (what, bytes) in cases {
        let st = c
            .decrypt(decrypt_req(&bytes, &context))
            .await
            .expect_err(&what);
        assert_eq!(
            p11kms::client::error_name(&st),
            Some("InvalidCiphertextException"),
            "{what}: {st:?}"
        );
    }

    for (what, wrong) in [
        ("no context", vec![]),
        ("other value", vec![("purpose", "other")]),
        ("key case changed", vec![("Purpose", "mutations")]),
        ("extra pair", vec![("purpose", "mutations"), ("x", "y")]),
    ] {
        let st = c.decrypt(decrypt_req(&blob, &wrong)).await.expect_err(what);
        assert_eq!(
            p11kms::client::error_name(&st),
            Some("InvalidCiphertextException"),
            "{what}"
        );
    }

    // A blob under one key, decrypted naming another.
    let mut req = decrypt_req(&blob, &context);
    req.key_id = k2.key_id.clone();
    assert_kms_error(c.decrypt(req).await, "IncorrectKeyException");

    // The original still decrypts: no state was damaged by the bad calls.
    assert_eq!(
        decrypt(&mut c, &blob, &context).await,
        b"a secret of 32 bytes, exactly!!!"
    );
}
