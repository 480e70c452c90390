//! No plaintext, data key or PIN reaches the log, even at trace level.

use base64::Engine as _;
use p11kms::proto;

use crate::harness::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The ways a byte string could show up in a log line.
fn spellings(secret: &[u8]) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = vec![hex(secret), hex(secret).to_uppercase(), b64.encode(secret)];
    // Debug of a byte slice: "[80, 76, 65, ...": the first 12 bytes are enough.
    let dbg = format!("{:?}", &secret[..12.min(secret.len())]);
    out.push(dbg.trim_end_matches(']').to_owned());
    if let Ok(s) = std::str::from_utf8(secret) {
        out.push(s.to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_the_log_at_trace_level() {
    let dir = TestDir::new();
    let d = Daemon::start_with(&dir, &[("RUST_LOG", "trace")]);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let marker = b"PLAINTEXT-MARKER-5a1e2c7d9f".to_vec();
    let blob = encrypt(&mut c, &key.key_id, &marker, &[("ctx", "logs")]).await;
    assert_eq!(decrypt(&mut c, &blob, &[("ctx", "logs")]).await, marker);
    let gdk = c
        .generate_data_key(proto::GenerateDataKeyRequest {
            key_id: key.key_id.clone(),
            key_spec: "AES_256".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let data_key = gdk.plaintext.clone();
    let dk_again = decrypt(&mut c, &gdk.ciphertext_blob, &[]).await;
    assert_eq!(dk_again, data_key);
    let random = c
        .generate_random(proto::GenerateRandomRequest {
            number_of_bytes: Some(32),
        })
        .await
        .unwrap()
        .into_inner();
    let random_bytes = random.plaintext.clone();
    let re = c
        .re_encrypt(proto::ReEncryptRequest {
            ciphertext_blob: blob.clone(),
            source_encryption_context: ctx(&[("ctx", "logs")]),
            destination_key_id: key.key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decrypt(&mut c, &re.ciphertext_blob, &[]).await, marker);
    let without = c
        .generate_data_key_without_plaintext(proto::GenerateDataKeyWithoutPlaintextRequest {
            key_id: key.key_id.clone(),
            number_of_bytes: Some(32),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let hidden_key = decrypt(&mut c, &without.ciphertext_blob, &[]).await;
    // A failing call too: error paths log more.
    assert_kms_error(
        c.decrypt(decrypt_req(&blob, &[("ctx", "wrong")])).await,
        "InvalidCiphertextException",
    );
    let log = d.stop();

    // The log was captured at trace level and covers these requests.
    assert!(log.contains("TRACE"), "trace logging is on");
    assert!(
        log.contains("Encrypt") && log.contains("Decrypt"),
        "requests are logged"
    );

    let user_pin = std::fs::read_to_string(dir.path().join("user.pin")).unwrap();
    let so_pin = std::fs::read_to_string(dir.path().join("so.pin")).unwrap();
    let mut secrets: Vec<(String, String)> = Vec::new();
    for (what, bytes) in [
        ("plaintext", &marker),
        ("data key", &data_key),
        ("random", &random_bytes),
        ("data key without plaintext", &hidden_key),
    ] {
        for s in spellings(bytes) {
            secrets.push((what.to_owned(), s));
        }
    }
    secrets.push(("user PIN".into(), user_pin.trim().to_owned()));
    secrets.push(("SO PIN".into(), so_pin.trim().to_owned()));
    for (what, s) in secrets {
        assert!(!log.contains(&s), "the {what} appears in the log as {s:?}");
    }
}

/// One request path: the request id the caller gets back names, in the daemon's log,
/// the caller, the operation, the decision and the statement that decided it.
#[tokio::test(flavor = "multi_thread")]
async fn the_request_id_leads_to_the_decision_and_its_statement_in_the_log() {
    let dir = TestDir::new();
    let d = Daemon::start_with(&dir, &[("RUST_LOG", "p11kms=debug")]);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let doc = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": root_of(ACCOUNT)}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "NoEncryptHere", "Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*"}]});
    put_key_policy(&mut c, &key.key_id, doc.to_string())
        .await
        .unwrap();
    let refused = c.encrypt(encrypt_req(&key.key_id, b"x", &[])).await;
    assert!(refused.is_err());
    let rid = request_id(&refused);
    let ok = c
        .describe_key(proto::DescribeKeyRequest {
            key_id: key.key_id.clone(),
            grant_tokens: vec![],
        })
        .await;
    assert!(ok.is_ok());
    let ok_rid = request_id(&ok);
    assert_ne!(rid, ok_rid);
    let log = d.log();
    no_colours(&log);
    let refused = log
        .lines()
        .find(|l| l.contains(&rid) && l.contains("request refused"))
        .unwrap_or_else(|| panic!("no line for {rid}:\n{log}"));
    for part in [
        "operation=\"Encrypt\"",
        "transport=\"grpc\"",
        "ExplicitDeny",
        "NoEncryptHere",
        "AccessDeniedException",
        &root_of(ACCOUNT),
    ] {
        assert!(refused.contains(part), "{part} missing: {refused}");
    }
    let served = log
        .lines()
        .find(|l| l.contains(&ok_rid) && l.contains("request succeeded"))
        .unwrap_or_else(|| panic!("no line for {ok_rid}:\n{log}"));
    assert!(
        served.contains("Allow") && served.contains("Root"),
        "{served}"
    );
}

/// The daemon's log here goes to a file, not a terminal: no colour escape codes, which
/// would break every search of the log by a field's text (`operation="Encrypt"`).
fn no_colours(log: &str) {
    if let Some(line) = log.lines().find(|l| l.contains('\u{1b}')) {
        panic!("a log written to a file carries terminal escape codes: {line:?}");
    }
}

/// Starts a daemon behind the PKCS#11 shim with the log `format` and `filter`; makes
/// one Encrypt fail inside the token (an ERROR line) and another lose its session, which
/// the daemon reopens (a WARN line). Returns the two request ids the caller got, and
/// the log.
async fn a_failed_and_a_retried_encrypt(format: &str, filter: &str) -> (String, String, String) {
    let dir = TestDir::new();
    let control = dir.use_shim(0);
    let d = Daemon::start_args(
        &dir,
        "127.0.0.1:0",
        &["--log-format", format],
        &[("RUST_LOG", filter)],
    );
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    control.set("fail C_Encrypt CKR_FUNCTION_FAILED\n").unwrap();
    let failed = c.encrypt(encrypt_req(&key.key_id, b"x", &[])).await;
    let failed_rid = request_id(&failed);
    assert_kms_error(failed, "KMSInternalException");
    control
        .set("fail_next C_Encrypt 1 CKR_SESSION_HANDLE_INVALID\n")
        .unwrap();
    let retried = c.encrypt(encrypt_req(&key.key_id, b"x", &[])).await;
    let retried_rid = request_id(&retried);
    retried.unwrap();
    control.clear().unwrap();
    (failed_rid, retried_rid, d.stop())
}

/// The caller of a failed request is told to look its request id up in the log: every
/// ERROR and WARN line logged while serving a request carries its id, in text and in
/// JSON, whatever level the log is filtered at (the request's span was once at INFO,
/// and under RUST_LOG=warn its fields vanished from the lines inside it).
#[tokio::test(flavor = "multi_thread")]
async fn error_and_warn_lines_of_a_request_carry_its_request_id() {
    // The last filter has a span directive: the daemon then filters with `EnvFilter`,
    // and the others with a filter of targets and levels (`cli::serve::log_filter`).
    for (format, filter) in [
        ("text", "info"),
        ("text", "warn"),
        ("json", "warn"),
        ("text", "warn,[request]=debug"),
    ] {
        let (failed, retried, log) = a_failed_and_a_retried_encrypt(format, filter).await;
        no_colours(&log);
        let at = |level: &str| -> Vec<&str> {
            log.lines()
                .filter(|l| {
                    l.contains(&format!(" {level} "))
                        || l.contains(&format!("\"level\":\"{level}\""))
                })
                .collect()
        };
        let (errors, warnings) = (at("ERROR"), at("WARN"));
        // The filter holds: INFO lines (the daemon's start) only where it lets them
        // through, and the request's own DEBUG line only under the span directive.
        match filter {
            "info" => assert!(!at("INFO").is_empty(), "{format}, {filter}:\n{log}"),
            "warn" => assert!(at("INFO").is_empty(), "{format}, {filter}:\n{log}"),
            _ => assert!(
                at("DEBUG")
                    .iter()
                    .any(|l| l.contains("request succeeded") && l.contains(&retried)),
                "{format}, {filter}: no DEBUG line of the request:\n{log}"
            ),
        }
        let failed_line = errors
            .iter()
            .find(|l| l.contains("request failed"))
            .unwrap_or_else(|| panic!("{format}, {filter}: no error line:\n{log}"));
        assert!(
            failed_line.contains(&failed),
            "{format}, {filter}: {failed} missing: {failed_line}"
        );
        let lost_line = warnings
            .iter()
            .find(|l| l.contains("session lost"))
            .unwrap_or_else(|| panic!("{format}, {filter}: no warning:\n{log}"));
        assert!(
            lost_line.contains(&retried),
            "{format}, {filter}: {retried} missing: {lost_line}"
        );
        // And no other ERROR or WARN line of these requests goes without an id.
        for line in errors.iter().chain(&warnings) {
            assert!(
                line.contains(&failed) || line.contains(&retried),
                "{format}, {filter}: a line without the request id: {line}"
            );
        }
    }
}
