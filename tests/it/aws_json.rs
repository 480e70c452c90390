//! The AWS JSON listener over its real transport (HTTPS, HTTP/1.1 and HTTP/2, hyper's
//! own client): the answers a caller gets before it can be authenticated, with AWS's
//! status, `__type` and `x-amzn-ErrorType`; and that such calls are audited.
//! (Signed round trips with boto3, the AWS CLI and the ESDK are in aws_sdk.rs.)

use std::sync::Arc;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use serde_json::{json, Value};

use crate::harness::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    One,
    Two,
}

/// One answer: status, the two AWS headers, and the JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub error_type: Option<String>,
    pub request_id: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
}

/// POSTs `body` to the daemon's AWS JSON port with `headers`, over a fresh TLS
/// connection speaking `http` (no client certificate).
pub async fn post(d: &Daemon, http: Http, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    post_body(d, http, headers, Full::new(Bytes::from(body)).boxed()).await
}

/// A body that sends its first kilobyte and then never ends: with a Content-Length over
/// the limit, the server must answer from the header alone (a client still writing the
/// body of a refused request could otherwise see its connection reset first).
fn endless_body() -> BoxBody<Bytes, std::convert::Infallible> {
    use tokio_stream::StreamExt as _;
    let first = tokio_stream::iter([Ok(hyper::body::Frame::data(Bytes::from(vec![b'a'; 1024])))]);
    http_body_util::StreamBody::new(first.chain(tokio_stream::pending())).boxed()
}

/// POSTs `body` (any body) like [`post`].
async fn post_body(
    d: &Daemon,
    http: Http,
    headers: &[(&str, &str)],
    body: BoxBody<Bytes, std::convert::Infallible>,
) -> Answer {
    send(d, http, hyper::Method::POST, "/", headers, body).await
}

/// Sends any request (`method`, `path`) like [`post`].
pub async fn send(
    d: &Daemon,
    http: Http,
    method: hyper::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: BoxBody<Bytes, std::convert::Infallible>,
) -> Answer {
    send_to(d, d.aws_api_addr(), http, method, path, headers, body).await
}

