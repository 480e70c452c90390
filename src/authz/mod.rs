//! Authorization: AWS-style policy documents evaluated exactly as AWS documents them.
//! A pipeline of pure steps, one file each: `parse` (JSON → [`model`]) → `evaluate` (one
//! statement against a [`RequestContext`]) → `decide` (all statements and grants → a
//! [`Decision`]). Knows nothing of I/O, gRPC or PKCS#11.

pub(crate) mod case;
mod condition;
mod context;
mod cross_account;
mod decide;
mod evaluate;
mod grants;
mod json;
pub(crate) mod model;
mod parse;
mod pattern;
mod variables;

#[cfg(test)]
mod tests;

pub(crate) use context::ContextValue;
pub use context::RequestContext;
pub use cross_account::{allowed_across_accounts, CROSS_ACCOUNT_ACTIONS};
pub use decide::{decide, AuthzInput, NamedPolicy};
pub(crate) use decide::{Decision, DecisionKind, Source};
pub(crate) use grants::{Grant, GrantConstraints};
pub(crate) use json::from_str_strict;
pub(crate) use model::Policy;
pub(crate) use parse::PolicyError;
pub use parse::{parse_policy, parse_stored_policy, parse_value, PolicyKind};

/// An AWS KMS action name such as `kms:Encrypt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Action(pub &'static str);

