//! Opened secret access keys, so that a SigV4 request does not cost an HSM call. Bounded,
//! wiped on drop, and generation-checked like `vault/slot.rs`: a delete bumps the
//! generation, and a look-up that opened a secret before the delete cannot put it back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::lookup::AccessKeySecret;
use crate::domain::AccessKeyId;

/// Secrets kept at most; past that the cache is emptied and refilled by use (a full
/// cache means keys are being probed, and the working set refills cheaply).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
struct Inner {
    entries: HashMap<AccessKeyId, Arc<AccessKeySecret>>,
    generation: u64,
}

/// What a look-up must present to fill the cache: the generation it started from.
#[derive(Clone, Copy)]
pub(super) struct Ticket(u64);

/// The cache. Short sections under a std mutex; never held across an await.
#[derive(Default)]
pub(crate) struct SecretCache(Mutex<Inner>);

impl SecretCache {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached secret (shared, not copied), or the ticket for loading it.
    pub(super) fn get(&self, id: &AccessKeyId) -> Result<Arc<AccessKeySecret>, Ticket> {
        let inner = self.inner();
        inner
            .entries
            .get(id)
            .cloned()
            .ok_or(Ticket(inner.generation))
    }

    /// The ticket to take before a write that will fill the cache.
    pub(super) fn ticket(&self) -> Ticket {
        Ticket(self.inner().generation)
    }

    /// Stores an opened secret, unless a delete came after the look-up began.
    pub(super) fn fill(&self, ticket: Ticket, id: AccessKeyId, entry: Arc<AccessKeySecret>) {
        let mut inner = self.inner();
        if ticket.0 != inner.generation {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(id, entry);
    }

    /// A delete: drops the entry and turns away look-ups already under way.
    /// Drops every secret; loads under way do not fill.
    pub(crate) fn clear(&self) {
        let mut inner = self.inner();
        inner.entries.clear();
        inner.generation += 1;
    }

    pub(crate) fn remove(&self, id: &AccessKeyId) {
        let mut inner = self.inner();
        inner.entries.remove(id);
        inner.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Arc<AccessKeySecret> {
        Arc::new(AccessKeySecret {
            principal: "arn:aws:iam::111122223333:user/A".parse().unwrap(),
            secret: zeroize::Zeroizing::new("s".repeat(40)),
        })
    }

    #[test]
    fn a_look_up_that_began_before_a_delete_is_not_stored() {
        let c = SecretCache::default();
        let id = AccessKeyId::generate().unwrap();
        let Err(before) = c.get(&id) else { panic!() };
        c.remove(&id);
        c.fill(before, id.clone(), entry());
        let Err(after) = c.get(&id) else { panic!() };
        c.fill(after, id.clone(), entry());
        assert!(c.get(&id).is_ok());
        c.remove(&id);
        assert!(c.get(&id).is_err());
    }
}
