//! Graceful shutdown over the wire: on SIGTERM the daemon stops accepting, lets the
//! calls in flight finish (or, past its deadline, cancels them), closes the audit trail
//! last, and exits cleanly; no call that answered success lacks its record.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use p11kms::client::error_name;
use p11kms::{check_trail_end, trail_files, verify_trail, CheckpointPublicKey};

use crate::harness::*;

/// One Encrypt as the client saw it.
struct Call {
    started: Instant,
    ended: Instant,
    request_id: Option<String>,
    /// None when it succeeded; else the AWS error name or the gRPC code.
    error: Option<String>,
}

/// `tasks` callers send Encrypt back to back until their first failure (the daemon has
/// gone).
async fn load(d: &Daemon, key_id: &str, tasks: usize) -> Vec<tokio::task::JoinHandle<Vec<Call>>> {
    let mut handles = Vec::new();
    let mut client = None;
    for i in 0..tasks {
        // A few connections, each carrying several callers' streams.
        if i % 8 == 0 {
            client = Some(d.admin().await);
        }
        let Some(mut c) = client.clone() else {
            unreachable!()
        };
        let key_id = key_id.to_owned();
        handles.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            loop {
                let started = Instant::now();
                let r = c.encrypt(encrypt_req(&key_id, b"shutdown", &[])).await;
                let ended = Instant::now();
                let request_id = try_request_id(&r);
                let error = r.as_ref().err().map(|s| {
                    error_name(s).map_or_else(|| format!("{:?}", s.code()), str::to_owned)
                });
                let failed = error.is_some();
                calls.push(Call {
                    started,
                    ended,
                    request_id,
                    error,
                });
                if failed {
                    return calls;
                }
            }
        }));
    }
    handles
}

/// The Encrypt records of the trail, after `p11kms::verify_trail` checked its chain and
/// checkpoints with the token's key, and that it ends in the final checkpoint of a
/// clean stop.
fn encrypt_records(dir: &TestDir) -> Vec<Value> {
    let audit = dir.path().join("audit");
    let files = trail_files(&audit).unwrap();
    let key = CheckpointPublicKey::read(&audit.join("audit-checkpoint.pub.pem")).unwrap();
    let verified = verify_trail(&files, Some(&key)).unwrap();
    check_trail_end(&verified, false).unwrap();
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["eventName"] == "Encrypt" {
                out.push(v);
            }
        }
    }
    out
}

/// Loads `d` with `callers` Encrypt loops for half a second, sends SIGTERM, and waits
/// for the daemon to exit. Returns every call the callers made, the daemon's log, when
/// the signal was sent and how long the stop took.
async fn terminate_under_load(d: Daemon, callers: usize) -> (Vec<Call>, String, Instant, Duration) {
    let key = create_key(&mut d.admin().await).await;
    let tasks = load(&d, &key.key_id, callers).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    d.terminate();
    let log = tokio::task::spawn_blocking(move || d.wait_exit())
        .await
        .unwrap();
    let took = signalled.elapsed();
    let mut calls = Vec::new();
    for t in tasks {
        calls.extend(t.await.unwrap());
    }
    (calls, log, signalled, took)
}

