//! CreateGrant: validate, authorize (by policy, or by a grant that includes CreateGrant
//! and is at least as broad as the new one), honour Name idempotency, store.

use std::collections::BTreeSet;
use std::time::SystemTime;

use super::token::new_grant_id;
use super::{at_least_as_strict, Vault, MAX_GRANTS_PER_GRANTEE, MAX_GRANTS_PER_KEY};
use crate::authz::{Action, ContextValue, GrantConstraints, Source};
use crate::domain::{KeySpec, KeyUsage};
use crate::identity::Principal;
use crate::store::GrantRecord;
use crate::vault::authorize::Authz;
use crate::vault::{Caller, KmsError};

/// Operations a grant on any key may allow.
const EVERY_KEY_OPERATIONS: &[&str] = &["CreateGrant", "RetireGrant", "DescribeKey"];
/// Operations a grant on a symmetric encryption key may allow.
const SYMMETRIC_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
];
/// Operations a grant on an RSA ENCRYPT_DECRYPT key may allow, besides EVERY_KEY_OPERATIONS.
const RSA_ENCRYPTION_OPERATIONS: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GetPublicKey",
];
/// ... on a SIGN_VERIFY key.
const SIGNING_OPERATIONS: &[&str] = &["Sign", "Verify", "GetPublicKey"];
/// ... on an HMAC key.
const MAC_OPERATIONS: &[&str] = &["GenerateMac", "VerifyMac"];
/// ... on a KEY_AGREEMENT key.
const KEY_AGREEMENT_OPERATIONS: &[&str] = &["DeriveSharedSecret", "GetPublicKey"];

/// Whether a grant on a key of `spec` and `usage` may allow `op` (AWS: a grant for an
/// operation the key does not support fails with ValidationException).
fn allowed_on(spec: KeySpec, usage: KeyUsage, op: &str) -> bool {
    let own: &[&str] = match usage {
        _ if spec.is_symmetric_encryption() => SYMMETRIC_OPERATIONS,
        KeyUsage::EncryptDecrypt => RSA_ENCRYPTION_OPERATIONS,
        KeyUsage::SignVerify => SIGNING_OPERATIONS,
        KeyUsage::GenerateVerifyMac => MAC_OPERATIONS,
        KeyUsage::KeyAgreement => KEY_AGREEMENT_OPERATIONS,
    };
    own.contains(&op) || EVERY_KEY_OPERATIONS.contains(&op)
}

/// Every grant operation AWS knows.
fn known(op: &str) -> bool {
    [
        EVERY_KEY_OPERATIONS,
        SYMMETRIC_OPERATIONS,
        RSA_ENCRYPTION_OPERATIONS,
        SIGNING_OPERATIONS,
        MAC_OPERATIONS,
        KEY_AGREEMENT_OPERATIONS,
    ]
    .iter()
    .any(|set| set.contains(&op))
}
/// AWS: a constraint has at most 8 pairs, each value at most 384 characters. Keys get
/// the same bound: without one, a few grants with megabyte keys would make every
/// ListGrants answer larger than the transport accepts.
const MAX_CONSTRAINT_PAIRS: usize = 8;
const MAX_CONSTRAINT_VALUE: usize = 384;
const MAX_CONSTRAINT_KEY: usize = 384;

/// CreateGrant parameters.
#[derive(Debug, Default)]
pub struct CreateGrantInput {
    /// Key id or key ARN.
    pub key_id: String,
    /// Who may use the grant.
    pub grantee_principal: String,
    /// Who may retire it ("" for none).
    pub retiring_principal: String,
    /// Grant operation names.
    pub operations: Vec<String>,
    /// Optional encryption-context constraint.
    pub constraints: Option<GrantConstraints>,
    /// Tokens of grants the caller relies on.
    pub grant_tokens: Vec<String>,
    /// Optional name for idempotent retries ("" for none).
    pub name: String,
}

fn principal(field: &str, arn: &str) -> Result<Principal, KmsError> {
    arn.parse()
        .map_err(|e| KmsError::validation(format!("{field}: {e}")))
}

fn operations(ops: &[String]) -> Result<Vec<String>, KmsError> {
    if ops.is_empty() {
        return Err(KmsError::validation(
            "Operations must name at least one operation",
        ));
    }
    let mut out = BTreeSet::new();
    for op in ops {
        if !known(op) {
            return Err(KmsError::validation(format!(
                "{op:?} is not a grant operation"
            )));
        }
        out.insert(op.clone());
    }
    Ok(out.into_iter().collect())
}

