//! The metric families and the calls that record into them. One [`Metrics`] is made at
//! start-up and handed to each part (no global registry, so two daemons in one process
//! keep their own counts).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type Labels3 = [(&'static str, &'static str); 3];
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
type CallKind = (&'static str, &'static str);

/// The HSM jobs the pool runs, as (operation, mechanism).
const HSM_CALLS: [CallKind; 7] = [
    ("encrypt", "CKM_AES_GCM"),
    ("decrypt", "CKM_AES_GCM"),
    ("generate_data_key", "CKM_AES_GCM"),
    ("generate_random", "none"),
    ("create_material", "CKM_AES_KEY_GEN"),
    ("destroy_material", "none"),
    ("probe", "none"),
];

/// The vault's caches.
const CACHES: [&str; 4] = ["key", "key_extras", "alias", "principal"];

/// A gauge whose value is read from its source at each scrape (queue lengths that the
/// queues already know, so the hot path does no bookkeeping for them).
type Sampled = (Gauge, Box<dyn Fn() -> i64 + Send + Sync>);

/// 0.1 ms to about 3.3 s: HSM calls, store calls and fsyncs.
fn fast_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// 0.25 ms to about 8 s: whole requests.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

struct Inner {
    registry: Mutex<Registry>,
    sampled: Mutex<Vec<Sampled>>,
    requests: Family<Labels3, Counter>,
    request_seconds: Histograms<Labels2>,
    hsm_seconds: Histograms<Labels2>,
    hsm_reopens: Counter,
    hsm_relogins: Counter,
    hsm_copy_refused: Counter,
    hsm_session_copies: Gauge,
    hsm_inline: Counter,
    hsm_faults: Family<[(&'static str, &'static str); 1], Counter>,
    store_seconds: Histogram,
    cache: Family<Labels2, Counter>,
    // Series whose labels are known in advance, resolved once: a family lookup hashes
    // its labels on every call, which was most of the cost per request.
    hsm_known: Vec<(CallKind, Histogram)>,
    cache_known: Vec<(&'static str, Counter, Counter)>,
    audit_batch: Histogram,
    audit_fsync_seconds: Histogram,
    audit_written: Counter,
    audit_failed: Counter,
    iv_reservations: Counter,
    store_changes: Counter,
    rollovers: Counter,
    handshakes: Family<Labels2, Counter>,
    idle_closed: Family<Labels1, Counter>,
}

/// The counts of one listener's connections (see [`Metrics::connections`]), resolved to
/// their series once, so that counting is an atomic add. The default counts into
/// series of no registry (unit tests).
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionCounters {
    /// Handshakes that gave a connection.
    pub handshake_ok: Counter,
    /// Handshakes that failed (TLS refused, not TLS, the client hung up).
    pub handshake_failed: Counter,
    /// Handshakes not finished within the handshake timeout.
    pub handshake_timed_out: Counter,
    /// Handshakes ended to make room for newer connections.
    pub handshake_evicted: Counter,
    /// Connections closed after the idle timeout.
    pub idle_closed: Counter,
}

/// The daemon's metrics. Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered. A labelled family shows in the output
    /// once it has its first series (the first request, the first cache lookup).
    pub fn new() -> Self {
        let mut r = Registry::default();
        let requests = Family::<Labels3, Counter>::default();
        r.register(
            "p11kms_requests",
            "Requests answered, by AWS operation, transport and outcome (ok or the AWS error name)",
            requests.clone(),
        );
        let request_seconds: Histograms<Labels2> = Family::new_with_constructor(request_buckets);
        r.register(
            "p11kms_request_duration_seconds",
            "Time from the vault taking a request to its answer, audit record included",
            request_seconds.clone(),
        );
        let hsm_seconds: Histograms<Labels2> = Family::new_with_constructor(fast_buckets);
        r.register(
            "p11kms_hsm_call_duration_seconds",
            "Time an HSM worker spent on one job (PKCS#11 calls and any retry), by operation and mechanism",
            hsm_seconds.clone(),
        );
        let hsm_reopens = Counter::default();
        r.register(
            "p11kms_hsm_session_reopens",
            "PKCS#11 sessions dropped after a session-lost error and reopened",
            hsm_reopens.clone(),
        );
        let hsm_relogins = Counter::default();
        r.register(
            "p11kms_hsm_relogins",
            "C_Login calls on a worker that had been logged in before (after a lost session)",
            hsm_relogins.clone(),
        );
        let hsm_copy_refused = Counter::default();
        r.register(
            "p11kms_hsm_copy_refused",
            "C_CopyObject calls the token refused (hsm.copy_keys): the worker then uses the token object itself, which is slower on some tokens",
            hsm_copy_refused.clone(),
        );
        let hsm_session_copies = Gauge::default();
        r.register(
            "p11kms_hsm_session_copies",
            "Session copies of token keys this daemon's sessions hold now (hsm.copy_keys); a key scheduled for deletion, here or by another daemon on the same store, has none",
            hsm_session_copies.clone(),
        );
        let hsm_faults = Family::<[(&'static str, &'static str); 1], Counter>::default();
        r.register(
            "p11kms_hsm_fault_events",
            "What the HSM supervisor did about a failing token: event is timeout (a call outlived its deadline), worker_replaced, marked_down, reinitialized (C_Finalize and C_Initialize) or recovered",
            hsm_faults.clone(),
        );
        let hsm_inline = Counter::default();
        r.register(
            "p11kms_hsm_inline_calls",
            "Short HSM calls run on the requesting thread instead of a worker (while the token answers fast)",
            hsm_inline.clone(),
        );
        let store_seconds = fast_buckets();
        r.register(
            "p11kms_store_call_duration_seconds",
            "Time of one metadata-store call on the blocking pool, waiting for the connection included",
            store_seconds.clone(),
        );
        let cache = Family::<Labels2, Counter>::default();
        r.register(
            "p11kms_cache_lookups",
            "Cache lookups by cache (key, alias, principal, key_extras) and result (hit or miss)",
            cache.clone(),
        );
        let audit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        r.register(
            "p11kms_audit_batch_size",
            "Records written and made durable together by one audit batch",
            audit_batch.clone(),
        );
        let audit_fsync_seconds = fast_buckets();
        r.register(
            "p11kms_audit_fsync_duration_seconds",
            "Time of the fsync that makes one audit batch durable",
            audit_fsync_seconds.clone(),
        );
        let audit_written = Counter::default();
        r.register(
            "p11kms_audit_records_written",
            "Audit records written and made durable",
            audit_written.clone(),
        );
        let audit_failed = Counter::default();
        r.register(
            "p11kms_audit_records_failed",
            "Audit records whose batch could not be written (their calls failed)",
            audit_failed.clone(),
        );
        let iv_reservations = Counter::default();
        r.register(
            "p11kms_iv_reservations",
            "Blocks of AES-GCM invocations reserved in the store (IV budget)",
            iv_reservations.clone(),
        );
        let store_changes = Counter::default();
        r.register(
            "p11kms_store_changes",
            "Changes announced by other daemons on the shared store (PostgreSQL), and reconnections of the listener (which drop everything), that dropped cached data; a daemon's own writes are not counted",
            store_changes.clone(),
        );
        let rollovers = Counter::default();
        r.register(
            "p11kms_key_material_rollovers",
            "New key material made because a version spent its IV budget",
            rollovers.clone(),
        );
        let handshakes = Family::<Labels2, Counter>::default();
        r.register(
            "p11kms_tls_handshakes",
            "TLS handshakes ended, by listener (grpc, aws_json, metrics) and outcome: ok, failed, timed_out, or evicted (ended to make room for newer connections)",
            handshakes.clone(),
        );
        let idle_closed = Family::<Labels1, Counter>::default();
        r.register(
            "p11kms_idle_connections_closed",
            "Connections closed because no request was in flight for the idle timeout, by listener",
            idle_closed.clone(),
        );
        let hsm_known = HSM_CALLS
            .iter()
            .map(|&(op, mech)| {
                let h = hsm_seconds.get_or_create_owned(&[("operation", op), ("mechanism", mech)]);
                ((op, mech), h)
            })
            .collect();
        let cache_known = CACHES
            .iter()
            .map(|&c| {
                let hit = cache.get_or_create_owned(&[("cache", c), ("result", "hit")]);
                let miss = cache.get_or_create_owned(&[("cache", c), ("result", "miss")]);
                (c, hit, miss)
            })
            .collect();
        Self(Arc::new(Inner {
            hsm_known,
            cache_known,
            registry: Mutex::new(r),
            sampled: Mutex::new(Vec::new()),
            requests,
            request_seconds,
            hsm_seconds,
            hsm_reopens,
            hsm_relogins,
            hsm_copy_refused,
            hsm_session_copies,
            hsm_inline,
            hsm_faults,
            store_seconds,
            cache,
            audit_batch,
            audit_fsync_seconds,
            audit_written,
            audit_failed,
            iv_reservations,
            store_changes,
            rollovers,
            handshakes,
            idle_closed,
        }))
    }

