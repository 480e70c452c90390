//! Signatures made by botocore (`botocore.auth.SigV4Auth`, the AWS SDK for Python's
//! signer) for fixed requests, checked here; then each part tampered with.

use std::time::{Duration, SystemTime};

use axum::http::request::Parts;
use axum::http::Request;

use super::*;
use crate::domain::sha256_hex;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const BODY: &[u8] = br#"{"KeyId":"alias/demo","Plaintext":"aGVsbG8="}"#;
const DATE: &str = "20261130T193503Z";
const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261130/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f";
/// Signed by botocore for `POST /a%20b/?b=2&a=1&c=x%2Fy` with a header `X-Custom: "  a   b  "`.
const AUTH_QUERY: &str = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261130/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target;x-custom, Signature=3d0a8d758909088894b803030eb1e17f8287a9dcba9cba22d8559ade4009cbac";

/// 2026-11-30T19:35:03Z plus `offset` seconds.
fn at(offset: i64) -> SystemTime {
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_067_303);
    if offset >= 0 {
        base + Duration::from_secs(offset.unsigned_abs())
    } else {
        base - Duration::from_secs(offset.unsigned_abs())
    }
}

fn expect(now: SystemTime) -> Expect<'static> {
    Expect {
        region: "us-east-1",
        service: "kms",
        now,
        must_sign: super::KMS_MUST_SIGN,
    }
}

fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = Request::builder().method("POST").uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn encrypt_request(auth: &str) -> Parts {
    parts(
        "/",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "TrentService.Encrypt"),
            ("x-amz-date", DATE),
            ("host", "kms.example:8443"),
            ("authorization", auth),
        ],
    )
}

fn check(p: &Parts, now: SystemTime, body: &[u8]) -> Result<(), SigV4Error> {
    let presented = Presented::parse(p, &expect(now))?;
    assert_eq!(presented.access_key_id(), "AKIAIOSFODNN7EXAMPLE");
    presented.verify(SECRET, &sha256_hex(body))
}

#[test]
fn the_epoch_offset_is_the_signing_date() {
    let t = time::OffsetDateTime::from(at(0));
    assert_eq!((t.year(), t.month() as u8, t.day()), (2026, 11, 30));
    assert_eq!((t.hour(), t.minute(), t.second()), (19, 35, 3));
}

#[test]
fn botocore_signature_verifies() {
    check(&encrypt_request(AUTH), at(0), BODY).unwrap();
    // Anywhere inside the window, either side.
    check(&encrypt_request(AUTH), at(299), BODY).unwrap();
    check(&encrypt_request(AUTH), at(-299), BODY).unwrap();
}

#[test]
fn path_query_and_header_spaces_are_canonicalized_like_botocore() {
    let p = parts(
        "/a%20b/?b=2&a=1&c=x%2Fy",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "TrentService.Encrypt"),
            ("x-custom", "  a   b  "),
            ("x-amz-date", DATE),
            ("host", "kms.example:8443"),
            ("authorization", AUTH_QUERY),
        ],
    );
    check(&p, at(0), b"{}").unwrap();
}

#[test]
fn host_may_come_from_the_authority_as_in_http2() {
    let p = parts(
        "https://kms.example:8443/",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "TrentService.Encrypt"),
            ("x-amz-date", DATE),
            ("authorization", AUTH),
        ],
    );
    check(&p, at(0), BODY).unwrap();
}

#[test]
fn wrong_secret_tampered_body_or_signed_header_is_invalid_signature() {
    let p = encrypt_request(AUTH);
    let presented = Presented::parse(&p, &expect(at(0))).unwrap();
    let wrong = presented.verify(
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ",
        &sha256_hex(BODY),
    );
    assert_eq!(wrong.unwrap_err().aws_name(), "InvalidSignatureException");
    let tampered = check(
        &p,
        at(0),
        br#"{"KeyId":"alias/demo","Plaintext":"aGVsbG9="}"#,
    );
    assert_eq!(
        tampered.unwrap_err().aws_name(),
        "InvalidSignatureException"
    );
    let mut p = encrypt_request(AUTH);
    p.headers
        .insert("x-amz-target", "TrentService.Decrypt".parse().unwrap());
    assert_eq!(
        check(&p, at(0), BODY).unwrap_err().aws_name(),
        "InvalidSignatureException"
    );
    // A signed header that is not in the request.
    let mut p = encrypt_request(AUTH);
    p.headers.remove("x-amz-target");
    assert_eq!(
        check(&p, at(0), BODY).unwrap_err().aws_name(),
        "InvalidSignatureException"
    );
    // A declared body hash that is not the body's (and, unsigned, not allowed at all).
    let mut p = encrypt_request(AUTH);
    p.headers.insert(
        "x-amz-content-sha256",
        sha256_hex(b"other").parse().unwrap(),
    );
    assert_eq!(
        check(&p, at(0), BODY).unwrap_err().aws_name(),
        "IncompleteSignature"
    );
}

