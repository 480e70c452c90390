//! The audit trail over the wire: one record per call, allowed or denied, with the
//! fields of a CloudTrail KMS event; a hash chain that a restart continues; no secret in
//! any record; and no call that succeeds when its record cannot be written.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use p11kms::client::error_name;
use p11kms::proto;
use p11kms::{trail_files, trail_line_hash};

use crate::harness::*;

pub fn audit_dir(dir: &TestDir) -> PathBuf {
    dir.path().join("audit")
}

/// Every record of the trail (checkpoints left out), in order, after checking that each
/// line names the hash of the line before it.
pub fn records(dir: &Path) -> Vec<Value> {
    lines(dir)
        .into_iter()
        .filter(|v| v["eventType"] != "P11kmsCheckpoint")
        .collect()
}

/// Every line of the trail, checkpoints included, checking the chain.
pub fn lines(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let mut previous = String::new();
    for file in trail_files(dir).unwrap() {
        let text = std::fs::read(&file).unwrap();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).unwrap();
            assert_eq!(v["previousHash"], json!(previous), "chain broken at {v}");
            previous = trail_line_hash(line);
            out.push(v);
        }
    }
    out
}

fn the_record<'a>(all: &'a [Value], rid: &str) -> &'a Value {
    let found: Vec<&Value> = all.iter().filter(|r| r["requestID"] == rid).collect();
    assert_eq!(found.len(), 1, "{rid}: {} records", found.len());
    found[0]
}

