//! Authorization: AWS-style policy documents evaluated exactly as AWS documents them.
//! A pipeline of pure steps, one file each: `parse` (JSON → [`model`]) → `evaluate` (one
//! statement against a [`RequestContext`]) → `decide` (all statements and grants → a
//! [`Decision`]). Knows nothing of I/O, gRPC or PKCS#11.

pub mod case;
mod condition;
mod context;
mod decide;
mod evaluate;
mod grants;
pub mod model;
mod parse;
mod pattern;
mod variables;

#[cfg(test)]
mod tests;

pub use context::{ContextValue, RequestContext};
pub use decide::{decide, AuthzInput, Decision, DecisionKind, Matched, NamedPolicy, Source};
pub use grants::{Grant, GrantConstraints};
pub use model::Policy;
pub use parse::{parse_policy, parse_value, PolicyError, PolicyKind, MAX_POLICY_BYTES};

use crate::domain::AccountId;
use crate::identity::Principal;

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
}

/// What is being asked.
#[derive(Debug)]
pub struct AuthzRequest<'a> {
    /// Who asks.
    pub principal: &'a Principal,
    /// For what.
    pub action: Action,
    /// The account that owns the resource (the key, or the account itself for
    /// account-level actions such as CreateKey and GenerateRandom).
    pub resource_account: &'a AccountId,
}

/// The outcome, with the reason for a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimpleDecision {
    /// Allowed.
    Allow,
    /// No rule allows it.
    ImplicitDeny {
        /// Why, for the AccessDeniedException message.
        reason: String,
    },
}

/// Decides a request.
pub fn authorize(req: &AuthzRequest<'_>) -> SimpleDecision {
    if req.principal.account() == req.resource_account {
        SimpleDecision::Allow
    } else {
        SimpleDecision::ImplicitDeny {
            reason: "the key belongs to another account, and cross-account use needs a key policy that allows it".into(),
        }
    }
}

#[cfg(test)]
mod own_account_tests {
    use super::*;

    #[test]
    fn own_account_is_allowed_and_other_accounts_are_denied() {
        let p: Principal = "arn:aws:iam::111122223333:role/App".parse().unwrap();
        let own: AccountId = "111122223333".parse().unwrap();
        let other: AccountId = "444455556666".parse().unwrap();
        let req = |a| AuthzRequest {
            principal: &p,
            action: Action::ENCRYPT,
            resource_account: a,
        };
        assert_eq!(authorize(&req(&own)), SimpleDecision::Allow);
        assert!(matches!(
            authorize(&req(&other)),
            SimpleDecision::ImplicitDeny { .. }
        ));
    }
}
