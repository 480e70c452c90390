//! KMS key metadata as AWS describes it, and the enumerations it uses.

use std::time::SystemTime;

use super::{AccountId, KeyArn, KeyId};

macro_rules! aws_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// The AWS spelling.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
            /// Parses the AWS spelling (exact, case-sensitive as AWS is).
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

aws_enum!(
    /// What a key is for. Only symmetric encryption keys exist so far.
    KeyUsage {
        /// Encrypt and decrypt.
        EncryptDecrypt = "ENCRYPT_DECRYPT"
    }
);

aws_enum!(
    /// The key's type. SYMMETRIC_DEFAULT is AES-256-GCM inside the HSM.
    KeySpec {
        /// AES-256-GCM.
        SymmetricDefault = "SYMMETRIC_DEFAULT"
    }
);

impl KeySpec {
    /// The EncryptionAlgorithms DescribeKey lists for a key of this spec.
    pub fn encryption_algorithms(self) -> &'static [&'static str] {
        match self {
            Self::SymmetricDefault => &["SYMMETRIC_DEFAULT"],
        }
    }
}

aws_enum!(
    /// Who manages a key. Every p11kms key is its owner's: there are no AWS managed keys.
    KeyManager {
        /// The account that created it.
        Customer = "CUSTOMER"
    }
);

aws_enum!(
    /// Where the key material came from.
    Origin {
        /// Generated inside the HSM by p11kms.
        AwsKms = "AWS_KMS"
    }
);

aws_enum!(
    /// The key's lifecycle state, with AWS's names. Only Enabled is reachable until the
    /// lifecycle operations land; the others are here so that stored states round-trip.
    KeyState {
        /// Usable.
        Enabled = "Enabled",
        /// Switched off by its owner.
        Disabled = "Disabled",
        /// Scheduled for deletion.
        PendingDeletion = "PendingDeletion",
        /// Material destroyed.
        Unavailable = "Unavailable",
        /// Being created.
        Creating = "Creating"
    }
);

aws_enum!(
    /// Why a material version was made by a rotation (ListKeyRotations).
    RotationType {
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
    /// ENCRYPT_DECRYPT.
    pub key_usage: KeyUsage,
    /// SYMMETRIC_DEFAULT.
    pub key_spec: KeySpec,
    /// AWS_KMS.
    pub origin: Origin,
    /// Lifecycle state.
    pub key_state: KeyState,
    /// When a key pending deletion will be destroyed.
    pub deletion_date: Option<SystemTime>,
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

    /// The encryption algorithms the key supports.
    pub fn encryption_algorithms(&self) -> &'static [&'static str] {
        self.key_spec.encryption_algorithms()
    }

    /// Multi-Region keys do not exist here.
    pub fn multi_region(&self) -> bool {
        false
    }
}
