//! Throughput of the daemon against the raw PKCS#11 limit, measured in one run on the
//! same machine: raw C_Encrypt AES-256-GCM (32-byte plaintext) through cryptoki on a
//! SoftHSM2 token, then the daemon's Encrypt, Decrypt and GenerateDataKey over mTLS gRPC
//! with a load generator on the same box. Prints figures and ratios; asserts nothing.
//!
//! Then Encrypt over the AWS JSON protocol (SigV4-signed, HTTP/2, TLS; the load
//! generator signs every request as an AWS SDK does) against gRPC on the same daemon, at 8
//! and 32 calls in flight, each side BENCH_ROUNDS times in alternating order, medians
//! compared.
//!
//! Last, Encrypt on the daemon as deployed (audit trail on, `sync = "batch"`) against the
//! same daemon with the trail off, at 1, 8, 32 and 64 calls in flight, each side
//! BENCH_ROUNDS times in alternating order, medians compared.
//!
//! Run: `cargo bench --bench throughput`. Settings (environment):
//! - `BENCH_SECS` (default 3): seconds per measurement;
//! - `BENCH_ONLY=audit`: only the audit comparison; `BENCH_ONLY=json`: only JSON vs gRPC;
//! - `BENCH_CONC=8,64`: the calls in flight of the audit comparison;
//! - `BENCH_ROUNDS` (default 3): rounds per side of the audit comparison;
//! - `BENCH_AUDIT_SYNC=none` (the trail without its fsync) or `off` (both daemons
//!   without a trail: an A/A run that shows the machine's noise).

// A benchmark fails loudly by design.
#![allow(clippy::indexing_slicing, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::{AuthPin, Ulong};
use p11kms::client::{connect, Identity};
use p11kms::proto;
use p11kms::DevDir;

#[path = "throughput/json_load.rs"]
mod json_load;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn secs() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    )
}

fn pin(dir: &DevDir, name: &str) -> BoxResult<String> {
    Ok(std::fs::read_to_string(dir.root().join(name))?
        .trim()
        .to_owned())
}

/// Raw C_Encrypt calls per second with `threads` threads, each with its own session.
fn raw_encrypt(
    ctx: &Pkcs11,
    slot: cryptoki::slot::Slot,
    key: ObjectHandle,
    threads: usize,
    copy: bool,
) -> BoxResult<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..threads {
        let s: Session = ctx.open_rw_session(slot)?;
        let (stop, count) = (Arc::clone(&stop), Arc::clone(&count));
        handles.push(std::thread::spawn(
            move || -> Result<(), cryptoki::error::Error> {
                let key = if copy {
                    s.copy_object(key, &[Attribute::Token(false)])?
                } else {
                    key
                };
                let mut n = 0u64;
                let mut iv = [0u8; 12];
                while !stop.load(Ordering::Relaxed) {
                    iv[..8].copy_from_slice(&n.to_be_bytes());
                    let mut iv_buf = iv;
                    let params = GcmParams::new(&mut iv_buf, b"aad", Ulong::from(128u64))?;
                    s.encrypt(&Mechanism::AesGcm(params), key, &[7u8; 32])?;
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
                Ok(())
            },
        ));
    }
    let t = Instant::now();
    std::thread::sleep(secs());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| "thread panicked")??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64())
}

fn raw_baseline(dir: &DevDir) -> BoxResult<Vec<(String, f64)>> {
    // Single-threaded at this point: nothing else reads the environment.
    std::env::set_var("SOFTHSM2_CONF", dir.softhsm_conf());
    let module = p11kms::softhsm_module()?;
    dir.init_token_if_missing(&module)?;
    let ctx = Pkcs11::new(&module)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = ctx
        .get_slots_with_initialized_token()?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|t| t.label().trim_end() == p11kms::DEV_TOKEN_LABEL)
                .unwrap_or(false)
        })
        .ok_or("no dev token")?;
    let s = ctx.open_rw_session(slot)?;
    s.login(UserType::User, Some(&AuthPin::from(pin(dir, "user.pin")?)))?;
    let key = s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(Ulong::from(32u64)),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(b"bench".to_vec()),
        ],
    )?;
    let mut out = Vec::new();
    for (threads, copy, name) in [
        (1, false, "raw C_Encrypt, token key, 1 thread"),
        (2, false, "raw C_Encrypt, token key, 2 threads"),
        (1, true, "raw C_Encrypt, session copy, 1 thread"),
        (2, true, "raw C_Encrypt, session copy, 2 threads"),
    ] {
        out.push((
            name.to_owned(),
            raw_encrypt(&ctx, slot, key, threads, copy)?,
        ));
    }
    s.destroy_object(key)?;
    drop(s);
    ctx.finalize()?;
    Ok(out)
}

