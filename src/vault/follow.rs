//! Several daemons on one store: the changes another daemon makes (announced by the
//! store, see `Store::watch`) drop what this daemon's caches hold of them, so that a
//! key disabled, a grant revoked, a policy changed or an alias moved on one daemon is
//! enforced by every daemon as soon as the announcement arrives. A key is dropped
//! whole and read again at its next use (its IV reservation is then counted as used,
//! and a new range claimed).

use std::sync::{Arc, Weak};

use super::Vault;
use crate::store::Change;

impl Vault {
    /// Starts following the store's changes (a no-op on a store only this daemon
    /// opens). The store holds the vault weakly: it does not keep it alive.
    pub fn follow_store_changes(self: &Arc<Self>) {
        let vault: Weak<Self> = Arc::downgrade(self);
        self.store.watch(Arc::new(move |change| {
            if let Some(v) = vault.upgrade() {
                v.forget(&change);
            }
        }));
    }

    /// Drops what the caches hold of `change`.
    fn forget(&self, change: &Change) {
        match change {
            Change::Key(id) => self.keys.remove(id),
            Change::Principal(arn) => self.principals.invalidate(arn),
            Change::Alias(account, name) => self.aliases.invalidate(account, name),
            Change::AccessKey(id) => match id.parse() {
                Ok(id) => self.access_keys.remove(&id),
                Err(_) => self.access_keys.clear(),
            },
            Change::All => {
                self.keys.clear();
                self.principals.invalidate_all();
                self.aliases.forget_all();
                self.access_keys.clear();
            }
        }
        self.metrics.store_change();
    }
}
