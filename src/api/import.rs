//! The gRPC handlers of bring-your-own-key: GetParametersForImport, ImportKeyMaterial
//! and DeleteImportedKeyMaterial.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::{Request, Response, Status};

use super::convert::timestamp;
use super::service::KmsService;
use crate::proto;
use crate::vault::{GetParametersForImportInput, ImportKeyMaterialInput, KmsError};

/// A wire timestamp as a time; ValidationException for one before 1970 or malformed.
fn time_of(t: prost_types::Timestamp) -> Result<SystemTime, KmsError> {
    let secs = u64::try_from(t.seconds).ok();
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000);
    match (secs, nanos) {
        (Some(s), Some(n)) => Ok(UNIX_EPOCH + Duration::new(s, n)),
        _ => Err(KmsError::validation("ValidTo is not a valid time")),
    }
}

impl KmsService {
    /// GetParametersForImport.
    pub(super) async fn serve_get_parameters_for_import(
        &self,
        req: Request<proto::GetParametersForImportRequest>,
    ) -> Result<Response<proto::GetParametersForImportResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle(
            "GetParametersForImport",
            key_id,
            req,
            |caller, m| async move {
                let input = GetParametersForImportInput {
                    key_id: m.key_id,
                    wrapping_algorithm: m.wrapping_algorithm,
                    wrapping_key_spec: m.wrapping_key_spec,
                };
                let out = self.vault.get_parameters_for_import(&caller, input).await?;
                Ok(proto::GetParametersForImportResponse {
                    key_id: out.key_arn.to_string(),
                    import_token: out.import_token,
                    public_key: out.public_key,
                    parameters_valid_to: Some(timestamp(out.parameters_valid_to)),
                })
            },
        )
        .await
    }

    /// ImportKeyMaterial.
    pub(super) async fn serve_import_key_material(
        &self,
        req: Request<proto::ImportKeyMaterialRequest>,
    ) -> Result<Response<proto::ImportKeyMaterialResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("ImportKeyMaterial", key_id, req, |caller, m| async move {
            let input = ImportKeyMaterialInput {
                key_id: m.key_id,
                import_token: m.import_token,
                encrypted_key_material: m.encrypted_key_material,
                expiration_model: m.expiration_model,
                valid_to: m.valid_to.map(time_of).transpose()?,
            };
            let out = self.vault.import_key_material(&caller, input).await?;
            Ok(proto::ImportKeyMaterialResponse {
                key_id: out.key_arn.to_string(),
            })
        })
        .await
    }

    /// DeleteImportedKeyMaterial.
    pub(super) async fn serve_delete_imported_key_material(
        &self,
        req: Request<proto::DeleteImportedKeyMaterialRequest>,
    ) -> Result<Response<proto::DeleteImportedKeyMaterialResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle(
            "DeleteImportedKeyMaterial",
            key_id,
            req,
            |caller, m| async move {
                let arn = self
                    .vault
                    .delete_imported_key_material(&caller, &m.key_id)
                    .await?;
                Ok(proto::DeleteImportedKeyMaterialResponse {
                    key_id: arn.to_string(),
                })
            },
        )
        .await
    }
}
