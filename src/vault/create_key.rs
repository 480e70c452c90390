//! CreateKey: new material in the HSM, then its metadata (HSM object first, so a crash
//! leaves at most an orphan object, never a key id without material); for Origin
//! EXTERNAL, metadata alone (the material comes with ImportKeyMaterial).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::info;

use super::authorize::Authz;
use super::key_policy::parse_key_policy;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{KeyId, KeyMetadata, KeySpec, KeyState, KeyUsage, MaterialVersion, Origin};
use crate::store::{KeyRecord, MaterialRecord};

/// AWS's default quota of KMS keys per account and Region.
pub(crate) const MAX_KEYS_PER_ACCOUNT: usize = 100_000;

/// AWS: Description is at most 8192 characters.
pub(crate) const MAX_DESCRIPTION: usize = 8192;

/// CreateKey parameters.
#[derive(Debug, Default)]
pub struct CreateKeyInput {
    /// Free text.
    pub description: String,
    /// "" or ENCRYPT_DECRYPT.
    pub key_usage: String,
    /// "" or SYMMETRIC_DEFAULT.
    pub key_spec: String,
    /// "" or AWS_KMS, or EXTERNAL for a key whose material its owner imports.
    pub origin: String,
    /// Key policy document; empty for AWS's default key policy.
    pub policy: String,
    /// Skip the lockout safety check.
    pub bypass_policy_lockout_safety_check: bool,
}

/// Values AWS accepts that p11kms does not support: a valid request, so not a
/// ValidationException but UnsupportedOperationException. (SM2 exists only in AWS's
/// China Regions; PKCS#11 tokens do not offer ML-DSA widely yet.)
const AWS_KEY_SPECS: &[&str] = &["SM2", "ML_DSA_44", "ML_DSA_65", "ML_DSA_87"];
const AWS_ORIGINS: &[&str] = &["AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"];

fn parse_or_default<T>(
    field: &str,
    value: &str,
    default: T,
    parse: fn(&str) -> Option<T>,
    aws_known: &[&str],
) -> Result<T, KmsError> {
    if value.is_empty() {
        return Ok(default);
    }
    if let Some(v) = parse(value) {
        return Ok(v);
    }
    if aws_known.contains(&value) {
        return Err(KmsError::UnsupportedOperation(format!(
            "{field} {value} is not supported by p11kms yet"
        )));
    }
    Err(KmsError::validation(format!(
        "{field} has an unknown value"
    )))
}

/// AWS's table of key specs and usages: KeyUsage may be left out only for a symmetric
/// encryption key, and must be one the spec allows.
fn check_combination(spec: KeySpec, usage: KeyUsage, usage_omitted: bool) -> Result<(), KmsError> {
    if usage_omitted && spec != KeySpec::SymmetricDefault {
        return Err(KmsError::validation(format!(
            "KeyUsage is required for KeySpec {}: one of {}",
            spec.as_str(),
            usage_names(spec)
        )));
    }
    if !spec.usages().contains(&usage) {
        return Err(KmsError::validation(format!(
            "KeyUsage {} is not valid for KeySpec {}: use {}",
            usage.as_str(),
            spec.as_str(),
            usage_names(spec)
        )));
    }
    Ok(())
}

