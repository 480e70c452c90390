//! Bad requests get the AWS error name, never a panic, and the daemon keeps serving.

use p11kms::proto;

use crate::harness::*;

fn gdk(key_id: &str, n: Option<i32>, spec: &str) -> proto::GenerateDataKeyRequest {
    proto::GenerateDataKeyRequest {
        key_id: key_id.into(),
        encryption_context: Default::default(),
        number_of_bytes: n,
        key_spec: spec.into(),
        grant_tokens: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_aws_error_names_and_the_daemon_keeps_serving() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let k = key.key_id.as_str();

    // Plaintext bounds.
    assert_kms_error(
        c.encrypt(encrypt_req(k, b"", &[])).await,
        "ValidationException",
    );
    assert_kms_error(
        c.encrypt(encrypt_req(k, &[7u8; 4097], &[])).await,
        "ValidationException",
    );

    // Key ids: unknown, malformed, empty, aliases (not yet), foreign region, wrong account in ARN.
    let unknown = "1234abcd-12ab-34cd-56ef-1234567890ab";
    for (key_id, name) in [
        (unknown.to_string(), "NotFoundException"),
        (
            format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{unknown}"),
            "NotFoundException",
        ),
        ("not-a-key".to_string(), "NotFoundException"),
        (
            "1234ABCD-12AB-34CD-56EF-1234567890AB".to_string(),
            "NotFoundException",
        ),
        (
            "arn:aws:kms:us-east-1:111122223333:key/".to_string(),
            "NotFoundException",
        ),
        (String::new(), "ValidationException"),
        ("x".repeat(2049), "ValidationException"),
        ("alias/payroll".to_string(), "NotFoundException"),
        (
            format!("arn:aws:kms:eu-west-1:{ACCOUNT}:key/{k}"),
            "NotFoundException",
        ),
        (
            format!("arn:aws:kms:us-east-1:{OTHER_ACCOUNT}:key/{k}"),
            "NotFoundException",
        ),
    ] {
        let st = assert_kms_error(c.encrypt(encrypt_req(&key_id, b"x", &[])).await, name);
        // Malformed input is not echoed back (ARNs and key ids are, as AWS does).
        for echoed in ["not-a-key", "1234ABCD", "xxxxxxxxxxxxxxxx"] {
            if key_id.contains(echoed) {
                assert!(!st.message().contains(echoed), "{}", st.message());
            }
        }
    }

    // Data key sizes.
    for (n, spec) in [
        (Some(0), ""),
        (Some(1025), ""),
        (Some(32), "AES_256"),
        (None, ""),
        (None, "AES_512"),
    ] {
        assert_kms_error(
            c.generate_data_key(gdk(k, n, spec)).await,
            "ValidationException",
        );
    }
    assert_kms_error(
        c.generate_data_key_without_plaintext(proto::GenerateDataKeyWithoutPlaintextRequest {
            key_id: k.into(),
            number_of_bytes: Some(1025),
            ..Default::default()
        })
        .await,
        "ValidationException",
    );

    // Algorithms, grant tokens, oversized context.
    let mut r = encrypt_req(k, b"x", &[]);
    r.encryption_algorithm = "RSAES_OAEP_SHA_256".into();
    assert_kms_error(c.encrypt(r).await, "InvalidKeyUsageException");
    let mut r = encrypt_req(k, b"x", &[]);
    r.encryption_algorithm = "AES_GCM".into();
    assert_kms_error(c.encrypt(r).await, "ValidationException");
    let mut r = encrypt_req(k, b"x", &[]);
    r.grant_tokens = vec!["t".into(); 11];
    assert_kms_error(c.encrypt(r).await, "ValidationException");
    let big = "v".repeat(9000);
    assert_kms_error(
        c.encrypt(encrypt_req(k, b"x", &[("k", &big)])).await,
        "ValidationException",
    );

    // CreateKey parameters.
    for (spec, usage, origin, name) in [
        // AWS: KeyUsage is required for any spec but SYMMETRIC_DEFAULT.
        ("RSA_2048", "", "", "ValidationException"),
        ("NOT_A_SPEC", "", "", "ValidationException"),
        // A spec and usage that do not go together.
        ("", "SIGN_VERIFY", "", "ValidationException"),
        ("HMAC_256", "SIGN_VERIFY", "", "ValidationException"),
        // Known to AWS, not served by p11kms.
        ("SM2", "SIGN_VERIFY", "", "UnsupportedOperationException"),
        (
            "ML_DSA_65",
            "SIGN_VERIFY",
            "",
            "UnsupportedOperationException",
        ),
        ("", "encrypt_decrypt", "", "ValidationException"),
        ("", "", "AWS_CLOUDHSM", "UnsupportedOperationException"),
    ] {
        assert_kms_error(
            c.create_key(proto::CreateKeyRequest {
                description: String::new(),
                key_usage: usage.into(),
                key_spec: spec.into(),
                origin: origin.into(),
                ..Default::default()
            })
            .await,
            name,
        );
    }
    assert_kms_error(
        c.create_key(proto::CreateKeyRequest {
            description: "d".repeat(8193),
            ..Default::default()
        })
        .await,
        "ValidationException",
    );

    // ListKeys bounds and markers.
    for limit in [0, 1001] {
        assert_kms_error(
            c.list_keys(proto::ListKeysRequest {
                limit: Some(limit),
                marker: String::new(),
            })
            .await,
            "ValidationException",
        );
    }
    assert_kms_error(
        c.list_keys(proto::ListKeysRequest {
            limit: None,
            marker: "garbage".into(),
        })
        .await,
        "InvalidMarkerException",
    );

    // Decrypt blob bounds.
    assert_kms_error(
        c.decrypt(decrypt_req(b"", &[])).await,
        "ValidationException",
    );
    assert_kms_error(
        c.decrypt(decrypt_req(&[b'p'; 6145], &[])).await,
        "ValidationException",
    );

    // Still serving.
    let blob = encrypt(&mut c, k, b"still here", &[]).await;
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"still here");
    assert!(!d.log().contains("panicked"));
}

