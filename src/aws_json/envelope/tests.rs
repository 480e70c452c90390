//! The envelope and the shapes: routing, decoding, AWS's examples both ways, and
//! property tests that no body, target or JSON value makes the parser panic.

use hyper::header::{HeaderMap, HeaderValue};
use hyper::Method;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::aws_json::calls::Call;
use crate::aws_json::operation::{Check, Operation};
use crate::aws_json::shapes::*;

fn headers(target: &str, content_type: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(target) {
        h.insert(TARGET_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(CONTENT_TYPE, v);
    }
    h
}

fn rejected_name(r: Result<(Operation, usize), Rejected>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(Rejected::Kms(e)) => e.name(),
        Err(Rejected::MediaType) => "UnsupportedMediaTypeException",
        Err(Rejected::TooLarge(_)) => "RequestEntityTooLargeException",
        Err(Rejected::TooSlow) => "RequestTimeoutException",
    }
}

#[test]
fn a_body_held_back_is_answered_408() {
    let r = Rejected::TooSlow.response("rid");
    assert_eq!(r.status().as_u16(), 408);
    assert_eq!(
        r.headers().get("x-amzn-ErrorType").map(|v| v.as_bytes()),
        Some(&b"RequestTimeoutException"[..])
    );
}

#[test]
fn a_well_formed_request_names_its_operation() {
    let h = headers("TrentService.Encrypt", "application/x-amz-json-1.1");
    assert_eq!(route(&Method::POST, "/", &h).unwrap().0, Operation::Encrypt);
    // Parameters and case do not matter in a media type.
    let h = headers(
        "TrentService.Decrypt",
        "Application/X-Amz-Json-1.1; charset=utf-8",
    );
    assert_eq!(route(&Method::POST, "/", &h).unwrap().0, Operation::Decrypt);
}

#[test]
fn envelope_faults_get_aws_names() {
    let json = "application/x-amz-json-1.1";
    let cases = [
        (
            Method::POST,
            "/",
            headers("", json),
            "UnknownOperationException",
        ),
        (
            Method::POST,
            "/",
            headers("TrentService.Nope", json),
            "UnknownOperationException",
        ),
        (
            Method::POST,
            "/",
            headers("KMS.Encrypt", json),
            "UnknownOperationException",
        ),
        (
            Method::GET,
            "/",
            headers("TrentService.Encrypt", json),
            "UnknownOperationException",
        ),
        (
            Method::POST,
            "/x",
            headers("TrentService.Encrypt", json),
            "UnknownOperationException",
        ),
        (
            Method::POST,
            "/",
            headers("TrentService.Encrypt", "application/json"),
            "UnsupportedMediaTypeException",
        ),
        (
            Method::POST,
            "/",
            headers("TrentService.Encrypt", ""),
            "UnsupportedMediaTypeException",
        ),
    ];
    for (m, path, h, name) in cases {
        assert_eq!(rejected_name(route(&m, path, &h)), name, "{m} {path} {h:?}");
    }
    let mut h = headers("TrentService.Encrypt", json);
    h.insert(CONTENT_LENGTH, HeaderValue::from(MAX_BODY + 1));
    assert_eq!(
        rejected_name(route(&Method::POST, "/", &h)),
        "RequestEntityTooLargeException"
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(MAX_BODY));
    assert_eq!(rejected_name(route(&Method::POST, "/", &h)), "ok");
    // The batch calls take more, up to their own limit.
    let mut h = headers("TrentService.BatchEncrypt", json);
    h.insert(CONTENT_LENGTH, HeaderValue::from(MAX_BODY + 1));
    assert_eq!(rejected_name(route(&Method::POST, "/", &h)), "ok");
    h.insert(CONTENT_LENGTH, HeaderValue::from(MAX_BATCH_BODY));
    assert_eq!(
        body_limit(Operation::BatchEncrypt, &h).ok(),
        Some(MAX_BATCH_BODY)
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(MAX_BATCH_BODY + 1));
    assert_eq!(
        rejected_name(route(&Method::POST, "/", &h)),
        "RequestEntityTooLargeException"
    );
    // Without a declared length, a body may have up to the operation's limit.
    let h = headers("TrentService.BatchDecrypt", json);
    assert_eq!(
        body_limit(Operation::BatchDecrypt, &h).ok(),
        Some(MAX_BATCH_BODY)
    );
    assert_eq!(body_limit(Operation::Decrypt, &h).ok(), Some(MAX_BODY));
}