/// [`send`] to another of the daemon's HTTPS listeners, at `addr`.
pub async fn send_to(
    d: &Daemon,
    addr: std::net::SocketAddr,
    http: Http,
    method: hyper::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: BoxBody<Bytes, std::convert::Infallible>,
) -> Answer {
    let alpn: &[u8] = match http {
        Http::One => b"http/1.1",
        Http::Two => b"h2",
    };
    let cfg = client_tls(d, None, alpn);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // HTTP/2 writes headers and body apart: Nagle would hold the body back 40 ms.
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let mut req = Request::builder()
        .method(method)
        .uri(format!("https://localhost:{}{path}", addr.port()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body).unwrap();
    let (resp, conn) = match http {
        Http::One => {
            assert_eq!(negotiated.as_deref(), Some(&b"http/1.1"[..]));
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            let conn = tokio::spawn(conn);
            (tx.send_request(req).await.unwrap(), conn)
        }
        Http::Two => {
            assert_eq!(negotiated.as_deref(), Some(&b"h2"[..]));
            let (mut tx, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .unwrap();
            let conn = tokio::spawn(conn);
            (tx.send_request(req).await.unwrap(), conn)
        }
    };
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (status, error_type, request_id, content_type) = (
        resp.status(),
        header("x-amzn-ErrorType"),
        header("x-amzn-RequestId"),
        header("content-type"),
    );
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    // Closes the connection, as a client does after an error: one refused before its
    // body was read (413) would otherwise keep sending it.
    conn.abort();
    Answer {
        status,
        error_type,
        request_id,
        content_type,
        body,
    }
}

pub const JSON: (&str, &str) = ("content-type", "application/x-amz-json-1.1");

fn target(op: &str) -> (&'static str, String) {
    ("x-amz-target", format!("TrentService.{op}"))
}

/// Asserts an AWS error answer.
#[track_caller]
pub fn assert_aws_error(a: &Answer, status: u16, name: &str) {
    assert_eq!(a.status.as_u16(), status, "{a:?}");
    assert_eq!(a.error_type.as_deref(), Some(name), "{a:?}");
    assert_eq!(a.body["__type"], name, "{a:?}");
    assert!(
        a.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{a:?}"
    );
    assert_eq!(
        a.content_type.as_deref(),
        Some("application/x-amz-json-1.1")
    );
    assert!(
        a.request_id.as_deref().is_some_and(|r| r.len() == 36),
        "{a:?}"
    );
}

#[tokio::test]
async fn unauthenticated_requests_get_aws_errors_over_http1_and_http2() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let describe = target("DescribeKey");
    let describe = (describe.0, describe.1.as_str());
    let body = json!({"KeyId": "alias/none"}).to_string().into_bytes();
    for http in [Http::One, Http::Two] {
        // No Authorization header at all.
        let a = post(&d, http, &[JSON, describe], body.clone()).await;
        assert_aws_error(&a, 403, "MissingAuthenticationToken");
        // A signature that is not 64 hex digits.
        let auth = ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00");
        let a = post(&d, http, &[JSON, describe, auth], body.clone()).await;
        assert_aws_error(&a, 400, "IncompleteSignature");
        // A whole signature of today by an access key nobody issued.
        let now = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let header = format!(
            "AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/{}/us-east-1/kms/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
            &stamp[..8],
            "0".repeat(64)
        );
        let (auth, date) = (
            ("authorization", header.as_str()),
            ("x-amz-date", stamp.as_str()),
        );
        let a = post(&d, http, &[JSON, describe, auth, date], body.clone()).await;
        assert_aws_error(&a, 400, "UnrecognizedClientException");
        // No such operation, and no target at all.
        let nope = target("NoSuchOperation");
        let a = post(&d, http, &[JSON, (nope.0, nope.1.as_str())], b"{}".to_vec()).await;
        assert_aws_error(&a, 400, "UnknownOperationException");
        let a = post(&d, http, &[JSON], b"{}".to_vec()).await;
        assert_aws_error(&a, 400, "UnknownOperationException");
        // Not JSON, unsigned: authentication comes first, as in AWS (a signed body that
        // does not decode is SerializationException: tests/interop/aws_kms.py sigv4).
        let a = post(&d, http, &[JSON, describe], b"{\"KeyId\": ".to_vec()).await;
        assert_aws_error(&a, 403, "MissingAuthenticationToken");
        // The wrong content type.
        let plain = ("content-type", "application/json");
        let a = post(&d, http, &[plain, describe], body.clone()).await;
        assert_aws_error(&a, 415, "UnsupportedMediaTypeException");
        // A body over the limit (512 KiB): refused from its declared length, before the
        // client has sent it.
        let declared = ("content-length", "614400");
        let started = std::time::Instant::now();
        let a = post_body(&d, http, &[JSON, describe, declared], endless_body()).await;
        assert_aws_error(&a, 413, "RequestEntityTooLargeException");
        // From the header alone: not after waiting out the request read timeout (30 s)
        // for a body that never ends.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "answered after {:?}",
            started.elapsed()
        );
    }
    // Let the aborted client connections close before `stop` blocks this runtime:
    // the daemon's graceful stop waits (up to shutdown_timeout) for open connections.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    d.stop();
}

