//! p11kms through AWS's own clients over the AWS JSON listener: boto3, the AWS CLI and
//! the AWS Encryption SDK's KMS keyring (tests/interop/aws_kms.py), configured only by
//! the environment a user would set, with access keys the daemon issued. Signatures
//! are botocore's, so a passing call proves our SigV4 check agrees with AWS's signer.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use p11kms::proto;
use serde_json::{json, Value};

use crate::harness::*;

/// An access key: id and secret.
pub struct Creds {
    id: String,
    secret: String,
}

/// Issues an access key for `principal` through gRPC as `root` (its account's root).
pub async fn creds_for(root: &mut p11kms::client::KmsClient, principal: &str) -> Creds {
    let k = root
        .create_access_key(proto::CreateAccessKeyRequest {
            principal_arn: principal.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_key
        .take()
        .unwrap();
    crate::secrets_scan::issued_secret(&k.secret_access_key);
    Creds {
        id: k.access_key_id.clone(),
        secret: k.secret_access_key.clone(),
    }
}

/// Mints an access key for any principal of any account with `p11kms dev
/// issue-credentials` (another account's root cannot be reached through the admin).
fn minted(dir: &TestDir, principal: &str) -> Creds {
    let o = run_cli(
        dir.path(),
        &["dev", "issue-credentials", "--principal", principal],
        b"",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let secret = v["AccessKey"]["SecretAccessKey"]
        .as_str()
        .unwrap()
        .to_owned();
    crate::secrets_scan::issued_secret(&secret);
    Creds {
        id: v["AccessKey"]["AccessKeyId"].as_str().unwrap().to_owned(),
        secret,
    }
}

/// Runs the Python driver with `creds` against `d`'s AWS JSON port, the environment
/// holding nothing but what a user of the AWS tools would set.
fn aws(d: &Daemon, creds: &Creds, args: &[&str], input: &[u8]) -> Output {
    aws_script(d, creds, "aws_kms.py", args, input)
}

/// Runs `script` (under tests/interop) as [`aws`] runs aws_kms.py.
pub fn aws_script(d: &Daemon, creds: &Creds, script: &str, args: &[&str], input: &[u8]) -> Output {
    let script = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(python_bin());
    cmd.arg(script).args(args);
    for var in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .env(
            "AWS_ENDPOINT_URL_KMS",
            format!("https://{}", d.aws_api_addr()),
        )
        .env("AWS_CA_BUNDLE", d.dir.join("ca.pem"))
        .env("AWS_ACCESS_KEY_ID", &creds.id)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("a Python with boto3 and awscli (scripts/python-deps.sh)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The output of a successful run; the failure's stderr and stdout otherwise.
#[track_caller]
pub fn ok(o: Output, what: &str) -> Vec<u8> {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    o.stdout
}

/// One raw signed call; its status, error type and body.
pub fn call(d: &Daemon, creds: &Creds, op: &str, body: Value) -> (u16, Option<String>, Value) {
    let out = ok(
        aws(
            d,
            creds,
            &["call", &format!("TrentService.{op}"), &body.to_string()],
            b"",
        ),
        op,
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    (
        u16::try_from(v["status"].as_u64().unwrap()).unwrap(),
        v["type"].as_str().map(str::to_owned),
        v["body"].clone(),
    )
}

/// One raw signed call whose body goes through stdin (a batch's body is too large for
/// a command-line argument).
fn call_large(d: &Daemon, creds: &Creds, op: &str, body: &Value) -> (u16, Option<String>, Value) {
    let target = format!("TrentService.{op}");
    let out = ok(
        aws(
            d,
            creds,
            &["call", &target, "-"],
            body.to_string().as_bytes(),
        ),
        op,
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    (
        u16::try_from(v["status"].as_u64().unwrap()).unwrap(),
        v["type"].as_str().map(str::to_owned),
        v["body"].clone(),
    )
}

const ROOT: &str = "arn:aws:iam::111122223333:root";

#[tokio::test(flavor = "multi_thread")]
async fn boto3_round_trips_every_kms_operation_and_the_p11kms_ones() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let root = creds_for(&mut admin, ROOT).await;
    ok(aws(&d, &root, &["roundtrip"], b""), "boto3 round trips");

    // The p11kms operations botocore does not know, signed by botocore all the same.
    let alice = "arn:aws:iam::111122223333:user/alice";
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "kms:Encrypt", "Resource": "*"}]});
    let (status, _, _) = call(
        &d,
        &root,
        "PutPrincipalPolicy",
        json!({"PrincipalArn": alice, "PolicyName": "enc", "PolicyDocument": policy.to_string()}),
    );
    assert_eq!(status, 200);
    let (_, _, got) = call(
        &d,
        &root,
        "GetPrincipalPolicy",
        json!({"PrincipalArn": alice, "PolicyName": "enc"}),
    );
    let doc: Value = serde_json::from_str(got["PolicyDocument"].as_str().unwrap()).unwrap();
    assert_eq!(doc, policy);
    let (_, _, names) = call(
        &d,
        &root,
        "ListPrincipalPolicies",
        json!({"PrincipalArn": alice}),
    );
    assert_eq!(names["PolicyNames"], json!(["enc"]));
    call(
        &d,
        &root,
        "TagPrincipal",
        json!({"PrincipalArn": alice, "Tags": [{"TagKey": "team", "TagValue": "blue"}]}),
    );
    let (_, _, tags) = call(
        &d,
        &root,
        "ListPrincipalTags",
        json!({"PrincipalArn": alice}),
    );
    assert_eq!(
        tags["Tags"],
        json!([{"TagKey": "team", "TagValue": "blue"}])
    );
    call(
        &d,
        &root,
        "UntagPrincipal",
        json!({"PrincipalArn": alice, "TagKeys": ["team"]}),
    );
    let (_, _, tags) = call(
        &d,
        &root,
        "ListPrincipalTags",
        json!({"PrincipalArn": alice}),
    );
    assert_eq!(tags["Tags"], json!([]));
    call(
        &d,
        &root,
        "DeletePrincipalPolicy",
        json!({"PrincipalArn": alice, "PolicyName": "enc"}),
    );
    let (status, kind, _) = call(
        &d,
        &root,
        "GetPrincipalPolicy",
        json!({"PrincipalArn": alice, "PolicyName": "enc"}),
    );
    assert_eq!((status, kind.as_deref()), (400, Some("NotFoundException")));

    // Access keys over JSON: made, used, listed, deleted, then refused.
    let (status, _, made) = call(&d, &root, "CreateAccessKey", json!({"PrincipalArn": alice}));
    assert_eq!(status, 200);
    let key = &made["AccessKey"];
    let alice_creds = Creds {
        id: key["AccessKeyId"].as_str().unwrap().to_owned(),
        secret: key["SecretAccessKey"].as_str().unwrap().to_owned(),
    };
    crate::secrets_scan::issued_secret(&alice_creds.secret);
    assert_eq!(key["UserName"], "alice");
    assert!(key["CreateDate"].is_number(), "{key}");
    let (status, _, random) = call(
        &d,
        &alice_creds,
        "GenerateRandom",
        json!({"NumberOfBytes": 4}),
    );
    assert_eq!(status, 400, "alice has no policy: {random}");
    let (_, _, listed) = call(&d, &root, "ListAccessKeys", json!({"PrincipalArn": alice}));
    let listed = listed["AccessKeyMetadata"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["AccessKeyId"], key["AccessKeyId"]);
    assert!(listed[0].get("SecretAccessKey").is_none(), "{listed:?}");
    call(
        &d,
        &root,
        "DeleteAccessKey",
        json!({"AccessKeyId": alice_creds.id}),
    );
    let (status, kind, _) = call(
        &d,
        &alice_creds,
        "GenerateRandom",
        json!({"NumberOfBytes": 4}),
    );
    assert_eq!(
        (status, kind.as_deref()),
        (400, Some("UnrecognizedClientException"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn botocore_raises_each_error_class_and_the_aws_cli_exits_as_with_aws() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let root = creds_for(&mut admin, ROOT).await;
    ok(aws(&d, &root, &["errors"], b""), "botocore errors");
    let tmp = tempfile::tempdir().unwrap();
    ok(
        aws(&d, &root, &["cli", tmp.path().to_str().unwrap()], b""),
        "the AWS CLI",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigv4_refuses_bad_signatures_and_dates_outside_the_window() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let root = creds_for(&mut admin, ROOT).await;
    ok(aws(&d, &root, &["sigv4"], b""), "SigV4 checks");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_policy_allows_one_principal_and_denies_another_in_and_across_accounts() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let alice = "arn:aws:iam::111122223333:user/alice";
    let bob = "arn:aws:iam::111122223333:user/bob";
    let carol = "arn:aws:iam::444455556666:user/carol";
    let dave = "arn:aws:iam::444455556666:user/dave";
    let key = create_key(&mut admin).await.arn;
    // Alice by the key policy; the other account by its root, which delegates to its
    // users through their identity policies (carol has one, dave none).
    put_key_policy(
        &mut admin,
        &key,
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": alice},
             "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
             "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}]})
        .to_string(),
    )
    .await
    .unwrap();
    let mut other_root = d.client_as("arn:aws:iam::444455556666:root").await;
    put_identity_policy(
        &mut other_root,
        carol,
        "use-shared-key",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": key}]}),
    )
    .await;

    let alice_creds = creds_for(&mut admin, alice).await;
    let bob_creds = creds_for(&mut admin, bob).await;
    let carol_creds = minted(&dir, carol);
    let dave_creds = minted(&dir, dave);
    for (who, creds) in [("alice", &alice_creds), ("carol", &carol_creds)] {
        let blob = ok(aws(&d, creds, &["encrypt", &key], b"shared secret"), who);
        let back = ok(aws(&d, creds, &["decrypt"], &blob), who);
        assert_eq!(back, b"shared secret", "{who}");
    }
    for (who, creds) in [("bob", &bob_creds), ("dave", &dave_creds)] {
        ok(aws(&d, creds, &["expect-denied", &key], b""), who);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_and_grant_tokens_work_across_grpc_and_json() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let root = creds_for(&mut admin, ROOT).await;
    let key = create_key(&mut admin).await.arn;

    // gRPC → JSON.
    let blob = encrypt(&mut admin, &key, b"from grpc", &[("via", "json")]).await;
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &blob);
    let plain = ok(aws(&d, &root, &["decrypt"], encoded.as_bytes()), "decrypt");
    assert_eq!(plain, b"from grpc");
    // JSON → gRPC.
    let encoded = ok(aws(&d, &root, &["encrypt", &key], b"from json"), "encrypt");
    let blob =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &encoded).unwrap();
    assert_eq!(
        decrypt(&mut admin, &blob, &[("via", "json")]).await,
        b"from json"
    );

    // A grant made over gRPC, its token used at once over JSON by the grantee; and one
    // made over JSON, its token used over gRPC.
    let grantee = "arn:aws:iam::111122223333:role/app";
    let grantee_creds = creds_for(&mut admin, grantee).await;
    let token = admin
        .create_grant(proto::CreateGrantRequest {
            key_id: key.clone(),
            grantee_principal: grantee.into(),
            operations: vec!["Encrypt".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .grant_token;
    let (status, kind, body) = call(
        &d,
        &grantee_creds,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "aGk=", "GrantTokens": [token]}),
    );
    assert_eq!(status, 200, "{kind:?} {body}");
    let (status, _, made) = call(
        &d,
        &root,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": grantee, "Operations": ["Decrypt"]}),
    );
    assert_eq!(status, 200, "{made}");
    let mut app = d.client_as(grantee).await;
    let blob = encrypt(&mut admin, &key, b"for the app", &[]).await;
    let mut req = decrypt_req(&blob, &[]);
    req.grant_tokens = vec![made["GrantToken"].as_str().unwrap().to_owned()];
    let out = app.decrypt(req).await.unwrap().into_inner();
    assert_eq!(out.plaintext, b"for the app");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_encryption_sdk_kms_keyring_round_trips_and_decrypt_file_reads_its_messages() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let root = creds_for(&mut admin, ROOT).await;
    let key = create_key(&mut admin).await.arn;
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    crate::secrets_scan::sent_plaintext(&data);
    let message = ok(
        aws(&d, &root, &["esdk-encrypt", &key], &data),
        "ESDK encrypt",
    );
    let back = ok(
        aws(&d, &root, &["esdk-decrypt", &key], &message),
        "ESDK decrypt",
    );
    assert!(back == data, "the ESDK round trip changed the data");

    // The same message read by p11kms over gRPC.
    let tmp = tempfile::tempdir().unwrap();
    let (ct, out) = (tmp.path().join("msg"), tmp.path().join("out"));
    std::fs::write(&ct, &message).unwrap();
    let o = run_cli(
        dir.path(),
        &[
            "decrypt-file",
            ct.to_str().unwrap(),
            out.to_str().unwrap(),
            "-c",
            "app=esdk",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == data, "decrypt-file differs");
}

/// The `export NAME=value` lines of the dev directory's aws-env.sh.
fn dev_env(dir: &TestDir) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(dir.path().join("aws-env.sh")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        // Single-quoted for the shell (the values here hold no quote of their own).
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_mode_writes_a_ready_aws_environment_that_survives_a_restart() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let env = dev_env(&dir);
    assert_eq!(
        env["AWS_ENDPOINT_URL_KMS"],
        format!("https://{}", d.aws_api_addr())
    );
    assert_eq!(
        env["AWS_CA_BUNDLE"],
        dir.path().join("ca.pem").to_str().unwrap()
    );
    assert_eq!(env["AWS_REGION"], "us-east-1");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("aws-env.sh"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "aws-env.sh holds a secret: {mode:o}");
    let admin = Creds {
        id: env["AWS_ACCESS_KEY_ID"].clone(),
        secret: env["AWS_SECRET_ACCESS_KEY"].clone(),
    };
    crate::secrets_scan::issued_secret(&admin.secret);
    // The admin: the dev account's root, allowed everything.
    let (status, _, made) = call(&d, &admin, "CreateKey", json!({}));
    assert_eq!(status, 200, "{made}");
    assert!(made["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:kms:us-east-1:111122223333:key/"));

    // A restart keeps the key and rewrites the file with the new address.
    drop(d);
    let d = Daemon::start(&dir);
    let again = dev_env(&dir);
    assert_eq!(again["AWS_ACCESS_KEY_ID"], admin.id);
    assert_eq!(
        again["AWS_ENDPOINT_URL_KMS"],
        format!("https://{}", d.aws_api_addr())
    );
    let (status, _, keys) = call(&d, &admin, "ListKeys", json!({}));
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["Keys"].as_array().unwrap().len(), 1);
}

/// The batch calls, which botocore does not know, signed by botocore all the same: a
/// thousand 4096-byte items (a 5.7 MB body, over the single calls' 512 KiB) round trip
/// in one call each way, in order; a bad item gets its error's name and message while
/// the others succeed; no Items, or more than 1000, is a ValidationException for the
/// whole call; every item is recorded with the JSON transport under its batch.
#[tokio::test(flavor = "multi_thread")]
async fn botocore_signed_batch_calls_round_trip_a_thousand_items() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let root = creds_for(&mut admin, ROOT).await;
    let key = create_key(&mut admin).await;
    let plaintext = |i: usize| {
        let mut p = format!("json-batch-item-{i:04}-").into_bytes();
        p.resize(4096, b'z');
        p
    };
    // A few stand for all in the secrets scan of the trail.
    for i in [0, 999] {
        crate::secrets_scan::sent_plaintext(&plaintext(i));
    }
    let items: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"KeyId": key.key_id, "Plaintext": b64(&plaintext(i)),
            "EncryptionContext": {"n": i.to_string()}})
        })
        .collect();
    let (status, _, out) = call_large(&d, &root, "BatchEncrypt", &json!({"Items": items}));
    assert_eq!(status, 200, "{out}");
    let results = out["Results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    for r in results {
        assert_eq!(r["KeyId"], json!(key.arn), "{r}");
        assert_eq!(r["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT", "{r}");
    }
    let items: Vec<Value> = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({"CiphertextBlob": r["CiphertextBlob"],
            "EncryptionContext": {"n": i.to_string()}})
        })
        .collect();
    let (status, _, out) = call_large(&d, &root, "BatchDecrypt", &json!({"Items": items}));
    assert_eq!(status, 200, "{out}");
    let back = out["Results"].as_array().unwrap();
    assert_eq!(back.len(), 1000);
    for (i, r) in back.iter().enumerate() {
        assert!(r["Plaintext"] == json!(b64(&plaintext(i))), "item {i}");
        assert_eq!(r["KeyId"], json!(key.arn));
    }
    let blob = results[0]["CiphertextBlob"].clone();

    // Bad items among good ones.
    let items = json!([
        {"KeyId": "alias/missing", "Plaintext": b64(b"x")},
        {"Plaintext": b64(b"x")},
        {"KeyId": key.key_id, "Plaintext": b64(b"x"), "DryRun": true},
        {"KeyId": key.key_id, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "AES"},
        {"KeyId": key.arn, "Plaintext": b64(b"x")},
    ]);
    let (status, _, out) = call_large(&d, &root, "BatchEncrypt", &json!({"Items": items}));
    assert_eq!(status, 200, "{out}");
    let codes: Vec<&Value> = out["Results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["ErrorCode"])
        .collect();
    assert_eq!(
        codes,
        [
            &json!("NotFoundException"),
            &json!("ValidationException"),
            &json!("UnsupportedOperationException"),
            &json!("ValidationException"),
            &Value::Null,
        ]
    );
    assert_eq!(
        out["Results"][1]["ErrorMessage"],
        "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"
    );
    assert!(out["Results"][4]["CiphertextBlob"].is_string());
    let items = json!([
        {"CiphertextBlob": blob, "EncryptionContext": {"n": "wrong"}},
        {"CiphertextBlob": blob, "EncryptionContext": {"n": "0"}, "KeyId": key.arn},
        {},
    ]);
    let (status, _, out) = call_large(&d, &root, "BatchDecrypt", &json!({"Items": items}));
    assert_eq!(status, 200, "{out}");
    let r = &out["Results"];
    assert_eq!(r[0]["ErrorCode"], "InvalidCiphertextException");
    assert_eq!(r[1]["Plaintext"], json!(b64(&plaintext(0))));
    assert_eq!(r[2]["ErrorCode"], "ValidationException");

    // The call as a whole.
    let many = vec![json!({"KeyId": key.key_id, "Plaintext": b64(b"x")}); 1001];
    let (status, kind, out) = call_large(&d, &root, "BatchEncrypt", &json!({"Items": many}));
    assert_eq!(
        (status, kind.as_deref()),
        (400, Some("ValidationException"))
    );
    assert_eq!(
        out["message"],
        "1 validation error detected: Value at 'items' failed to satisfy constraint: Member must have length less than or equal to 1000"
    );
    let (status, kind, out) = call_large(&d, &root, "BatchDecrypt", &json!({}));
    assert_eq!(
        (status, kind.as_deref()),
        (400, Some("ValidationException"))
    );
    assert_eq!(
        out["message"],
        "1 validation error detected: Value null at 'items' failed to satisfy constraint: Member must not be null"
    );
    d.stop();

    let all = crate::audit::records(&dir.path().join("audit"));
    let batch = all
        .iter()
        .find(|r| r["eventName"] == "BatchEncrypt")
        .unwrap();
    assert_eq!(batch["p11kms"]["transport"], "json");
    assert_eq!(batch["requestParameters"]["itemCount"], 1000);
    let items: Vec<&Value> = all
        .iter()
        .filter(|r| r["additionalEventData"]["batchRequestId"] == batch["requestID"])
        .collect();
    assert_eq!(items.len(), 1000);
    assert!(items.iter().all(|r| r["eventName"] == "Encrypt"
        && r["p11kms"]["transport"] == "json"
        && r["userIdentity"]["arn"] == ROOT));
}
