//! The batch calls over gRPC and the CLI (BatchEncrypt, BatchDecrypt, beyond AWS): each
//! item answered, authorized and audited on its own, in order; a call with no items or
//! more than 1000 refused as a whole; the batch's records written together, in one
//! audit write; `encrypt --batch` and `decrypt --batch` round trips that split past
//! 1000 items. (The AWS JSON protocol's batch calls are in aws_sdk.rs.)

use std::io::{Read, Write};

use p11kms::proto::{self, batch_decrypt_result, batch_encrypt_result};
use serde_json::{json, Value};

use crate::audit::{audit_dir, records};
use crate::harness::*;

/// One encrypt result: the blob, or the error's name and message.
fn encrypted(r: &proto::BatchEncryptResult) -> Result<&proto::EncryptResponse, (&str, &str)> {
    match r
        .outcome
        .as_ref()
        .expect("a result holds an answer or an error")
    {
        batch_encrypt_result::Outcome::Response(e) => Ok(e),
        batch_encrypt_result::Outcome::Error(e) => Err((&e.error_code, &e.error_message)),
    }
}

fn decrypted(r: &proto::BatchDecryptResult) -> Result<&proto::DecryptResponse, (&str, &str)> {
    match r
        .outcome
        .as_ref()
        .expect("a result holds an answer or an error")
    {
        batch_decrypt_result::Outcome::Response(d) => Ok(d),
        batch_decrypt_result::Outcome::Error(e) => Err((&e.error_code, &e.error_message)),
    }
}

#[track_caller]
fn error_code<T: std::fmt::Debug>(r: Result<T, (&str, &str)>) -> String {
    let (code, message) = r.expect_err("expected an error");
    assert!(!message.is_empty());
    // The name is the code, not repeated in the message as a status's message has it.
    assert!(!message.starts_with(code), "{message}");
    code.to_owned()
}

fn with_key(mut r: proto::DecryptRequest, key_id: &str) -> proto::DecryptRequest {
    r.key_id = key_id.to_owned();
    r
}

fn with_algorithm(mut r: proto::EncryptRequest, alg: &str) -> proto::EncryptRequest {
    r.encryption_algorithm = alg.to_owned();
    r
}

/// A 4096-byte plaintext that names its index, so that results out of order show.
fn numbered(i: usize) -> Vec<u8> {
    let mut p = format!("batch-item-{i:05}-").into_bytes();
    p.resize(4096, b'a' + (i % 26) as u8);
    p
}

