//! The load driver: calls from many tasks for a fixed time, closed-loop (each task calls
//! again as soon as its answer is in) or paced to a total rate, recording every call's
//! latency after a short warm-up.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one measurement found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    /// Calls per second.
    pub rate: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
}

/// Calls made before the clock starts: connections warm, caches filled.
pub(crate) const WARM_UP: Duration = Duration::from_millis(300);

/// Runs `call(task)` from `concurrency` tasks for `secs`. With `pace`, the tasks
/// together start at most `pace` calls per second (each its share, on a timer).
pub(crate) async fn drive<F, Fut>(
    concurrency: usize,
    pace: Option<f64>,
    secs: Duration,
    call: F,
) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let (call, stop, counting) = (Arc::clone(&call), Arc::clone(&stop), Arc::clone(&counting));
        tasks.push(tokio::spawn(async move {
            let mut timer = pace.map(|rate| {
                let every = Duration::from_secs_f64(concurrency as f64 / rate);
                // Each task a step later than the one before: together a steady stream
                // of calls, one every 1/rate, not all of them at once every `every`.
                let phase = every.mul_f64(i as f64 / concurrency as f64);
                let mut t = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 14);
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = &mut timer {
                    t.tick().await;
                }
                let started = Instant::now();
                call(i).await;
                if counting.load(Ordering::Relaxed) {
                    latencies
                        .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    counting.store(true, Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(secs).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a load task panicked"));
    }
    // Calls in flight at the end started inside the window but may end after it: they
    // count, and the window is that much longer on average; negligible at seconds.
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |v| f64::from(*v))
    };
    Stats {
        rate: all.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}