/// Allowed and denied calls each leave exactly one record with the caller, the
/// operation, the parameters, the resource, the decision and its statement, and the
/// error; the chain holds across a restart; no plaintext, data key or grant token is in
/// any record.
#[tokio::test(flavor = "multi_thread")]
async fn every_call_leaves_one_record_and_no_secret() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let mut rids = Vec::new();

    let r = admin.create_key(proto::CreateKeyRequest::default()).await;
    rids.push(("CreateKey", request_id(&r)));
    let key = r.unwrap().into_inner().key_metadata.unwrap();
    let marker = b"AUDIT-PLAINTEXT-MARKER-7c1f".to_vec();
    let r = admin
        .encrypt(encrypt_req(&key.key_id, &marker, &[("tenant", "blue")]))
        .await;
    let enc_rid = request_id(&r);
    let blob = r.unwrap().into_inner().ciphertext_blob;
    let r = admin
        .decrypt(decrypt_req(&blob, &[("tenant", "blue")]))
        .await;
    rids.push(("Decrypt", request_id(&r)));
    assert_eq!(r.unwrap().into_inner().plaintext, marker);
    let r = admin
        .generate_data_key(proto::GenerateDataKeyRequest {
            key_id: key.key_id.clone(),
            number_of_bytes: Some(32),
            ..Default::default()
        })
        .await;
    rids.push(("GenerateDataKey", request_id(&r)));
    let data_key = r.unwrap().into_inner().plaintext.clone();
    let r = admin
        .create_grant(proto::CreateGrantRequest {
            key_id: key.key_id.clone(),
            grantee_principal: role(ACCOUNT, "Grantee"),
            operations: vec!["Decrypt".into()],
            ..Default::default()
        })
        .await;
    let grant_rid = request_id(&r);
    let grant_token = r.unwrap().into_inner().grant_token;
    // The grant token travels in a request; it must not reach the trail.
    let mut with_token = decrypt_req(&blob, &[("tenant", "blue")]);
    with_token.grant_tokens = vec![grant_token.clone()];
    let r = admin.decrypt(with_token).await;
    rids.push(("Decrypt", request_id(&r)));
    r.unwrap();
    let r = admin
        .generate_random(proto::GenerateRandomRequest {
            number_of_bytes: Some(32),
        })
        .await;
    rids.push(("GenerateRandom", request_id(&r)));
    let random = r.unwrap().into_inner().plaintext.clone();
    // A bad request is recorded too.
    let r = admin.encrypt(encrypt_req(&key.key_id, b"", &[])).await;
    let bad_rid = request_id(&r);
    assert_eq!(error_name(&r.unwrap_err()), Some("ValidationException"));
    // Denied: a role without any policy.
    let mut app = d.client_as(&role(ACCOUNT, "App")).await;
    let r = app.encrypt(encrypt_req(&key.key_id, &marker, &[])).await;
    let denied_rid = request_id(&r);
    assert_eq!(error_name(&r.unwrap_err()), Some("AccessDeniedException"));
    d.stop();

    // A restart continues the chain.
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let r = admin.list_keys(proto::ListKeysRequest::default()).await;
    let after_restart = request_id(&r);
    r.unwrap();
    d.stop();

    let all = records(&audit_dir(&dir));
    // Exactly the calls made: CreateKey, Encrypt, Decrypt, GenerateDataKey, CreateGrant,
    // Decrypt with a grant token, GenerateRandom, a bad Encrypt, a denied Encrypt, and
    // ListKeys after the restart.
    assert_eq!(all.len(), 10, "{all:#?}");
    for (op, rid) in &rids {
        let r = the_record(&all, rid);
        assert_eq!(r["eventName"], *op, "{r}");
        assert_eq!(r["userIdentity"]["arn"], json!(root_of(ACCOUNT)), "{r}");
        assert_eq!(r["p11kms"]["transport"], "grpc", "{r}");
        assert!(r.get("errorCode").is_none(), "{r}");
    }
    let enc = the_record(&all, &enc_rid);
    assert_eq!(enc["eventName"], "Encrypt");
    assert_eq!(enc["requestParameters"]["keyId"], json!(key.key_id));
    assert_eq!(
        enc["requestParameters"]["encryptionContext"],
        json!({"tenant": "blue"})
    );
    assert_eq!(
        enc["requestParameters"]["encryptionAlgorithm"],
        "SYMMETRIC_DEFAULT"
    );
    assert_eq!(enc["resources"][0]["ARN"], json!(key.arn));
    assert_eq!(enc["p11kms"]["decision"], "Allow");
    assert_eq!(enc["sourceIPAddress"], "127.0.0.1");
    let grant = the_record(&all, &grant_rid);
    assert_eq!(
        grant["requestParameters"]["granteePrincipal"],
        json!(role(ACCOUNT, "Grantee"))
    );
    assert_eq!(grant["requestParameters"]["operations"], json!(["Decrypt"]));
    let bad = the_record(&all, &bad_rid);
    assert_eq!(bad["errorCode"], "ValidationException");
    let denied = the_record(&all, &denied_rid);
    assert_eq!(denied["errorCode"], "AccessDeniedException");
    assert_eq!(denied["userIdentity"]["arn"], json!(role(ACCOUNT, "App")));
    assert_eq!(denied["p11kms"]["decision"], "ImplicitDeny");
    assert!(denied["errorMessage"]
        .as_str()
        .unwrap()
        .contains("kms:Encrypt"));
    assert_eq!(the_record(&all, &after_restart)["eventName"], "ListKeys");

    // No secret, in any spelling, anywhere in the trail.
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut trail = String::new();
    for f in trail_files(&audit_dir(&dir)).unwrap() {
        trail.push_str(&std::fs::read_to_string(f).unwrap());
    }
    for secret in [&marker, &data_key, &random] {
        for spelling in [b64(secret), hex(secret)] {
            assert!(!trail.contains(&spelling), "a secret is in the trail");
        }
    }
    assert!(!trail.contains("AUDIT-PLAINTEXT-MARKER"));
    assert!(
        !trail.contains(&grant_token),
        "the grant token is in the trail"
    );
}