/// A caller allowed on one key only: unknown keys, denied keys, bad input and bad
/// blobs each fail their own item, with the name a single call would have failed
/// with, and the other items succeed, in order.
#[tokio::test(flavor = "multi_thread")]
async fn each_item_is_answered_on_its_own() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let mine = create_key(&mut admin).await;
    let other = create_key(&mut admin).await;
    let app_arn = role(ACCOUNT, "App");
    put_identity_policy(
        &mut admin,
        &app_arn,
        "one-key",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": mine.arn}]}),
    )
    .await;
    let mut app = d.client_as(&app_arn).await;

    let first = b"batch-item-first-plaintext".to_vec();
    let second = b"batch-item-second-plaintext".to_vec();
    let items = vec![
        encrypt_req(&mine.key_id, &first, &[]),
        encrypt_req(&other.key_id, b"denied-item-plaintext", &[]),
        encrypt_req("11111111-2222-3333-4444-555555555555", b"x", &[]),
        encrypt_req(&mine.key_id, &[7; 4097], &[]),
        with_algorithm(encrypt_req(&mine.key_id, b"x", &[]), "RSAES_OAEP_SHA_256"),
        encrypt_req(&mine.arn, &second, &[("tenant", "blue")]),
    ];
    let r = app
        .batch_encrypt(proto::BatchEncryptRequest { items })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(r.len(), 6);
    let blob_first = encrypted(&r[0]).unwrap().ciphertext_blob.clone();
    assert_eq!(encrypted(&r[0]).unwrap().key_id, mine.arn);
    assert_eq!(
        encrypted(&r[0]).unwrap().encryption_algorithm,
        "SYMMETRIC_DEFAULT"
    );
    assert_eq!(error_code(encrypted(&r[1])), "AccessDeniedException");
    assert_eq!(error_code(encrypted(&r[2])), "NotFoundException");
    assert_eq!(error_code(encrypted(&r[3])), "ValidationException");
    assert_eq!(error_code(encrypted(&r[4])), "InvalidKeyUsageException");
    let blob_second = encrypted(&r[5]).unwrap().ciphertext_blob.clone();
    let blob_other = encrypt(&mut admin, &other.key_id, b"other-key-plaintext", &[]).await;

    let items = vec![
        decrypt_req(&blob_first, &[]),
        // The context it was not encrypted with.
        decrypt_req(&blob_second, &[("tenant", "green")]),
        decrypt_req(&blob_other, &[]),
        decrypt_req(b"not a p11kms blob at all", &[]),
        decrypt_req(b"", &[]),
        with_key(decrypt_req(&blob_first, &[]), &other.key_id),
        decrypt_req(&blob_second, &[("tenant", "blue")]),
    ];
    let r = app
        .batch_decrypt(proto::BatchDecryptRequest { items })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(r.len(), 7);
    assert_eq!(decrypted(&r[0]).unwrap().plaintext, first);
    assert_eq!(decrypted(&r[0]).unwrap().key_id, mine.arn);
    assert_eq!(error_code(decrypted(&r[1])), "InvalidCiphertextException");
    assert_eq!(error_code(decrypted(&r[2])), "AccessDeniedException");
    assert_eq!(error_code(decrypted(&r[3])), "InvalidCiphertextException");
    assert_eq!(error_code(decrypted(&r[4])), "ValidationException");
    assert_eq!(error_code(decrypted(&r[5])), "IncorrectKeyException");
    assert_eq!(decrypted(&r[6]).unwrap().plaintext, second);
    // The plaintexts are not in the answers' Debug output.
    let shown = format!("{r:?}");
    assert!(!shown.contains("batch-item"), "{shown}");
}

/// Scrapes the metrics listener as plain text.
fn metrics_text(d: &Daemon) -> String {
    let url = d.metrics_url();
    let hostport = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .unwrap();
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// The value of the sample whose line starts with `series` (0 when there is none).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .filter_map(|rest| rest.trim().parse::<f64>().ok())
        .sum()
}

