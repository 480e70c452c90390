//! The look-up the SigV4 verifier makes: an access key id to its principal and secret.
//! Not a request of its own (no `Vault::run`, no record): it runs inside the request
//! that presents the key.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::super::{KmsError, Vault};
use crate::identity::Principal;

/// An access key's principal and its secret in clear, for verifying a signature: the
/// cache's own entry, shared rather than copied per request. Debug shows the principal
/// only.
pub(crate) struct AccessKeySecret {
    /// Whom the key authenticates.
    pub(crate) principal: Principal,
    /// The secret access key.
    pub(crate) secret: Zeroizing<String>,
}

impl fmt::Debug for AccessKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeySecret")
            .field("principal", &self.principal.arn())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Vault {
    /// The principal and secret of an access key, `None` for an unknown (or malformed)
    /// id. From the cache when it was opened before; otherwise read from the store and
    /// opened in the HSM, once.
    pub(crate) async fn access_key_secret(
        &self,
        access_key_id: &str,
    ) -> Result<Option<Arc<AccessKeySecret>>, KmsError> {
        let Ok(id) = access_key_id.parse::<crate::domain::AccessKeyId>() else {
            return Ok(None);
        };
        let ticket = match self.access_keys.get(&id) {
            Ok(known) => return Ok(Some(known)),
            Err(t) => t,
        };
        let look = id.clone();
        let Some(record) = self.store_call(move |s| s.access_key(&look)).await? else {
            return Ok(None);
        };
        let principal = record
            .principal
            .parse::<Principal>()
            .map_err(KmsError::internal)?;
        let secret = self
            .open_access_secret(&id, principal.arn(), &record.sealed_secret)
            .await?
            .into_zeroizing();
        let opened = Arc::new(AccessKeySecret { principal, secret });
        self.access_keys.fill(ticket, id, Arc::clone(&opened));
        Ok(Some(opened))
    }
}
