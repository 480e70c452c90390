//! EnableKey and DisableKey. The rest of the lifecycle (scheduled deletion, rotation)
//! follows AWS's key-state table in a later change; here only Enabled <-> Disabled.

use super::authorize::Authz;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::KeyState;

impl Vault {
    /// EnableKey / DisableKey: both are no-ops on a key already in the wanted state, and
    /// refuse a key pending deletion or unavailable (KMSInvalidStateException), as AWS.
    pub async fn set_enabled(
        &self,
        caller: &Caller,
        key_id: &str,
        enable: bool,
    ) -> Result<(), KmsError> {
        let key = self.resolve(caller, key_id).await?;
        let action = if enable {
            Action::ENABLE_KEY
        } else {
            Action::DISABLE_KEY
        };
        self.authorize(caller, Authz::key(action, &key)).await?;
        let want = if enable {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        };
        match key.state() {
            s if s == want => return Ok(()),
            KeyState::Enabled | KeyState::Disabled => {}
            other => {
                return Err(KmsError::KmsInvalidState(format!(
                    "{} is {} and cannot be {}.",
                    self.arn_of(&key),
                    other.as_str(),
                    if enable { "enabled" } else { "disabled" }
                )))
            }
        }
        let id = key.key_id();
        self.store_call(move |s| s.set_key_state(&id, want)).await?;
        key.set_state(want);
        tracing::info!(key_id = %id, state = want.as_str(), "key state changed");
        Ok(())
    }
}
