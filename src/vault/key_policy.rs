//! GetKeyPolicy, PutKeyPolicy, ListKeyPolicies, and the lockout safety check that
//! CreateKey shares: a new policy must still let the caller call PutKeyPolicy, unless
//! the caller bypasses the check on purpose.

use super::authorize::Authz;
use super::keys::KeyEntry;
use super::{Caller, KmsError, Vault};
use crate::authz::{self, Action, Policy, PolicyError, PolicyKind};

/// The only key policy name, as in AWS.
pub(crate) const DEFAULT_POLICY_NAME: &str = "default";

/// The longest `PolicyName` AWS takes (its length constraint in the API reference).
const MAX_POLICY_NAME_CHARS: usize = 128;

/// A key policy name: `default` (or none, meaning it). A name outside AWS's constraints
/// on the member (1 to 128 of `[A-Za-z0-9_]`) is a ValidationException, any other name
/// NotFoundException, as AWS answers them.
fn policy_name(name: &str) -> Result<(), KmsError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match name {
        "" | DEFAULT_POLICY_NAME => Ok(()),
        _ if name.chars().count() > MAX_POLICY_NAME_CHARS => Err(KmsError::validation(format!(
            "1 validation error detected: Value at 'policyName' failed to satisfy constraint: \
             Member must have length less than or equal to {MAX_POLICY_NAME_CHARS}"
        ))),
        _ if !name.chars().all(word) => Err(KmsError::validation(
            "1 validation error detected: Value at 'policyName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [\\w]+",
        )),
        _ => Err(KmsError::NotFound(
            "the only key policy name is \"default\"".into(),
        )),
    }
}

/// The most characters AWS's Policy member may hold (its length constraint in the API
/// reference); the 32 KiB a key policy may have is a quota below it.
const MAX_POLICY_MEMBER_CHARS: usize = 131_072;

/// Parses a key policy for CreateKey/PutKeyPolicy; errors say where and why.
pub(crate) fn parse_key_policy(text: &str) -> Result<Policy, KmsError> {
    if text.is_empty() {
        return Err(KmsError::validation("Policy is required"));
    }
    authz::parse_policy(text, PolicyKind::Key).map_err(|e| match e {
        // As AWS: over the member's length constraint is a ValidationException; within
        // it but over the key policy quota (32 KiB), LimitExceededException ("a length
        // constraint or quota was exceeded").
        PolicyError::TooLarge if text.chars().count() > MAX_POLICY_MEMBER_CHARS => {
            KmsError::validation(format!(
                "1 validation error detected: Value at 'policy' failed to satisfy constraint: \
                 Member must have length less than or equal to {MAX_POLICY_MEMBER_CHARS}"
            ))
        }
        PolicyError::TooLarge => KmsError::LimitExceeded(e.to_string()),
        e => KmsError::MalformedPolicyDocument(e.to_string()),
    })
}

/// ListKeyPolicies parameters.
#[derive(Debug, Default)]
pub struct ListKeyPoliciesInput {
    /// The key (id, ARN, alias name or alias ARN).
    pub key_id: String,
    /// Page size, 1..1000; absent for the default.
    pub limit: Option<i32>,
    /// NextMarker from the previous page; empty for the first page.
    pub marker: String,
}

/// One page of ListKeyPolicies.
#[derive(Debug)]
pub struct ListKeyPoliciesOutput {
    /// The policy names (always `default`).
    pub policy_names: Vec<String>,
    /// Marker for the next page, when truncated.
    pub next_marker: Option<String>,
}

