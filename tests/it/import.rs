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

/// GetParametersForImport for `key_id`: RSAES_OAEP_SHA_1 with an RSA_2048 wrapping key,
/// the pair every token under test supports.
pub async fn oaep_sha1_parameters(
    c: &mut p11kms::client::KmsClient,
    key_id: &str,
) -> p11kms::proto::GetParametersForImportResponse {
    c.get_parameters_for_import(p11kms::proto::GetParametersForImportRequest {
        key_id: key_id.into(),
        wrapping_algorithm: "RSAES_OAEP_SHA_1".into(),
        wrapping_key_spec: "RSA_2048".into(),
    })
    .await
    .unwrap()
    .into_inner()
}

/// ImportKeyMaterial of `material`, wrapped with RSAES-OAEP-SHA-1 for the wrapping key
/// of `params`, that does not expire (set `valid_to` and `expiration_model` for one
/// that does).
pub fn lasting_import(
    key_id: &str,
    params: &p11kms::proto::GetParametersForImportResponse,
    material: &[u8],
) -> p11kms::proto::ImportKeyMaterialRequest {
    p11kms::proto::ImportKeyMaterialRequest {
        key_id: key_id.into(),
        import_token: params.import_token.clone(),
        encrypted_key_material: oaep_sha1_wrap(&params.public_key, material),
        valid_to: None,
        expiration_model: "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
    }
}

