//! AWS JSON 1.1 requests as the listener reads them before it knows the caller
//! (`check_aws_json_request`: route by `X-Amz-Target`, body limit, JSON decoding into
//! the operation's request shape, required and unsupported members). The input is the
//! `X-Amz-Target` value, a newline, then the body. Whatever the bytes:
//! - it answers without panicking;
//! - a request it accepts is the operation its target names;
//! - a refusal is an AWS error answer: a JSON object with `__type` and `message`, one of
//!   the names a request can earn before the vault (unknown operation, too large,
//!   serialization, validation, unsupported member), with AWS's status for it;
//! - the message never echoes the body: a SerializationException says where, never
//!   what, and no message holds a string value of the body (16 characters or more, so
//!   that a value cannot match the fixed wording by chance).

use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Method;
use serde_json::Value;

/// Every string value (not member name) in a JSON document.
fn string_values<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| string_values(x, out)),
        Value::Object(m) => m.values().for_each(|x| string_values(x, out)),
        _ => {}
    }
}

/// The target and body in `data`, and the request's headers; None when the target is
/// not a header value.
fn request(data: &[u8]) -> Option<(&[u8], &[u8], HeaderMap)> {
    let (target, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-amz-target", HeaderValue::from_bytes(target).ok()?);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    Some((target, body, headers))
}

/// True when `data` is a request the listener would run (the `valid-*` seeds must
/// stay so).
pub fn accepted(data: &[u8]) -> bool {
    request(data).is_some_and(|(_, body, headers)| {
        p11kms::check_aws_json_request(&Method::POST, "/", &headers, body).is_ok()
    })
}

/// See the module doc.
pub fn check(data: &[u8]) {
    let Some((target, body, headers)) = request(data) else {
        return;
    };
    let (status, answer) = match p11kms::check_aws_json_request(&Method::POST, "/", &headers, body)
    {
        Ok(name) => {
            assert_eq!(
                target,
                format!("TrentService.{name}").as_bytes(),
                "a request ran as another operation than its target names"
            );
            return;
        }
        Err(refused) => refused,
    };
    let answer: Value = serde_json::from_slice(&answer)
        .unwrap_or_else(|e| panic!("an error answer is not JSON: {e}"));
    let name = answer["__type"]
        .as_str()
        .expect("an error answer without __type");
    let message = answer["message"]
        .as_str()
        .expect("an error answer without message");
    let expected_status = match name {
        "RequestEntityTooLargeException" => 413,
        "UnknownOperationException"
        | "SerializationException"
        | "ValidationException"
        | "UnsupportedOperationException" => 400,
        other => panic!("{other} before any vault work"),
    };
    assert_eq!(
        status, expected_status,
        "{name} answered with status {status}"
    );
    if name == "SerializationException" {
        let where_only = [
            "a member has the wrong type or an invalid value (line ",
            "the body is not valid JSON (line ",
        ]
        .iter()
        .any(|p| message.starts_with(p));
        assert!(
            where_only && message.ends_with(')'),
            "SerializationException says: {message}"
        );
    }
    if let Ok(doc) = serde_json::from_slice::<Value>(body) {
        let mut values = Vec::new();
        string_values(&doc, &mut values);
        for v in values.into_iter().filter(|v| v.chars().count() >= 16) {
            assert!(
                !message.contains(v),
                "{name} echoes the body's {v:?}: {message}"
            );
        }
    }
}
