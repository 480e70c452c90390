//! The AWS JSON side of the load: calls over HTTP/2 and TLS, each request signed with
//! SigV4 as an AWS SDK signs it (the signing key derived once per run, as SDKs cache
//! it; the canonical request and HMAC per request), four connections shared by the
//! tasks.

// A benchmark fails loudly by design.
#![allow(clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::hmac;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::load::{drive, Stats};
use super::{BoxResult, Op};

/// The dev admin's access key, from the dev directory's aws-env.sh.
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

fn utc_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

impl Signer {
    pub(crate) fn from_dev_dir(dir: &Path) -> BoxResult<Self> {
        let text = std::fs::read_to_string(dir.join("aws-env.sh"))?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(|v| v.trim_matches('\'').to_owned())
                .ok_or(format!("aws-env.sh has no {name}"))
        };
        let (id, secret) = (value("AWS_ACCESS_KEY_ID")?, value("AWS_SECRET_ACCESS_KEY")?);
        let day = utc_now().format(time::macros::format_description!("[year][month][day]"))?;
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

    /// The headers of a signed `POST /` to `host` with `target` and `body`.
    fn sign(&self, host: &str, target: &str, body: &[u8]) -> [(&'static str, String); 4] {
        let now = utc_now();
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

type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn connect(addr: std::net::SocketAddr, ca: &Path) -> BoxResult<H2> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
        .await?;
    let (tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(tx)
}

/// Four HTTP/2 connections to one daemon's AWS JSON listener, the dev admin's signer,
/// a key and a ciphertext under it.
#[derive(Clone)]
pub(crate) struct Json {
    conns: Arc<Vec<H2>>,
    signer: Arc<Signer>,
    host: Arc<str>,
    key: Arc<str>,
    blob_b64: Arc<str>,
}

impl Json {
    pub(crate) async fn connect(
        addr: std::net::SocketAddr,
        dir: &Path,
        key: &str,
    ) -> BoxResult<Self> {
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(connect(addr, &dir.join("ca.pem")).await?);
        }
        let mut me = Self {
            conns: Arc::new(conns),
            signer: Arc::new(Signer::from_dev_dir(dir)?),
            host: format!("localhost:{}", addr.port()).into(),
            key: key.into(),
            blob_b64: "".into(),
        };
        let answer = me.send(0, Op::Encrypt).await;
        // The echo answers with the request, which has no CiphertextBlob.
        if let Some(blob) = serde_json::from_slice::<serde_json::Value>(&answer)?
            .get("CiphertextBlob")
            .and_then(|b| b.as_str())
        {
            me.blob_b64 = blob.into();
        }
        Ok(me)
    }

    /// `op` from `concurrency` tasks (see [`drive`]).
    pub(crate) async fn load(
        &self,
        op: Op,
        concurrency: usize,
        pace: Option<f64>,
        secs: std::time::Duration,
    ) -> Stats {
        let me = self.clone();
        drive(concurrency, pace, secs, move |i| {
            let me = me.clone();
            async move {
                me.send(i, op).await;
            }
        })
        .await
    }

    fn request(&self, op: Op) -> (&'static str, String) {
        let (key, blob) = (&self.key, &self.blob_b64);
        match op {
            Op::Encrypt => (
                "TrentService.Encrypt",
                format!(
                    r#"{{"KeyId":"{key}","Plaintext":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}}"#
                ),
            ),
            Op::Decrypt => (
                "TrentService.Decrypt",
                format!(r#"{{"CiphertextBlob":"{blob}"}}"#),
            ),
            Op::GenerateDataKey => (
                "TrentService.GenerateDataKey",
                format!(r#"{{"KeyId":"{key}","KeySpec":"AES_256"}}"#),
            ),
            Op::ReEncrypt => (
                "TrentService.ReEncrypt",
                format!(r#"{{"CiphertextBlob":"{blob}","DestinationKeyId":"{key}"}}"#),
            ),
            Op::DescribeKey => (
                "TrentService.DescribeKey",
                format!(r#"{{"KeyId":"{key}"}}"#),
            ),
            Op::BatchEncrypt => {
                let item = format!(
                    r#"{{"KeyId":"{key}","Plaintext":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}}"#
                );
                let items = vec![item; super::BATCH].join(",");
                (
                    "TrentService.BatchEncrypt",
                    format!(r#"{{"Items":[{items}]}}"#),
                )
            }
        }
    }

    /// One signed call; panics unless it succeeds. Returns the answer's body.
    async fn send(&self, i: usize, op: Op) -> Bytes {
        let mut tx = self.conns[i % self.conns.len()].clone();
        let (target, body) = self.request(op);
        let body = Bytes::from(body);
        let mut req = hyper::Request::post(format!("https://{}/", self.host));
        for (k, v) in self.signer.sign(&self.host, target, &body) {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(body)).expect("a request");
        let resp = tx.send_request(req).await.expect("an answer");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
        assert!(
            status.is_success(),
            "JSON {op:?} failed during the benchmark: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        bytes
    }
}