/// A trail that cannot be written (a full disk, stood in for by /dev/full; a file
/// removed behind the daemon's back) fails every call with KMSInternalException: no
/// call succeeds unaudited.
#[tokio::test(flavor = "multi_thread")]
async fn no_call_succeeds_when_its_record_cannot_be_written() {
    // A full disk.
    let dir = TestDir::new();
    dir.prepare();
    let audit = audit_dir(&dir);
    std::fs::create_dir_all(&audit).unwrap();
    std::os::unix::fs::symlink("/dev/full", audit.join("p11kms-audit-000001.jsonl")).unwrap();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    assert_kms_error(
        admin.list_keys(proto::ListKeysRequest::default()).await,
        "KMSInternalException",
    );
    // Once the trail has failed, work is refused before it is done.
    for _ in 0..3 {
        assert_kms_error(
            admin.create_key(proto::CreateKeyRequest::default()).await,
            "KMSInternalException",
        );
    }
    d.stop();
    std::fs::remove_file(audit.join("p11kms-audit-000001.jsonl")).unwrap();
    let d = Daemon::start(&dir);
    let keys = list_key_ids(&mut d.admin().await).await;
    assert!(keys.is_empty(), "a refused CreateKey made a key: {keys:?}");
    d.stop();

    // A removed file.
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    for f in trail_files(&audit_dir(&dir)).unwrap() {
        std::fs::remove_file(f).unwrap();
    }
    let st = assert_kms_error(
        admin.encrypt(encrypt_req(&key.key_id, b"x", &[])).await,
        "KMSInternalException",
    );
    assert!(
        !st.message().contains(&dir.path().display().to_string()),
        "{}",
        st.message()
    );
    assert!(d.log().contains("could not be audited"), "{}", d.log());
}

/// The daemon's own work is recorded as service events: a scheduled deletion carried
/// out, an automatic rotation, new material after a spent IV budget.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemons_own_work_is_recorded() {
    let dir = TestDir::new();
    let offset = dir.with_test_clock();
    dir.append_config("\n[limits]\nmax_encryptions_per_material = 2\n");
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let doomed = create_key(&mut c).await;
    let rotated = create_key(&mut c).await;
    let busy = create_key(&mut c).await;
    c.schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
        key_id: doomed.key_id.clone(),
        pending_window_in_days: Some(7),
    })
    .await
    .unwrap();
    c.enable_key_rotation(proto::EnableKeyRotationRequest {
        key_id: rotated.key_id.clone(),
        rotation_period_in_days: Some(90),
    })
    .await
    .unwrap();
    for _ in 0..3 {
        encrypt(&mut c, &busy.key_id, b"x", &[]).await;
    }
    std::fs::write(&offset, (100 * 86_400).to_string()).unwrap();
    let service_event = |all: &[Value], name: &str, arn: &str| {
        all.iter().any(|r| {
            r["eventName"] == name
                && r["eventType"] == "AwsServiceEvent"
                && r["resources"][0]["ARN"] == arn
                && r.get("errorCode").is_none()
        })
    };
    let trail = audit_dir(&dir);
    eventually("the sweep's records", || {
        let all = records(&trail);
        let done = service_event(&all, "DeleteKey", &doomed.arn)
            && service_event(&all, "RotateKey", &rotated.arn);
        async move { done }
    })
    .await;
    let all = records(&trail);
    assert!(service_event(&all, "RollOverKeyMaterial", &busy.arn));
    let delete = all.iter().find(|r| r["eventName"] == "DeleteKey").unwrap();
    assert_eq!(delete["userIdentity"]["type"], "AWSService", "{delete}");
    assert_eq!(delete["p11kms"]["transport"], "background", "{delete}");
    d.stop();
}

/// `p11kms audit verify` on a real trail: intact after a restart, and an edited, removed
/// or reordered record is named.
#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_finds_each_tampering_in_a_real_trail() {
    let dir = TestDir::new();
    for _ in 0..2 {
        let d = Daemon::start(&dir);
        let mut c = d.admin().await;
        let key = create_key(&mut c).await;
        for i in 0..3 {
            encrypt(&mut c, &key.key_id, format!("x{i}").as_bytes(), &[]).await;
        }
        d.stop();
    }
    let out = run_cli(dir.path(), &["audit", "verify"], b"");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each clean stop left a final checkpoint.
    assert!(
        said.contains("verified 8 records and 2 checkpoints"),
        "{said}"
    );

    let file = trail_files(&audit_dir(&dir)).unwrap().remove(0);
    let original = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let tampered = |lines: Vec<String>| {
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let out = run_cli(dir.path(), &["audit", "verify"], b"");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[2] = edited[2].replace("\"Encrypt\"", "\"Decrypt\"");
    assert!(edited[2] != lines[2]);
    let err = tampered(edited);
    assert!(err.contains(":4: record 4"), "{err}");
    let mut removed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    removed.remove(3);
    assert!(tampered(removed).contains("record 4"));
    let mut reordered: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    reordered.swap(1, 2);
    assert!(tampered(reordered).contains("record 2"));
    std::fs::write(&file, original).unwrap();
    assert!(run_cli(dir.path(), &["audit", "verify"], b"")
        .status
        .success());
}

