//! Crash points for the crash-consistency tests (`tests/it/crash_points.rs`). They are
//! compiled in only with the `failpoints` feature, which the test command turns on and
//! a release build leaves off. There, `P11KMS_CRASH_AT=name` (or `name:N`, the N-th time
//! the point is passed) makes the daemon abort at that point, as a power cut or SIGKILL
//! would: no destructor runs, nothing is flushed.

/// Every crash point, in the order a key's life passes them.
pub const CRASH_POINTS: &[&str] = &[
    "create_key.after_material",
    "create_key.after_insert",
    "new_material.after_material",
    "new_material.after_store",
    "destroy.after_begin",
    "destroy.after_version",
    "destroy.after_finish",
    "import.after_unwrap",
    "delete_import.after_record",
    "alias.after_write",
    "grant.after_write",
    "audit.after_write",
    "audit.after_sync",
];

/// Aborts the process if `P11KMS_CRASH_AT` names this point (and this passage of it).
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &'static str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static AT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static PASSED: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        let v = std::env::var("P11KMS_CRASH_AT").ok()?;
        Some(match v.split_once(':') {
            Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
            None => (v, 1),
        })
    });
    if let Some((point, nth)) = at {
        if point == name && PASSED.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            eprintln!("p11kms: crash point {name} reached; aborting");
            std::process::abort();
        }
    }
}

/// Without the `failpoints` feature, a crash point is nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &'static str) {}
