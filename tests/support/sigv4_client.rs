//! A SigV4 signer for `POST /` AWS JSON calls, as an AWS SDK signs them: the signing key
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

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Signer {
    /// Reads the access key from `dir`'s aws-env.sh (us-east-1, service kms).
    pub(crate) fn from_dev_dir(dir: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(dir.join("aws-env.sh"))
            .map_err(|e| format!("{}: {e}", dir.join("aws-env.sh").display()))?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(|v| v.trim_matches('\'').to_owned())
                .ok_or(format!("aws-env.sh has no {name}"))
        };
        let (id, secret) = (value("AWS_ACCESS_KEY_ID")?, value("AWS_SECRET_ACCESS_KEY")?);
        let day = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!("[year][month][day]"))
            .map_err(|e| e.to_string())?;
        let mut key = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes());
        for part in [day.as_str(), "us-east-1", "kms", "aws4_request"] {
            let tag = hmac::sign(&key, part.as_bytes());
            key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
        }
        Ok(Self {
            id,
            key,
            scope: format!("{day}/us-east-1/kms/aws4_request"),
            day,
        })
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
        let now = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{}T{:02}{:02}{:02}Z",
            self.day,
            now.hour(),
            now.minute(),
            now.second()
        );
        let canonical = format!(
            "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:{host}\nx-amz-date:{stamp}\nx-amz-target:{target}\n\n\
             content-type;host;x-amz-date;x-amz-target\n{}",
            hex(digest(&SHA256, body).as_ref())
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{}\n{}",
            self.scope,
            hex(digest(&SHA256, canonical.as_bytes()).as_ref())
        );
        let signature = hex(hmac::sign(&self.key, to_sign.as_bytes()).as_ref());
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