    /// The connection counters of `listener` (`grpc`, `aws_json` or `metrics`); their
    /// series show from this call on, at zero until something happens.
    pub(crate) fn connections(&self, listener: &'static str) -> ConnectionCounters {
        let handshake = |outcome| {
            self.0
                .handshakes
                .get_or_create_owned(&[("listener", listener), ("outcome", outcome)])
        };
        ConnectionCounters {
            handshake_ok: handshake("ok"),
            handshake_failed: handshake("failed"),
            handshake_timed_out: handshake("timed_out"),
            handshake_evicted: handshake("evicted"),
            idle_closed: self
                .0
                .idle_closed
                .get_or_create_owned(&[("listener", listener)]),
        }
    }

    /// Registers a gauge read from `source` at every scrape. `source` must not keep
    /// alive what it measures (hold a weak handle or a receiver, not a sender).
    pub fn sample(
        &self,
        name: &'static str,
        help: &'static str,
        source: impl Fn() -> i64 + Send + Sync + 'static,
    ) {
        let gauge = Gauge::default();
        self.0
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register(name, help, gauge.clone());
        self.0
            .sampled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((gauge, Box::new(source)));
    }

    /// One answered request. `outcome` is "ok" or the AWS error name.
    pub fn request(
        &self,
        operation: &'static str,
        transport: &'static str,
        outcome: &'static str,
        latency: Duration,
    ) {
        self.0
            .requests
            .get_or_create(&[
                ("operation", operation),
                ("transport", transport),
                ("outcome", outcome),
            ])
            .inc();
        self.0
            .request_seconds
            .get_or_create(&[("operation", operation), ("transport", transport)])
            .observe(latency.as_secs_f64());
    }