impl Action {
    /// kms:CreateKey
    pub(crate) const CREATE_KEY: Self = Self("kms:CreateKey");
    /// kms:DescribeKey
    pub(crate) const DESCRIBE_KEY: Self = Self("kms:DescribeKey");
    /// kms:ListKeys
    pub(crate) const LIST_KEYS: Self = Self("kms:ListKeys");
    /// kms:Encrypt
    pub(crate) const ENCRYPT: Self = Self("kms:Encrypt");
    /// kms:Decrypt
    pub(crate) const DECRYPT: Self = Self("kms:Decrypt");
    /// kms:GenerateDataKey
    pub(crate) const GENERATE_DATA_KEY: Self = Self("kms:GenerateDataKey");
    /// kms:GenerateDataKeyWithoutPlaintext
    pub(crate) const GENERATE_DATA_KEY_WITHOUT_PLAINTEXT: Self =
        Self("kms:GenerateDataKeyWithoutPlaintext");
    /// kms:ReEncryptFrom
    pub(crate) const RE_ENCRYPT_FROM: Self = Self("kms:ReEncryptFrom");
    /// kms:ReEncryptTo
    pub(crate) const RE_ENCRYPT_TO: Self = Self("kms:ReEncryptTo");
    /// kms:GenerateDataKeyPair
    pub(crate) const GENERATE_DATA_KEY_PAIR: Self = Self("kms:GenerateDataKeyPair");
    /// kms:GenerateDataKeyPairWithoutPlaintext
    pub(crate) const GENERATE_DATA_KEY_PAIR_WITHOUT_PLAINTEXT: Self =
        Self("kms:GenerateDataKeyPairWithoutPlaintext");
    /// kms:Sign
    pub(crate) const SIGN: Self = Self("kms:Sign");
    /// kms:Verify
    pub(crate) const VERIFY: Self = Self("kms:Verify");
    /// kms:GetPublicKey
    pub(crate) const GET_PUBLIC_KEY: Self = Self("kms:GetPublicKey");
    /// kms:GenerateMac
    pub(crate) const GENERATE_MAC: Self = Self("kms:GenerateMac");
    /// kms:VerifyMac
    pub(crate) const VERIFY_MAC: Self = Self("kms:VerifyMac");
    /// kms:DeriveSharedSecret
    pub(crate) const DERIVE_SHARED_SECRET: Self = Self("kms:DeriveSharedSecret");
    /// kms:GetParametersForImport
    pub(crate) const GET_PARAMETERS_FOR_IMPORT: Self = Self("kms:GetParametersForImport");
    /// kms:ImportKeyMaterial
    pub(crate) const IMPORT_KEY_MATERIAL: Self = Self("kms:ImportKeyMaterial");
    /// kms:DeleteImportedKeyMaterial
    pub(crate) const DELETE_IMPORTED_KEY_MATERIAL: Self = Self("kms:DeleteImportedKeyMaterial");
    /// kms:GenerateRandom
    pub(crate) const GENERATE_RANDOM: Self = Self("kms:GenerateRandom");
    /// kms:EnableKey
    pub(crate) const ENABLE_KEY: Self = Self("kms:EnableKey");
    /// kms:DisableKey
    pub(crate) const DISABLE_KEY: Self = Self("kms:DisableKey");
    /// kms:EnableKeyRotation
    pub(crate) const ENABLE_KEY_ROTATION: Self = Self("kms:EnableKeyRotation");
    /// kms:DisableKeyRotation
    pub(crate) const DISABLE_KEY_ROTATION: Self = Self("kms:DisableKeyRotation");
    /// kms:GetKeyRotationStatus
    pub(crate) const GET_KEY_ROTATION_STATUS: Self = Self("kms:GetKeyRotationStatus");
    /// kms:RotateKeyOnDemand
    pub(crate) const ROTATE_KEY_ON_DEMAND: Self = Self("kms:RotateKeyOnDemand");
    /// kms:ListKeyRotations
    pub(crate) const LIST_KEY_ROTATIONS: Self = Self("kms:ListKeyRotations");
    /// kms:TagResource
    pub(crate) const TAG_RESOURCE: Self = Self("kms:TagResource");
    /// kms:UntagResource
    pub(crate) const UNTAG_RESOURCE: Self = Self("kms:UntagResource");
    /// kms:ListResourceTags
    pub(crate) const LIST_RESOURCE_TAGS: Self = Self("kms:ListResourceTags");
    /// kms:ScheduleKeyDeletion
    pub(crate) const SCHEDULE_KEY_DELETION: Self = Self("kms:ScheduleKeyDeletion");
    /// kms:CancelKeyDeletion
    pub(crate) const CANCEL_KEY_DELETION: Self = Self("kms:CancelKeyDeletion");
    /// kms:UpdateKeyDescription
    pub(crate) const UPDATE_KEY_DESCRIPTION: Self = Self("kms:UpdateKeyDescription");
    /// kms:CreateAlias (on the alias and on the key).
    pub(crate) const CREATE_ALIAS: Self = Self("kms:CreateAlias");
    /// kms:UpdateAlias (on the alias, the old key and the new key).
    pub(crate) const UPDATE_ALIAS: Self = Self("kms:UpdateAlias");
    /// kms:DeleteAlias (on the alias and on the key).
    pub(crate) const DELETE_ALIAS: Self = Self("kms:DeleteAlias");
    /// kms:ListAliases.
    pub(crate) const LIST_ALIASES: Self = Self("kms:ListAliases");
    /// kms:CreateGrant
    pub(crate) const CREATE_GRANT: Self = Self("kms:CreateGrant");
    /// kms:ListGrants
    pub(crate) const LIST_GRANTS: Self = Self("kms:ListGrants");
    /// kms:ListRetirableGrants
    pub(crate) const LIST_RETIRABLE_GRANTS: Self = Self("kms:ListRetirableGrants");
    /// kms:RevokeGrant
    pub(crate) const REVOKE_GRANT: Self = Self("kms:RevokeGrant");
    /// kms:GetKeyPolicy
    pub(crate) const GET_KEY_POLICY: Self = Self("kms:GetKeyPolicy");
    /// kms:PutKeyPolicy
    pub(crate) const PUT_KEY_POLICY: Self = Self("kms:PutKeyPolicy");
    /// kms:ListKeyPolicies
    pub(crate) const LIST_KEY_POLICIES: Self = Self("kms:ListKeyPolicies");
    /// iam:PutRolePolicy
    pub(crate) const IAM_PUT_ROLE_POLICY: Self = Self("iam:PutRolePolicy");
    /// iam:GetRolePolicy
    pub(crate) const IAM_GET_ROLE_POLICY: Self = Self("iam:GetRolePolicy");
    /// iam:ListRolePolicies
    pub(crate) const IAM_LIST_ROLE_POLICIES: Self = Self("iam:ListRolePolicies");
    /// iam:DeleteRolePolicy
    pub(crate) const IAM_DELETE_ROLE_POLICY: Self = Self("iam:DeleteRolePolicy");
    /// iam:TagRole
    pub(crate) const IAM_TAG_ROLE: Self = Self("iam:TagRole");
    /// iam:UntagRole
    pub(crate) const IAM_UNTAG_ROLE: Self = Self("iam:UntagRole");
    /// iam:ListRoleTags
    pub(crate) const IAM_LIST_ROLE_TAGS: Self = Self("iam:ListRoleTags");
    /// iam:PutUserPolicy
    pub(crate) const IAM_PUT_USER_POLICY: Self = Self("iam:PutUserPolicy");
    /// iam:GetUserPolicy
    pub(crate) const IAM_GET_USER_POLICY: Self = Self("iam:GetUserPolicy");
    /// iam:ListUserPolicies
    pub(crate) const IAM_LIST_USER_POLICIES: Self = Self("iam:ListUserPolicies");
    /// iam:DeleteUserPolicy
    pub(crate) const IAM_DELETE_USER_POLICY: Self = Self("iam:DeleteUserPolicy");
    /// iam:TagUser
    pub(crate) const IAM_TAG_USER: Self = Self("iam:TagUser");
    /// iam:UntagUser
    pub(crate) const IAM_UNTAG_USER: Self = Self("iam:UntagUser");
    /// iam:ListUserTags
    pub(crate) const IAM_LIST_USER_TAGS: Self = Self("iam:ListUserTags");
    /// iam:CreateAccessKey
    pub(crate) const IAM_CREATE_ACCESS_KEY: Self = Self("iam:CreateAccessKey");
    /// iam:ListAccessKeys
    pub(crate) const IAM_LIST_ACCESS_KEYS: Self = Self("iam:ListAccessKeys");
    /// iam:DeleteAccessKey
    pub(crate) const IAM_DELETE_ACCESS_KEY: Self = Self("iam:DeleteAccessKey");
}
