//! A cache slot filled lazily from the store and emptied by changes.
//!
//! A load reads the store without holding any lock, so a change can land while it runs.
//! Emptying the slot is then not enough: the load would put its old result back and
//! keep it until the next change (a revoked grant still allowing, a new Deny unseen).
//! Each change therefore bumps a generation, and a load stores its result only if the
//! generation it started from is still current.

use std::sync::Arc;

/// A cached value, or nothing and a generation.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    value: Option<Arc<T>>,
    generation: u64,
}

/// What a load must present to fill a slot: the generation it started from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            value: None,
            generation: 0,
        }
    }
}

impl<T> Slot<T> {
    /// The cached value, or the ticket for loading it.
    pub(crate) fn get(&self) -> Result<Arc<T>, Ticket> {
        self.value.clone().ok_or(Ticket(self.generation))
    }

    /// Stores a loaded value, unless a change came after the load began.
    pub(crate) fn fill(&mut self, ticket: Ticket, value: Arc<T>) {
        if ticket.0 == self.generation {
            self.value = Some(value);
        }
    }

    /// A change: drops the value and turns away loads already under way.
    pub(crate) fn invalidate(&mut self) {
        self.value = None;
        self.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_that_began_before_a_change_is_not_stored() {
        let mut s: Slot<u32> = Slot::default();
        let before = s.get().unwrap_err();
        s.invalidate();
        s.fill(before, Arc::new(1));
        let after = s.get().unwrap_err();
        assert_ne!(before, after);
        s.fill(after, Arc::new(2));
        assert_eq!(*s.get().unwrap(), 2);
        s.invalidate();
        assert!(s.get().is_err());
    }
}