#[test]
fn bad_json_is_a_serialization_exception_that_does_not_echo_the_input() {
    for body in [
        &b"{"[..],
        b"not json",
        b"[1,2]",
        b"{\"KeyId\": 4242}",
        b"{\"Plaintext\": \"SECRET!!\"}",
    ] {
        let e = decode::<EncryptRequest>(body).unwrap_err();
        assert_eq!(e.name(), "SerializationException");
        let m = e.to_string();
        assert!(!m.contains("SECRET") && !m.contains("4242"), "{m}");
    }
    // A wrong type deep inside (a context value that is a number).
    let e = decode::<EncryptRequest>(br#"{"EncryptionContext": {"a": 1}}"#).unwrap_err();
    assert_eq!(e.name(), "SerializationException");
}

#[test]
fn an_empty_body_and_unknown_members_are_accepted_and_null_is_absent() {
    let r: ListKeysRequest = decode(b"").unwrap();
    assert!(r.limit.is_none());
    let r: ListKeysRequest = decode(br#"{"Limit": 5, "SomethingNew": [1, {"x": null}]}"#).unwrap();
    assert_eq!(r.limit, Some(5));
    let r: DescribeKeyRequest = decode(br#"{"KeyId": null}"#).unwrap();
    assert!(r.key_id.is_none());
}

#[test]
fn missing_required_members_are_validation_errors_in_aws_words() {
    let e = decode::<EncryptRequest>(b"{}")
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(e.name(), "ValidationException");
    assert_eq!(
        e.to_string(),
        "2 validation errors detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null; \
         Value null at 'plaintext' failed to satisfy constraint: Member must not be null"
    );
    let e = Operation::DescribeKey.visit(Check(b"{}")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"
    );
}

#[test]
fn members_p11kms_cannot_honour_are_refused_not_ignored() {
    let cases: [(Operation, Value); 5] = [
        (
            Operation::Decrypt,
            json!({"CiphertextBlob": "AA==", "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}}),
        ),
        (
            Operation::Encrypt,
            json!({"KeyId": "k", "Plaintext": "AA==", "DryRun": true}),
        ),
        (Operation::CreateKey, json!({"MultiRegion": true})),
        (
            Operation::CreateKey,
            json!({"Tags": [{"TagKey": "a", "TagValue": "b"}]}),
        ),
        (
            Operation::CreateGrant,
            json!({"KeyId": "k", "Operations": ["Decrypt"], "GranteeServicePrincipal": "s"}),
        ),
    ];
    for (op, body) in cases {
        let e = op.visit(Check(body.to_string().as_bytes())).unwrap_err();
        assert_eq!(e.name(), "UnsupportedOperationException", "{op:?} {body}");
    }
    // DryRun false is the default, not a dry run.
    let ok = json!({"KeyId": "k", "Plaintext": "AA==", "DryRun": false});
    Operation::Encrypt
        .visit(Check(ok.to_string().as_bytes()))
        .unwrap();
}

/// The Encrypt example of the AWS KMS API reference, as botocore sends it.
#[test]
fn encrypt_request_example_decodes_into_the_vault_input() {
    let body = json!({
        "KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab",
        "Plaintext": "VGhpcyBpcyBEYXkgMSBmb3IgdGhlIEludGVybmV0IEFjcXVpc2l0aW9uIFByb2plY3Qu",
        "EncryptionContext": {"Department": "10-1A"},
        "GrantTokens": ["t1"],
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"
    });
    let req: EncryptRequest = decode(body.to_string().as_bytes()).unwrap();
    assert_eq!(req.key_id(), "1234abcd-12ab-34cd-56ef-1234567890ab");
    let input = req.validate().unwrap();
    assert_eq!(
        input.plaintext.expose(),
        b"This is Day 1 for the Internet Acquisition Project."
    );
    assert_eq!(input.grant_tokens, vec!["t1"]);
    assert_eq!(input.algorithm, "SYMMETRIC_DEFAULT");
}

#[test]
fn answers_serialize_with_aws_member_names_base64_and_epoch_numbers() {
    let out = EncryptResponse {
        ciphertext_blob: vec![1, 2, 3],
        key_id: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
        encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
    };
    assert_eq!(
        serde_json::to_value(&out).unwrap(),
        json!({"CiphertextBlob": "AQID", "KeyId": "arn:aws:kms:us-east-1:111122223333:key/k", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
    );
    let out = DecryptResponse {
        key_id: "k".into(),
        plaintext: crate::domain::Plaintext::new(b"hi".to_vec()),
        encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
    };
    assert_eq!(serde_json::to_value(&out).unwrap()["Plaintext"], "aGk=");
    assert!(
        !format!("{out:?}").contains("hi\""),
        "Debug shows only the length"
    );
    let out = ListKeysResponse {
        keys: vec![KeyListEntry {
            key_id: "k".into(),
            key_arn: "a".into(),
        }],
        next_marker: None,
        truncated: false,
    };
    assert_eq!(
        serde_json::to_value(&out).unwrap(),
        json!({"Keys": [{"KeyId": "k", "KeyArn": "a"}], "Truncated": false})
    );
    let out = ScheduleKeyDeletionResponse {
        key_id: "k".into(),
        deletion_date: 1_700_000_000.5,
        key_state: "PendingDeletion".into(),
        pending_window_in_days: 7,
    };
    assert_eq!(
        serde_json::to_value(&out).unwrap()["DeletionDate"],
        json!(1_700_000_000.5)
    );
    let out = GenerateDataKeyResponse {
        ciphertext_blob: vec![0],
        plaintext: None,
        key_id: "k".into(),
    };
    assert_eq!(
        serde_json::to_value(&out).unwrap(),
        json!({"CiphertextBlob": "AA==", "KeyId": "k"})
    );
}

#[test]
fn key_metadata_uses_aws_spelling() {
    let m = KeyMetadata {
        aws_account_id: "111122223333".into(),
        key_id: "k".into(),
        arn: "a".into(),
        creation_date: 1.0,
        enabled: true,
        description: String::new(),
        key_usage: "ENCRYPT_DECRYPT".into(),
        key_state: "Enabled".into(),
        deletion_date: None,
        origin: "AWS_KMS".into(),
        key_manager: "CUSTOMER".into(),
        customer_master_key_spec: "SYMMETRIC_DEFAULT".into(),
        key_spec: "SYMMETRIC_DEFAULT".into(),
        encryption_algorithms: vec!["SYMMETRIC_DEFAULT".into()],
        signing_algorithms: Vec::new(),
        mac_algorithms: Vec::new(),
        key_agreement_algorithms: Vec::new(),
        multi_region: false,
        expiration_model: None,
        valid_to: None,
    };
    let v = serde_json::to_value(&m).unwrap();
    for member in [
        "AWSAccountId",
        "KeyId",
        "Arn",
        "CreationDate",
        "KeyManager",
        "CustomerMasterKeySpec",
        "EncryptionAlgorithms",
        "MultiRegion",
    ] {
        assert!(v.get(member).is_some(), "{member} in {v}");
    }
    assert!(v.get("DeletionDate").is_none());
    assert!(v.get("ValidTo").is_none() && v.get("ExpirationModel").is_none());
}

#[test]
fn an_ok_answer_has_the_protocol_headers() {
    let r = ok(&Empty {}, "rid");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], CONTENT_TYPE_JSON);
    assert_eq!(r.headers()["x-amzn-requestid"], "rid");
}

/// Arbitrary JSON, nested a few levels, with the member names the shapes use so that
/// values reach the typed fields.
fn arb_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "KeyId",
        "Plaintext",
        "CiphertextBlob",
        "EncryptionContext",
        "GrantTokens",
        "Limit",
        "Marker",
        "Tags",
        "TagKey",
        "TagValue",
        "Operations",
        "Constraints",
        "NumberOfBytes",
        "DryRun",
        "Recipient",
        "Policy",
        "PrincipalArn",
        "AliasName",
        "TargetKeyId",
        "DestinationKeyId",
        "EncryptionContextSubset",
        "PendingWindowInDays",
        "ImportToken",
        "EncryptedKeyMaterial",
        "ValidTo",
        "ExpirationModel",
        "WrappingAlgorithm",
        "WrappingKeySpec",
        "ImportType",
        "x",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[A-Za-z0-9+/=]{0,12}".prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..6).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #[test]
    fn no_body_makes_any_operation_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        for op in Operation::ALL {
            let _ = op.visit(Check(&body));
        }
    }

    #[test]
    fn no_json_value_makes_any_operation_panic(v in arb_json()) {
        let body = v.to_string();
        for op in Operation::ALL {
            if let Err(e) = op.visit(Check(body.as_bytes())) {
                // Only the names the parser and validation may give.
                prop_assert!(
                    ["SerializationException", "ValidationException", "UnsupportedOperationException"]
                        .contains(&e.name()),
                    "{}: {}", op.name(), e.name()
                );
            }
        }
    }

    #[test]
    fn no_target_or_content_type_makes_routing_panic(
        target in ".{0,40}",
        suffix in "[A-Za-z]{0,30}",
        content_type in ".{0,40}",
        path in "/.{0,8}",
        len in any::<u64>(),
    ) {
        for t in [target.clone(), format!("TrentService.{suffix}")] {
            let mut h = headers(&t, &content_type);
            h.insert(CONTENT_LENGTH, HeaderValue::from(len));
            let _ = route(&Method::POST, &path, &h);
            let _ = route(&Method::POST, "/", &h);
        }
    }
}

#[tokio::test]
async fn large_bodies_share_a_budget_and_small_ones_need_none() {
    let budget = BodyBudget::new(std::time::Duration::from_secs(30));
    assert!(budget.room(MAX_BODY).await.is_none());
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(budget.room(MAX_BATCH_BODY).await.unwrap());
    }
    let ninth = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        budget.room(MAX_BATCH_BODY),
    )
    .await;
    assert!(ninth.is_err(), "the budget holds eight full batch bodies");
    assert!(
        budget.room(MAX_BODY).await.is_none(),
        "small bodies never wait"
    );
    held.pop();
    assert!(budget.room(MAX_BODY + 1).await.is_some());
}

#[tokio::test]
async fn an_answer_larger_than_its_first_buffer_is_whole() {
    use http_body_util::BodyExt as _;
    let big = json!({"Results": vec!["p".repeat(1000); 100]});
    let r = ok(&big, "rid");
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    assert!(bytes.len() > 100_000);
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), big);
}
