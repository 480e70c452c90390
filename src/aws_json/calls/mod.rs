//! Shapes → the vault's inputs, one vault call, the vault's outputs → shapes: the
//! same inputs and methods the gRPC handlers use (`src/api/service.rs`). A request is
//! checked for required and unsupported members in `validate`, which runs after the
//! caller is authenticated, as AWS orders its checks.

mod aliases;
mod credentials;
mod crypto;
mod grants;
mod keys;
mod policies;
mod tags;

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::shapes::StringMap;
use crate::domain::EncryptionContext;
use crate::vault::{Caller, KmsError, Vault};

/// One AWS JSON operation: its request shape, validated input and answer.
pub(super) trait Call: DeserializeOwned + Send + 'static {
    /// What `validate` makes of the request for the vault.
    type Input: Send + 'static;
    /// The answer's shape.
    type Output: Serialize + Send + 'static;

    /// The KeyId parameter as given, for the request's span and audit record ("" when
    /// the operation has none).
    fn key_id(&self) -> String {
        String::new()
    }

    /// Required members present, unsupported ones absent; the vault checks the rest.
    fn validate(self) -> Result<Self::Input, KmsError>;

    /// The vault call.
    fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, KmsError>> + Send;
}

/// A context map as the vault's EncryptionContext, or a ValidationException naming the
/// member.
fn context(member: &str, map: Option<StringMap>) -> Result<EncryptionContext, KmsError> {
    EncryptionContext::new(map.unwrap_or_default())
        .map_err(|e| KmsError::validation(format!("{member}: {e}")))
}

/// The key ARN and state strings the vault hands back, as AWS writes them.
fn key_id_of(key_id: &Option<String>) -> String {
    key_id.clone().unwrap_or_default()
}
