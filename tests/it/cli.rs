//! The CLI as a newcomer uses it: the same binary, finding the dev daemon's endpoint and
//! admin identity in the data directory by itself.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::harness::*;

fn cli(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_p11kms"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("P11KMS_ENDPOINT")
        .env_remove("P11KMS_IDENTITY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[track_caller]
fn fails_with(o: &Output, name: &str) {
    assert!(
        !o.status.success(),
        "expected failure, got: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(name), "expected {name} in: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newcomer_encrypts_a_secret_and_manages_access_from_the_cli() {
    let dir = TestDir::new();
    let _d = Daemon::start(&dir);
    let p = dir.path();

    let created: serde_json::Value = serde_json::from_str(&ok(&cli(
        p,
        &["key", "create", "--description", "demo"],
        b"",
    )))
    .unwrap();
    let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    assert_eq!(created["KeyMetadata"]["Description"], "demo");

    let blob = ok(&cli(
        p,
        &["encrypt", "--key-id", &key_id, "-c", "app=demo"],
        b"my secret",
    ));
    assert_eq!(
        ok(&cli(p, &["decrypt", "-c", "app=demo"], blob.as_bytes())),
        "my secret"
    );
    fails_with(
        &cli(p, &["decrypt"], blob.as_bytes()),
        "InvalidCiphertextException",
    );
    fails_with(
        &cli(p, &["encrypt", "--key-id", "nope"], b"x"),
        "NotFoundException",
    );

    let gdk: serde_json::Value = serde_json::from_str(&ok(&cli(
        p,
        &["generate-data-key", "--key-id", &key_id],
        b"",
    )))
    .unwrap();
    assert_eq!(
        gdk["Plaintext"].as_str().unwrap().len(),
        44,
        "32 bytes in base64"
    );
    let hex = ok(&cli(
        p,
        &["random", "--number-of-bytes", "16", "--hex"],
        b"",
    ));
    assert_eq!(hex.trim().len(), 32);

    // A second identity: refused until an identity policy allows it.
    let app = role(ACCOUNT, "App");
    let app_dir = p.join("app-id");
    ok(&cli(
        p,
        &[
            "dev",
            "issue-cert",
            "--principal",
            &app,
            "--out",
            app_dir.to_str().unwrap(),
        ],
        b"",
    ));
    let as_app = |args: &[&str], stdin: &[u8]| {
        let mut all = vec!["--identity", app_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        cli(p, &all, stdin)
    };
    fails_with(
        &as_app(&["encrypt", "--key-id", &key_id], b"x"),
        "AccessDeniedException",
    );
    let pol = p.join("app-policy.json");
    std::fs::write(&pol, allow(&["kms:Encrypt", "kms:Decrypt"]).to_string()).unwrap();
    ok(&cli(
        p,
        &[
            "policy",
            "put",
            "--principal",
            &app,
            "--name",
            "use-keys",
            "--file",
            pol.to_str().unwrap(),
        ],
        b"",
    ));
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&cli(p, &["policy", "list", "--principal", &app], b""))).unwrap();
    assert_eq!(listed["PolicyNames"], serde_json::json!(["use-keys"]));
    let app_blob = ok(&as_app(&["encrypt", "--key-id", &key_id], b"from app"));
    assert_eq!(ok(&as_app(&["decrypt"], app_blob.as_bytes())), "from app");

    // Key policy from the CLI.
    let kp: serde_json::Value = serde_json::from_str(&ok(&cli(
        p,
        &["key", "get-policy", "--key-id", &key_id],
        b"",
    )))
    .unwrap();
    assert_eq!(kp["Statement"][0]["Sid"], "Enable IAM User Permissions");
    let bad = p.join("bad.json");
    std::fs::write(&bad, r#"{"Statement": [{"Effect": "Allow"}]}"#).unwrap();
    fails_with(
        &cli(
            p,
            &[
                "key",
                "put-policy",
                "--key-id",
                &key_id,
                "--policy-file",
                bad.to_str().unwrap(),
            ],
            b"",
        ),
        "MalformedPolicyDocumentException",
    );

    // Tags.
    ok(&cli(
        p,
        &[
            "principal",
            "tag",
            "--principal",
            &app,
            "--tag",
            "team=blue",
        ],
        b"",
    ));
    let tags: serde_json::Value = serde_json::from_str(&ok(&cli(
        p,
        &["principal", "tags", "--principal", &app],
        b"",
    )))
    .unwrap();
    assert_eq!(
        tags["Tags"],
        serde_json::json!([{"TagKey": "team", "TagValue": "blue"}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_from_the_cli() {
    let dir = TestDir::new();
    let _d = Daemon::start(&dir);
    let p = dir.path();
    let created: serde_json::Value =
        serde_json::from_str(&ok(&cli(p, &["key", "create"], b""))).unwrap();
    let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let blob = ok(&cli(
        p,
        &["encrypt", "--key-id", &key_id, "-c", "job=nightly"],
        b"batch secret",
    ));

    let job = role(ACCOUNT, "BatchJob");
    let job_dir = p.join("job-id");
    ok(&cli(
        p,
        &[
            "dev",
            "issue-cert",
            "--principal",
            &job,
            "--out",
            job_dir.to_str().unwrap(),
        ],
        b"",
    ));
    let as_job = |args: &[&str], stdin: &[u8]| {
        let mut all = vec!["--identity", job_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        cli(p, &all, stdin)
    };
    fails_with(
        &as_job(&["decrypt", "-c", "job=nightly"], blob.as_bytes()),
        "AccessDeniedException",
    );

    let g: serde_json::Value = serde_json::from_str(&ok(&cli(
        p,
        &[
            "grant",
            "create",
            "--key-id",
            &key_id,
            "--grantee",
            &job,
            "--operations",
            "Decrypt,RetireGrant",
            "--subset",
            "job=nightly",
        ],
        b"",
    )))
    .unwrap();
    let token = g["GrantToken"].as_str().unwrap().to_owned();
    assert_eq!(
        ok(&as_job(&["decrypt", "-c", "job=nightly"], blob.as_bytes())),
        "batch secret"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&cli(p, &["grant", "list", "--key-id", &key_id], b""))).unwrap();
    assert_eq!(listed["Grants"][0]["GrantId"], g["GrantId"]);
    assert_eq!(
        listed["Grants"][0]["Constraints"]["EncryptionContextSubset"]["job"],
        "nightly"
    );

    ok(&as_job(&["grant", "retire", "--token", &token], b""));
    fails_with(
        &as_job(&["decrypt", "-c", "job=nightly"], blob.as_bytes()),
        "AccessDeniedException",
    );
    fails_with(
        &cli(
            p,
            &["grant", "revoke", "--key-id", &key_id, "--grant-id", "bad"],
            b"",
        ),
        "InvalidGrantIdException",
    );
}