#[tokio::test]
async fn refused_calls_of_a_known_operation_are_audited_with_the_json_transport_and_none_of_their_body(
) {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let enc = target("Encrypt");
    let a = post(
        &d,
        Http::One,
        &[JSON, (enc.0, enc.1.as_str())],
        json!({"KeyId": "alias/app", "Plaintext": "aGk="})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_aws_error(&a, 403, "MissingAuthenticationToken");
    let rid = a.request_id.unwrap();
    // Durable before the answer: no waiting.
    let mut records = Vec::new();
    p11kms::read_trail(
        &p11kms::trail_files(&dir.path().join("audit")).unwrap(),
        |_, v| records.push(v.clone()),
    )
    .unwrap();
    let r = records
        .iter()
        .find(|r| r["requestID"] == rid.as_str())
        .unwrap_or_else(|| panic!("no record {rid} in {records:?}"));
    assert_eq!(r["eventName"], "Encrypt");
    assert_eq!(r["errorCode"], "MissingAuthenticationToken");
    assert_eq!(r["p11kms"]["transport"], "json");
    // Nothing the unauthenticated sender wrote is recorded: the body is not decoded.
    assert!(
        r["requestParameters"]["keyId"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{r}"
    );
    assert_eq!(r["sourceIPAddress"], "127.0.0.1");
    d.stop();
}

/// The batch calls may send bodies over the single calls' 512 KiB, up to 8 MiB: a
/// 600 KiB BatchEncrypt body is read (and then refused for its missing signature, as
/// any unsigned call), a body of that length for Encrypt is 413, and a batch body
/// declared over 8 MiB is 413 before it is sent.
#[tokio::test]
async fn batch_calls_take_larger_bodies_than_single_calls() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let item = json!({"KeyId": "alias/app", "Plaintext": "A".repeat(5464)});
    let body = json!({"Items": vec![item; 120]}).to_string().into_bytes();
    assert!(body.len() > 600 * 1024, "{}", body.len());
    for http in [Http::One, Http::Two] {
        let batch = target("BatchEncrypt");
        let a = post(&d, http, &[JSON, (batch.0, batch.1.as_str())], body.clone()).await;
        assert_aws_error(&a, 403, "MissingAuthenticationToken");
        // Refused from the declared length (the body is not sent: a client still
        // writing it could see its connection closed first).
        let single = target("Encrypt");
        let length = body.len().to_string();
        let declared = ("content-length", length.as_str());
        let a = post_body(
            &d,
            http,
            &[JSON, (single.0, single.1.as_str()), declared],
            endless_body(),
        )
        .await;
        assert_aws_error(&a, 413, "RequestEntityTooLargeException");
        let declared = ("content-length", "8388609");
        let a = post_body(
            &d,
            http,
            &[JSON, (batch.0, batch.1.as_str()), declared],
            endless_body(),
        )
        .await;
        assert_aws_error(&a, 413, "RequestEntityTooLargeException");
        assert!(
            a.body["message"].as_str().unwrap().contains("8388608"),
            "{a:?}"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    d.stop();
}

/// One HTTP/1.1 request (DescribeKey, unsigned) over a TLS connection that presents the
/// client identity in `identity` (cert.pem, key.pem), or none. Ok(status) when the
/// server answered; Err when the handshake or the request failed at the TLS layer.
async fn with_client_cert(d: &Daemon, identity: Option<&std::path::Path>) -> Result<u16, String> {
    let cfg = client_tls(d, identity, b"http/1.1");
    let tcp = tokio::net::TcpStream::connect(d.aws_api_addr())
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let describe = target("DescribeKey");
    let req = Request::post(format!("https://localhost:{}/", d.aws_api_addr().port()))
        .header(JSON.0, JSON.1)
        .header(describe.0, describe.1.as_str())
        .body(Full::new(Bytes::from_static(b"{\"KeyId\":\"alias/x\"}")))
        .unwrap();
    let answer = tx.send_request(req).await.map_err(|e| e.to_string());
    conn.abort();
    Ok(answer?.status().as_u16())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_optional_and_verified_or_required_when_configured() {
    // A certificate from another dev directory's CA.
    let stranger = TestDir::new();
    stranger.prepare();
    let foreign = identity_for(stranger.path(), Some(&role("111122223333", "Intruder")));

    // Default: none needed; a good one is accepted (SigV4 still decides: 403 unsigned);
    // one from an unknown CA is refused at TLS.
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let admin = dir.dev().admin_identity();
    assert_eq!(with_client_cert(&d, None).await, Ok(403));
    assert_eq!(with_client_cert(&d, Some(&admin)).await, Ok(403));
    assert!(with_client_cert(&d, Some(&foreign)).await.is_err());
    drop(d);

    // Required: no certificate, no connection.
    let dir = TestDir::new();
    dir.prepare();
    dir.edit_config(|t| {
        t["aws_api"]
            .as_table_mut()
            .unwrap()
            .insert("require_client_certificate".into(), true.into());
    });
    let d = Daemon::start(&dir);
    let admin = dir.dev().admin_identity();
    let refused = with_client_cert(&d, None).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(with_client_cert(&d, Some(&admin)).await, Ok(403));
    assert!(with_client_cert(&d, Some(&foreign)).await.is_err());
}

/// `serve --bench-echo` (the throughput benchmark's transport ceiling) answers each call
/// with its own request on both listeners, and nothing reaches the vault: no key, no
/// audit record.
#[tokio::test]
async fn the_bench_echo_answers_each_call_with_its_request() {
    let dir = TestDir::new();
    let d = Daemon::start_args(&dir, "127.0.0.1:0", &["--bench-echo"], &[]);
    // gRPC: the request's fields come back as the answer's (EncryptRequest's KeyId and
    // Plaintext are EncryptResponse's CiphertextBlob and KeyId on the wire).
    let mut c = d.admin().await;
    let answer = c
        .encrypt(encrypt_req("not-a-key", b"echo me", &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.ciphertext_blob, b"not-a-key");
    assert_eq!(answer.key_id, "echo me");
    // AWS JSON: the body comes back, unsigned and whatever it says.
    for http in [Http::One, Http::Two] {
        let a = post(&d, http, &[], br#"{"Echo":[1,2,3]}"#.to_vec()).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, json!({"Echo": [1, 2, 3]}));
    }
    let trail = std::fs::read_dir(dir.path().join("audit"))
        .map(|files| {
            files
                .filter_map(Result::ok)
                .filter(|f| f.file_name().to_string_lossy().ends_with(".jsonl"))
                .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
                .collect::<String>()
        })
        .unwrap_or_default();
    assert!(!trail.contains("\"eventName\":\"Encrypt\""), "{trail}");
}
