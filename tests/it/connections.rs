//! Connections that cost the daemon without calling it: silent sockets, handshakes sent
//! slowly, idle clients and slowly sent requests. The daemon must keep serving prompt
//! clients while they are open, end what lingers, and stay within bounded memory.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_stream::wrappers::ReceiverStream;

use p11kms::proto;

use crate::harness::*;

/// Silent sockets each test opens.
const SILENT: usize = 1000;
/// The default of `connections.max_pending_handshakes_per_source`: all the tests'
/// sockets come from 127.0.0.1.
const PER_SOURCE: usize = 256;

/// Lets this process open `n` more sockets: raises its soft limit on open files toward
/// the hard one, as the daemon does at start.
fn ensure_open_files(n: u64) {
    let limit = rlimit::increase_nofile_limit(n + 1024).unwrap();
    assert!(
        limit >= n + 256,
        "this process may open {limit} files; the test needs {n} sockets more (raise ulimit -Hn)"
    );
}

/// The soft and hard limits on open files of process `pid`.
fn open_files_limits(pid: u32) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let mut words = line["Max open files".len()..].split_whitespace();
    (
        words.next().unwrap().to_owned(),
        words.next().unwrap().to_owned(),
    )
}

/// Opens `n` TCP connections to `addr` that never send a byte, one after the other.
async fn open_silent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n {
        socks.push(TcpStream::connect(addr).await.unwrap());
    }
    socks
}

/// Whether the server has closed `sock` (end of stream or reset), waiting up to `wait`.
async fn closed_within(sock: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, sock.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) => panic!("the server answered a socket that sent it no whole message"),
        Err(_) => false,
    }
}

/// Whether `sock` is still open: nothing to read and no end of stream.
fn still_open(sock: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(sock.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The daemon's count of `listener`'s handshakes that ended with `outcome`, or of its
/// connections closed idle (`outcome` "idle").
async fn connection_count(d: &Daemon, listener: &str, outcome: &str) -> f64 {
    let s = crate::metrics::scrape_async(d.metrics_url()).await;
    if outcome == "idle" {
        s.value(
            "p11kms_idle_connections_closed_total",
            &[("listener", listener)],
        )
    } else {
        s.value(
            "p11kms_tls_handshakes_total",
            &[("listener", listener), ("outcome", outcome)],
        )
    }
}

/// Waits until the daemon has counted at least `n` of `listener`'s `outcome` (counts
/// follow the sockets' closing by a moment).
async fn counted_at_least(d: &Daemon, listener: &str, outcome: &str, n: f64) {
    eventually(&format!("{n} {listener} {outcome} counted"), || async {
        connection_count(d, listener, outcome).await >= n
    })
    .await;
}

/// Opens [`SILENT`] silent sockets to `listener` at `addr` and checks what the daemon
/// made of them: it accepted every one (so a new client is not stuck behind them in the
/// kernel's queue) and, all coming from one address, ended all but the newest
/// [`PER_SOURCE`], and counted them as evicted.
async fn flood(d: &Daemon, listener: &str, addr: SocketAddr) -> Vec<TcpStream> {
    ensure_open_files(SILENT as u64 * 2);
    let started = Instant::now();
    let mut socks = open_silent(addr, SILENT).await;
    let opened = started.elapsed();
    // The oldest were ended in the order they came, as newer ones needed room.
    for (i, s) in socks.iter_mut().take(SILENT - PER_SOURCE).enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(30)).await,
            "silent socket {i} of {SILENT} is still open: the per-source bound ended none"
        );
    }
    let open = socks.iter().filter(|s| still_open(s)).count();
    println!(
        "{SILENT} silent sockets opened in {} ms; the daemon keeps {open} of them",
        opened.as_millis()
    );
    assert_eq!(open, PER_SOURCE, "the newest of one source are kept");
    counted_at_least(d, listener, "evicted", (SILENT - PER_SOURCE) as f64).await;
    socks
}