fn check_constraints(c: &GrantConstraints) -> Result<(), KmsError> {
    for m in [&c.encryption_context_subset, &c.encryption_context_equals]
        .into_iter()
        .flatten()
    {
        if m.len() > MAX_CONSTRAINT_PAIRS {
            return Err(KmsError::validation(format!(
                "a grant constraint has at most {MAX_CONSTRAINT_PAIRS} encryption context pairs"
            )));
        }
        if m.keys().any(|k| k.chars().count() > MAX_CONSTRAINT_KEY) {
            return Err(KmsError::validation(format!(
                "a grant constraint key is at most {MAX_CONSTRAINT_KEY} characters"
            )));
        }
        if m.values().any(|v| v.chars().count() > MAX_CONSTRAINT_VALUE) {
            return Err(KmsError::validation(format!(
                "a grant constraint value is at most {MAX_CONSTRAINT_VALUE} characters"
            )));
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), KmsError> {
    let ok = name.is_empty()
        || (name.len() <= 256
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b)));
    if ok {
        Ok(())
    } else {
        Err(KmsError::validation(
            "Name must be 1 to 256 letters, digits and :/_-",
        ))
    }
}

impl Vault {
    /// CreateGrant; returns (GrantId, GrantToken).
    pub async fn create_grant(
        &self,
        caller: &Caller,
        input: CreateGrantInput,
    ) -> Result<(String, String), KmsError> {
        self.check_grant_tokens(&input.grant_tokens)?;
        let grantee = principal("GranteePrincipal", &input.grantee_principal)?;
        let retiring = match input.retiring_principal.as_str() {
            "" => None,
            r => Some(principal("RetiringPrincipal", r)?),
        };
        let ops = operations(&input.operations)?;
        let constraints = input.constraints.filter(|c| {
            c.encryption_context_subset.is_some() || c.encryption_context_equals.is_some()
        });
        if let Some(c) = &constraints {
            check_constraints(c)?;
        }
        check_name(&input.name)?;

        let key = self.resolve(caller, &input.key_id).await?;
        let arn = self.arn_of(&key);
        let mut a = Authz::key(Action::CREATE_GRANT, &key)
            .with("kms:GranteePrincipal", grantee.arn())
            .with(
                "kms:GrantIsForAWSResource",
                caller.via_service.is_some().to_string(),
            );
        if let Some(r) = &retiring {
            a = a.with("kms:RetiringPrincipal", r.arn());
        }
        if let Some(c) = &constraints {
            let kind = if c.encryption_context_equals.is_some() {
                "EncryptionContextEquals"
            } else {
                "EncryptionContextSubset"
            };
            a = a.with("kms:GrantConstraintType", kind);
        }
        a.many = vec![("kms:GrantOperations", ContextValue::Many(ops.clone()))];
        let decision = self.authorize(caller, a).await?;
        key.check_usable(&arn)?;
        let (spec, usage, _) = key.kind();
        if let Some(op) = ops.iter().find(|op| !allowed_on(spec, usage, op)) {
            return Err(KmsError::validation(format!(
                "grant operation {op} is not valid for a {} key with KeyUsage {}",
                spec.as_str(),
                usage.as_str()
            )));
        }
        if constraints.is_some() && !spec.is_symmetric_encryption() {
            return Err(KmsError::validation(format!(
                "a grant for a {} key cannot have an encryption context constraint: its operations take no encryption context",
                spec.as_str()
            )));
        }

        // Allowed only through grants: the new grant may pass on no more than one of them.
        if !decision.matched.is_empty()
            && decision.matched.iter().all(|m| m.source == Source::Grant)
        {
            let grants = self.key_grants(&key).await?;
            let narrower = decision.matched.iter().any(|m| {
                grants.iter().filter(|g| g.grant_id == m.sid).any(|parent| {
                    ops.iter().all(|op| parent.operations.contains(op))
                        && at_least_as_strict(constraints.as_ref(), parent.constraints.as_ref())
                })
            });
            if !narrower {
                return Err(KmsError::AccessDenied(format!(
                    "User: {} is not authorized to perform: kms:CreateGrant on resource: {arn} because a grant may pass on only a subset of its own operations, with a constraint at least as strict",
                    caller.principal
                )));
            }
        }

        // Name idempotency: the same name and parameters return the existing grant.
        if !input.name.is_empty() {
            let id = key.key_id();
            let existing = self.store_call(move |s| s.grants_for_key(&id)).await?;
            if let Some(g) = existing.iter().find(|g| {
                g.name == input.name
                    && g.grantee == grantee.arn()
                    && g.retiring.as_deref() == retiring.as_ref().map(Principal::arn)
                    && g.operations == ops
                    && g.constraints == constraints
            }) {
                let token = self
                    .grant_tokens
                    .mint(&g.grant_id)
                    .map_err(KmsError::internal)?;
                return Ok((g.grant_id.clone(), token));
            }
        }

        let grant_id = new_grant_id().ok_or_else(|| KmsError::internal(super::token::BadToken))?;
        let record = GrantRecord {
            grant_id: grant_id.clone(),
            key_id: key.key_id(),
            name: input.name,
            grantee: grantee.arn().to_owned(),
            retiring: retiring.map(|r| r.arn().to_owned()),
            operations: ops,
            constraints,
            issuing_account: format!(
                "arn:{}:iam::{}:root",
                caller.principal.partition().as_str(),
                caller.principal.account()
            ),
            creation_date: SystemTime::now(),
        };
        let stored = self
            .store_call(move |s| {
                s.insert_grant(&record, MAX_GRANTS_PER_KEY, MAX_GRANTS_PER_GRANTEE)
            })
            .await;
        key.slots(|s| s.grants.invalidate());
        stored?;
        crate::failpoint::hit("grant.after_write");
        tracing::info!(key_id = %key.key_id(), grant_id = %grant_id, "grant created");
        let token = self
            .grant_tokens
            .mint(&grant_id)
            .map_err(KmsError::internal)?;
        Ok((grant_id, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_checked_and_deduplicated() {
        let ops = |v: &[&str]| operations(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            ops(&["Decrypt", "Encrypt", "Decrypt"]).unwrap(),
            vec!["Decrypt", "Encrypt"]
        );
        // Known to AWS: whether the key supports it is checked once the key is known.
        assert!(ops(&["Sign", "GenerateMac"]).is_ok());
        assert!(ops(&["decrypt"]).is_err());
        assert!(ops(&["Frobnicate"]).is_err());
        assert!(ops(&[]).is_err());
    }

    #[test]
    fn grant_operations_follow_the_key_type() {
        use crate::domain::{KeySpec as S, KeyUsage as U};
        assert!(allowed_on(
            S::SymmetricDefault,
            U::EncryptDecrypt,
            "GenerateDataKey"
        ));
        assert!(!allowed_on(S::SymmetricDefault, U::EncryptDecrypt, "Sign"));
        assert!(allowed_on(S::Rsa2048, U::EncryptDecrypt, "Decrypt"));
        assert!(!allowed_on(
            S::Rsa2048,
            U::EncryptDecrypt,
            "GenerateDataKey"
        ));
        assert!(!allowed_on(S::Rsa2048, U::EncryptDecrypt, "Sign"));
        assert!(allowed_on(S::Rsa2048, U::SignVerify, "Sign"));
        assert!(!allowed_on(S::EccNistP256, U::SignVerify, "Encrypt"));
        assert!(allowed_on(S::Hmac256, U::GenerateVerifyMac, "VerifyMac"));
        assert!(!allowed_on(
            S::Hmac256,
            U::GenerateVerifyMac,
            "GetPublicKey"
        ));
        assert!(allowed_on(
            S::EccNistP384,
            U::KeyAgreement,
            "DeriveSharedSecret"
        ));
        for u in [U::SignVerify, U::GenerateVerifyMac, U::KeyAgreement] {
            assert!(allowed_on(S::EccNistP256, u, "DescribeKey"));
            assert!(allowed_on(S::EccNistP256, u, "RetireGrant"));
        }
    }

    #[test]
    fn names_follow_aws_rules() {
        assert!(check_name("").is_ok());
        assert!(check_name("batch-job:nightly/1").is_ok());
        assert!(check_name("has space").is_err());
        assert!(check_name(&"n".repeat(257)).is_err());
    }
}
