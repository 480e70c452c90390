//! AWS Signature Version 4, the server's side: checks that a request was signed with
//! the secret of the access key it names, for this service and region, within the
//! clock-skew window. Pure: no I/O; the caller looks the secret up between the two
//! steps.
//!
//! 1. [`Presented::parse`] reads the `Authorization` header and the request date and
//!    checks what needs no secret: the header's form, the credential scope (date,
//!    region, service, terminator) and the clock skew. It yields the access key id.
//! 2. [`Presented::verify`] rebuilds the canonical request and the string to sign,
//!    derives the signing key from the secret and compares the signature in constant
//!    time.
//!
//! Only the header form of SigV4 (not presigned query strings) is accepted: the AWS SDKs
//! and CLI sign KMS calls that way.

mod authorization;
mod canonical;

use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use axum::http::request::Parts;
use time::OffsetDateTime;

use crate::domain::sha256_hex;
use authorization::Authorization;

/// How far the request's date may be from the server's clock, either way (AWS: 5 min).
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Headers that must be signed when a KMS request carries them: the date, the operation
/// and the body's type (lowercase name, name as shown in the message).
pub(crate) const KMS_MUST_SIGN: &[(&str, &str)] = &[
    ("x-amz-date", "X-Amz-Date"),
    ("x-amz-target", "X-Amz-Target"),
    ("content-type", "Content-Type"),
    ("x-amz-content-sha256", "X-Amz-Content-Sha256"),
    ("x-amz-security-token", "X-Amz-Security-Token"),
];

/// The most bytes of signed header values a canonical request may hold: far above what
/// an SDK signs (a few hundred), far below what a hostile header list could cost.
const MAX_SIGNED_BYTES: usize = 16 * 1024;

/// The one signing algorithm of SigV4 with HMAC.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a signature was refused. Each variant carries the message the caller gets;
/// none of them holds a secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SigV4Error {
    /// No `Authorization` header at all (AWS: MissingAuthenticationToken).
    #[error("{0}")]
    Missing(String),
    /// The header is there but not a whole SigV4 authorization, or the date is missing
    /// (AWS: IncompleteSignature).
    #[error("{0}")]
    Incomplete(String),
    /// The signature does not match, the scope names another region or service, or the
    /// date is outside the window (AWS: InvalidSignatureException).
    #[error("{0}")]
    Invalid(String),
    /// The access key or security token is not one this service issued (AWS:
    /// UnrecognizedClientException).
    #[error("{0}")]
    Unrecognized(String),
}

impl SigV4Error {
    /// The AWS error name the client sees (the JSON listener maps each variant to the
    /// vault's error of that name).
    pub(crate) fn aws_name(&self) -> &'static str {
        match self {
            Self::Missing(_) => "MissingAuthenticationToken",
            Self::Incomplete(_) => "IncompleteSignature",
            Self::Invalid(_) => "InvalidSignatureException",
            Self::Unrecognized(_) => "UnrecognizedClientException",
        }
    }

    /// The message for an access key id or token this service does not know.
    pub(crate) fn unrecognized() -> Self {
        Self::Unrecognized("The security token included in the request is invalid.".into())
    }
}

/// What the server expects of a signature.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect<'a> {
    /// The configured region, e.g. `us-east-1`.
    pub(crate) region: &'a str,
    /// The signing name of the service: `kms`.
    pub(crate) service: &'a str,
    /// The server's clock.
    pub(crate) now: SystemTime,
    /// Headers that must be signed when the request carries them: those that choose
    /// what the request does ([`KMS_MUST_SIGN`] for KMS, whose operation is a header).
    pub(crate) must_sign: &'a [(&'a str, &'a str)],
}

/// A request's signature as presented, checked for form, scope and date.
#[derive(Debug)]
pub(crate) struct Presented<'r> {
    auth: Authorization<'r>,
    /// `X-Amz-Date` (or `Date`) as it was sent: it is part of the string to sign.
    timestamp: &'r str,
    parts: &'r Parts,
}

impl<'r> Presented<'r> {
    /// Reads and checks the signature's form, scope and date.
    pub(crate) fn parse(parts: &'r Parts, expect: &Expect<'_>) -> Result<Self, SigV4Error> {
        let header = match parts.headers.get_all("authorization").iter().count() {
            0 => return Err(SigV4Error::Missing("Missing Authentication Token".into())),
            1 => parts.headers.get("authorization"),
            _ => {
                return Err(SigV4Error::Incomplete(
                    "The request carries more than one Authorization header.".into(),
                ))
            }
        };
        let header = header.and_then(|h| h.to_str().ok()).ok_or_else(|| {
            SigV4Error::Incomplete("The Authorization header is not text.".into())
        })?;
        let auth = Authorization::parse(header)?;
        let timestamp = request_date(parts)?;
        let signed_at = parse_timestamp(timestamp)?;
        auth.check_scope(timestamp, expect)?;
        if auth.signed_headers.iter().all(|h| *h != "host") {
            return Err(SigV4Error::Incomplete(
                "'Host' must be a 'SignedHeader' in the AWS Authorization.".into(),
            ));
        }
        // The headers that choose what the request does must be signed, or a captured
        // request could be replayed as another operation (the SDKs sign them all).
        for (name, shown) in expect.must_sign {
            if parts.headers.contains_key(*name) && auth.signed_headers.iter().all(|h| h != name) {
                return Err(SigV4Error::Incomplete(format!(
                    "'{shown}' must be a 'SignedHeader' in the AWS Authorization."
                )));
            }
        }
        check_skew(timestamp, signed_at, expect.now)?;
        Ok(Self {
            auth,
            timestamp,
            parts,
        })
    }

