//! DescribeKey: metadata of a key, in any state.

use super::authorize::Authz;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::KeyMetadata;

impl Vault {
    /// DescribeKey.
    pub async fn describe_key(
        &self,
        caller: &Caller,
        key_id: &str,
        grant_tokens: &[String],
    ) -> Result<KeyMetadata, KmsError> {
        self.check_grant_tokens(grant_tokens)?;
        let key = self.resolve(caller, key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(
            caller,
            Authz::key(Action::DESCRIBE_KEY, &key).requested_as(key_id),
        )
        .await?;
        Ok(key.metadata(arn))
    }
}
