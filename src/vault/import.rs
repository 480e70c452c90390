//! Bring your own key: GetParametersForImport, ImportKeyMaterial and
//! DeleteImportedKeyMaterial for keys made with Origin EXTERNAL, and the sweep that
//! destroys material past its ValidTo (and wrapping keys past their tokens' end).
//!
//! The material is unwrapped inside the token (see `hsm::import`); the daemon sees only
//! the wrapped bytes. Metadata and token follow the crash rules of the rest of the
//! lifecycle: an import unwraps into the token before the store records it (a crash
//! between leaves an object the start-up sweep of orphans removes, as the key is still
//! without material), and a deletion records first and destroys after (a crash between
//! leaves an object that sweep removes too).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::authorize::Authz;
use super::import_token::ImportToken;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{
    ExpirationModel, KeyArn, KeyState, Origin, WrappingAlgorithm, WrappingKeySpec,
    RETIRED_WRAPPING_ALGORITHMS,
};
use crate::hsm::{OaepHash, Wrapping, WrappingKeyRef};
use crate::store::ImportedMaterial;

/// How long a wrapping key and its import token stay valid (AWS: 24 hours).
pub(crate) const PARAMETERS_VALID_FOR: Duration = Duration::from_secs(24 * 3600);
/// AWS: ValidTo is at most 365 days after the request.
const MAX_VALID_FOR: Duration = Duration::from_secs(365 * 24 * 3600);
/// AWS: EncryptedKeyMaterial and ImportToken are 1 to 6144 bytes.
const MAX_BLOB: usize = 6144;

/// GetParametersForImport parameters.
#[derive(Debug, Default)]
pub struct GetParametersForImportInput {
    /// Key id or key ARN (no aliases, as AWS).
    pub key_id: String,
    /// RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1 or _SHA_256.
    pub wrapping_algorithm: String,
    /// RSA_2048, RSA_3072 or RSA_4096.
    pub wrapping_key_spec: String,
}

/// What GetParametersForImport answers.
#[derive(Debug)]
pub struct ParametersForImport {
    /// The key's ARN.
    pub key_arn: KeyArn,
    /// Opaque, authenticated, bound to the key and the wrapping key.
    pub import_token: Vec<u8>,
    /// The wrapping key's public half, DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// When the token and the wrapping key stop being valid.
    pub parameters_valid_to: SystemTime,
}

/// ImportKeyMaterial parameters.
#[derive(Default)]
pub struct ImportKeyMaterialInput {
    /// Key id or key ARN.
    pub key_id: String,
    /// From GetParametersForImport.
    pub import_token: Vec<u8>,
    /// The material wrapped under the token's wrapping key and algorithm.
    pub encrypted_key_material: Vec<u8>,
    /// "" (KEY_MATERIAL_EXPIRES), KEY_MATERIAL_EXPIRES or KEY_MATERIAL_DOES_NOT_EXPIRE.
    pub expiration_model: String,
    /// When the material expires; required with KEY_MATERIAL_EXPIRES only.
    pub valid_to: Option<SystemTime>,
}

impl std::fmt::Debug for ImportKeyMaterialInput {
    // The wrapped material is not secret, but it is not the log's business either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportKeyMaterialInput")
            .field("key_id", &self.key_id)
            .field("import_token_len", &self.import_token.len())
            .field(
                "encrypted_key_material_len",
                &self.encrypted_key_material.len(),
            )
            .field("expiration_model", &self.expiration_model)
            .field("valid_to", &self.valid_to)
            .finish()
    }
}

/// ImportKeyMaterial's answer.
#[derive(Debug)]
pub struct ImportedKeyMaterial {
    /// The key's ARN.
    pub key_arn: KeyArn,
}

