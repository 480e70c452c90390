//! EnableKey, DisableKey and UpdateKeyDescription, following AWS's key-state table
//! (deletion.rs and rotation.rs hold the rest of the lifecycle).

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
        if key.state() == want {
            return Ok(());
        }
        let id = key.key_id();
        // The store decides, so a ScheduleKeyDeletion that landed after the cached state
        // was read is not undone.
        if !self
            .write_key(&key, move |s| s.set_key_enabled(&id, enable))
            .await?
        {
            return Err(KmsError::KmsInvalidState(format!(
                "{} is {} and cannot be {}.",
                self.arn_of(&key),
                key.state().as_str(),
                if enable { "enabled" } else { "disabled" }
            )));
        }
        tracing::info!(key_id = %id, state = want.as_str(), "key state changed");
        Ok(())
    }
}

impl Vault {
    /// UpdateKeyDescription: allowed on enabled and disabled keys, refused on a key
    /// pending deletion (KMSInvalidStateException), as AWS's key-state table says.
    pub async fn update_key_description(
        &self,
        caller: &Caller,
        key_id: &str,
        description: &str,
    ) -> Result<(), KmsError> {
        if description.chars().count() > super::create_key::MAX_DESCRIPTION {
            return Err(KmsError::validation(format!(
                "Description must be at most {} characters",
                super::create_key::MAX_DESCRIPTION
            )));
        }
        let key = self.resolve(caller, key_id).await?;
        self.authorize(caller, Authz::key(Action::UPDATE_KEY_DESCRIPTION, &key))
            .await?;
        key.check_manageable(&self.arn_of(&key))?;
        let (id, text) = (key.key_id(), description.to_owned());
        self.write_key(&key, move |s| s.set_key_description(&id, &text))
            .await?;
        Ok(())
    }
}
