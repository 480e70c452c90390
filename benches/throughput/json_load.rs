//! The load generator for the AWS JSON listener: Encrypt over HTTP/2 and TLS, each
//! request signed with SigV4 as an AWS SDK signs it (the signing key derived once per
//! run, as SDKs cache it; the canonical request and HMAC per request).

// A benchmark fails loudly by design.
#![allow(clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::hmac;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::BoxResult;

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

/// Encrypts of 32 bytes per second under `key_id` over the AWS JSON listener at `addr`
/// with `concurrency` calls in flight over 4 HTTP/2 connections (as the gRPC load).
pub(crate) async fn encrypt_load(
    addr: std::net::SocketAddr,
    dir: &Path,
    key_id: &str,
    concurrency: usize,
) -> BoxResult<f64> {
    let signer = Arc::new(Signer::from_dev_dir(dir)?);
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(connect(addr, &dir.join("ca.pem")).await?);
    }
    let host = format!("localhost:{}", addr.port());
    let body = Bytes::from(format!(
        r#"{{"KeyId":"{key_id}","Plaintext":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}}"#
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut tx = conns[i % conns.len()].clone();
        let (signer, host, body, stop, count) = (
            Arc::clone(&signer),
            host.clone(),
            body.clone(),
            Arc::clone(&stop),
            Arc::clone(&count),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut req = hyper::Request::post(format!("https://{host}/"));
                for (k, v) in signer.sign(&host, "TrentService.Encrypt", &body) {
                    req = req.header(k, v);
                }
                let req = req.body(Full::new(body.clone())).expect("a request");
                let resp = tx.send_request(req).await.expect("an answer");
                let status = resp.status();
                let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
                assert!(
                    status.is_success(),
                    "JSON Encrypt failed during the benchmark: {status} {}",
                    String::from_utf8_lossy(&bytes)
                );
                n += 1;
            }
            count.fetch_add(n, Ordering::Relaxed);
        }));
    }
    let t = Instant::now();
    tokio::time::sleep(super::secs()).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64())
}