/// The chain runs across file rotations and survives a crash that tore the last line:
/// the torn bytes (never acknowledged) are cut at the next start.
#[tokio::test(flavor = "multi_thread")]
async fn the_chain_runs_across_rotations_and_a_torn_last_line() {
    let dir = TestDir::new();
    dir.prepare();
    dir.edit_config(|c| {
        c["audit"]
            .as_table_mut()
            .unwrap()
            .insert("max_file_bytes".into(), 4096.into());
    });
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    for i in 0..30 {
        encrypt(
            &mut c,
            &key.key_id,
            format!("x{i}").as_bytes(),
            &[("n", "1")],
        )
        .await;
    }
    d.crash();
    let trail = audit_dir(&dir);
    let files = trail_files(&trail).unwrap();
    assert!(files.len() > 2, "no rotation: {files:?}");
    assert_eq!(records(&trail).len(), 31);
    // A torn record at the end, as a crash mid-write leaves it.
    let newest = files.last().unwrap();
    let mut text = std::fs::read(newest).unwrap();
    text.extend_from_slice(b"{\"eventName\":\"Encr");
    std::fs::write(newest, text).unwrap();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    encrypt(&mut c, &key.key_id, b"after", &[]).await;
    d.stop();
    assert_eq!(records(&trail).len(), 32);
    let out = run_cli(dir.path(), &["audit", "verify"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A caller that gives up mid-call (a short deadline drops the handler) cannot leave
/// work done without a record: every key that exists has a CreateKey record.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_abandoned_by_its_caller_is_still_recorded() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    // One at a time, with deadlines growing by a tenth from 0.5 ms until five calls have
    // finished: CreateKey's own time (the token object, the store) falls inside that
    // range however loaded the machine is, so calls end before, during and after the
    // work.
    let mut wait = std::time::Duration::from_micros(500);
    let mut finished = 0;
    for _ in 0..120 {
        if let Ok(r) =
            tokio::time::timeout(wait, c.create_key(proto::CreateKeyRequest::default())).await
        {
            r.unwrap();
            finished += 1;
            if finished == 5 {
                break;
            }
        }
        wait = wait.mul_f64(1.1);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let keys = list_key_ids(&mut d.admin().await).await;
    d.stop();
    let all = records(&audit_dir(&dir));
    let canceled = all
        .iter()
        .filter(|r| r["errorCode"] == "RequestCanceled")
        .count();
    // Some calls ended part-way, some finished: both kinds are exercised.
    assert!(
        canceled > 0 && !keys.is_empty(),
        "keys {} canceled {canceled}",
        keys.len()
    );
    for id in &keys {
        let arn = format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{id}");
        assert!(
            all.iter()
                .any(|r| r["eventName"] == "CreateKey" && r["resources"][0]["ARN"] == arn.as_str()),
            "key {arn} has no CreateKey record"
        );
    }
}

/// A KeyId longer than AWS's 2048 characters is cut, once, to that length in the record
/// and in the log line of its request.
#[tokio::test(flavor = "multi_thread")]
async fn an_overlong_key_id_is_cut_in_the_record_and_the_log() {
    let dir = TestDir::new();
    let d = Daemon::start_with(&dir, &[("RUST_LOG", "debug")]);
    let mut c = d.admin().await;
    let long = "k".repeat(5000);
    let r = c
        .describe_key(proto::DescribeKeyRequest {
            key_id: long.clone(),
            ..Default::default()
        })
        .await;
    let rid = request_id(&r);
    assert!(r.is_err());
    let all = records(&audit_dir(&dir));
    let rec = the_record(&all, &rid);
    assert_eq!(rec["requestParameters"]["keyId"], json!("k".repeat(2048)));
    let log = d.stop();
    assert!(
        log.contains(&"k".repeat(2048)),
        "the cut KeyId is not in the log"
    );
    assert!(
        !log.contains(&"k".repeat(2049)),
        "an uncut KeyId is in the log"
    );
}
