//! Bring your own key, on a real token: material made and wrapped outside p11kms (Python
//! `cryptography`, OpenSSL), imported through boto3, gRPC and the CLI, then proven by
//! outside code to be exactly what the HSM holds; expiry on the test clock; every error.

use crate::aws_sdk::{aws_script, creds_for, ok};
use crate::harness::*;

const ROOT: &str = "arn:aws:iam::111122223333:root";

/// The wrapping algorithms each test token unwraps inside itself: SoftHSM2's OAEP takes
/// SHA-1 only (and it has CKM_AES_KEY_WRAP_PAD); kryoptic's OAEP takes SHA-256 too, and
/// its RFC 5649 mechanism (CKM_AES_KEY_WRAP_KWP) is one cryptoki cannot name.
fn supported() -> &'static str {
    match test_token() {
        TestToken::SoftHsm2 => "RSAES_OAEP_SHA_1,RSA_AES_KEY_WRAP_SHA_1",
        TestToken::Kryoptic(_) => "RSAES_OAEP_SHA_1,RSAES_OAEP_SHA_256",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn material_wrapped_outside_is_imported_and_is_exactly_what_the_hsm_holds() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let root = creds_for(&mut admin, ROOT).await;
    let mut args = vec!["all", "--supported", supported()];
    // kryoptic has no secp256k1 (see the asymmetric tests).
    if matches!(test_token(), TestToken::Kryoptic(_)) {
        args.push("--without-secp256k1");
    }
    let run = aws_script(&d, &root, "aws_import.py", &args, b"");
    if !run.status.success() {
        eprintln!("daemon log:\n{}", d.log());
    }
    let out = ok(run, "imports through boto3");
    assert_eq!(String::from_utf8_lossy(&out).trim(), "ok");
}