impl Vault {
    /// GetParametersForImport: a new RSA wrapping key in the token (proven able to
    /// unwrap with the algorithm asked for) and an import token for it and the key.
    pub async fn get_parameters_for_import(
        &self,
        caller: &Caller,
        input: GetParametersForImportInput,
    ) -> Result<ParametersForImport, KmsError> {
        let algorithm = parse_wrapping_algorithm(&input.wrapping_algorithm)?;
        let spec = match input.wrapping_key_spec.as_str() {
            "" => return Err(KmsError::validation("WrappingKeySpec is required")),
            s => WrappingKeySpec::parse(s).ok_or_else(|| {
                if s == "SM2" {
                    KmsError::UnsupportedOperation(
                        "WrappingKeySpec SM2 exists in AWS's China Regions only".into(),
                    )
                } else {
                    KmsError::validation("WrappingKeySpec must be RSA_2048, RSA_3072 or RSA_4096")
                }
            })?,
        };
        let key = self.resolve(caller, &input.key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(
            caller,
            Authz::key(Action::GET_PARAMETERS_FOR_IMPORT, &key)
                .with("kms:WrappingAlgorithm", algorithm.as_str())
                .with("kms:WrappingKeySpec", spec.as_str()),
        )
        .await?;
        let key_spec = importable(&key, &arn)?;
        if let Some(why) = algorithm.refuses(key_spec, spec) {
            return Err(KmsError::validation(why));
        }
        let now = self.settings.clock.now();
        let valid_to = whole_seconds(now + PARAMETERS_VALID_FOR);
        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id)
            .map_err(|_| KmsError::internal(crate::domain::RandomFailed))?;
        let wrapping_key = WrappingKeyRef {
            key_id: key.key_id(),
            id,
            valid_to_secs: secs(valid_to),
        };
        let public_key = self
            .hsm
            .make_wrapping_key(wrapping_key, spec.bits(), wrapping(algorithm))
            .await?;
        let token = ImportToken {
            key_id: key.key_id(),
            wrapping_key: id,
            algorithm,
            spec,
            valid_to,
        };
        Ok(ParametersForImport {
            key_arn: arn,
            import_token: self.seal_import_token(&token).await?,
            public_key,
            parameters_valid_to: valid_to,
        })
    }

    /// ImportKeyMaterial: unwraps the material inside the token, checks it (its size,
    /// and that a re-import brings the material first imported), and records its terms;
    /// a key in PendingImport becomes Enabled.
    pub async fn import_key_material(
        &self,
        caller: &Caller,
        input: ImportKeyMaterialInput,
    ) -> Result<ImportedKeyMaterial, KmsError> {
        let now = self.settings.clock.now();
        let terms = import_terms(&input.expiration_model, input.valid_to, now)?;
        for (name, value) in [
            ("ImportToken", &input.import_token),
            ("EncryptedKeyMaterial", &input.encrypted_key_material),
        ] {
            if value.is_empty() || value.len() > MAX_BLOB {
                return Err(KmsError::validation(format!(
                    "{name} must be 1 to {MAX_BLOB} bytes"
                )));
            }
        }
        let key = self.resolve(caller, &input.key_id).await?;
        let arn = self.arn_of(&key);
        let mut authz = Authz::key(Action::IMPORT_KEY_MATERIAL, &key)
            .with("kms:ExpirationModel", terms.expiration_model.as_str());
        if let Some(t) = terms.valid_to {
            authz = authz.with("kms:ValidTo", secs(t).to_string());
        }
        self.authorize(caller, authz).await?;
        let key_spec = importable(&key, &arn)?;
        let token = self.open_import_token(&input.import_token).await?;
        if token.key_id != key.key_id() {
            return Err(KmsError::InvalidImportToken(format!(
                "the import token was issued for another key, not {arn}"
            )));
        }
        if now > token.valid_to {
            return Err(KmsError::ExpiredImportToken(
                "the import token has expired (ParametersValidTo has passed); get new parameters for import".into(),
            ));
        }
        caller
            .trace
            .parameter("wrappingAlgorithm", token.algorithm.as_str());
        let _one_import_at_a_time = self.imports.lock().await;
        let version = key.current_version();
        let id = key.key_id();
        let claim = self.claim_import(id, version, &arn).await?;
        // What the store holds now, under the claim: not the cache, which another
        // daemon's import or deletion may have left behind.
        let stored = self
            .store_call(move |s| s.get_key(&id))
            .await?
            .ok_or_else(|| KmsError::NotFound(format!("Key '{arn}' does not exist")))?;
        if stored.key_state == KeyState::PendingDeletion {
            return Err(KmsError::KmsInvalidState(format!(
                "{arn} is pending deletion."
            )));
        }
        self.import_and_record(
            &key,
            Unwrap {
                material: key.material_ref(version),
                kind: (key_spec, key.kind().1),
                token: &token,
                wrapped: input.encrypted_key_material,
            },
            stored,
            terms,
        )
        .await?;
        claim.given_back();
        tracing::info!(key_id = %id, expiration = terms.expiration_model.as_str(), "key material imported");
        Ok(ImportedKeyMaterial { key_arn: arn })
    }