#[test]
fn a_date_outside_five_minutes_is_refused_either_way() {
    let e = check(&encrypt_request(AUTH), at(301), BODY).unwrap_err();
    assert_eq!(e.aws_name(), "InvalidSignatureException");
    assert!(
        e.to_string()
            .starts_with("Signature expired: 20261130T193503Z"),
        "{e}"
    );
    let e = check(&encrypt_request(AUTH), at(-301), BODY).unwrap_err();
    assert!(
        e.to_string().starts_with("Signature not yet current"),
        "{e}"
    );
}

#[test]
fn signed_header_values_are_bounded() {
    // One signed header far larger than any SDK sends.
    let mut p =
        encrypt_request(&AUTH.replace("x-amz-target, Signature", "x-amz-target;x-big, Signature"));
    p.headers
        .insert("x-big", "a".repeat(20_000).parse().unwrap());
    let e = check(&p, at(0), BODY).unwrap_err();
    assert_eq!(e.aws_name(), "IncompleteSignature", "{e}");
}

#[test]
fn wrong_region_or_service_is_refused_before_any_secret_is_needed() {
    let e = Presented::parse(
        &encrypt_request(&AUTH.replace("us-east-1", "eu-west-1")),
        &expect(at(0)),
    )
    .unwrap_err();
    assert_eq!(e.aws_name(), "InvalidSignatureException");
    assert!(e.to_string().contains("valid region"), "{e}");
    let e = Presented::parse(
        &encrypt_request(&AUTH.replace("/kms/", "/s3/")),
        &expect(at(0)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("correct service: 'kms'"), "{e}");
    let e = Presented::parse(
        &encrypt_request(&AUTH.replace("20261130/", "20261129/")),
        &expect(at(0)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("Date in Credential scope"), "{e}");
}

#[test]
fn missing_or_malformed_authorization() {
    let mut p = encrypt_request(AUTH);
    p.headers.remove("authorization");
    let e = Presented::parse(&p, &expect(at(0))).unwrap_err();
    assert_eq!(e.aws_name(), "MissingAuthenticationToken");
    for bad in [
        "AWS4-HMAC-SHA1 Credential=A/20261130/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms/aws4_request, SignedHeaders=host",
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f",
        "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms, SignedHeaders=host, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f",
        "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=xyz",
        "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms/aws4_request, SignedHeaders=Host, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f",
        "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms/aws4_request, SignedHeaders=x-amz-date, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f",
        "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f",
        "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms/aws4_request, Credential=AKID/20261130/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f",
        "AWS4-HMAC-SHA256",
        "",
        // The operation and the body's type left unsigned: the request could be
        // replayed as another operation.
        "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f",
        "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f",
        // Unsorted, or a name twice.
        "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms/aws4_request, SignedHeaders=host;content-type;x-amz-date;x-amz-target, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f",
        "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;host;x-amz-date;x-amz-target, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f",
    ] {
        let e = Presented::parse(&encrypt_request(bad), &expect(at(0))).unwrap_err();
        assert_eq!(e.aws_name(), "IncompleteSignature", "{bad:?}: {e}");
    }
    // No date header at all.
    let mut p = encrypt_request(AUTH);
    p.headers.remove("x-amz-date");
    let e = Presented::parse(&p, &expect(at(0))).unwrap_err();
    assert_eq!(e.aws_name(), "IncompleteSignature");
    // An access key id that cannot be one of ours.
    let e = Presented::parse(
        &encrypt_request(&AUTH.replace("AKIAIOSFODNN7EXAMPLE", "AKIA+/x")),
        &expect(at(0)),
    )
    .unwrap_err();
    assert!(
        matches!(e, SigV4Error::Incomplete(_) | SigV4Error::Unrecognized(_)),
        "{e}"
    );
}

proptest::proptest! {
    /// Whatever the header says, parsing answers with an error or a result, never a
    /// panic.
    #[test]
    fn any_authorization_header_parses_or_is_refused(header in "\\PC{0,300}", date in "\\PC{0,24}") {
        let mut b = Request::builder().method("POST").uri("/");
        if let Ok(v) = axum::http::HeaderValue::from_str(&header) {
            b = b.header("authorization", v);
        }
        if let Ok(v) = axum::http::HeaderValue::from_str(&date) {
            b = b.header("x-amz-date", v);
        }
        let p = b.header("host", "h").body(()).unwrap().into_parts().0;
        if let Ok(presented) = Presented::parse(&p, &expect(at(0))) {
            let _ = presented.verify(SECRET, &sha256_hex(b""));
        }
    }

    /// Any structurally plausible header, with parts drawn from likely pieces.
    #[test]
    fn plausible_headers_never_panic(
        key in "[A-Z0-9]{0,24}",
        day in "[0-9]{0,9}",
        signed in "[a-z;-]{0,40}",
        sig in "[0-9a-fA-F]{0,70}",
    ) {
        let header = format!("AWS4-HMAC-SHA256 Credential={key}/{day}/us-east-1/kms/aws4_request, SignedHeaders={signed}, Signature={sig}");
        let p = encrypt_request(&header);
        if let Ok(presented) = Presented::parse(&p, &expect(at(0))) {
            let _ = presented.verify(SECRET, &sha256_hex(b""));
        }
    }
}
