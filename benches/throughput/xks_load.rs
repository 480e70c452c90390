//! The external key store side of the load: XKS proxy API Encrypt and Decrypt on the
//! dev store (`/dev/kms/xks/v1`, external key `dev-key`), over HTTP/2 and TLS to the
//! AWS API listener, each request signed as AWS KMS signs it (host and date), on the
//! AWS JSON load's four connections.

// A benchmark fails loudly by design.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use hyper::body::Bytes;

use super::json_load::{connect_h2, post, Signer, H2};
use super::load::{drive, Stats};
use super::BoxResult;

/// The two operations AWS KMS calls on every use of an external key.
#[derive(Clone, Copy, Debug)]
pub(crate) enum XksOp {
    Encrypt,
    Decrypt,
}

/// Connections, the dev store's signer, and a decrypt request ready to send.
#[derive(Clone)]
pub(crate) struct Xks {
    conns: Arc<Vec<H2>>,
    signer: Arc<Signer>,
    host: Arc<str>,
    decrypt_body: Arc<str>,
}

const PREFIX: &str = "/dev/kms/xks/v1/keys/dev-key";
const METADATA: &str = r#""requestMetadata":{"awsPrincipalArn":"arn:aws:iam::444455556666:role/app","kmsKeyArn":"arn:aws:kms:us-east-1:444455556666:key/00000000-1111-2222-3333-444444444444","kmsOperation":"Encrypt","kmsRequestId":"bench"}"#;

impl Xks {
    /// Connects to the daemon at `addr` whose dev directory is `dir`.
    pub(crate) async fn connect(addr: std::net::SocketAddr, dir: &Path) -> BoxResult<Self> {
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(connect_h2(addr, &dir.join("ca.pem")).await?);
        }
        let mut me = Self {
            conns: Arc::new(conns),
            signer: Arc::new(Signer::xks_from_dev_dir(dir)?),
            host: format!("localhost:{}", addr.port()).into(),
            decrypt_body: "".into(),
        };
        let sealed: serde_json::Value = serde_json::from_slice(&me.send(0, XksOp::Encrypt).await)?;
        me.decrypt_body = format!(
            r#"{{{METADATA},"encryptionAlgorithm":"AES_GCM","ciphertext":{},"initializationVector":{},"authenticationTag":{},"ciphertextMetadata":{},"additionalAuthenticatedData":"YWFk"}}"#,
            sealed["ciphertext"],
            sealed["initializationVector"],
            sealed["authenticationTag"],
            sealed["ciphertextMetadata"],
        )
        .into();
        Ok(me)
    }

    /// `op` from `concurrency` tasks (see [`drive`]).
    pub(crate) async fn load(
        &self,
        op: XksOp,
        concurrency: usize,
        secs: std::time::Duration,
    ) -> Stats {
        let me = self.clone();
        drive(concurrency, None, secs, move |i| {
            let me = me.clone();
            async move {
                me.send(i, op).await;
            }
        })
        .await
    }

    /// One signed call (32 bytes, as AWS KMS wraps a data key); panics unless it
    /// succeeds. Returns the answer's body.
    async fn send(&self, i: usize, op: XksOp) -> Bytes {
        let mut tx = self.conns[i % self.conns.len()].clone();
        let (path, body) = match op {
            XksOp::Encrypt => (
                format!("{PREFIX}/encrypt"),
                format!(
                    r#"{{{METADATA},"plaintext":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","encryptionAlgorithm":"AES_GCM","additionalAuthenticatedData":"YWFk"}}"#
                ),
            ),
            XksOp::Decrypt => (format!("{PREFIX}/decrypt"), self.decrypt_body.to_string()),
        };
        let body = Bytes::from(body);
        let headers = self.signer.sign_xks(&self.host, &path, &body);
        let url = format!("https://{}{path}", self.host);
        post(&mut tx, &url, &headers, body, &format!("XKS {op:?}")).await
    }
}