    /// On a store other daemons share, the right to change a key's material (see
    /// `Store::claim_material`): one import, deletion or expiry at a time across
    /// daemons, and no orphan sweep takes an object an import has just unwrapped. Given
    /// back when the guard is dropped (a successful import gives it back as it records).
    async fn claim_import(
        &self,
        id: crate::domain::KeyId,
        version: crate::domain::MaterialVersion,
        arn: &KeyArn,
    ) -> Result<ImportClaim<'_>, KmsError> {
        if !self.store.shared() {
            return Ok(ImportClaim(None));
        }
        let claimed = self
            .store_call(move |s| s.claim_material(&id, version, super::MATERIAL_CLAIM_STALE))
            .await?;
        if !claimed {
            return Err(KmsError::KmsInvalidState(format!(
                "the key material of {arn} is being changed by another request; try again"
            )));
        }
        Ok(ImportClaim(Some((self, id, version))))
    }

    /// Unwraps into the token, then records. When the store says the key has no
    /// material, whatever the token holds under its CKA_ID is a leftover (of an import
    /// or deletion cut short) and is replaced, never trusted.
    async fn import_and_record(
        &self,
        key: &std::sync::Arc<super::keys::KeyEntry>,
        unwrap: Unwrap<'_>,
        stored: crate::store::KeyRecord,
        terms: ImportedMaterial,
    ) -> Result<(), KmsError> {
        let Unwrap {
            material,
            kind,
            token,
            wrapped,
        } = unwrap;
        let replace = stored.imported.is_none();
        let prior = stored.import_check;
        let check = self
            .hsm
            .import_material(
                material,
                kind,
                WrappingKeyRef {
                    key_id: token.key_id,
                    id: token.wrapping_key,
                    valid_to_secs: secs(token.valid_to),
                },
                (token.spec.bits(), wrapping(token.algorithm)),
                wrapped,
                (prior.clone(), replace),
            )
            .await;
        let check = match check {
            Ok(c) => c,
            Err(e) => {
                if replace {
                    // A call cut short (a timeout) may still have made the object.
                    self.remove_unrecorded(key, material).await;
                }
                return Err(e.into());
            }
        };
        crate::failpoint::hit("import.after_unwrap");
        let (id, version) = (key.key_id(), material.version);
        let recorded = self
            .write_key(key, move |s| {
                s.set_imported(&id, version, &terms, prior.as_deref(), &check)
            })
            .await;
        match recorded {
            Ok(true) => Ok(()),
            other => {
                if replace {
                    self.remove_unrecorded(key, material).await;
                }
                match other {
                    Err(e) => Err(e),
                    _ => Err(KmsError::KmsInvalidState(format!(
                        "{} changed while its key material was imported (deleted, scheduled for deletion, or imported by another request); try again",
                        self.arn_of(key)
                    ))),
                }
            }
        }
    }

    /// Destroys the material an import made, when (read again) the store still records
    /// none for the key: nothing may stay in the token that the store does not name.
    async fn remove_unrecorded(
        &self,
        key: &super::keys::KeyEntry,
        material: crate::hsm::MaterialRef,
    ) {
        let id = key.key_id();
        match self.store_call(move |s| s.get_key(&id)).await {
            Ok(Some(r)) if r.imported.is_some() => {}
            Ok(_) => {
                if let Err(e) = self.hsm.destroy_material_everywhere(material).await {
                    tracing::warn!(key_id = %id, error = %e, "could not remove the material of a failed import; the start-up sweep or the next import replaces it");
                }
            }
            Err(e) => {
                tracing::warn!(key_id = %id, error = %e, "could not read a key after a failed import; its leftover material is replaced by the next import")
            }
        }
    }

    /// DeleteImportedKeyMaterial: the key becomes PendingImport (unless pending
    /// deletion) and its material is destroyed in the token, session copies too. On a
    /// key without material it changes nothing.
    pub async fn delete_imported_key_material(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<KeyArn, KmsError> {
        let key = self.resolve(caller, key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(
            caller,
            Authz::key(Action::DELETE_IMPORTED_KEY_MATERIAL, &key),
        )
        .await?;
        if key.kind().2 != Origin::External {
            return Err(not_external(&arn));
        }
        let _one_import_at_a_time = self.imports.lock().await;
        self.remove_imported(&key).await?;
        tracing::info!(key_id = %key.key_id(), "imported key material deleted");
        Ok(arn)
    }

    /// Records that `key` has no material (its destruction pending), then destroys it
    /// everywhere, then records that it is gone. A failure leaves the destruction
    /// pending: the sweep finishes it.
    async fn remove_imported(
        &self,
        key: &std::sync::Arc<super::keys::KeyEntry>,
    ) -> Result<(), KmsError> {
        let (id, version) = (key.key_id(), key.current_version());
        let _claim = self.claim_import(id, version, &self.arn_of(key)).await?;
        let now = self.settings.clock.now();
        self.write_key(key, move |s| s.clear_imported(&id, now))
            .await?;
        crate::failpoint::hit("delete_import.after_record");
        for version in key.versions() {
            self.hsm
                .destroy_material_everywhere(key.material_ref(version))
                .await?;
        }
        self.store_call(move |s| s.material_purged(&id)).await?;
        Ok(())
    }

    /// Destroys imported material whose ValidTo has passed (the key becomes
    /// PendingImport), audited as AWS's DeleteExpiredKeyMaterial, and the wrapping keys
    /// of expired import tokens. Returns how many keys lost their material. The daemon
    /// calls this with the other sweeps.
    pub async fn expire_imported_material(&self) -> Result<usize, KmsError> {
        let now = self.settings.clock.now();
        let due = self
            .store_call(move |s| s.keys_with_expired_material(now))
            .await?;
        let mut expired = 0;
        for id in due {
            let key = match self.key(id).await {
                Ok(Some(k)) => k,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(key_id = %id, error = %e, "cannot read a key whose imported material is due; the next sweep retries");
                    continue;
                }
            };
            let _one_import_at_a_time = self.imports.lock().await;
            // Read again under the lock: a re-import may have moved ValidTo.
            let stored = match self.store_call(move |s| s.get_key(&id)).await {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(key_id = %id, error = %e, "cannot read a key whose imported material is due; the next sweep retries");
                    continue;
                }
            };
            let expiring = stored
                .imported
                .and_then(|i| i.valid_to)
                .is_some_and(|t| t <= now);
            if !expiring && stored.purge_since.is_none() {
                continue;
            }
            let result = self.remove_imported(&key).await;
            if expiring {
                self.audit_background(
                    "DeleteExpiredKeyMaterial",
                    self.arn_of(&key).to_string(),
                    result.as_ref().err(),
                )
                .await;
            }
            match result {
                Ok(()) if expiring => {
                    tracing::info!(key_id = %id, "imported key material expired and was destroyed");
                    expired += 1;
                }
                Ok(()) => {
                    tracing::info!(key_id = %id, "deleted key material left in the token is destroyed")
                }
                Err(e) => {
                    tracing::warn!(key_id = %id, error = %e, "destroying imported key material failed; the next sweep retries")
                }
            }
        }
        let swept = self.hsm.destroy_expired_wrapping_keys(secs(now)).await?;
        if swept > 0 {
            tracing::info!(
                count = swept,
                "wrapping keys of expired import tokens destroyed"
            );
        }
        Ok(expired)
    }

    /// Whether `id`'s token material is an orphan because its key is EXTERNAL and has
    /// none recorded (an import or deletion a crash interrupted).
    pub(crate) fn imported_material_unrecorded(rec: &crate::store::KeyRecord) -> bool {
        rec.origin == Origin::External && rec.imported.is_none()
    }
}

