//! Where the daemon stands, measured in one run on one machine (load generator on the
//! same box), every figure next to the limits measured in the same run:
//!
//! - **raw**: C_Encrypt AES-256-GCM of 32 bytes through cryptoki on a SoftHSM2 token,
//!   token key and session copy, 1 and N threads (N = cores);
//! - **echo**: the transport's ceiling, `p11kms serve --bench-echo` (the same binary,
//!   server, TLS configuration and runtime, answering every call with its own request),
//!   over mTLS gRPC and over the AWS JSON protocol (SigV4-signed, HTTP/2), at 1, 8, 32
//!   and 64 calls in flight;
//! - **ops**: the daemon as deployed (audit trail on, `sync = "batch"`): Encrypt,
//!   Decrypt, GenerateDataKey and ReEncrypt over both transports at 1, 8, 32 and 64 in
//!   flight, p50 and p99 latency, and each rate's ratio to the echo at the same transport
//!   and calls in flight, and to the best raw figure; and DescribeKey, which makes no HSM
//!   call (the request path, authorization and audit record alone: the others' ceiling);
//! - **paced**: Encrypt and Decrypt over gRPC, 32 in flight, paced at half the rate
//!   measured above: p50 and p99 latency under a load the daemon can carry; then the
//!   same on a daemon with the trail off, paced at half its own maximum;
//! - **slow**: a daemon behind a PKCS#11 shim that delays every cryptographic call by
//!   2 ms (`tests/shim/`): Encrypt at 1, 8, 32 and 64 in flight against the limit of
//!   in-flight ÷ 2 ms, and DescribeKey (no HSM call) alone and while 32 Encrypts wait on
//!   the slow token;
//! - **batch**: BatchEncrypt of 100 items at 1 and 8 in flight, items per second against
//!   single Encrypt calls at the same calls in flight;
//! - **xks**: AWS KMS's calls to p11kms as its external key store (XKS proxy API
//!   Encrypt and Decrypt of a 32-byte data key with AAD, signed as AWS KMS signs) on the
//!   deployed daemon's dev store, against gRPC Encrypt at the same calls in flight and
//!   raw, p50 and p99 latency (AWS KMS gives a proxy 250 ms);
//! - **audit**: Encrypt and DescribeKey with the audit trail on (fsync per batch) against
//!   the same daemon with the trail off, each side BENCH_ROUNDS times in alternating
//!   order, medians compared;
//! - **sign**: raw C_Sign on session copies (ECDSA P-256 with SHA-256, RSA-2048 PKCS#1
//!   v1.5 with SHA-256, HMAC-SHA-256; 1 and N threads), then the deployed daemon's Sign
//!   (ECC_NIST_P256, RSA_2048) and GenerateMac (HMAC_256) over gRPC at each calls in
//!   flight, each against the raw N-thread figure of its mechanism;
//! - **store**: the daemon as deployed on PostgreSQL (a throw-away cluster on this
//!   machine, as `tests/` start them) against one on SQLite: Encrypt at each calls in
//!   flight and CreateKey at 4, BENCH_ROUNDS alternating rounds per side, medians
//!   compared.
//!
//! Prints a table, and writes it as JSON to `target/bench/throughput.json` (or
//! `BENCH_JSON`). Asserts nothing. Run: `cargo bench --bench throughput`. Settings
//! (environment):
//! - `BENCH_SECS` (default 2): seconds per measurement;
//! - `BENCH_ONLY=echo,ops,...`: only these sections (raw, echo, ops, paced, xks, slow,
//!   batch, audit, sign, store; and `soak`, which runs only when named: see `throughput/soak.rs`);
//! - `BENCH_CONC=8,32`: the calls in flight of the echo, ops, slow and audit sections;
//! - `BENCH_ROUNDS` (default 3): rounds per side of the audit comparison;
//! - `BENCH_AUDIT_SYNC=none` (the trail without its fsync) or `off` (both daemons of
//!   the audit comparison without a trail: an A/A run that shows the machine's noise);
//! - `BENCH_SLOW_US` (default 2000): the slow token's delay per call;
//! - `BENCH_HSM="inline_sessions = 0; sessions = 4"`: more `[hsm]` settings for every
//!   daemon of the run;
//! - `BENCH_DAEMON=PATH`: the daemon binary to run instead of this build's (e.g. one
//!   built with frame pointers, for `perf record -g`).

