//! Readiness: each part the vault depends on is asked to do real work (a PKCS#11 call
//! through the pool, a store write, a look at the audit trail), each within a deadline,
//! so that `/readyz` answers even when a part hangs.

use std::time::Duration;

use crate::metrics::{Check, Readiness};

use super::Vault;

/// How long one part may take to answer the probe before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn within<F>(part: &'static str, f: F) -> Check
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let result = match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    };
    Check { part, result }
}

impl Readiness for Vault {
    async fn check(&self) -> Vec<Check> {
        let token = within("token", async {
            self.hsm.probe().await.map_err(|e| e.to_string())
        });
        let store = within("store", async {
            let now = self.settings.clock.now();
            self.store_call(move |s| s.heartbeat(now))
                .await
                .map_err(|e| e.to_string())
        });
        let audit = within("audit", async {
            match &self.audit {
                Some(trail) => trail.probe(),
                // Turned off by configuration (benchmarks): nothing to be unready about.
                None => Ok(()),
            }
        });
        let (token, store, audit) = tokio::join!(token, store, audit);
        let serving = Check {
            part: "server",
            result: if self.draining.load(std::sync::atomic::Ordering::Acquire) {
                Err("shutting down: calls in flight are finishing".into())
            } else {
                Ok(())
            },
        };
        vec![serving, token, store, audit]
    }
}