/// Asserts that `connect_and_call`, timed from its first TCP packet to its answer,
/// takes under a second, three times in a row.
async fn assert_prompt<F, Fut>(what: &str, mut connect_and_call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for attempt in 1..=3 {
        let started = Instant::now();
        connect_and_call().await;
        let took = started.elapsed();
        println!(
            "{what}, attempt {attempt}: connected and answered in {} ms",
            took.as_millis()
        );
        assert!(
            took < Duration::from_secs(1),
            "{what}: took {took:?} with {SILENT} silent sockets open"
        );
    }
}

#[tokio::test]
async fn a_grpc_client_connects_within_a_second_while_a_thousand_silent_sockets_are_open() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let (soft, hard) = open_files_limits(d.pid());
    assert_eq!(soft, hard, "the daemon raises its soft limit on open files");
    let silent = flood(&d, "grpc", d.addr).await;
    assert_prompt("gRPC GenerateRandom on a new mTLS connection", || async {
        let mut c = d.admin().await;
        let r = c
            .generate_random(proto::GenerateRandomRequest {
                number_of_bytes: Some(32),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.plaintext.len(), 32);
    })
    .await;
    // The silent sockets were there all along.
    assert!(silent.iter().filter(|s| still_open(s)).count() >= PER_SOURCE - 3);
    counted_at_least(&d, "grpc", "ok", 3.0).await;
}

#[tokio::test]
async fn an_aws_json_client_connects_within_a_second_while_a_thousand_silent_sockets_are_open() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let signer = Signer::from_dev_dir(dir.path());
    let silent = flood(&d, "aws_json", d.aws_api_addr()).await;
    assert_prompt(
        "signed AWS JSON GenerateRandom on a new connection",
        || async {
            let answer =
                signed_call(&d, &signer, "GenerateRandom", br#"{"NumberOfBytes":32}"#).await;
            assert_eq!(answer.0, 200, "{answer:?}");
            assert!(answer.1.contains("Plaintext"), "{answer:?}");
        },
    )
    .await;
    assert!(silent.iter().filter(|s| still_open(s)).count() >= PER_SOURCE - 3);
    counted_at_least(&d, "aws_json", "ok", 3.0).await;
}

#[tokio::test]
async fn a_handshake_sent_slowly_is_cut_off_at_the_handshake_timeout() {
    let dir = TestDir::new();
    dir.prepare()
        .append_config("\n[connections]\nhandshake_timeout_secs = 2\n");
    let d = Daemon::start(&dir);
    for (listener, addr) in [("gRPC", d.addr), ("AWS JSON", d.aws_api_addr())] {
        let mut sock = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        // A TLS handshake record announcing 512 bytes, then its body a byte at a time:
        // the handshake never completes, but the client is never silent either.
        sock.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
            .await
            .unwrap();
        let mut cut = None;
        for _ in 0..150 {
            if closed_within(&mut sock, Duration::from_millis(100)).await
                || sock.write_all(&[0x01]).await.is_err()
            {
                cut = Some(started.elapsed());
                break;
            }
        }
        let cut = cut.unwrap_or_else(|| panic!("{listener}: a trickled handshake lasted 15 s"));
        println!(
            "{listener}: a trickled handshake was cut off after {} ms",
            cut.as_millis()
        );
        // The deadline, not some other fault, ended it (timers never fire early).
        assert!(cut >= Duration::from_millis(1900), "{listener}: {cut:?}");
    }
    counted_at_least(&d, "grpc", "timed_out", 1.0).await;
    counted_at_least(&d, "aws_json", "timed_out", 1.0).await;
    // Prompt clients still get through.
    let mut c = d.admin().await;
    c.generate_random(proto::GenerateRandomRequest {
        number_of_bytes: Some(8),
    })
    .await
    .unwrap();
}

type H2<B = Full<Bytes>> = hyper::client::conn::http2::SendRequest<B>;

