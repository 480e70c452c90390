//! The metrics and health listener: `/metrics` scraped during and after load and parsed
//! by the Prometheus project's own Python parser (tests/interop/prom_scrape.py), whose
//! counters must move by exactly the calls made; `/healthz` and `/readyz`, which must
//! name the part that fails; and JSON logs that carry the request id.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use p11kms::proto;
use serde_json::Value;

use crate::harness::*;

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape parsed by prometheus_client.
pub struct Scrape {
    content_type: String,
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// The value of the sample `name` whose labels include `labels`, summed over the
    /// rest (0 when there is none, as for a series not yet created).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

/// Scrapes `url` with Python's prometheus_client parser (blocking).
fn scrape(url: &str) -> Scrape {
    scrape_with(url, &[])
}

/// Same, with more arguments for the script (a CA file for https).
fn scrape_with(url: &str, args: &[&std::path::Path]) -> Scrape {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/prom_scrape.py");
    let out = Command::new(python_bin())
        .arg(script)
        .arg(url)
        .args(args)
        .output()
        .expect("a Python with prometheus-client (scripts/python-deps.sh)");
    assert!(
        out.status.success(),
        "prom_scrape.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut types = BTreeMap::new();
    let samples = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            types.insert(
                s["family"].as_str().unwrap().to_owned(),
                s["type"].as_str().unwrap().to_owned(),
            );
            Sample {
                name: s["name"].as_str().unwrap().to_owned(),
                labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                value: s["value"].as_f64().unwrap(),
            }
        })
        .collect();
    Scrape {
        content_type: v["content_type"].as_str().unwrap().to_owned(),
        samples,
        types,
    }
}

/// Scrapes `url` like [`scrape`], off the async runtime.
pub async fn scrape_async(url: &str) -> Scrape {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || scrape(&url))
        .await
        .unwrap()
}