/// A new key for imported material (Origin EXTERNAL), over gRPC.
pub async fn external_key(c: &mut p11kms::client::KmsClient) -> p11kms::proto::KeyMetadata {
    c.create_key(p11kms::proto::CreateKeyRequest {
        origin: "EXTERNAL".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .key_metadata
    .unwrap()
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
    let key = external_key(&mut c).await;
    let id = key.key_id.clone();
    assert_eq!(
        (key.key_state.as_str(), key.origin.as_str()),
        ("PendingImport", "EXTERNAL")
    );
    assert_eq!(dir.objects_of(&id), 0, "no material before the import");
    let params = oaep_sha1_parameters(&mut c, &id).await;
    assert_eq!(wrapping_keys(&dir), 1, "the wrapping key is in the token");
    let mut material = [0u8; 32];
    aws_lc_rs::rand::fill(&mut material).unwrap();
    crate::secrets_scan::sent_plaintext(&material);
    let import = |valid_to: Option<i64>| match valid_to {
        Some(t) => proto::ImportKeyMaterialRequest {
            valid_to: Some(ts(t)),
            expiration_model: "KEY_MATERIAL_EXPIRES".into(),
            ..lasting_import(&id, &params, &material)
        },
        None => lasting_import(&id, &params, &material),
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
    // Unwrapped as generated material is made: sensitive, never extractable, private;
    // and so is the wrapping key.
    let objects = dir.token_objects();
    let cka_id = format!("{}00000001", id.replace('-', ""));
    let object = objects.iter().find(|o| o["id"] == cka_id.as_str()).unwrap();
    let wrapping = objects
        .iter()
        .find(|o| {
            o["label"]
                .as_str()
                .is_some_and(|l| l.starts_with("p11kms/import-wrapping-key/"))
        })
        .unwrap();
    for o in [object, wrapping] {
        assert_eq!(
            (
                &o["token"],
                &o["sensitive"],
                &o["extractable"],
                &o["private"]
            ),
            (&true.into(), &true.into(), &false.into(), &true.into()),
            "{o}"
        );
    }
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
    let in_hex = hex(&material);
    // Stopped first, so that the database is whole in its file (and any write-ahead log
    // read too).
    let log = d.log();
    d.stop();
    let mut store = std::fs::read(dir.path().join("p11kms.db")).unwrap();
    store.extend(std::fs::read(dir.path().join("p11kms.db-wal")).unwrap_or_default());
    for (name, hay) in [("log", log.as_bytes()), ("store", &store[..])] {
        for needle in [&material[..], b64.as_bytes(), in_hex.as_bytes()] {
            assert!(
                !hay.windows(needle.len()).any(|w| w == needle),
                "the imported material is in the {name}"
            );
        }
    }
}

/// `openssl pkeyutl` RSAES-OAEP (hash and MGF1 `digest`) of the file `input` for the DER
/// public key `key`, as AWS's guide wraps key material.
fn oaep_wrap(p: &std::path::Path, input: &str, output: &str, key: &str, digest: &str) {
    let (md, mgf) = (
        format!("rsa_oaep_md:{digest}"),
        format!("rsa_mgf1_md:{digest}"),
    );
    openssl(
        p,
        &[
            "pkeyutl",
            "-encrypt",
            "-in",
            input,
            "-out",
            output,
            "-inkey",
            key,
            "-keyform",
            "DER",
            "-pubin",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &md,
            "-pkeyopt",
            &mgf,
        ],
    );
}

/// The README's walk-through, as AWS's documentation does it with OpenSSL: material
/// made by `openssl rand`, wrapped by `openssl pkeyutl` (RSAES-OAEP) or `openssl enc
/// -id-aes256-wrap-pad` then `pkeyutl` (RSA_AES_KEY_WRAP), imported with the CLI; an
/// HMAC key's MAC is then checked by `openssl dgst -mac HMAC` with the same material.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_imports_what_openssl_wraps_as_in_the_readme() {
    let dir = TestDir::new();
    let _d = Daemon::start(&dir);
    let p = dir.path();
    // Run in the directory, as a user follows the walk-through: relative file names.
    let cli = |args: &[&str], stdin: &[u8]| run_cli_in(p, p, args, stdin);
    let kryoptic = matches!(test_token(), TestToken::Kryoptic(_));
    // What each token unwraps in itself (see `supported`).
    let (oaep, oaep_md) = if kryoptic {
        ("RSAES_OAEP_SHA_256", "sha256")
    } else {
        ("RSAES_OAEP_SHA_1", "sha1")
    };

    // A symmetric key: RSAES_OAEP straight over 32 random bytes.
    let key = json_of(&cli(&["key", "create", "--origin", "EXTERNAL"], b""));
    assert_eq!(key["KeyMetadata"]["KeyState"], "PendingImport");
    let id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let params = json_of(&cli(
        &[
            "get-parameters-for-import",
            "--key-id",
            &id,
            "--wrapping-algorithm",
            oaep,
            "--wrapping-key-spec",
            "RSA_3072",
            "--public-key-out",
            "WrappingPublicKey.bin",
            "--import-token-out",
            "ImportToken.bin",
        ],
        b"",
    ));
    assert!(params["ParametersValidTo"].as_str().is_some());
    openssl(p, &["rand", "-out", "PlaintextKeyMaterial.bin", "32"]);
    oaep_wrap(
        p,
        "PlaintextKeyMaterial.bin",
        "EncryptedKeyMaterial.bin",
        "WrappingPublicKey.bin",
        oaep_md,
    );
    // Seconds since the epoch, as the AWS CLI also takes them: 300 days on.
    let valid_to = now_secs() + 300 * 86_400;
    let imported = json_of(&cli(
        &[
            "import-key-material",
            "--key-id",
            &id,
            "--encrypted-key-material",
            "fileb://EncryptedKeyMaterial.bin",
            "--import-token",
            "fileb://ImportToken.bin",
            "--expiration-model",
            "KEY_MATERIAL_EXPIRES",
            "--valid-to",
            &valid_to.to_string(),
        ],
        b"",
    ));
    assert!(imported["KeyId"].as_str().unwrap().ends_with(&id));
    let described = json_of(&cli(&["key", "describe", "--key-id", &id], b""));
    let m = &described["KeyMetadata"];
    assert_eq!(m["KeyState"], "Enabled");
    assert_eq!(m["ExpirationModel"], "KEY_MATERIAL_EXPIRES");
    let want = time::OffsetDateTime::from_unix_timestamp(valid_to)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(m["ValidTo"], want.as_str(), "{m}");
    let blob = cli(&["encrypt", "--key-id", &id], b"imported secret");
    assert!(
        blob.status.success(),
        "{}",
        String::from_utf8_lossy(&blob.stderr)
    );
    let plain = cli(&["decrypt"], &blob.stdout);
    assert_eq!(plain.stdout, b"imported secret");

    // An HMAC key: RSA_AES_KEY_WRAP where the token unwraps with it (SoftHSM2), the
    // ephemeral AES key made and used by OpenSSL, as AWS's documentation shows.
    let key = json_of(&cli(
        &[
            "key",
            "create",
            "--origin",
            "EXTERNAL",
            "--key-spec",
            "HMAC_256",
            "--key-usage",
            "GENERATE_VERIFY_MAC",
        ],
        b"",
    ));
    let id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let algorithm = if kryoptic {
        oaep
    } else {
        "RSA_AES_KEY_WRAP_SHA_1"
    };
    json_of(&cli(
        &[
            "get-parameters-for-import",
            "--key-id",
            &id,
            "--wrapping-algorithm",
            algorithm,
            "--wrapping-key-spec",
            "RSA_2048",
            "--public-key-out",
            "HmacWrappingKey.bin",
            "--import-token-out",
            "HmacImportToken.bin",
        ],
        b"",
    ));
    openssl(p, &["rand", "-out", "HmacKeyMaterial.bin", "48"]);
    if kryoptic {
        oaep_wrap(
            p,
            "HmacKeyMaterial.bin",
            "HmacEncrypted.bin",
            "HmacWrappingKey.bin",
            oaep_md,
        );
    } else {
        openssl(p, &["rand", "-out", "aes-key.bin", "32"]);
        let aes = hex(&std::fs::read(p.join("aes-key.bin")).unwrap());
        openssl(
            p,
            &[
                "enc",
                "-id-aes256-wrap-pad",
                "-K",
                &aes,
                "-iv",
                "A65959A6",
                "-in",
                "HmacKeyMaterial.bin",
                "-out",
                "material-wrapped.bin",
            ],
        );
        oaep_wrap(
            p,
            "aes-key.bin",
            "aes-key-wrapped.bin",
            "HmacWrappingKey.bin",
            "sha1",
        );
        let mut both = std::fs::read(p.join("aes-key-wrapped.bin")).unwrap();
        both.extend(std::fs::read(p.join("material-wrapped.bin")).unwrap());
        std::fs::write(p.join("HmacEncrypted.bin"), both).unwrap();
    }
    json_of(&cli(
        &[
            "import-key-material",
            "--key-id",
            &id,
            "--encrypted-key-material",
            "fileb://HmacEncrypted.bin",
            "--import-token",
            "fileb://HmacImportToken.bin",
            "--expiration-model",
            "KEY_MATERIAL_DOES_NOT_EXPIRE",
        ],
        b"",
    ));
    std::fs::write(p.join("message.txt"), b"a message to authenticate").unwrap();
    let generate_mac = [
        "generate-mac",
        "--key-id",
        &id,
        "--mac-algorithm",
        "HMAC_SHA_256",
        "--message",
        "fileb://message.txt",
    ];
    let mac = json_of(&cli(&generate_mac, b""));
    let hexkey = hex(&std::fs::read(p.join("HmacKeyMaterial.bin")).unwrap());
    let macopt = format!("hexkey:{hexkey}");
    let out = openssl(
        p,
        &[
            "dgst",
            "-sha256",
            "-mac",
            "HMAC",
            "-macopt",
            &macopt,
            "-binary",
            "message.txt",
        ],
    );
    use base64::Engine as _;
    let ours = base64::engine::general_purpose::STANDARD
        .decode(mac["Mac"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        ours, out,
        "the HSM's MAC is OpenSSL's with the imported material"
    );

    // The material goes at once; the key waits for it again.
    let deleted = json_of(&cli(
        &["delete-imported-key-material", "--key-id", &id],
        b"",
    ));
    assert!(deleted["KeyId"].as_str().unwrap().ends_with(&id));
    let again = cli(&generate_mac, b"");
    assert!(String::from_utf8_lossy(&again.stderr).contains("KMSInvalidStateException"));
}

/// Who may import is decided on the wrapping algorithm and key spec, and on the
/// expiration model and ValidTo of the material, as AWS's condition keys say; every
/// step is audited with those parameters and nothing of the token or the material.
#[tokio::test(flavor = "multi_thread")]
async fn policies_decide_on_the_import_condition_keys_and_every_step_is_audited() {
    use p11kms::proto;
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut root = d.admin().await;
    let importer = role("111122223333", "Importer");
    let week = now_secs() + 7 * 86_400;
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kms:DescribeKey"], "Resource": "*"},
        {"Effect": "Allow", "Action": "kms:GetParametersForImport", "Resource": "*",
         "Condition": {"StringEquals": {"kms:WrappingAlgorithm": "RSAES_OAEP_SHA_1",
                                        "kms:WrappingKeySpec": "RSA_3072"}}},
        {"Effect": "Allow", "Action": "kms:ImportKeyMaterial", "Resource": "*",
         "Condition": {"StringEquals": {"kms:ExpirationModel": "KEY_MATERIAL_EXPIRES"},
                       "NumericLessThanEquals": {"kms:ValidTo": week.to_string()}}}]});
    put_identity_policy(&mut root, &importer, "import", policy).await;
    let mut c = d.client_as(&importer).await;
    let key = external_key(&mut root).await;
    let params = |alg: &str, spec: &str| proto::GetParametersForImportRequest {
        key_id: key.key_id.clone(),
        wrapping_algorithm: alg.into(),
        wrapping_key_spec: spec.into(),
    };
    for (alg, spec) in [
        ("RSAES_OAEP_SHA_1", "RSA_2048"),
        ("RSA_AES_KEY_WRAP_SHA_1", "RSA_3072"),
    ] {
        assert_kms_error(
            c.get_parameters_for_import(params(alg, spec)).await,
            "AccessDeniedException",
        );
    }
    let p = c
        .get_parameters_for_import(params("RSAES_OAEP_SHA_1", "RSA_3072"))
        .await
        .unwrap()
        .into_inner();
    let material = [0x5au8; 32];
    crate::secrets_scan::sent_plaintext(&material);
    let import = |model: &str, valid_to: Option<i64>| proto::ImportKeyMaterialRequest {
        key_id: key.key_id.clone(),
        import_token: p.import_token.clone(),
        encrypted_key_material: oaep_sha1_wrap(&p.public_key, &material),
        valid_to: valid_to.map(ts),
        expiration_model: model.into(),
    };
    assert_kms_error(
        c.import_key_material(import("KEY_MATERIAL_DOES_NOT_EXPIRE", None))
            .await,
        "AccessDeniedException",
    );
    assert_kms_error(
        c.import_key_material(import("KEY_MATERIAL_EXPIRES", Some(week + 3600)))
            .await,
        "AccessDeniedException",
    );
    c.import_key_material(import("KEY_MATERIAL_EXPIRES", Some(week - 3600)))
        .await
        .unwrap();
    assert_kms_error(
        c.delete_imported_key_material(proto::DeleteImportedKeyMaterialRequest {
            key_id: key.key_id.clone(),
        })
        .await,
        "AccessDeniedException",
    );
    root.delete_imported_key_material(proto::DeleteImportedKeyMaterialRequest {
        key_id: key.key_id.clone(),
    })
    .await
    .unwrap();

    let trail = crate::audit::records(&crate::audit::audit_dir(&dir));
    let of = |name: &str| -> Vec<&serde_json::Value> {
        trail.iter().filter(|r| r["eventName"] == name).collect()
    };
    let gets = of("GetParametersForImport");
    assert_eq!(gets.len(), 3);
    assert!(gets
        .iter()
        .all(|r| r["requestParameters"]["wrappingKeySpec"].is_string()));
    let imports = of("ImportKeyMaterial");
    assert_eq!(imports.len(), 3);
    let done = imports
        .iter()
        .find(|r| r.get("errorCode").is_none())
        .unwrap();
    assert_eq!(
        done["requestParameters"]["expirationModel"],
        "KEY_MATERIAL_EXPIRES"
    );
    assert_eq!(
        done["requestParameters"]["validTo"],
        (week - 3600).to_string().as_str()
    );
    assert_eq!(
        done["requestParameters"]["wrappingAlgorithm"],
        "RSAES_OAEP_SHA_1"
    );
    assert_eq!(of("DeleteImportedKeyMaterial").len(), 2);
    for r in &trail {
        let text = r.to_string().to_lowercase();
        assert!(
            !text.contains("importtoken") && !text.contains("encryptedkeymaterial"),
            "{text}"
        );
    }
}

