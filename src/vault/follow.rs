//! Several daemons on one store: the changes another daemon makes (announced by the
//! store, see `Store::watch`) drop what this daemon's caches hold of them, so that a
//! key disabled, a grant revoked, a policy changed or an alias moved on one daemon is
//! enforced by every daemon as soon as the announcement arrives. A key is dropped
//! whole and read again at its next use (its IV reservation is then counted as used,
//! and a new range claimed).
//!
//! A key scheduled for deletion or destroyed by another daemon also loses its session
//! copies here: the daemon that destroys the token objects can only reach its own
//! sessions. No copy is made again, since a key pending deletion serves no
//! cryptographic call.

use std::sync::{Arc, Weak};

use super::Vault;
use crate::domain::{KeyId, KeyState};
use crate::store::Change;

impl Vault {
    /// Starts following the store's changes (a no-op on a store only this daemon
    /// opens). The store holds the vault weakly: it does not keep it alive. Call from
    /// within the runtime, which runs the follow-up work on the token.
    pub fn follow_store_changes(self: &Arc<Self>) {
        let vault: Weak<Self> = Arc::downgrade(self);
        let runtime = tokio::runtime::Handle::try_current().ok();
        self.store.watch(Arc::new(move |change| {
            if let Some(v) = vault.upgrade() {
                v.forget(&change);
                // Only a key's change, or everything, can concern session copies.
                if let (Change::Key(_) | Change::All, Some(rt)) = (&change, &runtime) {
                    rt.spawn(async move { v.drop_session_copies(change).await });
                }
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

    /// Destroys the session copies of a key that is pending deletion or gone, or all of
    /// them after announcements were missed. A failure is logged: the copies then stay
    /// until their session closes, and the key is refused all the same.
    async fn drop_session_copies(&self, change: Change) {
        if let Change::Key(id) = change {
            if !self.deleting(id).await {
                return;
            }
        }
        let forget = || async {
            match &change {
                Change::Key(id) => self.hsm.forget_key_everywhere(*id).await,
                _ => self.hsm.forget_all_everywhere().await,
            }
        };
        // Once more after a moment if a session could not be reached (a worker busy
        // past the call timeout).
        let result = match forget().await {
            Ok(()) => Ok(()),
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                forget().await
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not destroy the session copies of a key another daemon is deleting; they go with their sessions");
        }
    }

    /// Whether the key is pending deletion, no longer exists, or is an EXTERNAL key
    /// whose imported material was deleted or expired (a store that cannot answer says
    /// yes: a copy dropped is made again, one kept may outlive its key).
    async fn deleting(&self, id: KeyId) -> bool {
        match self.store_call(move |s| s.get_key(&id)).await {
            Ok(Some(k)) => {
                k.key_state == KeyState::PendingDeletion || Self::imported_material_unrecorded(&k)
            }
            Ok(None) | Err(_) => true,
        }
    }
}
