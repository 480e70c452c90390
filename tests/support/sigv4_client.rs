//! A SigV4 signer for `POST /` AWS JSON calls, as an AWS SDK signs them (and for XKS
//! proxy API calls, as AWS KMS signs them): the signing key
//! derived once from the dev admin's access key (dev directory's aws-env.sh), as SDKs
//! cache it, then the canonical request and HMAC per call. Shared by the integration
//! tests (`tests/it/harness.rs`) and the throughput bench (`benches/throughput`), each
//! including this file; its signatures are accepted beside botocore's in aws_sdk.rs.

use std::fmt::Write as _;
use std::path::Path;

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::hmac;

/// The dev admin's access key and today's signing key.
pub(crate) struct Signer {
    id: String,
    key: hmac::Key,
    scope: String,
    day: String,
}

/// `bytes` as lowercase hex digits.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Signer {
    /// Reads the access key from `dir`'s aws-env.sh (us-east-1, service kms).
    pub(crate) fn from_dev_dir(dir: &Path) -> Result<Self, String> {
        Self::from_env_file(
            &dir.join("aws-env.sh"),
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
            "kms",
        )
    }

    /// Reads the dev external key store's credential from `dir`'s xks-env.sh (service
    /// kms-xks-proxy), for XKS proxy API calls ([`Self::sign_xks`]).
    pub(crate) fn xks_from_dev_dir(dir: &Path) -> Result<Self, String> {
        Self::from_env_file(
            &dir.join("xks-env.sh"),
            ("SIGV4_ACCESS_KEY_ID", "SIGV4_SECRET_ACCESS_KEY"),
            "kms-xks-proxy",
        )
    }

    /// The credential named by `vars` in an `export NAME=value` file, and today's
    /// signing key for `service` in us-east-1.
    fn from_env_file(path: &Path, vars: (&str, &str), service: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(|v| v.trim_matches('\'').to_owned())
                .ok_or(format!("{} has no {name}", path.display()))
        };
        let (id, secret) = (value(vars.0)?, value(vars.1)?);
        let day = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!("[year][month][day]"))
            .map_err(|e| e.to_string())?;
        let mut key = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes());
        for part in [day.as_str(), "us-east-1", service, "aws4_request"] {
            let tag = hmac::sign(&key, part.as_bytes());
            key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
        }
        Ok(Self {
            id,
            key,
            scope: format!("{day}/us-east-1/{service}/aws4_request"),
            day,
        })
    }

    /// The headers of a signed XKS `POST path` to `host`, signed as AWS KMS signs them
    /// (`host` and `x-amz-date` only): content type, date and authorization.
    pub(crate) fn sign_xks(
        &self,
        host: &str,
        path: &str,
        body: &[u8],
    ) -> [(&'static str, String); 3] {
        let stamp = self.stamp();
        let canonical = format!(
            "POST\n{path}\n\nhost:{host}\nx-amz-date:{stamp}\n\nhost;x-amz-date\n{}",
            hex(digest(&SHA256, body).as_ref())
        );
        let signature = self.signature(&stamp, &canonical);
        [
            ("content-type", "application/json".to_owned()),
            ("x-amz-date", stamp),
            (
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders=host;x-amz-date, Signature={signature}",
                    self.id, self.scope
                ),
            ),
        ]
    }

    fn stamp(&self) -> String {
        let now = time::OffsetDateTime::now_utc();
        format!(
            "{}T{:02}{:02}{:02}Z",
            self.day,
            now.hour(),
            now.minute(),
            now.second()
        )
    }

    fn signature(&self, stamp: &str, canonical: &str) -> String {
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{}\n{}",
            self.scope,
            hex(digest(&SHA256, canonical.as_bytes()).as_ref())
        );
        hex(hmac::sign(&self.key, to_sign.as_bytes()).as_ref())
    }

    /// The headers of a signed `POST /` to `host` with `X-Amz-Target: target` and
    /// `body`: content type, date, target and authorization (the host is signed but not
    /// among them: HTTP/2 sends it as `:authority`).
    pub(crate) fn sign(
        &self,
        host: &str,
        target: &str,
        body: &[u8],
    ) -> [(&'static str, String); 4] {
        let stamp = self.stamp();
        let canonical = format!(
            "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:{host}\nx-amz-date:{stamp}\nx-amz-target:{target}\n\n\
             content-type;host;x-amz-date;x-amz-target\n{}",
            hex(digest(&SHA256, body).as_ref())
        );
        let signature = self.signature(&stamp, &canonical);
        [
            ("content-type", "application/x-amz-json-1.1".to_owned()),
            ("x-amz-date", stamp),
            ("x-amz-target", target.to_owned()),
            (
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={signature}",
                    self.id, self.scope
                ),
            ),
        ]
    }
}