/// What an import unwraps: into which material, of which kind, with which token.
struct Unwrap<'a> {
    material: crate::hsm::MaterialRef,
    kind: (crate::domain::KeySpec, crate::domain::KeyUsage),
    token: &'a ImportToken,
    wrapped: Vec<u8>,
}

/// The claim `claim_import` took, given back on drop (in the background: dropping
/// cannot wait) unless `given_back` says that `set_imported` did it.
struct ImportClaim<'a>(
    Option<(
        &'a Vault,
        crate::domain::KeyId,
        crate::domain::MaterialVersion,
    )>,
);

impl ImportClaim<'_> {
    /// The store gave the claim back as it recorded the import: nothing left to do.
    fn given_back(mut self) {
        self.0 = None;
    }
}

impl Drop for ImportClaim<'_> {
    fn drop(&mut self) {
        if let Some((vault, id, version)) = self.0.take() {
            let store = std::sync::Arc::clone(&vault.store);
            // Best effort: a claim left behind goes stale and is taken over.
            tokio::task::spawn_blocking(move || store.release_material(&id, version));
        }
    }
}

/// The key spec of a key that takes imported material; UnsupportedOperation for a key
/// of another origin, KMSInvalidState for one pending deletion.
fn importable(
    key: &super::keys::KeyEntry,
    arn: &KeyArn,
) -> Result<crate::domain::KeySpec, KmsError> {
    let (spec, _, origin) = key.kind();
    if origin != Origin::External {
        return Err(not_external(arn));
    }
    if key.state() == KeyState::PendingDeletion {
        return Err(KmsError::KmsInvalidState(format!(
            "{arn} is pending deletion."
        )));
    }
    Ok(spec)
}

