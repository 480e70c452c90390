//! The CLI as a newcomer uses it: the same binary, finding the dev daemon's endpoint and
//! admin identity in the data directory by itself.

use std::path::Path;
use std::process::Output;

use crate::harness::*;

fn cli(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    run_cli(dir, args, stdin)
}

/// The CLI acting as the identity in `identity_dir`.
fn cli_as(dir: &Path, identity_dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut all = vec!["--identity", identity_dir.to_str().unwrap()];
    all.extend_from_slice(args);
    cli(dir, &all, stdin)
}

/// `p11kms dev issue-cert` for `principal` into `dir/name`, as a newcomer would.
fn issue_cert(dir: &Path, principal: &str, name: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    ok(&cli(
        dir,
        &[
            "dev",
            "issue-cert",
            "--principal",
            principal,
            "--out",
            out.to_str().unwrap(),
        ],
        b"",
    ));
    out
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
    let app_dir = issue_cert(p, &app, "app-id");
    let as_app = |args: &[&str], stdin: &[u8]| cli_as(p, &app_dir, args, stdin);
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
    let job_dir = issue_cert(p, &job, "job-id");
    let as_job = |args: &[&str], stdin: &[u8]| cli_as(p, &job_dir, args, stdin);
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

/// The config-server pattern: a DBA with encrypt-only permission writes placeholders;
/// each service renders its own file and is refused the other's value.
#[tokio::test(flavor = "multi_thread")]
async fn each_service_renders_only_its_own_encrypted_config() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let p = dir.path();
    let (dba, svc_a, svc_b) = (
        role(ACCOUNT, "DBA"),
        role(ACCOUNT, "ServiceA"),
        role(ACCOUNT, "ServiceB"),
    );
    let decrypt_for = |arn: &str, name: &str| {
        serde_json::json!({"Sid": name, "Effect": "Allow", "Principal": {"AWS": arn}, "Action": "kms:Decrypt", "Resource": "*",
                           "Condition": {"StringEquals": {"kms:EncryptionContext:service": name}}})
    };
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": root_of(ACCOUNT)}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "DBA", "Effect": "Allow", "Principal": {"AWS": &dba}, "Action": "kms:Encrypt", "Resource": "*"},
        decrypt_for(&svc_a, "billing"),
        decrypt_for(&svc_b, "search"),
    ]});
    let mut admin = d.admin().await;
    let key = admin
        .create_key(p11kms::proto::CreateKeyRequest {
            policy: policy.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    let as_id = |who: &str, args: &[&str], stdin: &[u8]| {
        cli_as(p, &identity_for(p, Some(who)), args, stdin)
    };

    let pa = ok(&as_id(
        &dba,
        &[
            "config",
            "encrypt-value",
            "--key-id",
            &key.key_id,
            "-c",
            "service=billing",
        ],
        b"s3cret: \"A\" #1\n",
    ));
    let pb = ok(&as_id(
        &dba,
        &[
            "config",
            "encrypt-value",
            "--key-id",
            &key.key_id,
            "-c",
            "service=search",
        ],
        b"b-password\n",
    ));
    assert!(pa.starts_with("{p11kms}1.") && pb.starts_with("{p11kms}1."));
    // The DBA can write placeholders but not read them back.
    let a_yaml = p.join("billing.yaml");
    std::fs::write(
        &a_yaml,
        format!("db:\n  user: billing\n  password: {}\n", pa.trim()),
    )
    .unwrap();
    fails_with(
        &as_id(&dba, &["config", "render", a_yaml.to_str().unwrap()], b""),
        "AccessDeniedException",
    );

    let rendered = ok(&as_id(
        &svc_a,
        &["config", "render", a_yaml.to_str().unwrap()],
        b"",
    ));
    assert_eq!(
        rendered,
        "db:\n  user: billing\n  password: \"s3cret: \\\"A\\\" #1\"\n"
    );

    let b_env = p.join("search.env");
    std::fs::write(
        &b_env,
        format!("DB_USER=search\nDB_PASSWORD={}\n", pb.trim()),
    )
    .unwrap();
    let out = p.join("rendered.env");
    ok(&as_id(
        &svc_b,
        &[
            "config",
            "render",
            b_env.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        b"",
    ));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "DB_USER=search\nDB_PASSWORD=\"b-password\"\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    fails_with(
        &as_id(
            &svc_b,
            &[
                "config",
                "render",
                b_env.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            b"",
        ),
        "--force",
    );

    // Each is refused the other's value, and a refused render writes nothing.
    fails_with(
        &as_id(&svc_a, &["config", "render", b_env.to_str().unwrap()], b""),
        "AccessDeniedException",
    );
    let never = p.join("never.yaml");
    fails_with(
        &as_id(
            &svc_b,
            &[
                "config",
                "render",
                a_yaml.to_str().unwrap(),
                "--out",
                never.to_str().unwrap(),
            ],
            b"",
        ),
        "AccessDeniedException",
    );
    assert!(!never.exists());
    assert!(std::fs::read_dir(p).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("p11kms-tmp")));
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_managed_and_minted_from_the_cli() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let p = dir.path();
    let alice = "arn:aws:iam::111122223333:user/Alice";
    let created: serde_json::Value = serde_json::from_str(&ok(&cli(
        p,
        &["credentials", "create", "--principal", alice],
        b"",
    )))
    .unwrap();
    let k = &created["AccessKey"];
    let id = k["AccessKeyId"].as_str().unwrap().to_owned();
    let secret = k["SecretAccessKey"].as_str().unwrap().to_owned();
    crate::secrets_scan::issued_secret(&secret);
    assert_eq!(k["UserName"], "Alice");
    assert_eq!(k["Status"], "Active");
    assert_eq!(secret.len(), 40);
    assert!(k["CreateDate"].as_str().unwrap().ends_with('Z'));

    // Minted offline into the same token and store, for any account; the running
    // daemon sees it on its next look-up.
    let bob = "arn:aws:iam::444455556666:user/Bob";
    let minted: serde_json::Value = serde_json::from_str(&ok(&cli(
        p,
        &["dev", "issue-credentials", "--principal", bob],
        b"",
    )))
    .unwrap();
    let m = &minted["AccessKey"];
    crate::secrets_scan::issued_secret(m["SecretAccessKey"].as_str().unwrap());
    assert_eq!(m["UserName"], "Bob");
    assert_eq!(m["SecretAccessKey"].as_str().unwrap().len(), 40);
    assert!(m["CreateDate"].as_str().unwrap().ends_with('Z'));
    let bob_root = issue_cert(p, "arn:aws:iam::444455556666:root", "bob-root");
    let listed: serde_json::Value = serde_json::from_str(&ok(&cli_as(
        p,
        &bob_root,
        &["credentials", "list", "--principal", bob],
        b"",
    )))
    .unwrap();
    assert_eq!(
        listed["AccessKeyMetadata"][0]["AccessKeyId"],
        m["AccessKeyId"]
    );

    let listed: serde_json::Value = serde_json::from_str(&ok(&cli(
        p,
        &["credentials", "list", "--principal", alice],
        b"",
    )))
    .unwrap();
    let items = listed["AccessKeyMetadata"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["AccessKeyId"], id.as_str());
    assert!(items[0].get("SecretAccessKey").is_none());
    ok(&cli(
        p,
        &["credentials", "delete", "--access-key-id", &id],
        b"",
    ));
    fails_with(
        &cli(p, &["credentials", "delete", "--access-key-id", &id], b""),
        "NotFoundException",
    );
    fails_with(
        &cli(
            p,
            &["dev", "issue-credentials", "--principal", "nobody"],
            b"",
        ),
        "nobody",
    );
    let log = d.stop();
    assert!(!log.contains(&secret));
}

/// Runs the CLI with stdout a pipe whose only read end is closed before the command
/// prints, so that its first write meets `EPIPE` every time (as `p11kms key list | head
/// -1` does when `head` has left). `RUST_BACKTRACE` is set so that a panic would show.
fn cli_with_closed_stdout(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    // The read end is closed before the child starts: a command that prints at once
    // (`audit tail` reads files only) could otherwise fill the pipe before it closes.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_p11kms"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("P11KMS_ENDPOINT")
        .env_remove("P11KMS_IDENTITY")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_whose_reader_went_away_exits_quietly() {
    let dir = TestDir::new();
    let _d = Daemon::start(&dir);
    let p = dir.path();
    let created: serde_json::Value =
        serde_json::from_str(&ok(&cli(p, &["key", "create"], b""))).unwrap();
    let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();

    // One command for each way the CLI writes: a JSON answer, a line, raw output,
    // an envelope stream, and the offline audit reader.
    let commands: [(&[&str], &[u8]); 6] = [
        (&["key", "list"], b""),
        (&["key", "create"], b""),
        (&["random", "--number-of-bytes", "16", "--hex"], b""),
        (&["encrypt", "--key-id", &key_id], b"secret"),
        (
            &["encrypt-file", "-", "-", "--key-id", &key_id, "-q"],
            b"a file",
        ),
        (&["audit", "tail", "-n", "5"], b""),
    ];
    for (args, stdin) in commands {
        let out = cli_with_closed_stdout(p, args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(err, "", "{args:?} said something on stderr");
        // 128 + SIGPIPE, what a shell shows for a tool the signal ended.
        assert_eq!(out.status.code(), Some(141), "{args:?}: {}", out.status);
    }
    // The key that `key create` made before it could not print is there all the same.
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&cli(p, &["key", "list"], b""))).unwrap();
    assert_eq!(listed["Keys"].as_array().unwrap().len(), 2);
}