/// An HTTP/2 connection to `addr` over TLS with `cfg`, and the task driving it, which
/// ends when the connection closes.
async fn h2_connect<B>(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> (H2<B>, tokio::task::JoinHandle<()>)
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = tls_connect(addr, cfg).await;
    let (tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    (
        tx,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    )
}

/// A gRPC GenerateRandom of 8 bytes on `tx`, spoken by hand: the grpc-status it ended
/// with.
async fn grpc_generate_random(tx: &mut H2) -> String {
    use prost::Message as _;
    let msg = proto::GenerateRandomRequest {
        number_of_bytes: Some(8),
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend(u32::try_from(msg.len()).unwrap().to_be_bytes());
    framed.extend(msg);
    let req =
        hyper::Request::post("https://localhost/p11kms.v1.KeyManagementService/GenerateRandom")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(framed)))
            .unwrap();
    tx.ready().await.unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    trailers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Waits for `conn` (the task driving a client connection) to end, up to `wait`; the
/// time it took, or None.
async fn ends_within(conn: &mut tokio::task::JoinHandle<()>, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    tokio::time::timeout(wait, conn)
        .await
        .ok()
        .map(|_| started.elapsed())
}

#[tokio::test]
async fn an_idle_grpc_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() {
    let dir = TestDir::new();
    dir.prepare()
        .append_config("\n[connections]\nidle_timeout_secs = 1\n");
    let d = Daemon::start(&dir);
    let admin = dir.dev().admin_identity();
    let (mut tx, mut conn) = h2_connect(d.addr, client_tls(&d, Some(&admin), b"h2")).await;
    // A call every 300 ms for 3 s keeps the connection: never a second without a call.
    let busy = Instant::now();
    while busy.elapsed() < Duration::from_secs(3) {
        assert_eq!(grpc_generate_random(&mut tx).await, "0");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!conn.is_finished(), "a busy connection was closed");
    assert_eq!(grpc_generate_random(&mut tx).await, "0");
    // Then nothing: the daemon says goodbye (GOAWAY) and closes it.
    let closed = ends_within(&mut conn, Duration::from_secs(30))
        .await
        .expect("an idle connection was still open after 30 s");
    println!(
        "an idle gRPC connection was closed {} ms after its last call",
        closed.as_millis()
    );
    assert!(
        closed >= Duration::from_millis(500),
        "closed after {closed:?}"
    );
    assert!(
        tx.ready().await.is_err(),
        "the connection takes no more calls"
    );
    counted_at_least(&d, "grpc", "idle", 1.0).await;

    // A gRPC client whose idle connection was closed reconnects on its next call.
    let mut c = d.admin().await;
    c.generate_random(proto::GenerateRandomRequest {
        number_of_bytes: Some(8),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.generate_random(proto::GenerateRandomRequest {
        number_of_bytes: Some(8),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_idle_aws_json_connection_is_closed_after_the_idle_timeout() {
    let dir = TestDir::new();
    dir.prepare()
        .append_config("\n[connections]\nidle_timeout_secs = 1\n");
    let d = Daemon::start(&dir);
    let signer = Signer::from_dev_dir(dir.path());
    let addr = d.aws_api_addr();
    let (mut tx, mut conn) = h2_connect(addr, client_tls(&d, None, b"h2")).await;
    let body = br#"{"NumberOfBytes":8}"#;
    let mut req = hyper::Request::post(format!("https://localhost:{}/", addr.port()));
    for (k, v) in signer.sign(
        &format!("localhost:{}", addr.port()),
        "GenerateRandom",
        body,
    ) {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    let resp = tx
        .send_request(req.body(Full::new(Bytes::from_static(body))).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    let closed = ends_within(&mut conn, Duration::from_secs(30))
        .await
        .expect("an idle connection was still open after 30 s");
    println!(
        "an idle AWS JSON connection was closed {} ms after its last call",
        closed.as_millis()
    );
    assert!(
        closed >= Duration::from_millis(500),
        "closed after {closed:?}"
    );
    counted_at_least(&d, "aws_json", "idle", 1.0).await;
}

#[tokio::test]
async fn an_aws_json_connection_without_a_signed_request_idles_only_for_the_request_read_timeout() {
    let dir = TestDir::new();
    dir.prepare()
        .append_config("\n[connections]\nidle_timeout_secs = 30\nrequest_read_timeout_secs = 2\n");
    let d = Daemon::start(&dir);
    let signer = Signer::from_dev_dir(dir.path());
    let addr = d.aws_api_addr();
    let host = format!("localhost:{}", addr.port());
    let call = |signed: bool| {
        let body = br#"{"NumberOfBytes":8}"#;
        let mut req = hyper::Request::post(format!("https://{host}/"));
        for (k, v) in signer.sign(&host, "GenerateRandom", body) {
            // Unsigned: the same request without its Authorization header.
            if k != "host" && (signed || k != "authorization") {
                req = req.header(k, v);
            }
        }
        req.body(Full::new(Bytes::from_static(body))).unwrap()
    };
    let (_silent, mut silent_conn) =
        h2_connect::<Full<Bytes>>(addr, client_tls(&d, None, b"h2")).await;
    let (mut anonymous, mut anonymous_conn) = h2_connect(addr, client_tls(&d, None, b"h2")).await;
    let (mut known, known_conn) = h2_connect(addr, client_tls(&d, None, b"h2")).await;
    let refused = anonymous.send_request(call(false)).await.unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());
    refused.into_body().collect().await.unwrap();
    let answered = known.send_request(call(true)).await.unwrap();
    assert_eq!(answered.status(), 200);
    answered.into_body().collect().await.unwrap();

    // A connection that never sent a signed request is anonymous: 2 s, not 30.
    for (what, conn) in [
        ("silent", &mut silent_conn),
        ("unsigned", &mut anonymous_conn),
    ] {
        let closed = ends_within(conn, Duration::from_secs(25))
            .await
            .unwrap_or_else(|| panic!("an anonymous ({what}) connection lasted 25 s"));
        println!(
            "an anonymous ({what}) AWS JSON connection was closed after {} ms more",
            closed.as_millis()
        );
    }
    // One that did keeps the full idle timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !known_conn.is_finished(),
        "a signed client's connection was closed"
    );
    assert!(known.ready().await.is_ok());
    counted_at_least(&d, "aws_json", "idle", 2.0).await;
}

/// A request body that sends one byte every 200 ms, for ever (until dropped), after
/// `first`.
fn trickled_body(first: &[u8]) -> BoxBody<Bytes, std::convert::Infallible> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let first = Bytes::copy_from_slice(first);
    tokio::spawn(async move {
        if tx.send(first).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tx.send(Bytes::from_static(b"a")).await.is_err() {
                return;
            }
        }
    });
    let frames =
        tokio_stream::StreamExt::map(ReceiverStream::new(rx), |b| Ok(hyper::body::Frame::data(b)));
    StreamBody::new(frames).boxed()
}

/// Writes `head` on `tls`, then one byte every 200 ms, until the server closes the
/// connection or answers; the time that took and the first bytes of the answer.
async fn trickle_until_cut(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    head: &[u8],
) -> (Duration, String) {
    let started = Instant::now();
    tls.write_all(head).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..150 {
        match tokio::time::timeout(Duration::from_millis(200), tls.read(&mut buf)).await {
            Ok(Ok(n)) => {
                return (
                    started.elapsed(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                )
            }
            Ok(Err(e)) => return (started.elapsed(), format!("error: {e}")),
            Err(_) => {}
        }
        if tls.write_all(b"a").await.is_err() || tls.flush().await.is_err() {
            return (started.elapsed(), "write failed".into());
        }
    }
    panic!("a request trickled for 30 s was not cut off");
}

#[tokio::test]
async fn requests_sent_slowly_are_cut_off_at_the_request_read_timeout() {
    let dir = TestDir::new();
    dir.prepare()
        .append_config("\n[connections]\nrequest_read_timeout_secs = 2\n");
    let d = Daemon::start(&dir);
    let admin = dir.dev().admin_identity();

    // gRPC: the head at once, then a body announcing a 100-byte message, a byte at a
    // time. The call ends with DEADLINE_EXCEEDED; the connection serves on.
    let (mut tx, _conn) = h2_connect::<BoxBody<Bytes, std::convert::Infallible>>(
        d.addr,
        client_tls(&d, Some(&admin), b"h2"),
    )
    .await;
    let req =
        hyper::Request::post("https://localhost/p11kms.v1.KeyManagementService/GenerateRandom")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(trickled_body(&[0, 0, 0, 0, 100]))
            .unwrap();
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(30), tx.send_request(req))
        .await
        .expect("a gRPC request trickled for 30 s was not cut off")
        .unwrap();
    let (parts, body) = resp.into_parts();
    let trailers = body
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned()
        .unwrap_or_default();
    let cut = started.elapsed();
    let status = parts
        .headers
        .get("grpc-status")
        .or_else(|| trailers.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned());
    println!(
        "gRPC: a body sent a byte at a time was cut off after {} ms (grpc-status {status:?})",
        cut.as_millis()
    );
    assert_eq!(status.as_deref(), Some("4"), "DEADLINE_EXCEEDED");
    let name = parts
        .headers
        .get("x-amzn-errortype")
        .or_else(|| trailers.get("x-amzn-errortype"))
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(name.as_deref(), Some("RequestTimeoutException"));
    assert!(cut >= Duration::from_millis(1900), "{cut:?}");
    let (mut tx, _conn) = h2_connect(d.addr, client_tls(&d, Some(&admin), b"h2")).await;
    assert_eq!(grpc_generate_random(&mut tx).await, "0");

    // AWS JSON over HTTP/1.1: a head sent a byte at a time; the connection is closed.
    let addr = d.aws_api_addr();
    let mut tls = tls_connect(addr, client_tls(&d, None, b"http/1.1")).await;
    let (cut, answer) =
        trickle_until_cut(&mut tls, b"POST / HTTP/1.1\r\nhost: localhost\r\nx-slow: ").await;
    println!(
        "AWS JSON: a head sent a byte at a time was cut off after {} ms ({answer:?})",
        cut.as_millis()
    );
    assert!(cut >= Duration::from_millis(1900), "{cut:?}");
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");

    // And a whole head, then its body a byte at a time: 408 RequestTimeoutException.
    let mut tls = tls_connect(addr, client_tls(&d, None, b"http/1.1")).await;
    let (cut, answer) = trickle_until_cut(
        &mut tls,
        b"POST / HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-amz-json-1.1\r\n\
          x-amz-target: TrentService.GenerateRandom\r\ncontent-length: 100\r\n\r\n{",
    )
    .await;
    println!(
        "AWS JSON: a body sent a byte at a time was cut off after {} ms",
        cut.as_millis()
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(cut >= Duration::from_millis(1900), "{cut:?}");
}

#[tokio::test]
async fn a_shutdown_does_not_wait_for_handshakes_in_progress() {
    let dir = TestDir::new();
    // Handshakes may last a minute, the shutdown waits 5 s for calls in flight: were the
    // silent sockets' handshakes waited for, the daemon would say it cancelled calls.
    dir.prepare()
        .append_config("\n[connections]\nhandshake_timeout_secs = 60\n");
    dir.edit_config(|t| {
        t.insert("shutdown_timeout_secs".into(), toml::Value::Integer(5));
    });
    let d = Daemon::start(&dir);
    let silent = (
        open_silent(d.addr, 10).await,
        open_silent(d.aws_api_addr(), 10).await,
    );
    // Let the daemon accept them all before the signal.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    let log = tokio::task::spawn_blocking(move || d.stop()).await.unwrap();
    println!(
        "stopped in {} ms with 20 silent sockets open",
        stopping.elapsed().as_millis()
    );
    assert!(log.contains("calls in flight finished"), "{log}");
    assert!(!log.contains("shutdown deadline"), "{log}");
    drop(silent);
}

/// The resident memory of process `pid`, in KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_clients_and_two_thousand_silent_sockets_cost_bounded_memory_and_are_closed(
) {
    const IDLE: usize = 1000;
    ensure_open_files(2 * SILENT as u64 + IDLE as u64 + 100);
    let dir = TestDir::new();
    dir.prepare()
        .append_config("\n[connections]\nidle_timeout_secs = 30\n");
    let d = Daemon::start(&dir);
    let admin = dir.dev().admin_identity();
    let cfg = client_tls(&d, Some(&admin), b"h2");
    // Warm up, so that what the first call sets up is in the baseline.
    let (mut tx, _warm) = h2_connect(d.addr, Arc::clone(&cfg)).await;
    assert_eq!(grpc_generate_random(&mut tx).await, "0");
    let before = rss_kib(d.pid());

    let silent = (
        open_silent(d.addr, SILENT).await,
        open_silent(d.aws_api_addr(), SILENT).await,
    );
    let after_silent = rss_kib(d.pid());

    // A thousand clients that each connect (mTLS, HTTP/2), make one call and then idle,
    // sixteen connecting at a time.
    let started = Instant::now();
    let mut clients = Vec::with_capacity(IDLE);
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..IDLE {
        if pending.len() >= 16 {
            clients.push(pending.join_next().await.unwrap().unwrap());
        }
        let (cfg, addr) = (Arc::clone(&cfg), d.addr);
        pending.spawn(async move {
            let (mut tx, conn) = h2_connect(addr, cfg).await;
            assert_eq!(grpc_generate_random(&mut tx).await, "0", "client {i}");
            (tx, conn)
        });
    }
    while let Some(c) = pending.join_next().await {
        clients.push(c.unwrap());
    }
    let connected = started.elapsed();
    let after_idle = rss_kib(d.pid());
    println!(
        "daemon VmRSS: {before} KiB before; +{} KiB with {SILENT} silent sockets on each API port; \
         +{} KiB more with {IDLE} idle mTLS clients (connected in {} ms); +{} MiB in all",
        after_silent.saturating_sub(before),
        after_idle.saturating_sub(after_silent),
        connected.as_millis(),
        after_idle.saturating_sub(before) / 1024,
    );
    assert!(
        after_idle.saturating_sub(before) < 200 * 1024,
        "the daemon grew by {} KiB",
        after_idle.saturating_sub(before)
    );

    // It serves on: a new client is answered.
    let mut c = d.admin().await;
    c.generate_random(proto::GenerateRandomRequest {
        number_of_bytes: Some(8),
    })
    .await
    .unwrap();

    // And the idle clients are told to go away once their 30 s are up.
    let deadline = Instant::now() + Duration::from_secs(90);
    for (i, (_tx, conn)) in clients.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            ends_within(conn, left).await.is_some(),
            "idle client {i} still connected 90 s after the last connected"
        );
    }
    println!(
        "all {IDLE} idle clients closed; daemon VmRSS then {} KiB",
        rss_kib(d.pid())
    );
    // And still serves: the client whose own connection has been closed meanwhile too.
    // Its idle close falls about now: a call sent as the server's GOAWAY crosses it
    // fails on the client's side (UNAVAILABLE, or the transport's GOAWAY error: no answer
    // of the server's) and is retried, as a client does (tonic reconnects).
    let mut tries = 0;
    loop {
        let r = c
            .generate_random(proto::GenerateRandomRequest {
                number_of_bytes: Some(8),
            })
            .await;
        match r {
            Ok(_) => break,
            Err(s)
                if tries < 3
                    && (s.code() == tonic::Code::Unavailable
                        || std::error::Error::source(&s).is_some()) =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("the daemon stopped serving after the idle clients: {s:?}"),
        }
    }
    drop(silent);
}

/// The harness's TLS client for the daemon (its CA, `alpn`, the identity in
/// `identity` or none), shared.
fn client_tls(d: &Daemon, identity: Option<&Path>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    Arc::new(crate::harness::client_tls(d, identity, alpn))
}

/// TCP and TLS to `addr` with `cfg`.
async fn tls_connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// A signed AWS JSON call on a new HTTP/1.1 connection: the status and the body.
async fn signed_call(d: &Daemon, signer: &Signer, op: &str, body: &[u8]) -> (u16, String) {
    let addr = d.aws_api_addr();
    let tls = tls_connect(addr, client_tls(d, None, b"http/1.1")).await;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let mut req = hyper::Request::post("/");
    for (k, v) in signer.sign(&format!("localhost:{}", addr.port()), op, body) {
        req = req.header(k, v);
    }
    let resp = tx
        .send_request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    conn.abort();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