/// A thousand 4096-byte items round trip in one call each way, in order, and their
/// records and the batch's go to the trail in one write; one item more, or none, is a
/// ValidationException for the whole call.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_items_round_trip_with_one_audit_write_each_way() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let plaintexts: Vec<Vec<u8>> = (0..1000).map(numbered).collect();
    for i in [0, 499, 999] {
        crate::secrets_scan::sent_plaintext(&plaintexts[i]);
    }
    let items = plaintexts
        .iter()
        .map(|p| encrypt_req_unscanned(&key.key_id, p, &[("batch", "big")]))
        .collect();

    let before = tokio::task::block_in_place(|| metrics_text(&d));
    let started = std::time::Instant::now();
    let r = admin
        .batch_encrypt(proto::BatchEncryptRequest { items })
        .await
        .unwrap()
        .into_inner()
        .results;
    let took = started.elapsed();
    let after = tokio::task::block_in_place(|| metrics_text(&d));
    eprintln!("BatchEncrypt of 1000 items of 4096 bytes: {took:?}");
    let blobs: Vec<Vec<u8>> = r
        .iter()
        .map(|r| encrypted(r).unwrap().ciphertext_blob.clone())
        .collect();
    assert_eq!(blobs.len(), 1000);
    // The batch's record and its 1000 items' were written and synced together.
    let batches = |t: &str| sample(t, "p11kms_audit_batch_size_count");
    let written = |t: &str| sample(t, "p11kms_audit_batch_size_sum");
    assert_eq!(batches(&after) - batches(&before), 1.0);
    assert_eq!(written(&after) - written(&before), 1001.0);
    // Each item is counted as the Encrypt it is, the batch once.
    let encrypts = r#"p11kms_requests_total{operation="Encrypt",transport="grpc",outcome="ok"}"#;
    assert_eq!(sample(&after, encrypts) - sample(&before, encrypts), 1000.0);
    let calls = r#"p11kms_requests_total{operation="BatchEncrypt",transport="grpc",outcome="ok"}"#;
    assert_eq!(sample(&after, calls) - sample(&before, calls), 1.0);

    let items = blobs
        .iter()
        .map(|b| decrypt_req(b, &[("batch", "big")]))
        .collect();
    let r = admin
        .batch_decrypt(proto::BatchDecryptRequest { items })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(r.len(), 1000);
    for (i, (r, p)) in r.iter().zip(&plaintexts).enumerate() {
        assert!(&decrypted(r).unwrap().plaintext == p, "item {i}");
    }

    let too_many = vec![encrypt_req(&key.key_id, b"x", &[]); 1001];
    let st = assert_kms_error(
        admin
            .batch_encrypt(proto::BatchEncryptRequest { items: too_many })
            .await,
        "ValidationException",
    );
    assert_eq!(
        st.message(),
        "ValidationException: 1 validation error detected: Value at 'items' failed to satisfy constraint: Member must have length less than or equal to 1000"
    );
    let st = assert_kms_error(
        admin
            .batch_decrypt(proto::BatchDecryptRequest { items: vec![] })
            .await,
        "ValidationException",
    );
    assert!(
        st.message()
            .ends_with("Member must have length greater than or equal to 1"),
        "{}",
        st.message()
    );
    let st = assert_kms_error(
        admin
            .batch_decrypt(proto::BatchDecryptRequest {
                items: vec![decrypt_req(&blobs[0], &[]); 1001],
            })
            .await,
        "ValidationException",
    );
    assert!(st.message().contains("less than or equal to 1000"));
}

