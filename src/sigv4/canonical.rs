//! The canonical request of SigV4: method, URI, query, the signed headers with their
//! values, and the payload's hash, each in the one form both sides compute alike.

use std::fmt::Write as _;

use axum::http::request::Parts;

/// The canonical request, or None when a header the signature names is not in the
/// request (it cannot have been signed as sent).
pub(super) fn request(parts: &Parts, signed: &[&str], body_sha256: &str) -> Option<String> {
    let mut out = String::with_capacity(256);
    out.push_str(parts.method.as_str());
    out.push('\n');
    // Services other than S3 encode the path (as sent, already percent-encoded) once
    // more, keeping the slashes.
    encode_into(&mut out, parts.uri.path().as_bytes(), true);
    out.push('\n');
    out.push_str(&query(parts.uri.query().unwrap_or("")));
    out.push('\n');
    for name in signed {
        out.push_str(name);
        out.push(':');
        header_value(&mut out, parts, name)?;
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.join(";"));
    out.push('\n');
    out.push_str(body_sha256);
    Some(out)
}

/// The values of one header, trimmed, inner runs of spaces made one, joined by commas.
/// `host` falls back to the URI's authority (HTTP/2 sends `:authority`, not `Host`).
fn header_value(out: &mut String, parts: &Parts, name: &str) -> Option<()> {
    let mut values = parts.headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        if name == "host" {
            out.push_str(parts.uri.authority()?.as_str());
            return Some(());
        }
        return None;
    }
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let text = std::str::from_utf8(value.as_bytes()).ok()?;
        let mut last_space = false;
        for c in text.trim().chars() {
            if c == ' ' {
                if !last_space {
                    out.push(' ');
                }
                last_space = true;
            } else {
                out.push(c);
                last_space = false;
            }
        }
    }
    Some(())
}

/// The query's pairs decoded, encoded again strictly, sorted by name then value.
fn query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let mut key = String::new();
            let mut value = String::new();
            encode_into(&mut key, &percent_decode(k), false);
            encode_into(&mut value, &percent_decode(v), false);
            (key, value)
        })
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// RFC 3986 encoding: unreserved characters stay, every other byte is `%XX`.
fn encode_into(out: &mut String, bytes: &[u8], keep_slash: bool) {
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `%XX` → the byte; anything malformed is kept as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
