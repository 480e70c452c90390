//! Shapes → the vault's inputs, one vault call, the vault's outputs → shapes: the
//! same inputs and methods the gRPC handlers use (`src/api/service.rs`). A request is
//! checked for required and unsupported members in `validate`, which runs after the
//! caller is authenticated, as AWS orders its checks. A single call goes through
//! `Vault::run` ([`Call`]); a batch call through `Vault::run_batch` (`batch`), its items
//! each as the single call would.

mod aliases;
mod asymmetric;
mod batch;
mod credentials;
mod crypto;
mod grants;
mod import;
mod keys;
mod policies;
mod tags;

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::shapes::StringMap;
use crate::domain::EncryptionContext;
use crate::vault::{Caller, KmsError, Outcome, RequestInfo, Vault};

/// What the handler does with an operation's request: take it through the vault's
/// request path. Every [`Call`] is served by `Vault::run`; the batch calls by
/// `Vault::run_batch`.
pub(super) trait Serve: DeserializeOwned + Send + 'static {
    /// The answer's shape.
    type Output: Serialize + Send + 'static;

    /// The KeyId parameter as given, for the request's span and audit record ("" when
    /// the operation has none).
    fn key_id(&self) -> String;

    /// Runs the request as `caller` (or its authentication failure), `request` being
    /// the decoded body (or why it did not decode).
    fn serve(
        vault: &Arc<Vault>,
        info: RequestInfo,
        caller: Result<Caller, KmsError>,
        request: Result<Self, KmsError>,
    ) -> impl Future<Output = (Result<Self::Output, KmsError>, Outcome)> + Send;

    /// The checks `serve` makes of the request before any vault work, alone: what the
    /// property tests and the aws_json fuzz target drive.
    fn check(self) -> Result<(), KmsError>;
}

impl<C: Call> Serve for C {
    type Output = C::Output;

    fn key_id(&self) -> String {
        Call::key_id(self)
    }

    async fn serve(
        vault: &Arc<Vault>,
        info: RequestInfo,
        caller: Result<Caller, KmsError>,
        request: Result<Self, KmsError>,
    ) -> (Result<Self::Output, KmsError>, Outcome) {
        vault
            .run(info, async { caller }, |caller| async move {
                // A signed body that does not decode is the caller's
                // SerializationException, recorded under its principal.
                let input = request?.validate()?;
                C::run(Arc::clone(vault), caller, input).await
            })
            .await
    }

    fn check(self) -> Result<(), KmsError> {
        self.validate().map(drop)
    }
}

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