/// The batch's own record comes first, with the item count and no key; then one
/// record per item, in order, each an Encrypt or Decrypt of its own request id naming
/// the batch's request id and its index, with its own key, parameters, decision and
/// error. A call refused as a whole leaves its record alone.
#[tokio::test(flavor = "multi_thread")]
async fn each_item_leaves_one_record_tied_to_its_batch() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    let items = vec![
        encrypt_req(
            &key.key_id,
            b"audited-batch-plaintext-1",
            &[("tenant", "blue")],
        ),
        encrypt_req("alias/missing", b"audited-batch-plaintext-2", &[]),
        encrypt_req(&key.arn, b"audited-batch-plaintext-3", &[]),
    ];
    let r = admin
        .batch_encrypt(proto::BatchEncryptRequest { items })
        .await;
    let enc_rid = request_id(&r);
    let results = r.unwrap().into_inner().results;
    let blob = encrypted(&results[0]).unwrap().ciphertext_blob.clone();
    let r = admin
        .batch_decrypt(proto::BatchDecryptRequest {
            items: vec![decrypt_req(&blob, &[("tenant", "blue")])],
        })
        .await;
    let dec_rid = request_id(&r);
    r.unwrap();
    let r = admin
        .batch_encrypt(proto::BatchEncryptRequest { items: vec![] })
        .await;
    let refused_rid = request_id(&r);
    r.unwrap_err();
    d.stop();

    let all = records(&audit_dir(&dir));
    let at = all
        .iter()
        .position(|r| r["requestID"] == enc_rid)
        .expect("the batch's record");
    let batch = &all[at];
    assert_eq!(batch["eventName"], "BatchEncrypt");
    assert_eq!(batch["requestParameters"], json!({"itemCount": 3}));
    assert_eq!(batch["resources"], json!([]));
    assert_eq!(batch["userIdentity"]["arn"], json!(root_of(ACCOUNT)));
    assert!(batch.get("errorCode").is_none(), "{batch}");
    assert!(batch.get("additionalEventData").is_none(), "{batch}");
    let items = &all[at + 1..at + 4];
    let mut ids = std::collections::HashSet::new();
    for (i, r) in items.iter().enumerate() {
        assert_eq!(r["eventName"], "Encrypt", "{r}");
        assert_eq!(
            r["additionalEventData"],
            json!({"batchRequestId": enc_rid, "batchItemIndex": i}),
            "{r}"
        );
        assert_eq!(r["userIdentity"]["arn"], json!(root_of(ACCOUNT)));
        assert_eq!(r["p11kms"]["transport"], "grpc");
        assert!(ids.insert(r["requestID"].as_str().unwrap().to_owned()));
        assert_ne!(r["requestID"], enc_rid);
    }
    assert_eq!(items[0]["requestParameters"]["keyId"], json!(key.key_id));
    assert_eq!(
        items[0]["requestParameters"]["encryptionContext"],
        json!({"tenant": "blue"})
    );
    assert_eq!(items[0]["resources"][0]["ARN"], json!(key.arn));
    assert_eq!(items[0]["p11kms"]["decision"], "Allow");
    assert!(items[0].get("errorCode").is_none());
    assert_eq!(items[1]["requestParameters"]["keyId"], "alias/missing");
    assert_eq!(items[1]["errorCode"], "NotFoundException");
    assert_eq!(items[2]["requestParameters"]["keyId"], json!(key.arn));

    let at = all.iter().position(|r| r["requestID"] == dec_rid).unwrap();
    assert_eq!(all[at]["eventName"], "BatchDecrypt");
    assert_eq!(all[at + 1]["eventName"], "Decrypt");
    assert_eq!(
        all[at + 1]["additionalEventData"]["batchRequestId"],
        json!(dec_rid)
    );
    assert_eq!(all[at + 1]["resources"][0]["ARN"], json!(key.arn));

    let refused: Vec<&Value> = all
        .iter()
        .filter(|r| r["requestID"] == refused_rid)
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["errorCode"], "ValidationException");
    assert_eq!(refused[0]["requestParameters"], json!({"itemCount": 0}));
    assert!(!all
        .iter()
        .any(|r| r["additionalEventData"]["batchRequestId"] == refused_rid));
    // Two batches of 3 and 1 items, one refused batch, and CreateKey.
    assert_eq!(all.len(), 1 + 4 + 2 + 1, "{all:#?}");
}

/// A batch whose records cannot be written fails as a whole, as a single call would:
/// no item succeeds unaudited.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_that_cannot_be_recorded_fails_whole() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    for f in p11kms::trail_files(&audit_dir(&dir)).unwrap() {
        std::fs::remove_file(f).unwrap();
    }
    let items = vec![encrypt_req(&key.key_id, b"x", &[]); 3];
    assert_kms_error(
        admin
            .batch_encrypt(proto::BatchEncryptRequest { items })
            .await,
        "KMSInternalException",
    );
}