// A benchmark fails loudly by design.
#![allow(clippy::indexing_slicing, clippy::panic, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use p11kms::client::{connect, Identity};
use p11kms::proto;
use p11kms::DevDir;

#[path = "throughput/grpc_load.rs"]
mod grpc_load;
#[path = "throughput/json_load.rs"]
mod json_load;
#[path = "throughput/load.rs"]
mod load;
#[path = "../tests/shim/p11shim.rs"]
mod p11shim;
#[path = "throughput/raw.rs"]
mod raw;
#[path = "throughput/raw_sign.rs"]
mod raw_sign;
#[path = "throughput/report.rs"]
mod report;
#[path = "throughput/soak.rs"]
mod soak;
#[path = "throughput/store.rs"]
mod store;
// The throw-away PostgreSQL clusters of the tests (test code: it panics on failure).
#[path = "../src/store/postgres/testdb.rs"]
#[allow(dead_code, clippy::unwrap_used)]
mod testdb;
#[path = "throughput/xks_load.rs"]
mod xks_load;

use grpc_load::Grpc;
use json_load::Json;
use load::Stats;
use report::{Report, Row};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The figure each row gives of the daemon's CPU use.
const CPU_PER_CALL: &str = "µs daemon CPU per call";

/// The calls measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Encrypt,
    Decrypt,
    GenerateDataKey,
    ReEncrypt,
    DescribeKey,
    /// BatchEncrypt of [`BATCH`] items.
    BatchEncrypt,
    /// CreateKey (a new key each call).
    CreateKey,
    /// Sign with ECDSA_SHA_256 (an ECC_NIST_P256 key).
    SignEcdsa,
    /// Sign with RSASSA_PKCS1_V1_5_SHA_256 (an RSA_2048 key).
    SignRsa,
    /// GenerateMac with HMAC_SHA_256 (an HMAC_256 key).
    GenerateMac,
}

/// Items per BatchEncrypt.
const BATCH: usize = 100;

/// The ops section's calls. DescribeKey makes no HSM call: the request path, its
/// authorization and its audit record alone, the most the others could reach.
const OPS: [Op; 5] = [
    Op::Encrypt,
    Op::Decrypt,
    Op::GenerateDataKey,
    Op::ReEncrypt,
    Op::DescribeKey,
];

fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.0),
    )
}

fn wanted(section: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim() == section))
}

/// Sections that run only when BENCH_ONLY names them (the soak).
fn only(section: &str) -> bool {
    std::env::var("BENCH_ONLY").is_ok_and(|only| only.split(',').any(|s| s.trim() == section))
}

fn in_flight() -> Vec<usize> {
    std::env::var("BENCH_CONC")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 32, 64])
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// How a benchmark daemon is started.
#[derive(Clone, Default)]
struct Launch {
    /// Audit trail on (`sync` from BENCH_AUDIT_SYNC, "batch" by default).
    audit: bool,
    /// `--bench-echo`: the transport's ceiling.
    echo: bool,
    /// A PKCS#11 module in place of SoftHSM2 (the delaying shim), with its environment.
    module: Option<(PathBuf, Vec<(String, String)>)>,
    /// `[store] postgres` (this URL) in place of the dev SQLite file.
    postgres: Option<String>,
}

