//! Bring-your-own-key calls: GetParametersForImport, ImportKeyMaterial,
//! DeleteImportedKeyMaterial.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{key_id_of, Call};
use crate::aws_json::shapes::*;
use crate::vault::{Caller, GetParametersForImportInput, ImportKeyMaterialInput, KmsError, Vault};

/// An AWS JSON timestamp (seconds since the epoch, a number) as a time.
fn time_of(member: &str, secs: f64) -> Result<SystemTime, KmsError> {
    if !secs.is_finite() || !(0.0..=1e12).contains(&secs) {
        return Err(KmsError::validation(format!(
            "{member} is not a valid time"
        )));
    }
    Ok(UNIX_EPOCH + Duration::from_secs_f64(secs))
}

impl Call for GetParametersForImportRequest {
    type Input = GetParametersForImportInput;
    type Output = GetParametersForImportResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<GetParametersForImportInput, KmsError> {
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let wrapping_algorithm = r.need("wrappingAlgorithm", self.wrapping_algorithm);
        let wrapping_key_spec = r.need("wrappingKeySpec", self.wrapping_key_spec);
        r.check()?;
        Ok(GetParametersForImportInput {
            key_id,
            wrapping_algorithm,
            wrapping_key_spec,
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: GetParametersForImportInput,
    ) -> Result<GetParametersForImportResponse, KmsError> {
        let out = vault.get_parameters_for_import(&caller, input).await?;
        Ok(GetParametersForImportResponse {
            key_id: out.key_arn.to_string(),
            import_token: out.import_token,
            public_key: out.public_key,
            parameters_valid_to: epoch(out.parameters_valid_to),
        })
    }
}

impl Call for ImportKeyMaterialRequest {
    type Input = ImportKeyMaterialInput;
    type Output = ImportKeyMaterialResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<ImportKeyMaterialInput, KmsError> {
        refuse("KeyMaterialDescription", &self.key_material_description)?;
        refuse("KeyMaterialId", &self.key_material_id)?;
        // Re-importing the key's own material is what p11kms does; new material for a
        // key that has some (a rotation of imported material) it does not.
        match self.import_type.as_deref() {
            None | Some("EXISTING_KEY_MATERIAL") => {}
            Some(_) => return Err(unsupported("ImportType NEW_KEY_MATERIAL")),
        }
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let import_token = r.need("importToken", self.import_token);
        let encrypted = r.need("encryptedKeyMaterial", self.encrypted_key_material);
        r.check()?;
        Ok(ImportKeyMaterialInput {
            key_id,
            import_token: import_token.0,
            encrypted_key_material: encrypted.0,
            expiration_model: self.expiration_model.unwrap_or_default(),
            valid_to: self.valid_to.map(|t| time_of("ValidTo", t)).transpose()?,
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: ImportKeyMaterialInput,
    ) -> Result<ImportKeyMaterialResponse, KmsError> {
        let out = vault.import_key_material(&caller, input).await?;
        Ok(ImportKeyMaterialResponse {
            key_id: out.key_arn.to_string(),
        })
    }
}

impl Call for DeleteImportedKeyMaterialRequest {
    type Input = String;
    type Output = DeleteImportedKeyMaterialResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<String, KmsError> {
        refuse("KeyMaterialId", &self.key_material_id)?;
        Required::one("keyId", self.key_id)
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        key_id: String,
    ) -> Result<DeleteImportedKeyMaterialResponse, KmsError> {
        let arn = vault.delete_imported_key_material(&caller, &key_id).await?;
        Ok(DeleteImportedKeyMaterialResponse {
            key_id: arn.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_outside_any_sensible_range_are_validation_errors() {
        assert!(time_of("ValidTo", 1_800_000_000.5).is_ok());
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e13] {
            assert_eq!(
                time_of("ValidTo", bad).unwrap_err().name(),
                "ValidationException"
            );
        }
    }
}