fn usage_names(spec: KeySpec) -> String {
    spec.usages()
        .iter()
        .map(|u| u.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

impl Vault {
    /// CreateKey: the key belongs to the caller's account.
    pub async fn create_key(
        &self,
        caller: &Caller,
        input: CreateKeyInput,
    ) -> Result<KeyMetadata, KmsError> {
        if input.description.chars().count() > MAX_DESCRIPTION {
            return Err(KmsError::validation(format!(
                "Description must be at most {MAX_DESCRIPTION} characters"
            )));
        }
        let key_usage = parse_or_default(
            "KeyUsage",
            &input.key_usage,
            KeyUsage::EncryptDecrypt,
            KeyUsage::parse,
            // p11kms serves every usage AWS has.
            &[],
        )?;
        let key_spec = parse_or_default(
            "KeySpec",
            &input.key_spec,
            KeySpec::SymmetricDefault,
            KeySpec::parse,
            AWS_KEY_SPECS,
        )?;
        check_combination(key_spec, key_usage, input.key_usage.is_empty())?;
        let origin = parse_or_default(
            "Origin",
            &input.origin,
            Origin::AwsKms,
            Origin::parse,
            AWS_ORIGINS,
        )?;
        let account = caller.principal.account().clone();
        let key_id = KeyId::generate();
        let arn = self.arn(&account, key_id);
        // Named before anything is made, so that the record of a call cancelled part-way
        // still names the key it may have created.
        caller.trace.resource(arn.to_string());
        let policy = if input.policy.is_empty() {
            None
        } else {
            Some((parse_key_policy(&input.policy)?, input.policy))
        };
        let bypass = input.bypass_policy_lockout_safety_check;
        // CreateKey is authorized on the account (IAM resource "*"), with the request's
        // key properties as condition keys.
        self.authorize(
            caller,
            Authz::account(Action::CREATE_KEY)
                .with("kms:KeySpec", key_spec.as_str())
                .with("kms:KeyUsage", key_usage.as_str())
                .with("kms:KeyOrigin", origin.as_str())
                .with("kms:BypassPolicyLockoutSafetyCheck", bypass.to_string()),
        )
        .await?;

        // Refused before anything is made: a key the token cannot serve would be a key
        // nobody can use.
        self.hsm.supports(key_spec, key_usage).map_err(|lacking| {
            KmsError::UnsupportedOperation(format!(
                "the HSM does not offer {lacking}, which {} keys with KeyUsage {} need",
                key_spec.as_str(),
                key_usage.as_str()
            ))
        })?;

        let version = MaterialVersion(1);
        // Millisecond precision, as stored: DescribeKey shows the same date before and
        // after a restart.
        let now = UNIX_EPOCH
            + Duration::from_millis(
                u64::try_from(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis(),
                )
                .unwrap_or(0),
            );
        let record = KeyRecord {
            key_id,
            account,
            description: input.description,
            creation_date: now,
            key_usage,
            key_spec,
            origin,
            // A key for imported material has none until ImportKeyMaterial.
            key_state: if origin == Origin::External {
                KeyState::PendingImport
            } else {
                KeyState::Enabled
            },
            deletion_date: None,
            current_version: version,
            versions: vec![MaterialRecord {
                version,
                created: now,
                reserved_invocations: self.keys.first_reservation(),
                rotation: None,
            }],
            policy: policy.as_ref().map(|(_, text)| text.clone()),
            rotation: None,
            imported: None,
            import_check: None,
            purge_since: None,
        };
        if let Some((parsed, _)) = &policy {
            // Checked against the new key as it will be, before any material exists.
            let probe = self.uncached_entry(record.clone());
            self.lockout_check(caller, &probe, parsed, bypass).await?;
        }
        if origin == Origin::External {
            // No material to make: only metadata, which ImportKeyMaterial completes.
            let stored = record.clone();
            self.insert_counted(stored).await?;
            info!(key_id = %key_id, "key created for imported material");
            return Ok(self.cache_new_key(record).metadata(arn));
        }
        let material = crate::hsm::MaterialRef { key_id, version };
        if self.store.shared() {
            // Tells another daemon's orphan sweep that this object is being made: until
            // the key is inserted (which gives the claim back), it has no metadata.
            let claimed = self
                .store_call(move |s| {
                    s.claim_material(&key_id, version, super::MATERIAL_CLAIM_STALE)
                })
                .await?;
            if !claimed {
                // A fresh random id is never claimed: something is badly wrong.
                return Err(KmsError::internal(std::io::Error::other(
                    "the new key id is already being made",
                )));
            }
        }
        let made = self
            .hsm
            .create_material(material, key_spec, key_usage)
            .await;
        if let Err(e) = made {
            self.release_claim(key_id, version).await;
            return Err(e.into());
        }
        crate::failpoint::hit("create_key.after_material");
        let inserted = self.insert_counted(record.clone()).await;
        if let Err(e) = inserted {
            // No metadata points at the new material: remove it rather than leave an orphan.
            if let Err(cleanup) = self.hsm.destroy_material(material).await {
                tracing::warn!(key_id = %key_id, error = %cleanup, "could not remove the material of a failed CreateKey");
            }
            self.release_claim(key_id, version).await;
            return Err(e);
        }
        crate::failpoint::hit("create_key.after_insert");
        info!(key_id = %key_id, "key created");
        let entry = self.cache_new_key(record);
        Ok(entry.metadata(arn))
    }

    /// Inserts a new key unless its account has the most keys it may have.
    async fn insert_counted(&self, record: KeyRecord) -> Result<(), KmsError> {
        self.store_call(move |s| {
            if s.count_keys(&record.account)? >= MAX_KEYS_PER_ACCOUNT {
                return Err(crate::store::StoreError::LimitExceeded(format!(
                    "an account has at most {MAX_KEYS_PER_ACCOUNT} KMS keys"
                )));
            }
            s.insert_key(&record)
        })
        .await
    }

    /// Gives back the claim a failed CreateKey took (best effort: a claim left behind
    /// goes stale and names a key id nobody will use).
    async fn release_claim(&self, id: KeyId, version: MaterialVersion) {
        if self.store.shared() {
            let _ = self
                .store_call(move |s| s.release_material(&id, version))
                .await;
        }
    }
}