#[derive(Clone, Copy)]
enum Op {
    Encrypt,
    Decrypt,
    GenerateDataKey,
}

async fn daemon_load(
    endpoint: &str,
    identity: &Identity,
    key_id: &str,
    op: Op,
    concurrency: usize,
) -> BoxResult<f64> {
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(connect(endpoint, identity).await?);
    }
    let mut c0 = clients[0].clone();
    let mut req = proto::EncryptRequest::default();
    req.key_id = key_id.to_owned();
    req.plaintext = vec![7u8; 32];
    let blob = c0.encrypt(req).await?.into_inner().ciphertext_blob;
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut c = clients[i % clients.len()].clone();
        let (stop, count, key_id, blob) = (
            Arc::clone(&stop),
            Arc::clone(&count),
            key_id.to_owned(),
            blob.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ok = match op {
                    Op::Encrypt => {
                        let mut r = proto::EncryptRequest::default();
                        r.key_id = key_id.clone();
                        r.plaintext = vec![7u8; 32];
                        c.encrypt(r).await.is_ok()
                    }
                    Op::Decrypt => c
                        .decrypt(proto::DecryptRequest {
                            ciphertext_blob: blob.clone(),
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                    Op::GenerateDataKey => c
                        .generate_data_key(proto::GenerateDataKeyRequest {
                            key_id: key_id.clone(),
                            key_spec: "AES_256".into(),
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                };
                assert!(ok, "call failed during the benchmark");
                n += 1;
            }
            count.fetch_add(n, Ordering::Relaxed);
        }));
    }
    let t = Instant::now();
    tokio::time::sleep(secs()).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64())
}

