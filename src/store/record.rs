//! Rows of the metadata store, as domain types.

use std::time::SystemTime;

use crate::authz::GrantConstraints;
use crate::domain::{
    AccessKeyId, AccessKeyStatus, AccountId, ExpirationModel, KeyId, KeySpec, KeyState, KeyUsage,
    MaterialVersion, Origin, RotationType,
};

/// A key as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key id.
    pub key_id: KeyId,
    /// Owning account.
    pub account: AccountId,
    /// Owner's description.
    pub description: String,
    /// Creation time (millisecond precision once stored).
    pub creation_date: SystemTime,
    /// ENCRYPT_DECRYPT.
    pub key_usage: KeyUsage,
    /// SYMMETRIC_DEFAULT.
    pub key_spec: KeySpec,
    /// AWS_KMS.
    pub origin: Origin,
    /// Lifecycle state.
    pub key_state: KeyState,
    /// Scheduled destruction time, when pending deletion.
    pub deletion_date: Option<SystemTime>,
    /// Material that new encryptions use.
    pub current_version: MaterialVersion,
    /// Every material version, oldest first.
    pub versions: Vec<MaterialRecord>,
    /// The key policy document as given; `None` means AWS's default key policy.
    pub policy: Option<String>,
    /// Automatic rotation, when enabled.
    pub rotation: Option<RotationSchedule>,
    /// EXTERNAL keys: the terms of the material in the token, None while there is none.
    pub imported: Option<ImportedMaterial>,
    /// EXTERNAL keys: what proves that material imported again is the material first
    /// imported (see `hsm::import`), kept when the material is deleted or expires.
    pub import_check: Option<Vec<u8>>,
    /// EXTERNAL keys: since when material deleted or expired is still to be destroyed in
    /// the token (the sweep finishes it).
    pub purge_since: Option<SystemTime>,
}

/// The terms of imported key material.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportedMaterial {
    /// Whether it expires.
    pub expiration_model: ExpirationModel,
    /// When it expires (KEY_MATERIAL_EXPIRES only; millisecond precision once stored).
    pub valid_to: Option<SystemTime>,
}

/// A key's automatic rotation schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationSchedule {
    /// Days between rotations (90..2560).
    pub period_days: u32,
    /// When the next automatic rotation is due.
    pub next: SystemTime,
}

/// One key-material version as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaterialRecord {
    /// Version number, from 1.
    pub version: MaterialVersion,
    /// When the HSM object was made.
    pub created: SystemTime,
    /// GCM invocations reserved so far (see docs/DESIGN.md, "IV budget").
    pub reserved_invocations: u64,
    /// Set when a rotation made this version (not the first version, nor one made
    /// because the previous one's IV budget was spent).
    pub rotation: Option<RotationType>,
}

impl KeyRecord {
    /// The record of the current material version.
    pub fn current(&self) -> Option<&MaterialRecord> {
        self.versions
            .iter()
            .find(|v| v.version == self.current_version)
    }
}

/// A grant as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    /// 64 hex characters.
    pub grant_id: String,
    /// The key it is on.
    pub key_id: KeyId,
    /// Name given at creation ("" when none).
    pub name: String,
    /// Grantee principal ARN.
    pub grantee: String,
    /// Retiring principal ARN.
    pub retiring: Option<String>,
    /// Grant operation names.
    pub operations: Vec<String>,
    /// Encryption-context constraint.
    pub constraints: Option<GrantConstraints>,
    /// Account root ARN of the account that created it.
    pub issuing_account: String,
    /// When.
    pub creation_date: SystemTime,
}

/// An alias as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasRecord {
    /// The account it belongs to.
    pub account: AccountId,
    /// `alias/…`.
    pub name: String,
    /// The key it points at.
    pub key_id: KeyId,
    /// When it was made.
    pub created: SystemTime,
    /// When it was last pointed at a key.
    pub updated: SystemTime,
}

/// An access key as stored: who it belongs to, and its secret sealed under the HSM's
/// secret-sealing key (never the secret itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKeyRecord {
    /// The access key id.
    pub access_key_id: AccessKeyId,
    /// The principal ARN it authenticates as.
    pub principal: String,
    /// The principal's account.
    pub account: AccountId,
    /// Active.
    pub status: AccessKeyStatus,
    /// Creation time (millisecond precision once stored).
    pub created: SystemTime,
    /// The secret access key sealed by the vault (format byte, IV, AES-GCM output).
    pub sealed_secret: Vec<u8>,
}