/// SIGTERM under load: calls in flight at the signal finish with success, the daemon
/// exits 0 after closing the trail, and the trail holds exactly the calls that answered
/// success (none lost, none recorded for a call that was refused at the door).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_calls_in_flight_finish_and_closes_the_trail_last() {
    let dir = TestDir::new();
    let (calls, log, signalled, took) = terminate_under_load(Daemon::start(&dir), 24).await;

    let ok: Vec<&Call> = calls.iter().filter(|c| c.error.is_none()).collect();
    assert!(ok.len() > 100, "only {} calls succeeded", ok.len());
    let straddling = ok
        .iter()
        .filter(|c| c.started < signalled && c.ended > signalled)
        .count();
    assert!(
        straddling > 0,
        "no call in flight at the signal finished with success"
    );
    // Whoever was refused was refused by the transport, never by a failing vault.
    for c in calls.iter().filter_map(|c| c.error.as_deref()) {
        assert!(
            !c.starts_with("KMS") && !c.contains("Exception"),
            "a call failed in the vault during shutdown: {c}"
        );
    }
    assert!(took < Duration::from_secs(20), "slow stop");
    assert!(log.contains("calls in flight finished"), "{log}");
    let closed = log.find("audit trail closed").expect("trail not closed");
    let finished = log.find("calls in flight finished").unwrap();
    assert!(
        finished < closed,
        "the trail closed before calls finished:\n{log}"
    );

    let recorded: HashSet<String> = encrypt_records(&dir)
        .iter()
        .map(|r| {
            assert!(r.get("errorCode").is_none(), "{r}");
            r["requestID"].as_str().unwrap().to_owned()
        })
        .collect();
    let answered: HashSet<String> = ok.iter().map(|c| c.request_id.clone().unwrap()).collect();
    assert_eq!(answered.len(), ok.len());
    assert_eq!(
        recorded, answered,
        "the trail and the successful answers differ"
    );
}

/// Past the deadline (here 0 s) calls still in flight are cancelled: each leaves a
/// RequestCanceled record or its own, the daemon still exits 0 at once, and every call
/// that answered success is in the trail.
#[tokio::test(flavor = "multi_thread")]
async fn calls_past_the_shutdown_deadline_are_cancelled_and_recorded() {
    let dir = TestDir::new();
    dir.prepare();
    dir.edit_config(|t| {
        t.insert("shutdown_timeout_secs".into(), 0.into());
    });
    let (calls, log, _, took) = terminate_under_load(Daemon::start(&dir), 64).await;
    assert!(took < Duration::from_secs(15), "slow stop");
    assert!(log.contains("shutdown deadline"), "{log}");
    assert!(log.contains("audit trail closed"), "{log}");

    let records = encrypt_records(&dir);
    for c in calls.iter().filter(|c| c.error.is_none()) {
        let found: Vec<&Value> = records
            .iter()
            .filter(|r| Some(r["requestID"].as_str().unwrap()) == c.request_id.as_deref())
            .collect();
        assert_eq!(found.len(), 1, "{:?}: {found:?}", c.request_id);
        assert!(found[0].get("errorCode").is_none(), "{}", found[0]);
    }
    // Any record with an error is a cancellation, never a vault failure.
    for r in &records {
        if let Some(code) = r.get("errorCode") {
            assert_eq!(code, "RequestCanceled", "{r}");
        }
    }
}

/// `/readyz` of a daemon, or None once nothing answers.
fn readyz(metrics_url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let hostport = metrics_url.strip_prefix("http://")?.split('/').next()?;
    let mut s = std::net::TcpStream::connect(hostport).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET /readyz HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    Some((status, resp.split_once("\r\n\r\n")?.1.to_owned()))
}

/// While calls in flight finish, `/readyz` says the server is shutting down (so that a
/// load balancer sends new calls elsewhere), and every one of those calls succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn readiness_fails_while_calls_in_flight_finish() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let url = d.metrics_url().to_owned();
    let probe = url.clone();
    let (status, body) = tokio::task::spawn_blocking(move || readyz(&probe))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("server: ok"), "{body}");

    // Key generation is the slowest call there is: many of them keep the drain busy.
    let admin = d.admin().await;
    let creates: Vec<_> = (0..150)
        .map(|_| {
            let mut c = admin.clone();
            tokio::spawn(async move {
                c.create_key(p11kms::proto::CreateKeyRequest::default())
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    d.terminate();
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        while let Some(answer) = readyz(&url) {
            seen.push(answer);
        }
        seen
    })
    .await
    .unwrap();
    let log = tokio::task::spawn_blocking(move || d.wait_exit())
        .await
        .unwrap();
    let mut ok = 0;
    for c in creates {
        if c.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert!(
        seen.iter()
            .any(|(s, b)| *s == 503 && b.contains("server: failed: shutting down")),
        "readiness never said the server is shutting down: {seen:?}\n{log}"
    );
    assert!(ok > 0, "no CreateKey in flight finished");
}