/// GetParametersForImport cannot fill the token: a key keeps at most ten wrapping keys,
/// and the one made first goes (its import token with it).
#[tokio::test(flavor = "multi_thread")]
async fn a_key_keeps_at_most_ten_wrapping_keys() {
    use p11kms::proto;
    let dir = TestDir::new();
    let offset = dir.with_test_clock();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = external_key(&mut c).await;
    let mut params = Vec::new();
    for i in 0..11 {
        // Distinct expiry seconds (the vault clock moved on), so that "the oldest" is
        // well defined.
        std::fs::write(&offset, i.to_string()).unwrap();
        params.push(oaep_sha1_parameters(&mut c, &key.key_id).await);
    }
    assert_eq!(wrapping_keys(&dir), 10);
    let import =
        |p: &proto::GetParametersForImportResponse| lasting_import(&key.key_id, p, &[3; 32]);
    assert_kms_error(
        c.import_key_material(import(&params[0])).await,
        "InvalidImportTokenException",
    );
    c.import_key_material(import(&params[1])).await.unwrap();
}

/// Material past its ValidTo is refused at once, not only once the sweep (here an hour
/// away) has destroyed it; a disabled key still says it is disabled.
#[tokio::test(flavor = "multi_thread")]
async fn expired_material_is_refused_before_the_sweep_destroys_it() {
    use p11kms::proto;
    let dir = TestDir::new();
    dir.prepare();
    let offset = dir.path().join("clock-offset");
    dir.append_config(&format!(
        "\n[lifecycle]\nsweep_interval_secs = 3600\nclock_offset_file = {:?}\n",
        offset.to_str().unwrap()
    ));
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = external_key(&mut c).await.key_id;
    let p = oaep_sha1_parameters(&mut c, &key).await;
    c.import_key_material(proto::ImportKeyMaterialRequest {
        valid_to: Some(ts(now_secs() + 600)),
        expiration_model: "KEY_MATERIAL_EXPIRES".into(),
        ..lasting_import(&key, &p, &[9; 32])
    })
    .await
    .unwrap();
    let blob = encrypt(&mut c, &key, b"for ten minutes", &[]).await;
    // The sweep ran at start; the next is an hour away. Eleven minutes on:
    std::fs::write(&offset, "660").unwrap();
    let st = assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[])).await,
        "KMSInvalidStateException",
    );
    assert!(st.message().contains("expired"), "{}", st.message());
    assert_eq!(dir.objects_of(&key), 1, "not destroyed yet");
    c.disable_key(proto::DisableKeyRequest {
        key_id: key.clone(),
    })
    .await
    .unwrap();
    assert_kms_error(
        c.encrypt(encrypt_req(&key, b"x", &[])).await,
        "DisabledException",
    );
}
