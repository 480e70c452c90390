//! Metrics and health: the Prometheus registry every layer records into ([`Metrics`]),
//! and the HTTP listener that serves it with `/healthz` and `/readyz` ([`serve`]).
//! Knows nothing of the vault: readiness is asked through the [`Readiness`] trait.
//!
//! Labels are static strings from a closed set (operation names, transports, AWS error
//! names, cache and part names), never key ids or principals, so the number of series
//! stays bounded whatever callers send.

mod http;
mod registry;

pub(crate) use http::{serve, HttpError, MetricsTls};
pub(crate) use registry::{ConnectionCounters, Metrics};

use std::future::Future;

/// One part of the daemon that `/readyz` checks, and what it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    /// The part: `token`, `store` or `audit`.
    pub part: &'static str,
    /// `Err` with the reason when the part cannot do its work.
    pub result: Result<(), String>,
}

/// Whatever can say whether the daemon is ready to serve (the vault).
pub(crate) trait Readiness: Send + Sync + 'static {
    /// Checks every part, each with real work (a PKCS#11 call, a store write, the audit
    /// file), and reports them all, failing or not.
    fn check(&self) -> impl Future<Output = Vec<Check>> + Send;
}
