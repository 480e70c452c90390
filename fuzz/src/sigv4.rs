//! SigV4 as the AWS JSON listener checks it (`verify_sigv4_request`: the
//! `Authorization` header's form, the credential scope, the date and its skew, the
//! canonical request, the signature), for service `kms` in us-east-1 at a fixed time
//! (2026-11-30T19:35:03Z) with a fixed secret; the seeds are requests botocore signed
//! with it (src/sigv4/tests.rs). The input is a request as text: `METHOD URI`, header
//! lines `name: value`, an empty line, the body. Whatever the bytes:
//! - the check answers without panicking, the same way twice;
//! - a refusal is one of the four AWS names, with a message of printable ASCII of
//!   bounded length (caller input is shown cut short and filtered, never raw);
//! - for a request whose path, query and signed header values are plain (unreserved
//!   characters, printable ASCII; where the canonical form has one reading), an
//!   independent canonicalization written from the AWS documentation agrees: a
//!   signature the server accepts is the one it computes, and the request re-signed
//!   with the one it computes is accepted.

use std::time::{Duration, SystemTime};

use aws_lc_rs::{digest, hmac};
use hyper::http::request::Parts;
use hyper::http::{HeaderName, HeaderValue, Method, Request, Uri};

/// The secret of the access key in the seeds (AWS's documentation example).
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// The region the server is in.
pub const REGION: &str = "us-east-1";
/// The server's clock: 2026-11-30T19:35:03Z, when the seeds were signed.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_067_303)
}

/// What a refusal's message may be at most (the longest fixed text with 64 characters
/// of caller input is about 300).
const MAX_MESSAGE: usize = 600;

/// The request in `data`, or None when it is not one HTTP could carry.
fn request(data: &[u8]) -> Option<(Parts, &[u8])> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &b""[..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let first = lines.next()?;
    let mut words = first.splitn(3, |b| *b == b' ');
    let method = Method::from_bytes(words.next()?).ok()?;
    let uri = Uri::try_from(words.next()?).ok()?;
    let mut builder = Request::builder().method(method).uri(uri);
    for line in lines {
        let colon = line.iter().position(|b| *b == b':')?;
        let name = HeaderName::from_bytes(line[..colon].trim_ascii()).ok()?;
        // As an HTTP/1.1 parser hands it over: without the spaces around it.
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
        builder = builder.header(name, value);
    }
    let parts = builder.body(()).ok()?.into_parts().0;
    Some((parts, body))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// The `Authorization` header's three parameters, read plainly (only asked of a header
/// the server parsed).
struct Params<'a> {
    credential: &'a str,
    signed: &'a str,
    signature: &'a str,
}

fn params(header: &str) -> Option<Params<'_>> {
    let rest = header.trim().strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=')? {
            ("Credential", v) => credential = Some(v),
            ("SignedHeaders", v) => signed = Some(v),
            ("Signature", v) => signature = Some(v),
            _ => return None,
        }
    }
    Some(Params {
        credential: credential?,
        signed: signed?,
        signature: signature?,
    })
}

/// The signature of the request per the AWS documentation ("Create a canonical request
/// for Signature Version 4", "Create a string to sign", "Calculate the signature"),
/// when the request is plain enough for the canonical form to have one reading.
fn reference_signature(parts: &Parts, body: &[u8], p: &Params<'_>) -> Option<String> {
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    if !path.bytes().all(|b| unreserved(b) || b == b'/')
        || !query
            .bytes()
            .all(|b| unreserved(b) || b == b'=' || b == b'&')
    {
        return None;
    }
    // Query: names and values URI-encoded (here: only an `=` inside a value needs it),
    // pairs sorted by name, then value.
    let encode = |s: &str| s.replace('=', "%3D");
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // Headers: each signed name with its values trimmed, inner runs of spaces made one,
    // several values joined by commas; Host from the authority when not sent.
    let mut headers = String::new();
    for name in p.signed.split(';') {
        let mut values = Vec::new();
        for v in parts.headers.get_all(name) {
            let v = v.as_bytes();
            if !v.iter().all(|b| (b' '..=b'~').contains(b)) {
                return None;
            }
            let text = std::str::from_utf8(v).ok()?;
            values.push(
                text.split(' ')
                    .filter(|w| !w.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        if values.is_empty() && name == "host" {
            values.push(parts.uri.authority()?.as_str().to_owned());
        }
        if values.is_empty() {
            // A header the request does not carry cannot have been signed.
            return None;
        }
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical = format!(
        "{}\n{path}\n{}\n{headers}\n{}\n{}",
        parts.method,
        query.join("&"),
        p.signed,
        sha256_hex(body)
    );
    let timestamp = parts
        .headers
        .get("x-amz-date")
        .or_else(|| parts.headers.get("date"))?
        .to_str()
        .ok()?;
    let (_, scope) = p.credential.split_once('/')?;
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{SECRET}").as_bytes());
    for part in scope.split('/') {
        key = hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(&key, part.as_bytes()).as_ref(),
        );
    }
    Some(hex(hmac::sign(&key, to_sign.as_bytes()).as_ref()))
}

/// True when `data` is a request whose signature the server accepts (the `valid-*`
/// seeds must stay so).
pub fn accepted(data: &[u8]) -> bool {
    request(data).is_some_and(|(parts, body)| {
        p11kms::verify_sigv4_request(&parts, REGION, now(), SECRET, body).is_ok()
    })
}

/// The server's message for a signature that does not match (parse passed).
const MISMATCH: &str = "The request signature we calculated does not match";

/// See the module doc.
pub fn check(data: &[u8]) {
    let Some((mut parts, body)) = request(data) else {
        return;
    };
    let verify = |parts: &Parts| p11kms::verify_sigv4_request(parts, REGION, now(), SECRET, body);
    let result = verify(&parts);
    assert_eq!(result, verify(&parts), "the same request checked two ways");
    if let Err((name, message)) = &result {
        assert!(
            [
                "MissingAuthenticationToken",
                "IncompleteSignature",
                "InvalidSignatureException",
                "UnrecognizedClientException"
            ]
            .contains(name),
            "refused as {name}"
        );
        assert!(
            message.len() <= MAX_MESSAGE && message.bytes().all(|b| (b' '..=b'~').contains(&b)),
            "{name}'s message is not short printable text: {message:?}"
        );
    }
    let signature_checked = match &result {
        Ok(_) => true,
        Err((_, message)) => message.starts_with(MISMATCH),
    };
    if !signature_checked {
        return;
    }
    let Some(header) = parts
        .headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
    else {
        panic!("a request without an Authorization header got as far as its signature");
    };
    let Some(p) = params(header) else {
        panic!("the server parsed an Authorization header the plain reading cannot: {header:?}");
    };
    let Some(reference) = reference_signature(&parts, body, &p) else {
        return;
    };
    if result.is_ok() {
        assert_eq!(
            p.signature.to_ascii_lowercase(),
            reference,
            "the server accepted a signature other than the documented one"
        );
        return;
    }
    let resigned = format!(
        "AWS4-HMAC-SHA256 Credential={}, SignedHeaders={}, Signature={reference}",
        p.credential, p.signed
    );
    let Ok(value) = HeaderValue::from_str(&resigned) else {
        panic!("a re-signed Authorization header is not a header value");
    };
    parts.headers.insert("authorization", value);
    let again = verify(&parts);
    assert!(
        again.is_ok(),
        "a request signed as the AWS documentation says is refused: {again:?}"
    );
}
