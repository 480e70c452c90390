//! Authorization: AWS-style policy documents evaluated exactly as AWS documents them.
//! A pipeline of pure steps, one file each: `parse` (JSON → [`model`]) → `evaluate` (one
//! statement against a [`RequestContext`]) → `decide` (all statements and grants → a
//! [`Decision`]). Knows nothing of I/O, gRPC or PKCS#11.

pub mod case;
mod condition;
mod context;
mod cross_account;
mod decide;
mod evaluate;
mod grants;
mod json;
pub mod model;
mod parse;
mod pattern;
mod variables;

#[cfg(test)]
mod tests;

pub use context::{ContextValue, RequestContext};
pub use cross_account::{allowed_across_accounts, CROSS_ACCOUNT_ACTIONS};
pub use decide::{decide, AuthzInput, Decision, DecisionKind, Matched, NamedPolicy, Source};
pub use grants::{Grant, GrantConstraints, OPERATIONS_WITH_CONTEXT};
pub use json::from_str_strict;
pub use model::Policy;
pub use parse::{
    parse_policy, parse_stored_policy, parse_value, PolicyError, PolicyKind, MAX_POLICY_BYTES,
};

/// An AWS KMS action name such as `kms:Encrypt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Action(pub &'static str);

impl Action {
    /// kms:CreateKey
    pub const CREATE_KEY: Self = Self("kms:CreateKey");
    /// kms:DescribeKey
    pub const DESCRIBE_KEY: Self = Self("kms:DescribeKey");
    /// kms:ListKeys
    pub const LIST_KEYS: Self = Self("kms:ListKeys");
    /// kms:Encrypt
    pub const ENCRYPT: Self = Self("kms:Encrypt");
    /// kms:Decrypt
    pub const DECRYPT: Self = Self("kms:Decrypt");
    /// kms:GenerateDataKey
    pub const GENERATE_DATA_KEY: Self = Self("kms:GenerateDataKey");
    /// kms:GenerateDataKeyWithoutPlaintext
    pub const GENERATE_DATA_KEY_WITHOUT_PLAINTEXT: Self =
        Self("kms:GenerateDataKeyWithoutPlaintext");
    /// kms:ReEncryptFrom
    pub const RE_ENCRYPT_FROM: Self = Self("kms:ReEncryptFrom");
    /// kms:ReEncryptTo
    pub const RE_ENCRYPT_TO: Self = Self("kms:ReEncryptTo");
    /// kms:GenerateRandom
    pub const GENERATE_RANDOM: Self = Self("kms:GenerateRandom");
    /// kms:EnableKey
    pub const ENABLE_KEY: Self = Self("kms:EnableKey");
    /// kms:DisableKey
    pub const DISABLE_KEY: Self = Self("kms:DisableKey");
    /// kms:EnableKeyRotation
    pub const ENABLE_KEY_ROTATION: Self = Self("kms:EnableKeyRotation");
    /// kms:DisableKeyRotation
    pub const DISABLE_KEY_ROTATION: Self = Self("kms:DisableKeyRotation");
    /// kms:GetKeyRotationStatus
    pub const GET_KEY_ROTATION_STATUS: Self = Self("kms:GetKeyRotationStatus");
    /// kms:RotateKeyOnDemand
    pub const ROTATE_KEY_ON_DEMAND: Self = Self("kms:RotateKeyOnDemand");
    /// kms:ListKeyRotations
    pub const LIST_KEY_ROTATIONS: Self = Self("kms:ListKeyRotations");
    /// kms:TagResource
    pub const TAG_RESOURCE: Self = Self("kms:TagResource");
    /// kms:UntagResource
    pub const UNTAG_RESOURCE: Self = Self("kms:UntagResource");
    /// kms:ListResourceTags
    pub const LIST_RESOURCE_TAGS: Self = Self("kms:ListResourceTags");
    /// kms:ScheduleKeyDeletion
    pub const SCHEDULE_KEY_DELETION: Self = Self("kms:ScheduleKeyDeletion");
    /// kms:CancelKeyDeletion
    pub const CANCEL_KEY_DELETION: Self = Self("kms:CancelKeyDeletion");
    /// kms:UpdateKeyDescription
    pub const UPDATE_KEY_DESCRIPTION: Self = Self("kms:UpdateKeyDescription");
    /// kms:CreateAlias (on the alias and on the key).
    pub const CREATE_ALIAS: Self = Self("kms:CreateAlias");
    /// kms:UpdateAlias (on the alias, the old key and the new key).
    pub const UPDATE_ALIAS: Self = Self("kms:UpdateAlias");
    /// kms:DeleteAlias (on the alias and on the key).
    pub const DELETE_ALIAS: Self = Self("kms:DeleteAlias");
    /// kms:ListAliases.
    pub const LIST_ALIASES: Self = Self("kms:ListAliases");
    /// kms:CreateGrant
    pub const CREATE_GRANT: Self = Self("kms:CreateGrant");
    /// kms:ListGrants
    pub const LIST_GRANTS: Self = Self("kms:ListGrants");
    /// kms:ListRetirableGrants
    pub const LIST_RETIRABLE_GRANTS: Self = Self("kms:ListRetirableGrants");
    /// kms:RevokeGrant
    pub const REVOKE_GRANT: Self = Self("kms:RevokeGrant");
    /// kms:GetKeyPolicy
    pub const GET_KEY_POLICY: Self = Self("kms:GetKeyPolicy");
    /// kms:PutKeyPolicy
    pub const PUT_KEY_POLICY: Self = Self("kms:PutKeyPolicy");
    /// kms:ListKeyPolicies
    pub const LIST_KEY_POLICIES: Self = Self("kms:ListKeyPolicies");
    /// iam:PutRolePolicy
    pub const IAM_PUT_ROLE_POLICY: Self = Self("iam:PutRolePolicy");
    /// iam:GetRolePolicy
    pub const IAM_GET_ROLE_POLICY: Self = Self("iam:GetRolePolicy");
    /// iam:ListRolePolicies
    pub const IAM_LIST_ROLE_POLICIES: Self = Self("iam:ListRolePolicies");
    /// iam:DeleteRolePolicy
    pub const IAM_DELETE_ROLE_POLICY: Self = Self("iam:DeleteRolePolicy");
    /// iam:TagRole
    pub const IAM_TAG_ROLE: Self = Self("iam:TagRole");
    /// iam:UntagRole
    pub const IAM_UNTAG_ROLE: Self = Self("iam:UntagRole");
    /// iam:ListRoleTags
    pub const IAM_LIST_ROLE_TAGS: Self = Self("iam:ListRoleTags");
    /// iam:PutUserPolicy
    pub const IAM_PUT_USER_POLICY: Self = Self("iam:PutUserPolicy");
    /// iam:GetUserPolicy
    pub const IAM_GET_USER_POLICY: Self = Self("iam:GetUserPolicy");
    /// iam:ListUserPolicies
    pub const IAM_LIST_USER_POLICIES: Self = Self("iam:ListUserPolicies");
    /// iam:DeleteUserPolicy
    pub const IAM_DELETE_USER_POLICY: Self = Self("iam:DeleteUserPolicy");
    /// iam:TagUser
    pub const IAM_TAG_USER: Self = Self("iam:TagUser");
    /// iam:UntagUser
    pub const IAM_UNTAG_USER: Self = Self("iam:UntagUser");
    /// iam:ListUserTags
    pub const IAM_LIST_USER_TAGS: Self = Self("iam:ListUserTags");
}