/// One gRPC answer read off the wire: the status wherever the server put it (the
/// headers of a trailers-only answer, else the trailers) and the AWS headers.
#[derive(Debug)]
pub struct RawAnswer {
    pub grpc_status: Option<String>,
    pub grpc_message: String,
    pub error_type: Option<String>,
    pub request_id: Option<String>,
}

/// One gRPC frame: the compressed flag, the length the frame declares, the bytes.
pub fn frame(compressed: bool, declared_len: usize, bytes: &[u8]) -> Vec<u8> {
    let mut f = vec![u8::from(compressed)];
    f.extend_from_slice(&u32::try_from(declared_len).unwrap().to_be_bytes());
    f.extend_from_slice(bytes);
    f
}

/// POSTs `body` to `path` as a gRPC call over HTTP/2 and mTLS as the dev admin, with
/// hyper's own client rather than tonic's, so that the bytes are exactly these.
pub async fn raw_grpc(d: &Daemon, path: &str, extra: &[(&str, &str)], body: Vec<u8>) -> RawAnswer {
    use http_body_util::{BodyExt as _, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let identity = p11kms::DevDir::at(&d.dir).admin_identity();
    let cfg = client_tls(d, Some(&identity), b"h2");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", d.addr.port()))
        .await
        .unwrap();
    // HTTP/2 writes headers and body apart: Nagle would hold the body back 40 ms.
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let mut req = hyper::Request::post(format!("https://localhost:{}{path}", d.addr.port()))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = tx
        .send_request(req.body(Full::new(hyper::body::Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    conn.abort();
    let get = |name: &str| {
        headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| v.to_str().unwrap().to_owned())
    };
    RawAnswer {
        grpc_status: get("grpc-status"),
        grpc_message: get("grpc-message").unwrap_or_default(),
        error_type: get("x-amzn-errortype"),
        request_id: get("x-amzn-requestid"),
    }
}

/// A raw call and the AWS error name and gRPC code it must get.
struct RawCase {
    what: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Vec<u8>,
    name: &'static str,
    code: &'static str,
}

/// What tonic refuses before any handler runs (bytes that are not the operation's
/// message, a string field that is not UTF-8, a message over the size limit, a method
/// or service that does not exist, a compressed message) still fails with an AWS error
/// name, its gRPC code from the error map, and a request id; the daemon keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn calls_refused_before_their_handler_get_aws_error_names_over_the_wire() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let encrypt_path = "/p11kms.v1.KeyManagementService/Encrypt";
    // EncryptRequest field 1 (KeyId, a string) holding two bytes that are not UTF-8.
    let not_utf8 = [0x0a, 0x02, 0xff, 0xfe];
    // A varint that never ends: no protobuf message.
    let garbage = [0xff; 12];
    let over_limit = p11kms::client::MAX_MESSAGE_BYTES + 1;
    let cases = [
        RawCase {
            what: "not UTF-8",
            path: encrypt_path,
            headers: &[],
            body: frame(false, 4, &not_utf8),
            name: "SerializationException",
            code: "3",
        },
        RawCase {
            what: "garbage",
            path: encrypt_path,
            headers: &[],
            body: frame(false, 12, &garbage),
            name: "SerializationException",
            code: "3",
        },
        // The frame says 8 MiB + 1 is coming; the server refuses on the header alone.
        RawCase {
            what: "too large",
            path: encrypt_path,
            headers: &[],
            body: frame(false, over_limit, &[0; 16]),
            name: "ValidationException",
            code: "3",
        },
        RawCase {
            what: "unknown method",
            path: "/p11kms.v1.KeyManagementService/NoSuchCall",
            headers: &[],
            body: frame(false, 0, &[]),
            name: "UnknownOperationException",
            code: "12",
        },
        RawCase {
            what: "unknown service",
            path: "/no.such.v1.Service/Encrypt",
            headers: &[],
            body: frame(false, 0, &[]),
            name: "UnknownOperationException",
            code: "12",
        },
        RawCase {
            what: "compressed",
            path: encrypt_path,
            headers: &[("grpc-encoding", "gzip")],
            body: frame(true, 4, &not_utf8),
            name: "UnsupportedOperationException",
            code: "12",
        },
    ];
    for RawCase {
        what,
        path,
        headers,
        body,
        name,
        code,
    } in cases
    {
        let a = raw_grpc(&d, path, headers, body).await;
        assert_eq!(a.error_type.as_deref(), Some(name), "{what}: {a:?}");
        assert_eq!(a.grpc_status.as_deref(), Some(code), "{what}: {a:?}");
        assert!(a.grpc_message.starts_with(name), "{what}: {a:?}");
        assert_eq!(a.request_id.map(|r| r.len()), Some(36), "{what}: a UUID");
    }

    // The same path with a well-formed message reaches the handler, which names its
    // own errors (a raw call proves the helper frames messages right).
    let empty = raw_grpc(&d, encrypt_path, &[], frame(false, 0, &[])).await;
    assert_eq!(empty.error_type.as_deref(), Some("ValidationException"));
    // Still serving.
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let blob = encrypt(&mut c, &key.key_id, b"still here", &[]).await;
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"still here");
    assert!(!d.log().contains("panicked"));
}