/// A plain HTTP/1.1 GET on the metrics listener: (status, body).
fn http_get(metrics_url: &str, path: &str) -> (u16, String) {
    let hostport = metrics_url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .unwrap();
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub async fn get(metrics_url: &str, path: &str) -> (u16, String) {
    let (url, path) = (metrics_url.to_owned(), path.to_owned());
    tokio::task::spawn_blocking(move || http_get(&url, &path))
        .await
        .unwrap()
}

const REQUESTS: &str = "p11kms_requests_total";

fn requests(s: &Scrape, op: &str, outcome: &str) -> f64 {
    s.value(
        REQUESTS,
        &[
            ("operation", op),
            ("transport", "grpc"),
            ("outcome", outcome),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_move_by_exactly_the_calls_made_under_load() {
    const TASKS: usize = 4;
    const ROUNDS: usize = 20;
    const DENIED_TASKS: usize = 2;
    const DENIED: usize = 8;
    const GARBAGE: usize = 5;
    let dir = TestDir::new();
    // The inline path is opt-in: on here, so that its counter is seen to move.
    dir.prepare().edit_config(|t| {
        t["hsm"]
            .as_table_mut()
            .unwrap()
            .insert("inline_sessions".into(), 2.into());
    });
    let d = Daemon::start(&dir);
    let url = d.metrics_url().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    // A role with no policy at all: every Encrypt it makes is denied.
    let nobody = role(ACCOUNT, "Nobody");
    let _ = d.client_as(&nobody).await;

    let before = scrape_async(&url).await;
    assert!(
        before.content_type.starts_with("text/plain"),
        "{}",
        before.content_type
    );
    assert_eq!(before.types["p11kms_requests"], "counter");
    assert_eq!(before.types["p11kms_request_duration_seconds"], "histogram");
    assert_eq!(requests(&before, "CreateKey", "ok"), 1.0);

    let mut load = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let mut c = d.admin().await;
        let key_id = key.key_id.clone();
        load.spawn(async move {
            for i in 0..ROUNDS {
                let pt = format!("task {t} round {i}").into_bytes();
                let blob = encrypt(&mut c, &key_id, &pt, &[("t", "m")]).await;
                assert_eq!(decrypt(&mut c, &blob, &[("t", "m")]).await, pt);
            }
        });
    }
    for _ in 0..DENIED_TASKS {
        let mut c = d.client_as(&nobody).await;
        let key_id = key.key_id.clone();
        load.spawn(async move {
            for _ in 0..DENIED {
                assert_kms_error(
                    c.encrypt(encrypt_req(&key_id, b"x", &[])).await,
                    "AccessDeniedException",
                );
            }
        });
    }
    {
        let mut c = d.admin().await;
        load.spawn(async move {
            for _ in 0..GARBAGE {
                assert_kms_error(
                    c.decrypt(decrypt_req(b"not a ciphertext blob", &[])).await,
                    "InvalidCiphertextException",
                );
            }
        });
    }
    // Scrapes while the load runs: each parses, and the count only grows.
    let start = requests(&before, "Encrypt", "ok");
    let mut last = start;
    while !load.is_empty() {
        let s = scrape_async(&url).await;
        let now = requests(&s, "Encrypt", "ok");
        assert!(now >= last, "a counter went back: {last} -> {now}");
        assert!(
            now <= start + (TASKS * ROUNDS) as f64,
            "more Encrypts counted than made: {now}"
        );
        last = now;
        while let Some(done) = load.try_join_next() {
            done.unwrap();
        }
    }

    let after = scrape_async(&url).await;
    let delta = |f: fn(&Scrape) -> f64| f(&after) - f(&before);
    let calls = (TASKS * ROUNDS) as f64;
    assert_eq!(delta(|s| requests(s, "Encrypt", "ok")), calls);
    assert_eq!(delta(|s| requests(s, "Decrypt", "ok")), calls);
    assert_eq!(
        delta(|s| requests(s, "Encrypt", "AccessDeniedException")),
        (DENIED_TASKS * DENIED) as f64
    );
    assert_eq!(
        delta(|s| requests(s, "Decrypt", "InvalidCiphertextException")),
        GARBAGE as f64
    );
    assert_eq!(
        delta(|s| s.value(
            "p11kms_request_duration_seconds_count",
            &[("operation", "Encrypt"), ("transport", "grpc")]
        )),
        calls + (DENIED_TASKS * DENIED) as f64
    );
    // Every latency lands in the +Inf bucket, and the sum is positive.
    assert_eq!(
        after.value(
            "p11kms_request_duration_seconds_bucket",
            &[("operation", "Decrypt"), ("le", "+Inf")]
        ),
        after.value(
            "p11kms_request_duration_seconds_count",
            &[("operation", "Decrypt")]
        )
    );
    assert!(
        after.value(
            "p11kms_request_duration_seconds_sum",
            &[("operation", "Decrypt")]
        ) > 0.0
    );

    // The HSM saw one job per allowed Encrypt and Decrypt; denied and unparsable calls
    // never reach it.
    let hsm = |s: &Scrape, op: &str| {
        s.value(
            "p11kms_hsm_call_duration_seconds_count",
            &[("operation", op), ("mechanism", "CKM_AES_GCM")],
        )
    };
    assert_eq!(hsm(&after, "encrypt") - hsm(&before, "encrypt"), calls);
    assert_eq!(hsm(&after, "decrypt") - hsm(&before, "decrypt"), calls);
    assert_eq!(
        after.value(
            "p11kms_hsm_call_duration_seconds_count",
            &[
                ("operation", "create_material"),
                ("mechanism", "CKM_AES_KEY_GEN")
            ]
        ),
        1.0
    );
    // SoftHSM2 answers in microseconds: with inline sessions, short calls run inline (not
    // all of them on a loaded machine, where a call preempted midway looks slow).
    let inline = delta(|s| s.value("p11kms_hsm_inline_calls_total", &[]));
    assert!(
        inline > 0.0 && inline <= 2.0 * calls,
        "inline calls: {inline} of {}",
        2.0 * calls
    );
    for gauge in [
        "p11kms_hsm_queue_depth",
        "p11kms_hsm_calls_in_flight",
        "p11kms_hsm_token_latency_microseconds",
        "p11kms_audit_queue_depth",
    ] {
        assert_eq!(after.types[gauge], "gauge", "{gauge}");
    }
    assert_eq!(after.value("p11kms_hsm_session_reopens_total", &[]), 0.0);

    // One audit record per call, all written; batched, each batch fsynced.
    let total_calls = 2.0 * calls + (DENIED_TASKS * DENIED + GARBAGE) as f64;
    assert_eq!(
        delta(|s| s.value("p11kms_audit_records_written_total", &[])),
        total_calls
    );
    assert_eq!(after.value("p11kms_audit_records_failed_total", &[]), 0.0);
    assert!(delta(|s| s.value("p11kms_audit_batch_size_count", &[])) >= 1.0);
    assert_eq!(
        delta(|s| s.value("p11kms_audit_batch_size_sum", &[])),
        total_calls
    );
    assert!(after.value("p11kms_audit_fsync_duration_seconds_count", &[]) >= 1.0);

    // The key was looked up in the cache on every call that named it.
    assert!(
        delta(|s| s.value(
            "p11kms_cache_lookups_total",
            &[("cache", "key"), ("result", "hit")]
        )) >= 2.0 * calls
    );
    assert!(after.value("p11kms_store_call_duration_seconds_count", &[]) >= 1.0);
    // No key id or principal ever becomes a label value.
    for s in &after.samples {
        for v in s.labels.values() {
            assert!(
                !v.contains(&key.key_id) && !v.contains("arn:"),
                "{}: {v}",
                s.name
            );
        }
    }
}

/// With `tls_cert` and `tls_key` the listener speaks HTTPS: Python checks the server's
/// certificate against the CA and scrapes; plain HTTP on that port gets no answer.
#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_listener_serves_tls_when_configured() {
    let dir = TestDir::new();
    dir.prepare();
    dir.edit_config(|t| {
        let m = t["metrics"].as_table_mut().unwrap();
        m.insert("tls_cert".into(), "server.pem".into());
        m.insert("tls_key".into(), "server.key".into());
    });
    let d = Daemon::start(&dir);
    let url = d.metrics_url().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let mut c = d.admin().await;
    create_key(&mut c).await;
    let ca = dir.path().join("ca.pem");
    let s = tokio::task::spawn_blocking(move || scrape_with(&url, &[&ca]))
        .await
        .unwrap();
    assert_eq!(requests(&s, "CreateKey", "ok"), 1.0);
    let plain = d.metrics_url().replacen("https://", "http://", 1);
    let refused = Command::new(python_bin())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/prom_scrape.py"
        ))
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!refused.status.success(), "plain HTTP was answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_iv_budget_shows_as_a_rollover() {
    let dir = TestDir::new();
    dir.prepare();
    dir.append_config("\n[limits]\nmax_encryptions_per_material = 2\n");
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    for _ in 0..5 {
        encrypt(&mut c, &key.key_id, b"x", &[]).await;
    }
    let s = scrape_async(d.metrics_url()).await;
    // Versions 1, 2, 3 carry two encryptions each; the fifth is the first of version 3.
    assert_eq!(s.value("p11kms_key_material_rollovers_total", &[]), 2.0);
    assert!(s.has("p11kms_iv_reservations_total"));
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_names_the_part_that_cannot_work() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let url = d.metrics_url().to_owned();
    assert_eq!(get(&url, "/healthz").await, (200, "ok\n".into()));
    let (status, body) = get(&url, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    for part in ["token: ok", "store: ok", "audit: ok"] {
        assert!(body.contains(part), "{part}: {body}");
    }

    // Another process holds the database's write lock: the store cannot take writes.
    let db = rusqlite::Connection::open(dir.path().join("p11kms.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, body) = get(&url, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store: failed"), "{body}");
    assert!(
        body.contains("token: ok") && body.contains("audit: ok"),
        "{body}"
    );
    assert_eq!(get(&url, "/healthz").await.0, 200, "alive all the same");
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    eventually("the store is ready again", || async {
        get(&url, "/readyz").await.0 == 200
    })
    .await;

    // The trail's file is removed: the audit part is named.
    for f in p11kms::trail_files(&dir.path().join("audit")).unwrap() {
        std::fs::remove_file(f).unwrap();
    }
    let (status, body) = get(&url, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("audit: failed"), "{body}");
    assert!(
        body.contains("store: ok") && body.contains("token: ok"),
        "{body}"
    );
    // A call now fails closed, and the trail stays unready.
    let mut c = d.admin().await;
    assert_kms_error(
        c.list_keys(proto::ListKeysRequest::default()).await,
        "KMSInternalException",
    );
    assert_eq!(get(&url, "/readyz").await.0, 503);
    assert!(d.log().contains("not ready"), "{}", d.log());
}

/// `--log-format json`, given as the flag or its environment variable: every line is a
/// JSON object, and a line logged inside a request carries that request's id.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_request_id() {
    let by_env = TestDir::new();
    check_json_log(Daemon::start_with(
        &by_env,
        &[("P11KMS_LOG_FORMAT", "json")],
    ))
    .await;
    let by_flag = TestDir::new();
    let d = Daemon::start_args(&by_flag, "127.0.0.1:0", &["--log-format", "json"], &[]);
    check_json_log(d).await;
}

async fn check_json_log(d: Daemon) {
    let mut c = d.admin().await;
    let created = c.create_key(proto::CreateKeyRequest::default()).await;
    let created_rid = request_id(&created);
    let key_id = created.unwrap().into_inner().key_metadata.unwrap().key_id;
    let log = d.stop();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 3, "{log}");
    // At the default level: "key created" is logged inside the CreateKey request.
    let created_line = lines
        .iter()
        .find(|l| l["fields"]["message"] == "key created")
        .unwrap_or_else(|| panic!("no key created line:\n{log}"));
    assert_eq!(created_line["span"]["request_id"], created_rid.as_str());
    assert_eq!(created_line["span"]["operation"], "CreateKey");
    assert_eq!(created_line["fields"]["key_id"], key_id.as_str());
    assert_eq!(created_line["level"], "INFO");
}