fn main() -> BoxResult<()> {
    let raw_dir_tmp = tempfile::tempdir()?;
    let raw_dir = DevDir::at(raw_dir_tmp.path());
    raw_dir.prepare()?;
    // BENCH_ONLY=audit measures the audit trail's cost alone (for profiling it), and
    // BENCH_ONLY=json the AWS JSON protocol's against gRPC.
    let only = std::env::var("BENCH_ONLY").ok();
    let audit_only = only.as_deref() == Some("audit");
    let json_only = only.as_deref() == Some("json");
    let raw = if only.is_some() {
        Vec::new()
    } else {
        raw_baseline(&raw_dir)?
    };

    // The daemon as deployed (audit trail on, one fsync per batch), and the same daemon
    // with the trail off, to show what auditing costs.
    let audited_tmp = tempfile::tempdir()?;
    let (mut audited, endpoint, identity, aws_api) = start_daemon(audited_tmp.path(), true)?;
    let unaudited_tmp = tempfile::tempdir()?;
    let (mut unaudited, endpoint_off, identity_off, _) = start_daemon(unaudited_tmp.path(), false)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (daemon, json_pairs, audit_pairs) = rt.block_on(async {
        let key = first_key(&endpoint, &identity).await?;
        let key_off = first_key(&endpoint_off, &identity_off).await?;
        let mut out = Vec::new();
        let ops: &[(Op, &str)] = if only.is_some() {
            &[]
        } else {
            &[
                (Op::Encrypt, "Encrypt"),
                (Op::Decrypt, "Decrypt"),
                (Op::GenerateDataKey, "GenerateDataKey"),
            ]
        };
        for &(op, name) in ops {
            for conc in [8, 32] {
                let rate = daemon_load(&endpoint, &identity, &key, op, conc).await?;
                out.push((format!("daemon {name}, mTLS gRPC, {conc} in flight"), rate));
            }
        }
        // Machine noise on two shared cores is about ±10% between two equal runs, so
        // each side of a comparison runs BENCH_ROUNDS times (default 3), in alternating
        // order, and the medians are compared.
        let rounds: usize = std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(3);
        // Encrypt over gRPC and over the AWS JSON protocol (SigV4, HTTP/2), on the daemon
        // as deployed.
        let mut json_pairs = Vec::new();
        if !audit_only {
            for conc in [8, 32] {
                let (mut grpc, mut json) = (Vec::new(), Vec::new());
                for round in 0..rounds.max(1) {
                    for side in 0..2 {
                        if (round + side) % 2 == 0 {
                            grpc.push(
                                daemon_load(&endpoint, &identity, &key, Op::Encrypt, conc).await?,
                            );
                        } else {
                            json.push(
                                json_load::encrypt_load(aws_api, audited_tmp.path(), &key, conc)
                                    .await?,
                            );
                        }
                    }
                }
                json_pairs.push((conc, median(&mut json), median(&mut grpc)));
            }
        }
        // Interleaved, so that a change of machine load hits both sides alike.
        let mut pairs = Vec::new();
        // BENCH_CONC=64 (or "8,32") limits the pairs to those calls in flight.
        let concs: Vec<usize> = std::env::var("BENCH_CONC")
            .ok()
            .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![1, 8, 32, 64]);
        for conc in concs.into_iter().filter(|_| !json_only) {
            let (mut ons, mut offs) = (Vec::new(), Vec::new());
            for round in 0..rounds.max(1) {
                let mut measure_off = true;
                for _ in 0..2 {
                    if (round % 2 == 0) == measure_off {
                        offs.push(
                            daemon_load(&endpoint_off, &identity_off, &key_off, Op::Encrypt, conc)
                                .await?,
                        );
                    } else {
                        ons.push(daemon_load(&endpoint, &identity, &key, Op::Encrypt, conc).await?);
                    }
                    measure_off = !measure_off;
                }
            }
            pairs.push((conc, median(&mut ons), median(&mut offs)));
        }
        Ok::<_, Box<dyn std::error::Error>>((out, json_pairs, pairs))
    })?;
    for child in [&mut audited, &mut unaudited] {
        let _ = child.kill();
        let _ = child.wait();
    }

    let best_raw_token = raw.iter().take(2).map(|(_, r)| *r).fold(0.0, f64::max);
    let best_raw_copy = raw.iter().skip(2).map(|(_, r)| *r).fold(0.0, f64::max);
    println!(
        "\n{:<52} {:>12}",
        "measurement (32-byte plaintext)", "calls/s"
    );
    for (name, rate) in &raw {
        println!("{name:<52} {rate:>12.0}");
    }
    for (name, rate) in &daemon {
        println!(
            "{name:<52} {rate:>12.0}   {:>5.0}% of best raw token-key, {:>5.0}% of best raw session-copy",
            100.0 * rate / best_raw_token,
            100.0 * rate / best_raw_copy
        );
    }
    if !json_pairs.is_empty() {
        println!(
            "\n{:<52} {:>12} {:>12} {:>8}",
            "Encrypt, AWS JSON (SigV4, HTTP/2) vs gRPC, medians",
            "JSON calls/s",
            "gRPC calls/s",
            "JSON/gRPC"
        );
        for (conc, json, grpc) in json_pairs {
            println!(
                "{:<52} {json:>12.0} {grpc:>12.0} {:>7.0}%",
                format!("  {conc} in flight"),
                100.0 * json / grpc
            );
        }
    }
    if audit_pairs.is_empty() {
        return Ok(());
    }
    println!(
        "\n{:<52} {:>12} {:>12} {:>8}",
        "Encrypt, audit trail on (fsync per batch) vs off, medians",
        "on calls/s",
        "off calls/s",
        "on/off"
    );
    for (conc, on, off) in audit_pairs {
        println!(
            "{:<52} {on:>12.0} {off:>12.0} {:>7.0}%",
            format!("  {conc} in flight"),
            100.0 * on / off
        );
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Starts `p11kms serve --dev` in `dir`, with the audit trail on or off; returns the
/// process, its endpoint and the admin identity.
fn start_daemon(
    dir: &std::path::Path,
    audit: bool,
) -> BoxResult<(std::process::Child, String, Identity, std::net::SocketAddr)> {
    let dev = DevDir::at(dir);
    dev.prepare()?;
    // BENCH_AUDIT_SYNC=none shows what the trail costs without its fsync.
    let sync = std::env::var("BENCH_AUDIT_SYNC").unwrap_or_else(|_| "batch".into());
    let setting = if audit && sync != "off" {
        format!("[audit]\nsync = {sync:?}\n")
    } else {
        "[audit]\nenabled = false\n".to_owned()
    };
    let path = dev.config_path();
    let text = std::fs::read_to_string(&path)?;
    std::fs::write(&path, text.replace("[audit]\n", &setting))?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_p11kms"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--aws-api-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut aws_api = None;
    let addr = loop {
        let line = lines.next().ok_or("daemon exited")??;
        if let Some(a) = line.strip_prefix("p11kms AWS API on https://") {
            aws_api = Some(a.trim().parse()?);
        }
        if let Some(a) = line.strip_prefix("p11kms listening on ") {
            break a.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let identity = Identity::from_dir(&dev.admin_identity())?;
    let aws_api = aws_api.ok_or("the daemon printed no AWS API line")?;
    Ok((child, format!("https://{addr}"), identity, aws_api))
}

async fn first_key(endpoint: &str, identity: &Identity) -> BoxResult<String> {
    let mut c = connect(endpoint, identity).await?;
    Ok(c.create_key(proto::CreateKeyRequest::default())
        .await?
        .into_inner()
        .key_metadata
        .ok_or("no metadata")?
        .key_id)
}