/// A running daemon: its process, directory, gRPC endpoint, admin identity, AWS JSON
/// address and a key of its own.
struct Daemon {
    child: std::process::Child,
    dir: tempfile::TempDir,
    endpoint: String,
    identity: Identity,
    aws_api: std::net::SocketAddr,
    /// The external key stores' own listener.
    xks: std::net::SocketAddr,
    metrics: Option<std::net::SocketAddr>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `p11kms serve --dev` in a fresh directory.
    fn start(launch: &Launch) -> BoxResult<Self> {
        let dir = tempfile::tempdir()?;
        let dev = DevDir::at(dir.path());
        dev.prepare()?;
        let sync = std::env::var("BENCH_AUDIT_SYNC").unwrap_or_else(|_| "batch".into());
        let setting = if launch.audit && sync != "off" {
            format!("[audit]\nsync = {sync:?}\n")
        } else {
            "[audit]\nenabled = false\n".to_owned()
        };
        let path = dev.config_path();
        let mut text = std::fs::read_to_string(&path)?.replace("[audit]\n", &setting);
        // BENCH_HSM: more `[hsm]` settings, e.g. "inline_sessions = 0" (";" between).
        if let Ok(extra) = std::env::var("BENCH_HSM") {
            text = text.replace("[hsm]\n", &format!("[hsm]\n{}\n", extra.replace(';', "\n")));
        }
        // BENCH_DAEMON: another build of the daemon (e.g. one with frame pointers, to
        // profile with call graphs).
        let binary = std::env::var_os("BENCH_DAEMON").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_p11kms")),
            PathBuf::from,
        );
        let mut cmd = Command::new(binary);
        if let Some((module, env)) = &launch.module {
            let line = text
                .lines()
                .find(|l| l.starts_with("module = "))
                .ok_or("the dev configuration names no module")?
                .to_owned();
            text = text.replace(
                &line,
                &format!("module = {:?}", module.display().to_string()),
            );
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
        }
        if let Some(url) = &launch.postgres {
            text = text.replace(
                "sqlite = \"p11kms.db\"",
                &format!("postgres = {url:?}\npool_size = 16"),
            );
        }
        std::fs::write(&path, text)?;
        cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--aws-api-listen", "127.0.0.1:0"])
            .args(["--xks-listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if launch.echo {
            cmd.arg("--bench-echo");
        }
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut aws_api, mut metrics, mut xks) = (None, None, None);
        let addr = loop {
            let line = lines.next().ok_or("daemon exited")??;
            if let Some(a) = line.strip_prefix("p11kms metrics on http://") {
                metrics = a.trim().trim_end_matches("/metrics").parse().ok();
            }
            if let Some(a) = line.strip_prefix("p11kms AWS API on https://") {
                aws_api = Some(a.trim().parse()?);
            }
            if let Some(a) = line.strip_prefix("p11kms XKS proxy on https://") {
                xks = Some(a.trim().parse()?);
            }
            if let Some(a) = line.strip_prefix("p11kms listening on ") {
                break a.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Self {
            child,
            endpoint: format!("https://{addr}"),
            identity: Identity::from_dir(&dev.admin_identity())?,
            aws_api: aws_api.ok_or("the daemon printed no AWS API line")?,
            xks: xks.ok_or("the daemon printed no XKS proxy line")?,
            metrics,
            dir,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new key (on an echo daemon, a made-up id: the echo answers anything).
    async fn key(&self, echo: bool) -> BoxResult<String> {
        if echo {
            return Ok("00000000-0000-4000-8000-000000000000".into());
        }
        let mut c = connect(&self.endpoint, &self.identity).await?;
        Ok(c.create_key(proto::CreateKeyRequest::default())
            .await?
            .into_inner()
            .key_metadata
            .ok_or("no metadata")?
            .key_id)
    }

    /// The sum of the samples of `name` (all label sets) on the daemon's /metrics.
    fn metric(&self, name: &str) -> f64 {
        use std::io::{Read as _, Write as _};
        let Some(addr) = self.metrics else { return 0.0 };
        let mut text = String::new();
        let fetched = std::net::TcpStream::connect(addr).and_then(|mut c| {
            c.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            c.read_to_string(&mut text)
        });
        if fetched.is_err() {
            return 0.0;
        }
        text.lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// CPU seconds (user and system, every thread) the daemon has used so far.
    fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else {
            return f64::NAN;
        };
        // After the command name (in parentheses, maybe with spaces) come the fields from
        // the third (state) on; utime and stime are the 14th and 15th, in clock ticks
        // (100 per second on Linux).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| fields.get(i).and_then(|t| t.parse::<f64>().ok());
        match (ticks(11), ticks(12)) {
            (Some(user), Some(system)) => (user + system) / 100.0,
            _ => f64::NAN,
        }
    }

    /// Runs one measurement and returns, with its figures, the daemon's CPU time per
    /// call in µs (warm-up calls counted at the measured rate).
    async fn measured(
        &self,
        load: impl std::future::Future<Output = Stats>,
        secs: Duration,
    ) -> (Stats, f64) {
        let before = self.cpu_seconds();
        let s = load.await;
        let calls = s.rate * (secs + load::WARM_UP).as_secs_f64();
        (s, 1e6 * (self.cpu_seconds() - before) / calls)
    }

    /// Short HSM calls run inline so far, and all HSM calls.
    fn hsm_calls(&self) -> (f64, f64) {
        (
            self.metric("p11kms_hsm_inline_calls_total"),
            self.metric("p11kms_hsm_call_duration_seconds_count"),
        )
    }

    /// A key of `spec` and `usage` on this daemon.
    async fn key_of(&self, spec: &str, usage: &str) -> BoxResult<String> {
        let mut c = connect(&self.endpoint, &self.identity).await?;
        let r = proto::CreateKeyRequest {
            key_spec: spec.into(),
            key_usage: usage.into(),
            ..Default::default()
        };
        Ok(c.create_key(r)
            .await?
            .into_inner()
            .key_metadata
            .ok_or("no metadata")?
            .key_id)
    }

    async fn grpc(&self, key: &str) -> BoxResult<Grpc> {
        Grpc::connect(&self.endpoint, &self.identity, key).await
    }

    async fn json(&self, key: &str) -> BoxResult<Json> {
        Json::connect(self.aws_api, self.path(), key).await
    }
}

fn main() -> BoxResult<()> {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let secs = secs();
    let mut report = Report::default();

    // Raw PKCS#11 first, alone on the machine.
    let mut raw_sign = Vec::new();
    if wanted("sign") {
        let tmp = tempfile::tempdir()?;
        let dir = DevDir::at(tmp.path());
        dir.prepare()?;
        for (signer, n, rate) in raw_sign::baseline(&dir, cores)? {
            let name = format!(
                "raw C_Sign, {signer:?}, session copy, {n} thread{}",
                if n == 1 { "" } else { "s" }
            );
            report.push(Row::new(
                "raw",
                name,
                Stats {
                    rate,
                    ..Stats::default()
                },
            ));
            if n == cores {
                raw_sign.push((signer, rate));
            }
        }
    }
    let mut best_raw = None;
    if wanted("raw") || wanted("ops") {
        let tmp = tempfile::tempdir()?;
        let dir = DevDir::at(tmp.path());
        dir.prepare()?;
        for (name, _, copy, rate) in raw::baseline(&dir, cores)? {
            if copy {
                best_raw = Some(best_raw.map_or(rate, |b: f64| b.max(rate)));
            }
            report.push(Row::new(
                "raw",
                name,
                Stats {
                    rate,
                    ..Stats::default()
                },
            ));
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        if only("soak") {
            soak::soak().await?;
        }
        // The transport's ceiling, per transport and calls in flight.
        let mut echo = std::collections::HashMap::new();
        if wanted("echo") || wanted("ops") {
            let d = Daemon::start(&Launch {
                echo: true,
                ..Launch::default()
            })?;
            let key = d.key(true).await?;
            let (g, j) = (d.grpc(&key).await?, d.json(&key).await?);
            for c in in_flight() {
                let (s, cpu) = d.measured(g.load(Op::Encrypt, c, None, secs), secs).await;
                echo.insert(("grpc", c), s.rate);
                report.push(
                    Row::new("echo", format!("echo, gRPC, {c} in flight"), s)
                        .figure(CPU_PER_CALL, cpu),
                );
                let (s, cpu) = d.measured(j.load(Op::Encrypt, c, None, secs), secs).await;
                echo.insert(("json", c), s.rate);
                report.push(
                    Row::new("echo", format!("echo, AWS JSON, {c} in flight"), s)
                        .figure(CPU_PER_CALL, cpu),
                );
            }
        }

        let deployed = Daemon::start(&Launch {
            audit: true,
            ..Launch::default()
        })?;
        let key = deployed.key(false).await?;
        let (grpc, json) = (deployed.grpc(&key).await?, deployed.json(&key).await?);
        let mut single = std::collections::HashMap::new();
        if wanted("ops") {
            for op in OPS {
                for c in in_flight() {
                    for transport in ["grpc", "json"] {
                        let (inline0, calls0) = deployed.hsm_calls();
                        let (s, cpu) = if transport == "grpc" {
                            deployed.measured(grpc.load(op, c, None, secs), secs).await
                        } else {
                            deployed.measured(json.load(op, c, None, secs), secs).await
                        };
                        let (inline1, calls1) = deployed.hsm_calls();
                        single.insert((op, transport, c), s.rate);
                        let name = format!(
                            "{op:?}, {}, {c} in flight",
                            if transport == "grpc" {
                                "gRPC"
                            } else {
                                "AWS JSON"
                            }
                        );
                        let mut row = Row::new("ops", name, s).figure(CPU_PER_CALL, cpu);
                        if let Some(e) = echo.get(&(transport, c)) {
                            row = row.ratio("of echo", s.rate / e);
                        }
                        if let Some(r) = best_raw.filter(|_| op != Op::DescribeKey) {
                            row = row.ratio("of raw", s.rate / r);
                        }
                        if calls1 > calls0 {
                            row = row
                                .ratio("HSM calls inline", (inline1 - inline0) / (calls1 - calls0));
                        }
                        report.push(row);
                    }
                }
            }
        }

        if wanted("paced") {
            paced(&mut report, &grpc, |op| single.get(&(op, "grpc", 32)).copied(), "", secs)
                .await;
            // The same with the trail off: the request path's own share of the tail,
            // apart from the flush each call of the deployed daemon waits for.
            let off = Daemon::start(&Launch::default())?;
            let key_off = off.key(false).await?;
            let grpc_off = off.grpc(&key_off).await?;
            paced(&mut report, &grpc_off, |_| None, ", audit off", secs).await;
        }

        if wanted("batch") {
            for c in [1, 8] {
                let one = match single.get(&(Op::Encrypt, "grpc", c)) {
                    Some(r) => *r,
                    None => grpc.load(Op::Encrypt, c, None, secs).await.rate,
                };
                let s = grpc.load(Op::BatchEncrypt, c, None, secs).await;
                let items = Stats { rate: s.rate * BATCH as f64, ..s };
                report.push(
                    Row::new("batch", format!("BatchEncrypt of {BATCH}, gRPC, {c} in flight (items/s; latency per call)"), items)
                        .ratio("of single Encrypt calls", items.rate / one),
                );
            }
        }

        if wanted("xks") {
            // AWS KMS calling p11kms as its external key store: against gRPC Encrypt at
            // the same calls in flight and raw, with AWS's 250 ms limit in mind (p99).
            let x = xks_load::Xks::connect(deployed.xks, deployed.path()).await?;
            for c in in_flight() {
                let grpc_rate = match single.get(&(Op::Encrypt, "grpc", c)) {
                    Some(r) => *r,
                    None => grpc.load(Op::Encrypt, c, None, secs).await.rate,
                };
                for op in [xks_load::XksOp::Encrypt, xks_load::XksOp::Decrypt] {
                    let (s, cpu) = deployed.measured(x.load(op, c, secs), secs).await;
                    let mut row = Row::new("xks", format!("XKS {op:?}, {c} in flight"), s)
                        .figure(CPU_PER_CALL, cpu)
                        .ratio("of gRPC Encrypt", s.rate / grpc_rate);
                    if let Some(r) = best_raw {
                        row = row.ratio("of raw", s.rate / r);
                    }
                    report.push(row);
                }
            }
        }

        if wanted("sign") {
            use raw_sign::Signer;
            for (op, spec, usage, signer) in [
                (Op::SignEcdsa, "ECC_NIST_P256", "SIGN_VERIFY", Signer::EcdsaP256),
                (Op::SignRsa, "RSA_2048", "SIGN_VERIFY", Signer::Rsa2048),
                (Op::GenerateMac, "HMAC_256", "GENERATE_VERIFY_MAC", Signer::Hmac256),
            ] {
                let key = deployed.key_of(spec, usage).await?;
                let g = Grpc::connect_without_blob(&deployed.endpoint, &deployed.identity, &key)
                    .await?;
                let raw = raw_sign
                    .iter()
                    .find(|(s, _)| format!("{s:?}") == format!("{signer:?}"))
                    .map(|(_, r)| *r);
                for c in in_flight() {
                    let (inline0, calls0) = deployed.hsm_calls();
                    let (s, cpu) = deployed.measured(g.load(op, c, None, secs), secs).await;
                    let (inline1, calls1) = deployed.hsm_calls();
                    let mut row = Row::new("sign", format!("{op:?} ({spec}), gRPC, {c} in flight"), s)
                        .figure(CPU_PER_CALL, cpu);
                    if let Some(r) = raw {
                        row = row.ratio("of raw C_Sign, N threads", s.rate / r);
                    }
                    if let Some(e) = echo.get(&("grpc", c)) {
                        row = row.ratio("of echo", s.rate / e);
                    }
                    if calls1 > calls0 {
                        row = row.ratio("HSM calls inline", (inline1 - inline0) / (calls1 - calls0));
                    }
                    report.push(row);
                }
            }
        }

        if wanted("slow") {
            slow_token(&mut report, secs).await?;
        }

        if wanted("audit") {
            audit_comparison(&mut report, &deployed, &grpc, secs).await?;
        }

        if wanted("store") {
            store::postgres_against_sqlite(&mut report, secs).await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;

    report.print();
    report.write_json()?;
    Ok(())
}

/// Encrypt and Decrypt at 32 in flight paced at half their maximum rate (`known`, or
/// measured here), for p50 and p99 under a load the daemon can carry.
async fn paced(
    report: &mut Report,
    g: &Grpc,
    known: impl Fn(Op) -> Option<f64>,
    label: &str,
    secs: Duration,
) {
    for op in [Op::Encrypt, Op::Decrypt] {
        let max = match known(op) {
            Some(r) => r,
            None => g.load(op, 32, None, secs).await.rate,
        };
        let s = g.load(op, 32, Some(max / 2.0), secs).await;
        report.push(
            Row::new(
                "paced",
                format!("{op:?}, gRPC, 32 in flight, paced at half of max{label}"),
                s,
            )
            .ratio("of max", s.rate / max),
        );
    }
}

/// Encrypt and DescribeKey on the daemon as deployed against a twin without a trail,
/// interleaved so that a change of machine load hits both sides alike; machine noise on
/// two shared cores is about ±10% between two equal runs, so each side runs
/// BENCH_ROUNDS times and the medians are compared.
async fn audit_comparison(
    report: &mut Report,
    deployed: &Daemon,
    audited: &Grpc,
    secs: Duration,
) -> BoxResult<()> {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let off = Daemon::start(&Launch::default())?;
    let key_off = off.key(false).await?;
    let unaudited = off.grpc(&key_off).await?;
    for (op, c) in [Op::Encrypt, Op::DescribeKey]
        .into_iter()
        .flat_map(|op| in_flight().into_iter().map(move |c| (op, c)))
    {
        let (mut ons, mut offs) = (Vec::new(), Vec::new());
        let (mut cpu_on, mut cpu_off) = (Vec::new(), Vec::new());
        let trail = |d: &Daemon| {
            [
                "p11kms_audit_batch_size_sum",
                "p11kms_audit_batch_size_count",
                "p11kms_audit_fsync_duration_seconds_sum",
                "p11kms_audit_fsync_duration_seconds_count",
            ]
            .map(|m| d.metric(m))
        };
        let before = trail(deployed);
        for round in 0..rounds.max(1) {
            for side in 0..2 {
                if (round + side) % 2 == 0 {
                    let (s, cpu) = off.measured(unaudited.load(op, c, None, secs), secs).await;
                    offs.push(s.rate);
                    cpu_off.push(cpu);
                } else {
                    let (s, cpu) = deployed
                        .measured(audited.load(op, c, None, secs), secs)
                        .await;
                    ons.push(s.rate);
                    cpu_on.push(cpu);
                }
            }
        }
        let after = trail(deployed);
        let d = |i: usize| after[i] - before[i];
        let (on, off) = (median(&mut ons), median(&mut offs));
        report.push(
            Row::new(
                "audit",
                format!("{op:?}, gRPC, {c} in flight, audit on (median of {rounds})"),
                Stats {
                    rate: on,
                    ..Stats::default()
                },
            )
            .ratio("of audit off", on / off)
            .figure(CPU_PER_CALL, median(&mut cpu_on))
            .figure("records per fsync", d(0) / d(1))
            .figure("µs per fsync", 1e6 * d(2) / d(3)),
        );
        report.push(
            Row::new(
                "audit",
                format!("{op:?}, gRPC, {c} in flight, audit off (median of {rounds})"),
                Stats {
                    rate: off,
                    ..Stats::default()
                },
            )
            .figure(CPU_PER_CALL, median(&mut cpu_off)),
        );
    }
    Ok(())
}

/// A token that answers every cryptographic call after BENCH_SLOW_US (2 ms): Encrypt
/// against in-flight ÷ delay, the most such a token allows; then DescribeKey, which
/// needs no HSM, alone and while 32 Encrypts wait on the token.
async fn slow_token(report: &mut Report, secs: Duration) -> BoxResult<()> {
    let delay_us: u64 = std::env::var("BENCH_SLOW_US")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(2000);
    let shim = p11shim::library()?;
    let target = p11kms::softhsm_module()?;
    let launch = |audit| Launch {
        audit,
        module: Some((
            shim.clone(),
            vec![
                ("P11SHIM_TARGET".into(), target.display().to_string()),
                ("P11SHIM_DELAY_US".into(), delay_us.to_string()),
            ],
        )),
        ..Launch::default()
    };
    let delay = Duration::from_micros(delay_us);
    // The trail off too: a durable record adds its fsync to each call's time, which
    // the token's delay does not account for.
    // The trail off first, then on (the daemon kept for the DescribeKey rows).
    let mut g = None;
    for audit in [false, true] {
        let d = Daemon::start(&launch(audit))?;
        let key = d.key(false).await?;
        let grpc = d.grpc(&key).await?;
        for c in in_flight() {
            let (s, cpu) = d
                .measured(grpc.load(Op::Encrypt, c, None, secs), secs)
                .await;
            let limit = c as f64 / delay.as_secs_f64();
            let trail = if audit { "" } else { ", audit off" };
            report.push(
                Row::new(
                    "slow",
                    format!("Encrypt, gRPC, {c} in flight, token +{delay_us} µs/call{trail}"),
                    s,
                )
                .figure(CPU_PER_CALL, cpu)
                .ratio("of in-flight ÷ delay", s.rate / limit),
            );
        }
        g = Some((d, grpc));
    }
    let (_daemon, g) = g.ok_or("no slow daemon")?;
    let alone = g.load(Op::DescribeKey, 8, None, secs).await;
    report.push(Row::new(
        "slow",
        "DescribeKey, gRPC, 8 in flight, token idle",
        alone,
    ));
    let busy = {
        let encrypts = g.clone();
        let background = tokio::spawn(async move {
            encrypts
                .load(Op::Encrypt, 32, None, secs + Duration::from_secs(1))
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = g.load(Op::DescribeKey, 8, None, secs).await;
        background.await?;
        s
    };
    report.push(
        Row::new(
            "slow",
            "DescribeKey, gRPC, 8 in flight, 32 Encrypts on the slow token",
            busy,
        )
        .ratio("of token idle", busy.rate / alone.rate),
    );
    Ok(())
}
