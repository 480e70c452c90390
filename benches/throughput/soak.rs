//! Soak: mixed load on one daemon for a long time (`SOAK_SECS`, default 60), with the
//! daemon's resident memory, open file descriptors and latency sampled every
//! `SOAK_SAMPLE_SECS` (default 10). The mix: Encrypt, Decrypt, GenerateDataKey, grants
//! made and revoked, DescribeKey and on-demand rotations (two per client), from 16
//! clients on 4 connections, paced at `SOAK_RATE` calls per second in all (default
//! 1500: a soak looks for leaks, not for the ceiling, and every call writes an audit
//! record).
//!
//! It passes when no call failed, resident memory after the warm-up (the first tenth,
//! at least one sample) grew less than 10%, and descriptors stayed within 8 of their
//! count at the end of the warm-up. Run with `scripts/soak.sh [MINUTES]`.
//!
//! New keys are not in the mix: each one is state that stays (SoftHSM2 keeps every token
//! object in memory), which would read as growth however long the run. What a key costs
//! is measured after the soak instead, and printed: resident memory per key made.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p11kms::client::{connect, KmsClient};
use p11kms::proto;

use super::grpc_load::encrypt_request;
use super::{BoxResult, Daemon, Launch};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the clients share: counts and this interval's latencies.
#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    errors: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    first_error: Mutex<Option<String>>,
}

/// One sample of the daemon.
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
    calls: u64,
    errors: u64,
    p50_us: u64,
    p99_us: u64,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One client: calls from the mix, each waiting for its turn on the shared pace.
