//! The `Authorization` header of a SigV4 request:
//! `AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/kms/aws4_request,
//! SignedHeaders=content-type;host;x-amz-date, Signature=<64 hex digits>`.

use super::{printable, Expect, SigV4Error, ALGORITHM};

/// The most headers a signature may cover; botocore signs four or five.
const MAX_SIGNED_HEADERS: usize = 64;

/// The parsed header. Borrows from the request.
#[derive(Debug)]
pub(super) struct Authorization<'r> {
    pub(super) access_key_id: &'r str,
    /// The scope: `YYYYMMDD`, region, service, `aws4_request`.
    pub(super) date: &'r str,
    pub(super) region: &'r str,
    pub(super) service: &'r str,
    pub(super) terminator: &'r str,
    /// Lowercase header names, in the order given.
    pub(super) signed_headers: Vec<&'r str>,
    /// The 32 bytes of the signature.
    pub(super) signature: Vec<u8>,
}

fn incomplete(what: &str) -> SigV4Error {
    SigV4Error::Incomplete(format!(
        "Authorization header requires '{what}' parameter. Authorization=AWS4-HMAC-SHA256 \
         Credential=<access key id>/<date>/<region>/<service>/aws4_request, \
         SignedHeaders=<headers>, Signature=<signature>"
    ))
}

impl<'r> Authorization<'r> {
    /// Parses the header's form; checks nothing that needs the request or the clock.
    pub(super) fn parse(header: &'r str) -> Result<Self, SigV4Error> {
        let (algorithm, rest) = header.trim().split_once(' ').unwrap_or((header, ""));
        if algorithm != ALGORITHM {
            return Err(SigV4Error::Incomplete(format!(
                "Unsupported AWS 'algorithm': '{}'.",
                printable(algorithm)
            )));
        }
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| {
                SigV4Error::Incomplete(format!(
                    "'{}' not a valid key=value pair (missing equal-sign) in Authorization header.",
                    printable(part)
                ))
            })?;
            let slot = match name {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => {
                    return Err(SigV4Error::Incomplete(format!(
                        "'{}' is not a parameter of the Authorization header.",
                        printable(name)
                    )))
                }
            };
            if slot.replace(value).is_some() {
                return Err(SigV4Error::Incomplete(format!(
                    "The Authorization header gives '{name}' twice."
                )));
            }
        }
        let credential = credential.ok_or_else(|| incomplete("Credential"))?;
        let signed = signed.ok_or_else(|| incomplete("SignedHeaders"))?;
        let signature = signature.ok_or_else(|| incomplete("Signature"))?;

        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, terminator] = scope.as_slice() else {
            return Err(SigV4Error::Incomplete(format!(
                "Credential must have exactly 5 slash-delimited elements, e.g. \
                 keyid/date/region/service/term, got '{}'",
                printable(credential)
            )));
        };
        if access_key_id.is_empty()
            || access_key_id.len() > 128
            || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(SigV4Error::unrecognized());
        }
        let signed_headers: Vec<&str> = signed.split(';').collect();
        // Sorted and each name once, as SigV4 builds it: a name listed many times would
        // make the canonical request copy its value as often (work for no signature).
        if signed_headers.len() > MAX_SIGNED_HEADERS
            || signed_headers.windows(2).any(|w| w.first() >= w.get(1))
            || signed_headers.iter().any(|h| {
                h.is_empty()
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
        {
            return Err(SigV4Error::Incomplete(format!(
                "SignedHeaders must be distinct lowercase header names, sorted, separated by ';', got '{}'",
                printable(signed)
            )));
        }
        let signature = decode_hex(signature).ok_or_else(|| {
            SigV4Error::Incomplete("Signature must be 64 hexadecimal digits.".into())
        })?;
        Ok(Self {
            access_key_id,
            date,
            region,
            service,
            terminator,
            signed_headers,
            signature,
        })
    }

    /// The scope must name the request's own date, this region and this service.
    pub(super) fn check_scope(
        &self,
        timestamp: &str,
        expect: &Expect<'_>,
    ) -> Result<(), SigV4Error> {
        let day = timestamp.get(..8).unwrap_or(timestamp);
        if self.date != day {
            return Err(SigV4Error::Invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
                 from HTTP: '{}' != '{}', from '{}'.",
                printable(self.date),
                printable(day),
                printable(timestamp)
            )));
        }
        if self.region != expect.region {
            return Err(SigV4Error::Invalid(format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                printable(self.region)
            )));
        }
        if self.service != expect.service {
            return Err(SigV4Error::Invalid(format!(
                "Credential should be scoped to correct service: '{}'. ",
                expect.service
            )));
        }
        if self.terminator != "aws4_request" {
            return Err(SigV4Error::Invalid(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ",
                printable(self.terminator)
            )));
        }
        Ok(())
    }

    /// `date/region/service/aws4_request`, as in the string to sign.
    pub(super) fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.date, self.region, self.service, self.terminator
        )
    }
}

/// 64 hex digits (either case) → 32 bytes.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    crate::domain::from_hex(s)
}