fn not_external(arn: &KeyArn) -> KmsError {
    KmsError::UnsupportedOperation(format!(
        "{arn} origin is not EXTERNAL, which this operation needs: only keys created with Origin EXTERNAL take imported key material"
    ))
}

fn parse_wrapping_algorithm(s: &str) -> Result<WrappingAlgorithm, KmsError> {
    match s {
        "" => Err(KmsError::validation("WrappingAlgorithm is required")),
        s if RETIRED_WRAPPING_ALGORITHMS.contains(&s) => Err(KmsError::UnsupportedOperation(
            format!("WrappingAlgorithm {s} is not supported: use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256"),
        )),
        s => WrappingAlgorithm::parse(s).ok_or_else(|| {
            KmsError::validation(
                "WrappingAlgorithm must be RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256",
            )
        }),
    }
}

/// ExpirationModel and ValidTo as AWS checks them: KEY_MATERIAL_EXPIRES (the default)
/// needs a ValidTo in the future and at most 365 days away; DOES_NOT_EXPIRE takes none.
fn import_terms(
    model: &str,
    valid_to: Option<SystemTime>,
    now: SystemTime,
) -> Result<ImportedMaterial, KmsError> {
    let model = match model {
        "" => ExpirationModel::Expires,
        m => ExpirationModel::parse(m).ok_or_else(|| {
            KmsError::validation(
                "ExpirationModel must be KEY_MATERIAL_EXPIRES or KEY_MATERIAL_DOES_NOT_EXPIRE",
            )
        })?,
    };
    match (model, valid_to) {
        (ExpirationModel::DoesNotExpire, None) => Ok(ImportedMaterial {
            expiration_model: model,
            valid_to: None,
        }),
        (ExpirationModel::DoesNotExpire, Some(_)) => Err(KmsError::validation(
            "ValidTo must be left out when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE",
        )),
        (_, None) => Err(KmsError::validation(
            "ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES (the default)",
        )),
        (_, Some(t)) if t <= now => Err(KmsError::validation("ValidTo must be in the future")),
        (_, Some(t)) if t > now + MAX_VALID_FOR => Err(KmsError::validation(
            "ValidTo must be at most 365 days from now",
        )),
        // Whole seconds, as kms:ValidTo is: a policy's bound on it holds for the time
        // kept.
        (_, Some(t)) => Ok(ImportedMaterial {
            expiration_model: model,
            valid_to: Some(whole_seconds(t)),
        }),
    }
}

/// The token's terms for a wrapping algorithm.
fn wrapping(a: WrappingAlgorithm) -> Wrapping {
    Wrapping {
        hash: if a.oaep_sha256() {
            OaepHash::Sha256
        } else {
            OaepHash::Sha1
        },
        aes_key_wrap: a.uses_aes_key_wrap(),
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_terms_follow_aws() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86_400);
        let ok = import_terms("", Some(now + day), now).unwrap();
        assert_eq!(ok.expiration_model, ExpirationModel::Expires);
        assert_eq!(ok.valid_to, Some(now + day));
        let forever = import_terms("KEY_MATERIAL_DOES_NOT_EXPIRE", None, now).unwrap();
        assert_eq!(forever.valid_to, None);
        for (model, valid_to) in [
            ("", None),
            ("KEY_MATERIAL_EXPIRES", Some(now)),
            ("KEY_MATERIAL_EXPIRES", Some(now + day * 366)),
            ("KEY_MATERIAL_DOES_NOT_EXPIRE", Some(now + day)),
            ("NEVER", None),
        ] {
            let e = import_terms(model, valid_to, now).unwrap_err();
            assert_eq!(e.name(), "ValidationException", "{model} {valid_to:?}");
        }
        assert!(import_terms("", Some(now + day * 365), now).is_ok());
    }

    #[test]
    fn wrapping_algorithms_parse_with_aws_error_names() {
        assert_eq!(
            parse_wrapping_algorithm("RSA_AES_KEY_WRAP_SHA_256").unwrap(),
            WrappingAlgorithm::RsaAesKeyWrapSha256
        );
        assert_eq!(
            parse_wrapping_algorithm("RSAES_PKCS1_V1_5")
                .unwrap_err()
                .name(),
            "UnsupportedOperationException"
        );
        for bad in ["", "rsaes_oaep_sha_1", "AES"] {
            assert_eq!(
                parse_wrapping_algorithm(bad).unwrap_err().name(),
                "ValidationException"
            );
        }
        let w = wrapping(WrappingAlgorithm::RsaAesKeyWrapSha1);
        assert_eq!((w.hash, w.aes_key_wrap), (OaepHash::Sha1, true));
    }
}