async fn client(
    mut c: KmsClient,
    keys: Arc<Vec<String>>,
    tally: Arc<Tally>,
    until: Instant,
    interval: Duration,
    seed: u64,
) {
    let mut rng = seed | 1;
    let mut next = Instant::now();
    let mut blob: Option<Vec<u8>> = None;
    let mut rotations = 0u32;
    while Instant::now() < until {
        next += interval;
        tokio::time::sleep_until(next.into()).await;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = keys[(rng % keys.len() as u64) as usize].clone();
        let started = Instant::now();
        let roll = (rng >> 32) % 1000;
        let res: Result<(), tonic::Status> = async {
            match roll {
                0..=399 => {
                    let r = c.encrypt(encrypt_request(key)).await?;
                    blob = Some(r.into_inner().ciphertext_blob);
                }
                400..=699 => {
                    if let Some(b) = &blob {
                        c.decrypt(proto::DecryptRequest {
                            ciphertext_blob: b.clone(),
                            ..Default::default()
                        })
                        .await?;
                    }
                }
                700..=979 => {
                    c.generate_data_key(proto::GenerateDataKeyRequest {
                        key_id: key,
                        key_spec: "AES_256".into(),
                        ..Default::default()
                    })
                    .await?;
                }
                980..=997 => {
                    let g = c
                        .create_grant(proto::CreateGrantRequest {
                            key_id: key.clone(),
                            grantee_principal: "arn:aws:iam::111122223333:role/soak".into(),
                            operations: vec!["Decrypt".into()],
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    c.revoke_grant(proto::RevokeGrantRequest {
                        key_id: key,
                        grant_id: g.grant_id,
                    })
                    .await?;
                }
                // Each rotation is a token object that stays: a few per client.
                _ if rotations < 2 => {
                    rotations += 1;
                    c.rotate_key_on_demand(proto::RotateKeyOnDemandRequest { key_id: key })
                        .await?;
                }
                _ => {
                    c.describe_key(proto::DescribeKeyRequest {
                        key_id: key,
                        ..Default::default()
                    })
                    .await?;
                }
            }
            Ok(())
        }
        .await;
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tally.calls.fetch_add(1, Ordering::Relaxed);
        tally
            .latencies_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(took);
        if let Err(e) = res {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            let mut first = tally.first_error.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = Some(format!("{e}"));
            }
        }
    }
}

/// Runs the soak and prints its samples; Err when it failed a criterion.
pub(crate) async fn soak() -> BoxResult<()> {
    let secs = env_u64("SOAK_SECS", 60);
    let every = Duration::from_secs(env_u64("SOAK_SAMPLE_SECS", 10).max(1));
    let rate = env_u64("SOAK_RATE", 1500).max(1);
    const CLIENTS: u64 = 16;
    let daemon = Daemon::start(&Launch {
        audit: true,
        ..Launch::default()
    })?;
    let pid = daemon.child.id();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(connect(&daemon.endpoint, &daemon.identity).await?);
    }
    let mut keys = Vec::new();
    for _ in 0..8 {
        keys.push(daemon.key(false).await?);
    }
    let keys = Arc::new(keys);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let interval = Duration::from_secs_f64(CLIENTS as f64 / rate as f64);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(client(
                conns[(i % 4) as usize].clone(),
                Arc::clone(&keys),
                Arc::clone(&tally),
                until,
                interval,
                0x9e37_79b9 ^ (i + 1).wrapping_mul(0x2545_f491),
            ))
        })
        .collect();
    println!(
        "soak: {secs} s at {rate} calls/s from {CLIENTS} clients, a sample every {} s",
        every.as_secs()
    );
    println!(
        "{:>8} {:>10} {:>6} {:>10} {:>7} {:>8} {:>8}",
        "s", "RSS KiB", "fds", "calls", "errors", "p50 µs", "p99 µs"
    );
    let mut samples: Vec<Sample> = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(every.min(until.saturating_duration_since(Instant::now()))).await;
        let mut lat =
            std::mem::take(&mut *tally.latencies_us.lock().unwrap_or_else(|p| p.into_inner()));
        lat.sort_unstable();
        let s = Sample {
            at: started.elapsed(),
            rss_kib: rss_kib(pid),
            fds: fds(pid),
            calls: tally.calls.load(Ordering::Relaxed),
            errors: tally.errors.load(Ordering::Relaxed),
            p50_us: percentile(&lat, 0.5),
            p99_us: percentile(&lat, 0.99),
        };
        println!(
            "{:>8.0} {:>10} {:>6} {:>10} {:>7} {:>8} {:>8}",
            s.at.as_secs_f64(),
            s.rss_kib,
            s.fds,
            s.calls,
            s.errors,
            s.p50_us,
            s.p99_us
        );
        samples.push(s);
    }
    for t in tasks {
        t.await?;
    }
    let errors = tally.errors.load(Ordering::Relaxed);
    let calls = tally.calls.load(Ordering::Relaxed);
    let warm = (samples.len() / 10)
        .max(1)
        .min(samples.len().saturating_sub(1));
    let base = samples.get(warm.saturating_sub(1)).ok_or("no samples")?;
    let after = samples.get(warm..).unwrap_or_default();
    let max_rss = after
        .iter()
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(base.rss_kib);
    let last_rss = samples.last().map_or(base.rss_kib, |s| s.rss_kib);
    let growth = (max_rss as f64 - base.rss_kib as f64) / base.rss_kib.max(1) as f64;
    let fd_drift = after
        .iter()
        .map(|s| s.fds.abs_diff(base.fds))
        .max()
        .unwrap_or(0);
    println!(
        "soak: {calls} calls, {errors} errors; RSS {} KiB after warm-up, {last_rss} KiB at the end, at most {max_rss} KiB ({:+.1}%); descriptors {} after warm-up, drift at most {fd_drift}",
        base.rss_kib,
        100.0 * growth,
        base.fds
    );
    let mut failed = Vec::new();
    if errors > 0 {
        let first = tally
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        failed.push(format!("{errors} calls failed, the first: {first}"));
    }
    if growth >= 0.10 {
        failed.push(format!(
            "resident memory grew {:.1}% after the warm-up",
            100.0 * growth
        ));
    }
    if fd_drift > 8 {
        failed.push(format!("open descriptors drifted by {fd_drift}"));
    }
    // What a key costs the daemon: state that stays, so not part of the soak's mix.
    let mut c = conns.swap_remove(0);
    const NEW_KEYS: usize = 500;
    let before = rss_kib(pid);
    for _ in 0..NEW_KEYS {
        c.create_key(proto::CreateKeyRequest::default()).await?;
    }
    let grown = rss_kib(pid).saturating_sub(before);
    println!(
        "soak: {NEW_KEYS} new keys then: RSS +{grown} KiB, {} bytes per key",
        grown * 1024 / NEW_KEYS as u64
    );
    if failed.is_empty() {
        println!("soak: passed");
        Ok(())
    } else {
        Err(failed.join("; ").into())
    }
}
