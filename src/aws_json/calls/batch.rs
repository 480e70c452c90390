//! The batch calls (BatchEncrypt, BatchDecrypt) through `Vault::run_batch`: each item is
//! validated and run exactly as a single Encrypt or Decrypt call (`Call`), as a request
//! of its own; its error becomes its result.

use std::sync::Arc;

use super::{Call, Serve};
use crate::aws_json::shapes::*;
use crate::vault::{Batch, Caller, KmsError, Outcome, RequestInfo, Vault};

/// Runs a batch of `C` requests: `items` is the call's `Items` member (or why the body
/// did not decode).
async fn serve_batch<C: Call>(
    vault: &Arc<Vault>,
    info: RequestInfo,
    item_operation: &'static str,
    caller: Result<Caller, KmsError>,
    items: Result<Option<Vec<C>>, KmsError>,
) -> (Result<BatchResponse<C::Output>, KmsError>, Outcome) {
    let batch = Batch {
        item_operation,
        items: items.and_then(|i| Required::one("items", i)),
        key_id_of: |item: &C| item.key_id(),
    };
    let (result, outcome) = vault
        .run_batch(
            info,
            async { caller },
            batch,
            |caller, item: C| async move {
                let input = item.validate()?;
                C::run(Arc::clone(vault), caller, input).await
            },
        )
        .await;
    let answer = result.map(|results| BatchResponse {
        results: results
            .into_iter()
            .map(|r| match r {
                Ok(out) => BatchResult::Ok(out),
                Err(e) => BatchResult::Error {
                    error_code: e.name(),
                    error_message: e.to_string(),
                },
            })
            .collect(),
    });
    (answer, outcome)
}

/// The checks of a batch before any vault work: `Items` present, and each item's own.
fn check_items<C: Call>(items: Option<Vec<C>>) -> Result<(), KmsError> {
    Required::one("items", items)?
        .into_iter()
        .try_for_each(|i| i.validate().map(drop))
}

impl Serve for BatchEncryptRequest {
    type Output = BatchEncryptResponse;

    fn key_id(&self) -> String {
        String::new()
    }

    async fn serve(
        vault: &Arc<Vault>,
        info: RequestInfo,
        caller: Result<Caller, KmsError>,
        request: Result<Self, KmsError>,
    ) -> (Result<Self::Output, KmsError>, Outcome) {
        let items = request.map(|r| r.items);
        serve_batch(vault, info, "Encrypt", caller, items).await
    }

    fn check(self) -> Result<(), KmsError> {
        check_items(self.items)
    }
}

impl Serve for BatchDecryptRequest {
    type Output = BatchDecryptResponse;

    fn key_id(&self) -> String {
        String::new()
    }

    async fn serve(
        vault: &Arc<Vault>,
        info: RequestInfo,
        caller: Result<Caller, KmsError>,
        request: Result<Self, KmsError>,
    ) -> (Result<Self::Output, KmsError>, Outcome) {
        let items = request.map(|r| r.items);
        serve_batch(vault, info, "Decrypt", caller, items).await
    }

    fn check(self) -> Result<(), KmsError> {
        check_items(self.items)
    }
}