impl Vault {
    /// Refuses a policy that would not let the caller call PutKeyPolicy afterwards.
    pub(crate) async fn lockout_check(
        &self,
        caller: &Caller,
        key: &KeyEntry,
        policy: &Policy,
        bypass: bool,
    ) -> Result<(), KmsError> {
        if bypass {
            return Ok(());
        }
        let mut a = Authz::key(Action::PUT_KEY_POLICY, key)
            .with("kms:BypassPolicyLockoutSafetyCheck", "false");
        a.policy_override = Some(policy);
        match self.authorize(caller, a).await {
            Ok(_) => Ok(()),
            Err(KmsError::AccessDenied(_)) => Err(KmsError::MalformedPolicyDocument(
                "The new key policy will not allow you to update the key policy in the future."
                    .into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// GetKeyPolicy: the document as it was put (or the default one).
    pub async fn get_key_policy(
        &self,
        caller: &Caller,
        key_id: &str,
        name: &str,
    ) -> Result<String, KmsError> {
        policy_name(name)?;
        let key = self.resolve(caller, key_id).await?;
        self.authorize(caller, Authz::key(Action::GET_KEY_POLICY, &key))
            .await?;
        Ok(key.policy_text().unwrap_or_else(|| {
            super::keys::default_key_policy(&self.settings.partition, key.account())
        }))
    }

    /// PutKeyPolicy.
    pub async fn put_key_policy(
        &self,
        caller: &Caller,
        key_id: &str,
        name: &str,
        text: String,
        bypass: bool,
    ) -> Result<(), KmsError> {
        policy_name(name)?;
        let policy = parse_key_policy(&text)?;
        let key = self.resolve(caller, key_id).await?;
        self.authorize(
            caller,
            Authz::key(Action::PUT_KEY_POLICY, &key)
                .with("kms:BypassPolicyLockoutSafetyCheck", bypass.to_string()),
        )
        .await?;
        self.lockout_check(caller, &key, &policy, bypass).await?;
        let id = key.key_id();
        self.write_key(&key, move |s| s.set_key_policy(&id, &text))
            .await?;
        tracing::info!(key_id = %id, "key policy replaced");
        Ok(())
    }

    /// ListKeyPolicies: always `["default"]`; Limit and Marker are checked as AWS does.
    pub async fn list_key_policies(
        &self,
        caller: &Caller,
        input: ListKeyPoliciesInput,
    ) -> Result<ListKeyPoliciesOutput, KmsError> {
        if let Some(n) = input.limit {
            super::validate::count("Limit", n, 1, 1000)?;
        }
        if !input.marker.is_empty() {
            super::marker::check_shape(&input.marker)?;
            return Err(KmsError::InvalidMarker(
                "the marker is not one that ListKeyPolicies returned".into(),
            ));
        }
        let key = self.resolve(caller, &input.key_id).await?;
        self.authorize(caller, Authz::key(Action::LIST_KEY_POLICIES, &key))
            .await?;
        // A key has one policy, so there is never a second page.
        Ok(ListKeyPoliciesOutput {
            policy_names: vec![DEFAULT_POLICY_NAME.to_owned()],
            next_marker: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_outside_aws_constraints_are_validation_errors_and_others_not_found() {
        assert!(policy_name("").is_ok());
        assert!(policy_name("default").is_ok());
        for (name, error) in [
            ("other", "NotFoundException"),
            ("Default_2", "NotFoundException"),
            (&*"p".repeat(128), "NotFoundException"),
            (&*"p".repeat(129), "ValidationException"),
            ("a b", "ValidationException"),
            ("d\0", "ValidationException"),
            ("défaut", "ValidationException"),
        ] {
            assert_eq!(policy_name(name).unwrap_err().name(), error, "{name:?}");
        }
    }

    #[test]
    fn a_key_policy_over_the_quota_is_limit_exceeded_and_over_the_member_limit_validation() {
        let root = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;
        assert!(parse_key_policy(root).is_ok());
        let over_quota = format!("{root}{}", " ".repeat(32 * 1024));
        assert!(matches!(
            parse_key_policy(&over_quota),
            Err(KmsError::LimitExceeded(_))
        ));
        let over_member = format!("{root}{}", " ".repeat(MAX_POLICY_MEMBER_CHARS));
        assert!(matches!(
            parse_key_policy(&over_member),
            Err(KmsError::Validation(_))
        ));
        assert!(matches!(parse_key_policy(""), Err(KmsError::Validation(_))));
    }
}
