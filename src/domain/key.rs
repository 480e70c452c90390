//! KMS key metadata as AWS describes it, and the enumerations it uses.

use std::time::SystemTime;

use super::{AccountId, ExpirationModel, KeyArn, KeyId, KeySpec, KeyUsage};

aws_enum!(
    /// Who manages a key. Every p11kms key is its owner's: there are no AWS managed keys.
    pub KeyManager {
        /// The account that created it.
        Customer = "CUSTOMER"
    }
);

aws_enum!(
    /// Where the key material came from.
    pub Origin {
        /// Generated inside the HSM by p11kms.
        AwsKms = "AWS_KMS",
        /// Imported by its owner (ImportKeyMaterial); made without material.
        External = "EXTERNAL"
    }
);

aws_enum!(
    /// The key's lifecycle state, with AWS's names (Unavailable and Creating are never
    /// reached here; they round-trip if stored).
    pub KeyState {
        /// Usable.
        Enabled = "Enabled",
        /// Switched off by its owner.
        Disabled = "Disabled",
        /// Scheduled for deletion.
        PendingDeletion = "PendingDeletion",
        /// Material destroyed.
        Unavailable = "Unavailable",
        /// Being created.
        Creating = "Creating",
        /// An imported-material key without its material: made so, or its material
        /// expired or was deleted.
        PendingImport = "PendingImport"
    }
);

aws_enum!(
    /// Why a material version was made by a rotation (ListKeyRotations).
    pub RotationType {
        /// On the key's rotation schedule.
        Automatic = "AUTOMATIC",
        /// By RotateKeyOnDemand.
        OnDemand = "ON_DEMAND"
    }
);

/// A key-material version: 1 for the material made at CreateKey, then one more each time
/// new material is made for the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MaterialVersion(pub u32);

/// What DescribeKey shows of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMetadata {
    /// The key id.
    pub key_id: KeyId,
    /// The key ARN.
    pub arn: KeyArn,
    /// Owning account.
    pub account: AccountId,
    /// When it was created.
    pub creation_date: SystemTime,
    /// Free text from its owner.
    pub description: String,
    /// What the key is for.
    pub key_usage: KeyUsage,
    /// The key's type.
    pub key_spec: KeySpec,
    /// AWS_KMS or EXTERNAL.
    pub origin: Origin,
    /// Lifecycle state.
    pub key_state: KeyState,
    /// When a key pending deletion will be destroyed.
    pub deletion_date: Option<SystemTime>,
    /// Whether the imported material expires (EXTERNAL keys with material only).
    pub expiration_model: Option<ExpirationModel>,
    /// When the imported material expires.
    pub valid_to: Option<SystemTime>,
}

impl KeyMetadata {
    /// AWS derives Enabled from the state.
    pub fn enabled(&self) -> bool {
        self.key_state == KeyState::Enabled
    }

    /// Who manages the key: always its owner (CUSTOMER).
    pub fn key_manager(&self) -> KeyManager {
        KeyManager::Customer
    }

    /// The encryption algorithms the key supports (none unless ENCRYPT_DECRYPT).
    pub fn encryption_algorithms(&self) -> &'static [&'static str] {
        self.key_spec.encryption_algorithms(self.key_usage)
    }

    /// The signing algorithms the key supports (none unless SIGN_VERIFY).
    pub fn signing_algorithms(&self) -> Vec<&'static str> {
        self.key_spec
            .signing_algorithms(self.key_usage)
            .iter()
            .map(|a| a.as_str())
            .collect()
    }

    /// The MAC algorithm of an HMAC key, as a list (empty for other keys).
    pub fn mac_algorithms(&self) -> Vec<&'static str> {
        self.key_spec
            .mac_algorithm()
            .map(|a| vec![a.as_str()])
            .unwrap_or_default()
    }

    /// The key agreement algorithms the key supports (none unless KEY_AGREEMENT).
    pub fn key_agreement_algorithms(&self) -> &'static [&'static str] {
        self.key_spec.key_agreement_algorithms(self.key_usage)
    }

    /// Multi-Region keys do not exist here.
    pub fn multi_region(&self) -> bool {
        false
    }
}