/// A caller that gives up on a batch mid-way (a deadline drops the handler) leaves a
/// record for every item that had begun, marked RequestCanceled like the batch's own,
/// as any abandoned call; a batch that got as far as queuing its records has them all,
/// with their own outcomes. The trail still verifies.
#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_batch_leaves_a_record_for_each_item_begun() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let items: Vec<proto::EncryptRequest> = (0..1000)
        .map(|_| encrypt_req_unscanned(&key.key_id, b"abandoned", &[]))
        .collect();
    // Deadlines from before the first item to after the last.
    for ms in [5u64, 20, 50, 100, 150, 250, 400, 3000] {
        let call = c.batch_encrypt(proto::BatchEncryptRequest {
            items: items.clone(),
        });
        let _ = tokio::time::timeout(std::time::Duration::from_millis(ms), call).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    d.stop();
    let all = records(&audit_dir(&dir));
    let mut canceled_items = 0;
    let mut kept_decision = false;
    for batch in all.iter().filter(|r| r["eventName"] == "BatchEncrypt") {
        let items: Vec<&Value> = all
            .iter()
            .filter(|r| r["additionalEventData"]["batchRequestId"] == batch["requestID"])
            .collect();
        let mut seen: Vec<u64> = items
            .iter()
            .map(|r| r["additionalEventData"]["batchItemIndex"].as_u64().unwrap())
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), items.len(), "an item recorded twice");
        if batch["errorCode"] == "RequestCanceled" {
            assert!(items.iter().all(|r| r["errorCode"] == "RequestCanceled"));
            canceled_items += items.len();
            // Items that were done, waiting for the rest, keep what they learnt.
            kept_decision |= items.iter().any(|r| {
                r["p11kms"]["decision"] == "Allow" && r["resources"][0]["ARN"] == json!(key.arn)
            });
        } else {
            assert_eq!(items.len(), 1000, "{batch}");
            assert!(items.iter().all(|r| r.get("errorCode").is_none()));
        }
    }
    assert!(canceled_items > 0, "no batch was abandoned mid-way");
    assert!(kept_decision, "no abandoned item kept its decision");
    let out = run_cli(dir.path(), &["audit", "verify"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `encrypt --batch` and `decrypt --batch` take JSON lines (from a file here, or
/// stdin) and print one result line per item, in order, even for lines that are not
/// items; 2,501 items go in three calls; a failed item makes the exit status 1.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_batches_json_lines_past_a_thousand() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let key = create_key(&mut d.admin().await).await;
    let plaintext = |i: usize| format!("cli-batch-plaintext-{i:05}");
    let mut lines = String::new();
    for i in 0..2500 {
        if i % 250 == 0 {
            crate::secrets_scan::sent_plaintext(plaintext(i).as_bytes());
        }
        let line = json!({"KeyId": key.key_id, "Plaintext": b64(plaintext(i).as_bytes()),
            "EncryptionContext": {"n": i.to_string()}});
        lines.push_str(&format!("{line}\n"));
        if i == 10 {
            lines.push_str("this line is not JSON\n\n");
        }
        if i == 20 {
            lines.push_str(&format!(
                "{}\n",
                json!({"KeyId": "alias/nowhere", "Plaintext": b64(b"x")})
            ));
        }
    }
    let input = dir.path().join("items.jsonl");
    std::fs::write(&input, lines).unwrap();
    let o = run_cli(
        dir.path(),
        &["encrypt", "--batch", input.to_str().unwrap()],
        b"",
    );
    assert!(
        !o.status.success(),
        "two lines fail, so the exit status is 1"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("2 of 2502 items failed"), "{stderr}");
    let out: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 2502);
    assert_eq!(out[11]["ErrorCode"], "SerializationException");
    assert!(out[11]["ErrorMessage"]
        .as_str()
        .unwrap()
        .starts_with("line 12: "));
    assert_eq!(out[22]["ErrorCode"], "NotFoundException");
    let blobs: Vec<&Value> = out
        .iter()
        .filter(|r| r.get("ErrorCode").is_none())
        .collect();
    assert_eq!(blobs.len(), 2500);
    assert!(blobs.iter().all(|r| r["KeyId"] == json!(key.arn)));

    // Back, through stdin this time (small enough not to fill the pipes).
    let mut back = String::new();
    for (i, r) in blobs.iter().enumerate().take(300) {
        let line = json!({"CiphertextBlob": r["CiphertextBlob"],
            "EncryptionContext": {"n": i.to_string()}});
        back.push_str(&format!("{line}\n"));
    }
    let o = run_cli(dir.path(), &["decrypt", "--batch", "-"], back.as_bytes());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 300);
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r["Plaintext"], json!(b64(plaintext(i).as_bytes())), "{i}");
        assert_eq!(r["KeyId"], json!(key.arn));
    }
    d.stop();

    // 2,501 items read (2,502 lines less the one that is not JSON) went in calls of
    // 1000, 1000 and 501; 300 in one.
    let counts: Vec<i64> = records(&audit_dir(&dir))
        .iter()
        .filter(|r| {
            r["eventName"]
                .as_str()
                .is_some_and(|n| n.starts_with("Batch"))
        })
        .map(|r| r["requestParameters"]["itemCount"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![1000, 1000, 501, 300]);
}