/// Wraps `material` for the wrapping key `spki` with RSAES-OAEP-SHA-1 (aws-lc, not
/// p11kms's code path), as an importer would.
pub fn oaep_sha1_wrap(spki: &[u8], material: &[u8]) -> Vec<u8> {
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1};
    let key = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(spki).unwrap()).unwrap();
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(&OAEP_SHA1_MGF1SHA1, material, &mut out, None)
        .unwrap()
        .len();
    out.truncate(n);
    out
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn ts(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn wrapping_keys(dir: &TestDir) -> usize {
    dir.token_objects()
        .iter()
        .filter(|o| {
            o["label"]
                .as_str()
                .is_some_and(|l| l.starts_with("p11kms/import-wrapping-key/"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_material_expires_on_the_clock_and_the_same_material_brings_the_key_back() {
    use p11kms::proto;
    let dir = TestDir::new();
    let offset = dir.with_test_clock();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = c
        .create_key(proto::CreateKeyRequest {
            origin: "EXTERNAL".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    let id = key.key_id.clone();
    assert_eq!(
        (key.key_state.as_str(), key.origin.as_str()),
        ("PendingImport", "EXTERNAL")
    );
    assert_eq!(dir.objects_of(&id), 0, "no material before the import");
    let params = c
        .get_parameters_for_import(proto::GetParametersForImportRequest {
            key_id: id.clone(),
            wrapping_algorithm: "RSAES_OAEP_SHA_1".into(),
            wrapping_key_spec: "RSA_2048".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(wrapping_keys(&dir), 1, "the wrapping key is in the token");
    let mut material = [0u8; 32];
    aws_lc_rs::rand::fill(&mut material).unwrap();
    crate::secrets_scan::sent_plaintext(&material);
    let import = |valid_to: Option<i64>| proto::ImportKeyMaterialRequest {
        key_id: id.clone(),
        import_token: params.import_token.clone(),
        encrypted_key_material: oaep_sha1_wrap(&params.public_key, &material),
        valid_to: valid_to.map(ts),
        expiration_model: if valid_to.is_some() {
            "KEY_MATERIAL_EXPIRES".into()
        } else {
            "KEY_MATERIAL_DOES_NOT_EXPIRE".into()
        },
    };
    c.import_key_material(import(Some(now_secs() + 3600)))
        .await
        .unwrap();
    let described = |c: &mut p11kms::client::KmsClient| {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            c.describe_key(proto::DescribeKeyRequest {
                key_id: id,
                grant_tokens: vec![],
            })
            .await
            .unwrap()
            .into_inner()
            .key_metadata
            .unwrap()
        }
    };
    let m = described(&mut c).await;
    assert_eq!(m.key_state, "Enabled");
    assert_eq!(m.expiration_model, "KEY_MATERIAL_EXPIRES");
    assert!(m.valid_to.is_some());
    assert_eq!(dir.objects_of(&id), 1, "the material is a token object");
    let blob = encrypt(&mut c, &id, b"before the expiry", &[("a", "b")]).await;

    // Two hours on: past ValidTo. The sweep destroys the material and audits it.
    std::fs::write(&offset, "7200").unwrap();
    eventually("the material's expiry", || {
        let m = described(&mut c);
        async move { m.await.key_state == "PendingImport" }
    })
    .await;
    let m = described(&mut c).await;
    assert_eq!((m.expiration_model.as_str(), m.valid_to), ("", None));
    assert_eq!(
        dir.objects_of(&id),
        0,
        "the token no longer holds the material"
    );
    assert_kms_error(
        c.encrypt(encrypt_req(&id, b"after the expiry", &[])).await,
        "KMSInvalidStateException",
    );
    assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[("a", "b")])).await,
        "KMSInvalidStateException",
    );
    let trail = crate::audit::records(&crate::audit::audit_dir(&dir));
    assert!(
        trail
            .iter()
            .any(|r| r["eventName"] == "DeleteExpiredKeyMaterial"
                && r["eventType"] == "AwsServiceEvent"
                && r["resources"][0]["ARN"] == key.arn.as_str()
                && r.get("errorCode").is_none()),
        "the expiry is in the trail"
    );

    // The same material again (the token is still valid): the old blob decrypts.
    c.import_key_material(import(None)).await.unwrap();
    assert_eq!(
        decrypt(&mut c, &blob, &[("a", "b")]).await,
        b"before the expiry"
    );
    let m = described(&mut c).await;
    assert_eq!(
        (m.key_state.as_str(), m.expiration_model.as_str()),
        ("Enabled", "KEY_MATERIAL_DOES_NOT_EXPIRE")
    );

    // DeleteImportedKeyMaterial does at once what the expiry did.
    c.delete_imported_key_material(proto::DeleteImportedKeyMaterialRequest { key_id: id.clone() })
        .await
        .unwrap();
    assert_eq!(described(&mut c).await.key_state, "PendingImport");
    assert_eq!(dir.objects_of(&id), 0);
    assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[("a", "b")])).await,
        "KMSInvalidStateException",
    );

    // A day on: the import token has expired, and its wrapping key is swept away.
    std::fs::write(&offset, (25 * 3600).to_string()).unwrap();
    assert_kms_error(
        c.import_key_material(import(None)).await,
        "ExpiredImportTokenException",
    );
    eventually("the wrapping key's removal", || {
        let n = wrapping_keys(&dir);
        async move { n == 0 }
    })
    .await;

    // The material never reached the log, the trail or the store, in any spelling.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(material);
    let hex: String = material.iter().map(|b| format!("{b:02x}")).collect();
    let store = std::fs::read(dir.path().join("p11kms.db")).unwrap();
    let log = d.log();
    for (name, hay) in [("log", log.as_bytes()), ("store", &store[..])] {
        for needle in [&material[..], b64.as_bytes(), hex.as_bytes()] {
            assert!(
                !hay.windows(needle.len()).any(|w| w == needle),
                "the imported material is in the {name}"
            );
        }
    }
    d.stop();
}
