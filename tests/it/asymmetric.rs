//! Asymmetric and HMAC keys over the AWS JSON protocol, through boto3, with every
//! signature, public key and shared secret checked by Python `cryptography` and OpenSSL
//! (tests/interop/aws_asymmetric.py), on a real SoftHSM2 token.

use crate::aws_sdk::{aws_script, creds_for, ok};
use crate::harness::*;

const ROOT: &str = "arn:aws:iam::111122223333:root";

#[tokio::test(flavor = "multi_thread")]
async fn every_spec_signs_verifies_macs_and_agrees_as_outside_code_checks() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let root = creds_for(&mut admin, ROOT).await;
    let mut args = vec!["all"];
    // kryoptic has no secp256k1: CreateKey must say so (UnsupportedOperationException).
    if matches!(test_token(), TestToken::Kryoptic(_)) {
        args.push("--without-secp256k1");
    }
    let run = aws_script(&d, &root, "aws_asymmetric.py", &args, b"");
    if !run.status.success() {
        eprintln!("daemon log:\n{}", d.log());
    }
    let out = ok(run, "asymmetric keys through boto3");
    assert_eq!(String::from_utf8_lossy(&out).trim(), "ok");
}

fn b64(s: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_signs_macs_and_agrees_over_grpc_and_openssl_checks_the_results() {
    let dir = TestDir::new();
    let _d = Daemon::start(&dir);
    let p = dir.path();
    let cli = |args: &[&str], stdin: &[u8]| run_cli(p, args, stdin);
    // `key create` with a spec and usage: the metadata it prints, and the key id.
    let create = |spec: &str, usage: &str| {
        let args = ["key", "create", "--key-spec", spec, "--key-usage", usage];
        let key = json_of(&cli(&args, b""));
        let id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        (key, id)
    };

    // ECDSA: signed through the CLI, verified by OpenSSL with the PEM the CLI wrote.
    let (key, id) = create("ECC_NIST_P384", "SIGN_VERIFY");
    assert_eq!(
        key["KeyMetadata"]["SigningAlgorithms"],
        serde_json::json!(["ECDSA_SHA_384"])
    );
    let message = b"signed through the p11kms CLI";
    let signed = json_of(&cli(
        &[
            "sign",
            "--key-id",
            &id,
            "--signing-algorithm",
            "ECDSA_SHA_384",
        ],
        message,
    ));
    std::fs::write(p.join("msg"), message).unwrap();
    std::fs::write(p.join("sig.der"), b64(&signed["Signature"])).unwrap();
    let pem = p.join("pub.pem");
    let o = cli(
        &[
            "get-public-key",
            "--key-id",
            &id,
            "--pem-out",
            pem.to_str().unwrap(),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let verified = openssl(
        p,
        &[
            "dgst",
            "-sha384",
            "-verify",
            "pub.pem",
            "-signature",
            "sig.der",
            "msg",
        ],
    );
    assert!(String::from_utf8_lossy(&verified).contains("Verified OK"));
    // The AWS CLI's forms: --message fileb://FILE, --signature fileb://FILE (raw bytes).
    let msg_arg = format!("fileb://{}", p.join("msg").display());
    let sig_arg = format!("fileb://{}", p.join("sig.der").display());
    let args = [
        "verify",
        "--key-id",
        &id,
        "--signing-algorithm",
        "ECDSA_SHA_384",
        "--message",
        &msg_arg,
        "--signature",
        &sig_arg,
    ];
    assert_eq!(json_of(&cli(&args, b""))["SignatureValid"], true);
    let sig = signed["Signature"].as_str().unwrap();
    let ok = json_of(&cli(
        &[
            "verify",
            "--key-id",
            &id,
            "--signing-algorithm",
            "ECDSA_SHA_384",
            "--signature",
            sig,
        ],
        message,
    ));
    assert_eq!(ok["SignatureValid"], true);
    let bad = cli(
        &[
            "verify",
            "--key-id",
            &id,
            "--signing-algorithm",
            "ECDSA_SHA_384",
            "--signature",
            sig,
        ],
        b"another message",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("KMSInvalidSignatureException"));

    // HMAC: the MAC the CLI prints verifies, and only for its message.
    let (_, id) = create("HMAC_384", "GENERATE_VERIFY_MAC");
    let mac = json_of(&cli(
        &[
            "generate-mac",
            "--key-id",
            &id,
            "--mac-algorithm",
            "HMAC_SHA_384",
        ],
        b"tagged",
    ));
    assert_eq!(b64(&mac["Mac"]).len(), 48);
    let m = mac["Mac"].as_str().unwrap();
    let args = [
        "verify-mac",
        "--key-id",
        &id,
        "--mac-algorithm",
        "HMAC_SHA_384",
        "--mac",
        m,
    ];
    assert_eq!(json_of(&cli(&args, b"tagged"))["MacValid"], true);
    let bad = cli(&args, b"tagged!");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("KMSInvalidMacException"));

    // ECDH: OpenSSL derives the same secret from its own key and p11kms's public key.
    let (_, id) = create("ECC_NIST_P256", "KEY_AGREEMENT");
    let public = json_of(&cli(&["get-public-key", "--key-id", &id], b""));
    std::fs::write(p.join("kms.der"), b64(&public["PublicKey"])).unwrap();
    openssl(
        p,
        &[
            "pkey", "-pubin", "-inform", "DER", "-in", "kms.der", "-out", "kms.pem",
        ],
    );
    openssl(
        p,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "mine.pem",
        ],
    );
    openssl(
        p,
        &["pkey", "-in", "mine.pem", "-pubout", "-out", "mine.pub.pem"],
    );
    let want = openssl(
        p,
        &[
            "pkeyutl", "-derive", "-inkey", "mine.pem", "-peerkey", "kms.pem",
        ],
    );
    let mine_pub = p.join("mine.pub.pem");
    let got = json_of(&cli(
        &[
            "derive-shared-secret",
            "--key-id",
            &id,
            "--public-key",
            mine_pub.to_str().unwrap(),
        ],
        b"",
    ));
    assert_eq!(b64(&got["SharedSecret"]), want);

    // A data key pair: OpenSSL reads the private key and finds the public key in it;
    // the encrypted copy decrypts, with its context, to the same private key.
    let sym = json_of(&cli(&["key", "create"], b""));
    let sym = sym["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let pair = json_of(&cli(
        &[
            "generate-data-key-pair",
            "--key-id",
            &sym,
            "--key-pair-spec",
            "RSA_2048",
            "-c",
            "use=tls",
        ],
        b"",
    ));
    std::fs::write(p.join("pair.der"), b64(&pair["PrivateKeyPlaintext"])).unwrap();
    let public = openssl(
        p,
        &[
            "pkey", "-inform", "DER", "-in", "pair.der", "-pubout", "-outform", "DER",
        ],
    );
    assert_eq!(public, b64(&pair["PublicKey"]));
    let blob = pair["PrivateKeyCiphertextBlob"].as_str().unwrap();
    let o = cli(&["decrypt", "-c", "use=tls"], blob.as_bytes());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b64(&pair["PrivateKeyPlaintext"]));
    let bare = json_of(&cli(
        &[
            "generate-data-key-pair",
            "--key-id",
            &sym,
            "--key-pair-spec",
            "ECC_NIST_P256",
            "--without-plaintext",
        ],
        b"",
    ));
    assert!(bare.get("PrivateKeyPlaintext").is_none(), "{bare}");
    assert!(!b64(&bare["PrivateKeyCiphertextBlob"]).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_asymmetric_key_follows_the_key_state_table_and_its_deletion_destroys_both_halves() {
    use p11kms::proto;
    let dir = TestDir::new();
    let offset = dir.with_test_clock();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let doomed = make(&mut c, "RSA_2048", "SIGN_VERIFY").await;
    let other = make(&mut c, "HMAC_256", "GENERATE_VERIFY_MAC").await;
    // A private and a public object, nothing else.
    assert_eq!(dir.objects_of(&doomed), 2);
    assert_eq!(dir.objects_of(&other), 1);
    let sign = |id: &str| proto::SignRequest {
        key_id: id.into(),
        message: b"state".to_vec(),
        signing_algorithm: "RSASSA_PSS_SHA_256".into(),
        ..Default::default()
    };
    let public = |id: &str| proto::GetPublicKeyRequest {
        key_id: id.into(),
        grant_tokens: vec![],
    };
    // Used (so the workers hold session copies of both halves), then disabled.
    c.sign(sign(&doomed)).await.unwrap();
    c.get_public_key(public(&doomed)).await.unwrap();
    let id = proto::DisableKeyRequest {
        key_id: doomed.clone(),
    };
    c.disable_key(id).await.unwrap();
    assert_kms_error(c.sign(sign(&doomed)).await, "DisabledException");
    assert_kms_error(c.get_public_key(public(&doomed)).await, "DisabledException");
    // Pending deletion: every use is KMSInvalidStateException; DescribeKey still works.
    let r = proto::ScheduleKeyDeletionRequest {
        key_id: doomed.clone(),
        pending_window_in_days: Some(7),
    };
    c.schedule_key_deletion(r).await.unwrap();
    assert_kms_error(c.sign(sign(&doomed)).await, "KMSInvalidStateException");
    let mut v = proto::VerifyRequest {
        key_id: doomed.clone(),
        message: b"state".to_vec(),
        signature: vec![1; 256],
        signing_algorithm: "RSASSA_PSS_SHA_256".into(),
        ..Default::default()
    };
    assert_kms_error(c.verify(v.clone()).await, "KMSInvalidStateException");
    assert_kms_error(
        c.get_public_key(public(&doomed)).await,
        "KMSInvalidStateException",
    );
    // The session copies went at once; the token objects stay until the window ends.
    assert_eq!(dir.objects_of(&doomed), 2);
    std::fs::write(&offset, (8 * 86_400).to_string()).unwrap();
    eventually("the key's destruction", || {
        let mut probe = c.clone();
        let r = proto::DescribeKeyRequest {
            key_id: doomed.clone(),
            grant_tokens: vec![],
        };
        async move { probe.describe_key(r).await.is_err() }
    })
    .await;
    assert_eq!(dir.objects_of(&doomed), 0, "a half left in the token");
    assert_eq!(dir.objects_of(&other), 1);
    v.key_id = doomed.clone();
    assert_kms_error(c.verify(v).await, "NotFoundException");
    let mac = proto::GenerateMacRequest {
        key_id: other.clone(),
        message: b"still here".to_vec(),
        mac_algorithm: "HMAC_SHA_256".into(),
        grant_tokens: vec![],
    };
    c.generate_mac(mac).await.unwrap();
}

/// A key of `spec` and `usage` made by `c`; its id.
async fn make(c: &mut p11kms::client::KmsClient, spec: &str, usage: &str) -> String {
    let r = p11kms::proto::CreateKeyRequest {
        key_spec: spec.into(),
        key_usage: usage.into(),
        ..Default::default()
    };
    let m = c.create_key(r).await.unwrap().into_inner();
    m.key_metadata.unwrap().key_id
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_see_the_new_actions_and_condition_keys_and_grants_follow_the_key_type() {
    use p11kms::proto;
    use serde_json::json;
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut root = d.admin().await;
    let signer = make(&mut root, "ECC_NIST_P256", "SIGN_VERIFY").await;
    let hmac = make(&mut root, "HMAC_512", "GENERATE_VERIFY_MAC").await;
    let agree = make(&mut root, "ECC_NIST_P384", "KEY_AGREEMENT").await;

    // Sign only RAW messages; MACs only with HMAC_SHA_512; ECDH; CreateKey of HMAC keys
    // only; GetPublicKey not at all.
    let app = role(ACCOUNT, "app");
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kms:Sign", "kms:Verify"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:MessageType": "RAW",
                                        "kms:SigningAlgorithm": "ECDSA_SHA_256"}}},
        {"Effect": "Allow", "Action": "kms:GenerateMac", "Resource": "*",
         "Condition": {"StringEquals": {"kms:MacAlgorithm": "HMAC_SHA_512"}}},
        {"Effect": "Allow", "Action": "kms:DeriveSharedSecret", "Resource": "*",
         "Condition": {"StringEquals": {"kms:KeyAgreementAlgorithm": "ECDH"}}},
        {"Effect": "Allow", "Action": "kms:CreateKey", "Resource": "*",
         "Condition": {"StringLike": {"kms:KeySpec": "HMAC_*"},
                       "StringEquals": {"kms:KeyUsage": "GENERATE_VERIFY_MAC"}}}]});
    put_identity_policy(&mut root, &app, "asym", policy).await;
    let mut c = d.client_as(&app).await;
    let sign = |message_type: &str, message: Vec<u8>| proto::SignRequest {
        key_id: signer.clone(),
        message,
        message_type: message_type.into(),
        signing_algorithm: "ECDSA_SHA_256".into(),
        grant_tokens: vec![],
    };
    let sig = c
        .sign(sign("RAW", b"raw".to_vec()))
        .await
        .unwrap()
        .into_inner();
    assert_kms_error(
        c.sign(sign("DIGEST", vec![7; 32])).await,
        "AccessDeniedException",
    );
    let v = proto::VerifyRequest {
        key_id: signer.clone(),
        message: b"raw".to_vec(),
        signature: sig.signature,
        signing_algorithm: "ECDSA_SHA_256".into(),
        ..Default::default()
    };
    assert!(c.verify(v).await.unwrap().into_inner().signature_valid);
    let public = proto::GetPublicKeyRequest {
        key_id: signer.clone(),
        grant_tokens: vec![],
    };
    assert_kms_error(c.get_public_key(public).await, "AccessDeniedException");
    let mac = |alg: &str| proto::GenerateMacRequest {
        key_id: hmac.clone(),
        message: b"m".to_vec(),
        mac_algorithm: alg.into(),
        grant_tokens: vec![],
    };
    c.generate_mac(mac("HMAC_SHA_512")).await.unwrap();
    // The condition is checked before the key's algorithm: denied, not a usage error.
    assert_kms_error(
        c.generate_mac(mac("HMAC_SHA_256")).await,
        "AccessDeniedException",
    );
    let peer_key = make(&mut root, "ECC_NIST_P384", "KEY_AGREEMENT").await;
    let peer = root
        .get_public_key(proto::GetPublicKeyRequest {
            key_id: peer_key,
            grant_tokens: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let r = proto::DeriveSharedSecretRequest {
        key_id: agree.clone(),
        key_agreement_algorithm: "ECDH".into(),
        public_key: peer.public_key,
        grant_tokens: vec![],
    };
    assert_eq!(
        c.derive_shared_secret(r)
            .await
            .unwrap()
            .into_inner()
            .shared_secret
            .len(),
        48
    );
    make(&mut c, "HMAC_224", "GENERATE_VERIFY_MAC").await;
    let r = proto::CreateKeyRequest {
        key_spec: "RSA_2048".into(),
        key_usage: "SIGN_VERIFY".into(),
        ..Default::default()
    };
    assert_kms_error(c.create_key(r).await, "AccessDeniedException");

    // Grants: GetPublicKey through a grant; operations the key type lacks, and a
    // constraint, are refused.
    let grantee = role(ACCOUNT, "grantee");
    let grant = |key: &str, ops: &[&str]| proto::CreateGrantRequest {
        key_id: key.into(),
        grantee_principal: grantee.clone(),
        operations: ops.iter().map(|o| o.to_string()).collect(),
        ..Default::default()
    };
    root.create_grant(grant(&signer, &["GetPublicKey", "Sign"]))
        .await
        .unwrap();
    let mut g = d.client_as(&grantee).await;
    let public = proto::GetPublicKeyRequest {
        key_id: signer.clone(),
        grant_tokens: vec![],
    };
    g.get_public_key(public).await.unwrap();
    g.sign(sign("DIGEST", vec![7; 32])).await.unwrap();
    assert_kms_error(
        g.generate_mac(mac("HMAC_SHA_512")).await,
        "AccessDeniedException",
    );
    for (key, ops) in [
        (&signer, &["Encrypt"][..]),
        (&hmac, &["Sign"][..]),
        (&agree, &["GenerateMac"][..]),
        (&hmac, &["GetPublicKey"][..]),
    ] {
        assert_kms_error(
            root.create_grant(grant(key, ops)).await,
            "ValidationException",
        );
    }
    // VerifyMac through a grant; GenerateMac is not in it.
    root.create_grant(grant(&hmac, &["VerifyMac"]))
        .await
        .unwrap();
    let tag = root
        .generate_mac(mac("HMAC_SHA_512"))
        .await
        .unwrap()
        .into_inner();
    let v = proto::VerifyMacRequest {
        key_id: hmac.clone(),
        message: b"m".to_vec(),
        mac_algorithm: "HMAC_SHA_512".into(),
        mac: tag.mac,
        grant_tokens: vec![],
    };
    assert!(g.verify_mac(v).await.unwrap().into_inner().mac_valid);
    assert_kms_error(
        g.generate_mac(mac("HMAC_SHA_512")).await,
        "AccessDeniedException",
    );

    // kms:EncryptionAlgorithm on RSA keys, kms:DataKeyPairSpec on data key pairs.
    let rsa = make(&mut root, "RSA_2048", "ENCRYPT_DECRYPT").await;
    let sym = create_key(&mut root).await.key_id;
    let oaep = role(ACCOUNT, "oaep");
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}}},
        {"Effect": "Allow", "Action": "kms:GenerateDataKeyPair", "Resource": "*",
         "Condition": {"StringEquals": {"kms:DataKeyPairSpec": "ECC_NIST_P256"}}}]});
    put_identity_policy(&mut root, &oaep, "oaep", policy).await;
    let mut o = d.client_as(&oaep).await;
    let enc = |alg: &str| proto::EncryptRequest {
        key_id: rsa.clone(),
        plaintext: b"x".to_vec(),
        encryption_context: Default::default(),
        grant_tokens: vec![],
        encryption_algorithm: alg.into(),
    };
    o.encrypt(enc("RSAES_OAEP_SHA_256")).await.unwrap();
    assert_kms_error(
        o.encrypt(enc("RSAES_OAEP_SHA_1")).await,
        "AccessDeniedException",
    );
    let pair = |spec: &str| proto::GenerateDataKeyPairRequest {
        key_id: sym.clone(),
        encryption_context: Default::default(),
        key_pair_spec: spec.into(),
        grant_tokens: vec![],
    };
    o.generate_data_key_pair(pair("ECC_NIST_P256"))
        .await
        .unwrap();
    assert_kms_error(
        o.generate_data_key_pair(pair("RSA_2048")).await,
        "AccessDeniedException",
    );
    assert_kms_error(
        o.generate_data_key_pair_without_plaintext(
            proto::GenerateDataKeyPairWithoutPlaintextRequest {
                key_id: sym.clone(),
                key_pair_spec: "ECC_NIST_P256".into(),
                ..Default::default()
            },
        )
        .await,
        "AccessDeniedException",
    );

    let mut constrained = grant(&hmac, &["GenerateMac"]);
    constrained.constraints = Some(proto::GrantConstraints {
        encryption_context_subset: [("a".to_string(), "b".to_string())].into(),
        ..Default::default()
    });
    assert_kms_error(root.create_grant(constrained).await, "ValidationException");
}
