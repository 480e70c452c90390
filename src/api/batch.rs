//! The batch RPCs (BatchEncrypt, BatchDecrypt) through `Vault::run_batch`: each item is
//! converted and run by the single call's own code (`encrypt_one`, `decrypt_one`) as a
//! request of its own, and an item's error becomes its result, not the call's status.

use std::future::Future;

use tonic::{Request, Response, Status};

use super::service::{answer, KmsService, Presented};
use super::status::item_error;
use crate::proto::{self, batch_decrypt_result, batch_encrypt_result};
use crate::vault::{Batch, Caller, KmsError, RequestInfo, Transport};

impl KmsService {
    /// Runs one batch call through `Vault::run_batch`: each item, converted by `op` as
    /// the single call's handler converts it, is a request of its own. The response
    /// holds each item's result, in order; the call's own failure (no items, too many,
    /// an unidentified caller) is its status.
    async fn handle_batch<T, R, F, Fut>(
        &self,
        operation: &'static str,
        item_operation: &'static str,
        req: Request<Vec<T>>,
        key_id_of: fn(&T) -> String,
        op: F,
    ) -> Result<Response<Vec<Result<R, KmsError>>>, Status>
    where
        F: Fn(Caller, T) -> Fut,
        Fut: Future<Output = Result<R, KmsError>>,
    {
        let presented = Presented::of(&req);
        let items = req.into_inner();
        let info = RequestInfo {
            operation,
            transport: Transport::Grpc,
            key_id: String::new(),
            source_ip: presented.peer.as_ref().map(|p| p.addr.ip()),
        };
        let batch = Batch {
            item_operation,
            items: Ok(items),
            key_id_of,
        };
        let (result, outcome) = self
            .vault
            .run_batch(info, async { presented.caller(&self.vault) }, batch, op)
            .await;
        answer(result, &outcome.request_id)
    }

    /// BatchEncrypt.
    pub(super) async fn serve_batch_encrypt(
        &self,
        req: Request<proto::BatchEncryptRequest>,
    ) -> Result<Response<proto::BatchEncryptResponse>, Status> {
        use batch_encrypt_result::Outcome;
        let answered = self
            .handle_batch(
                "BatchEncrypt",
                "Encrypt",
                req.map(|m| m.items),
                |m| m.key_id.clone(),
                |caller, m| self.encrypt_one(caller, m),
            )
            .await?;
        Ok(answered.map(|results| proto::BatchEncryptResponse {
            results: results
                .into_iter()
                .map(|r| proto::BatchEncryptResult {
                    outcome: Some(
                        r.map_or_else(|e| Outcome::Error(item_error(&e)), Outcome::Response),
                    ),
                })
                .collect(),
        }))
    }

    /// BatchDecrypt.
    pub(super) async fn serve_batch_decrypt(
        &self,
        req: Request<proto::BatchDecryptRequest>,
    ) -> Result<Response<proto::BatchDecryptResponse>, Status> {
        use batch_decrypt_result::Outcome;
        let answered = self
            .handle_batch(
                "BatchDecrypt",
                "Decrypt",
                req.map(|m| m.items),
                |m| m.key_id.clone(),
                |caller, m| self.decrypt_one(caller, m),
            )
            .await?;
        Ok(answered.map(|results| proto::BatchDecryptResponse {
            results: results
                .into_iter()
                .map(|r| proto::BatchDecryptResult {
                    outcome: Some(
                        r.map_or_else(|e| Outcome::Error(item_error(&e)), Outcome::Response),
                    ),
                })
                .collect(),
        }))
    }
}
