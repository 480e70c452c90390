//! The AWS JSON side of the load: calls over HTTP/2 and TLS, each request signed with
//! SigV4 as an AWS SDK signs it (the signing key derived once per run, as SDKs cache
//! it; the canonical request and HMAC per request), four connections shared by the
//! tasks.

// A benchmark fails loudly by design.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::load::{drive, Stats};
use super::{BoxResult, Op};

/// SigV4 as an AWS SDK signs (shared with the integration tests).
#[path = "../../tests/support/sigv4_client.rs"]
mod sigv4_client;
pub(crate) use sigv4_client::Signer;

pub(crate) type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// One HTTP/2 connection over TLS to `addr`, trusting the dev CA `ca`.
pub(crate) async fn connect_h2(addr: std::net::SocketAddr, ca: &Path) -> BoxResult<H2> {
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

/// POSTs `body` with `headers` on `tx`; panics unless the answer is a success, naming
/// `what`. Returns the answer's body.
pub(crate) async fn post(
    tx: &mut H2,
    url: &str,
    headers: &[(&'static str, String)],
    body: Bytes,
    what: &str,
) -> Bytes {
    let mut req = hyper::Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(body)).expect("a request");
    let resp = tx.send_request(req).await.expect("an answer");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
    assert!(
        status.is_success(),
        "{what} failed during the benchmark: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    bytes
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
            conns.push(connect_h2(addr, &dir.join("ca.pem")).await?);
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
            Op::CreateKey => ("TrentService.CreateKey", "{}".to_owned()),
            Op::DescribeKey => (
                "TrentService.DescribeKey",
                format!(r#"{{"KeyId":"{key}"}}"#),
            ),
            Op::SignEcdsa | Op::SignRsa => (
                "TrentService.Sign",
                format!(
                    r#"{{"KeyId":"{key}","Message":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","SigningAlgorithm":"{}"}}"#,
                    if op == Op::SignEcdsa {
                        "ECDSA_SHA_256"
                    } else {
                        "RSASSA_PKCS1_V1_5_SHA_256"
                    }
                ),
            ),
            Op::GenerateMac => (
                "TrentService.GenerateMac",
                format!(
                    r#"{{"KeyId":"{key}","Message":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","MacAlgorithm":"HMAC_SHA_256"}}"#
                ),
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
        let headers = self.signer.sign(&self.host, target, &body);
        let url = format!("https://{}/", self.host);
        post(&mut tx, &url, &headers, body, &format!("JSON {op:?}")).await
    }
}