    /// One HSM call, on a worker or inline.
    pub fn hsm_call(&self, operation: &'static str, mechanism: &'static str, took: Duration) {
        let secs = took.as_secs_f64();
        match self
            .0
            .hsm_known
            .iter()
            .find(|(k, _)| *k == (operation, mechanism))
        {
            Some((_, h)) => h.observe(secs),
            None => self
                .0
                .hsm_seconds
                .get_or_create(&[("operation", operation), ("mechanism", mechanism)])
                .observe(secs),
        }
    }

    /// A short HSM call ran inline.
    pub fn hsm_inline_call(&self) {
        self.0.hsm_inline.inc();
    }

    /// The HSM supervisor acted on a fault (see the family's help for the events).
    pub fn hsm_fault_event(&self, event: &'static str) {
        self.0.hsm_faults.get_or_create(&[("event", event)]).inc();
    }

    /// A worker dropped its lost session and opens a new one.
    pub fn hsm_session_reopened(&self) {
        self.0.hsm_reopens.inc();
    }

    /// A worker logged in again on a new session.
    pub fn hsm_relogin(&self) {
        self.0.hsm_relogins.inc();
    }

    /// The token refused a session copy of a key (C_CopyObject).
    pub fn hsm_copy_refused(&self) {
        self.0.hsm_copy_refused.inc();
    }

    /// Session copies made (positive) or destroyed, or gone with their session.
    pub fn hsm_session_copies(&self, delta: i64) {
        self.0.hsm_session_copies.inc_by(delta);
    }

    /// One store call.
    pub fn store_call(&self, took: Duration) {
        self.0.store_seconds.observe(took.as_secs_f64());
    }

    /// One cache lookup.
    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        match self.0.cache_known.iter().find(|(c, _, _)| *c == cache) {
            Some((_, h, _)) if hit => {
                h.inc();
            }
            Some((_, _, m)) => {
                m.inc();
            }
            None => {
                let result = if hit { "hit" } else { "miss" };
                self.0
                    .cache
                    .get_or_create(&[("cache", cache), ("result", result)])
                    .inc();
            }
        }
    }

    /// One audit batch taken from the queue.
    pub fn audit_batch(&self, records: usize) {
        self.0.audit_batch.observe(records as f64);
    }

    /// The fsync of one audit batch.
    pub fn audit_fsync(&self, took: Duration) {
        self.0.audit_fsync_seconds.observe(took.as_secs_f64());
    }

    /// A batch was written (`ok`) or failed.
    pub fn audit_written(&self, records: usize, ok: bool) {
        let n = u64::try_from(records).unwrap_or(u64::MAX);
        if ok {
            self.0.audit_written.inc_by(n);
        } else {
            self.0.audit_failed.inc_by(n);
        }
    }

    /// A block of GCM invocations was reserved in the store.
    pub fn iv_reservation(&self) {
        self.0.iv_reservations.inc();
    }

    /// A change another daemon announced (or a reconnection) dropped cached data.
    pub fn store_change(&self) {
        self.0.store_changes.inc();
    }

    /// A material version spent its IV budget and new material was made.
    pub fn material_rollover(&self) {
        self.0.rollovers.inc();
    }

    /// The Prometheus text exposition (format 0.0.4) of every family.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        for (gauge, source) in self
            .0
            .sampled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            gauge.set(source());
        }
        let mut out = String::with_capacity(16 * 1024);
        prometheus_text::encode(
            &mut out,
            &self.0.registry.lock().unwrap_or_else(|p| p.into_inner()),
        )?;
        Ok(out)
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_are_encoded_with_their_labels() {
        let m = Metrics::new();
        m.request("Encrypt", "grpc", "ok", Duration::from_millis(2));
        m.request("Encrypt", "grpc", "ok", Duration::from_millis(3));
        m.request(
            "Encrypt",
            "grpc",
            "AccessDeniedException",
            Duration::from_millis(1),
        );
        m.cache_lookup("key", true);
        m.sample("p11kms_test_depth", "A sampled gauge", || 7);
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                r#"p11kms_requests_total{operation="Encrypt",transport="grpc",outcome="ok"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"outcome="AccessDeniedException"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"p11kms_request_duration_seconds_count{operation="Encrypt",transport="grpc"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"p11kms_cache_lookups_total{cache="key",result="hit"} 1"#));
        assert!(text.contains("p11kms_test_depth 7"), "{text}");
        assert!(text.contains("# TYPE p11kms_audit_records_written_total counter"));
    }
}