    /// The access key id the request names.
    pub(crate) fn access_key_id(&self) -> &'r str {
        self.auth.access_key_id
    }

    /// True when the request carries an `X-Amz-Security-Token` (temporary credentials).
    pub(crate) fn has_session_token(&self) -> bool {
        self.parts.headers.contains_key("x-amz-security-token")
    }

    /// Checks the signature against `secret`, over the request as received with a body
    /// whose SHA-256 (lowercase hex, `domain::sha256_hex`) is `body_sha256`.
    pub(crate) fn verify(&self, secret: &str, body_sha256: &str) -> Result<(), SigV4Error> {
        let mismatch = || {
            SigV4Error::Invalid(
                "The request signature we calculated does not match the signature you provided. \
                 Check your AWS Secret Access Key and signing method. Consult the service \
                 documentation for details."
                    .into(),
            )
        };
        // A body hash the client declared must be the body's; either way the body's
        // own hash is what the signature covers.
        if let Some(declared) = self.parts.headers.get("x-amz-content-sha256") {
            if declared.as_bytes() != body_sha256.as_bytes() {
                return Err(SigV4Error::Invalid(
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                        .into(),
                ));
            }
        }
        let request = canonical::request(self.parts, &self.auth.signed_headers, body_sha256)
            .ok_or_else(mismatch)?;
        if request.len() > MAX_SIGNED_BYTES {
            return Err(SigV4Error::Incomplete(
                "The signed headers are too large.".into(),
            ));
        }
        let to_sign = format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            self.timestamp,
            self.auth.scope(),
            sha256_hex(request.as_bytes()),
        );
        let key = signing_key(secret, &self.auth);
        // Constant time: the comparison reveals nothing about the expected signature.
        hmac::verify(&key, to_sign.as_bytes(), &self.auth.signature).map_err(|_| mismatch())
    }
}

/// Checks a request's signature as the AWS JSON listener does, for the service `kms`
/// in `region` at `now`, taking `secret` as the secret of whatever access key the
/// request names. Gives that access key id, or the AWS error name and message. For the
/// sigv4 fuzz target and its corpus replay (fuzz/src/sigv4.rs), which need the real
/// parser and canonicalization without a vault to look the secret up in; not an API.
#[doc(hidden)]
pub fn verify_request(
    parts: &Parts,
    region: &str,
    now: SystemTime,
    secret: &str,
    body: &[u8],
) -> Result<String, (&'static str, String)> {
    let expect = Expect {
        region,
        service: "kms",
        now,
        must_sign: KMS_MUST_SIGN,
    };
    let refused = |e: SigV4Error| (e.aws_name(), e.to_string());
    let presented = Presented::parse(parts, &expect).map_err(refused)?;
    presented
        .verify(secret, &sha256_hex(body))
        .map_err(refused)?;
    Ok(presented.access_key_id().to_owned())
}

/// `X-Amz-Date`, or `Date` when that is absent (as SigV4 allows).
fn request_date(parts: &Parts) -> Result<&str, SigV4Error> {
    parts
        .headers
        .get("x-amz-date")
        .or_else(|| parts.headers.get("date"))
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            SigV4Error::Incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                    .into(),
            )
        })
}

/// `20150830T123600Z` → the instant. Only the ISO 8601 basic form SigV4 signs with.
fn parse_timestamp(s: &str) -> Result<OffsetDateTime, SigV4Error> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, format)
        .map(time::PrimitiveDateTime::assume_utc)
        .map_err(|_| {
            SigV4Error::Incomplete(format!(
                "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
                printable(s)
            ))
        })
}

/// Refuses a date more than [`MAX_SKEW`] before or after `now`.
fn check_skew(sent: &str, signed_at: OffsetDateTime, now: SystemTime) -> Result<(), SigV4Error> {
    let now = OffsetDateTime::from(now);
    let skew = time::Duration::try_from(MAX_SKEW).unwrap_or(time::Duration::minutes(5));
    let show = |t: OffsetDateTime| {
        t.format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default()
    };
    if signed_at < now - skew {
        return Err(SigV4Error::Invalid(format!(
            "Signature expired: {sent} is now earlier than {} ({} - 5 min.)",
            show(now - skew),
            show(now)
        )));
    }
    if signed_at > now + skew {
        return Err(SigV4Error::Invalid(format!(
            "Signature not yet current: {sent} is still later than {} ({} + 5 min.)",
            show(now + skew),
            show(now)
        )));
    }
    Ok(())
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
fn signing_key(secret: &str, auth: &Authorization<'_>) -> hmac::Key {
    let mut seed = zeroize::Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    seed.extend_from_slice(b"AWS4");
    seed.extend_from_slice(secret.as_bytes());
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, &seed);
    for part in [auth.date, auth.region, auth.service, auth.terminator] {
        let tag = hmac::sign(&key, part.as_bytes());
        key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
    }
    key
}

/// Caller input shown in a message: printable ASCII only, cut short.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests;
