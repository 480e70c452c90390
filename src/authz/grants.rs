//! Grants as the authorizer sees them: a grantee, operations, and an optional
//! encryption-context constraint.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::context::RequestContext;

/// A grant's encryption-context constraint. Both forms are exact, case-sensitive matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConstraints {
    /// Every pair must be in the request's context (others may be too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
    /// The request's context must be exactly these pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
}

/// A grant on the key being used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Who may use it.
    pub grantee_principal: String,
    /// Grant operation names: `Decrypt`, `GenerateDataKey`, `ReEncryptFrom`, …
    pub operations: Vec<String>,
    /// Optional context constraint.
    #[serde(default)]
    pub constraints: Option<GrantConstraints>,
    /// Who may retire it.
    #[serde(default)]
    pub retiring_principal: Option<String>,
    /// Grant id, when known (shown in decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
}

/// Grant operations whose requests carry an encryption context: the only ones a
/// constraint applies to (AWS: DescribeKey, RetireGrant and CreateGrant ignore it).
pub(crate) const OPERATIONS_WITH_CONTEXT: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
];

/// A context's pairs with lower-cased keys: in a grant constraint AWS compares keys
/// without case and values with case. Every pair is kept, so `TENANT` and `tenant` in
/// one context are two pairs, not one that hides the other.
/// Keys fold as condition key names do (ASCII), so that a grant and a policy agree on
/// which keys are the same.
fn folded(ec: &BTreeMap<String, String>) -> BTreeSet<(String, &str)> {
    ec.iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect()
}

impl GrantConstraints {
    /// Does a request's encryption context satisfy the constraint?
    pub fn satisfied_by(&self, ec: &BTreeMap<String, String>) -> bool {
        let request = folded(ec);
        let subset_ok = self
            .encryption_context_subset
            .as_ref()
            .is_none_or(|want| folded(want).is_subset(&request));
        // Exactly those pairs: the same set after folding, and no two request pairs
        // folded into one (`{"TENANT":"A","tenant":"A"}` is two pairs).
        let equals_ok = self
            .encryption_context_equals
            .as_ref()
            .is_none_or(|want| want.len() == ec.len() && folded(want) == request);
        subset_ok && equals_ok
    }

    /// Does every encryption context that satisfies `self` satisfy `parent` too? A grant
    /// created through a grant must not loosen the constraint it was created under.
    /// Exact: with an Equals, the contexts that satisfy `self` all have the same pairs
    /// after folding, so testing that one set decides; with only a Subset S, they are
    /// every superset of S, which a parent Equals never covers and a parent Subset P
    /// covers exactly when P ⊆ S.
    pub fn implies(&self, parent: &GrantConstraints) -> bool {
        if let Some(e) = &self.encryption_context_equals {
            return self.satisfied_by(e) && parent.satisfied_by(e);
        }
        match (&self.encryption_context_subset, parent) {
            (
                _,
                GrantConstraints {
                    encryption_context_equals: Some(_),
                    ..
                },
            ) => false,
            (
                Some(s),
                GrantConstraints {
                    encryption_context_subset: Some(p),
                    ..
                },
            ) => folded(p).is_subset(&folded(s)),
            (
                None,
                GrantConstraints {
                    encryption_context_subset: Some(_),
                    ..
                },
            ) => false,
            (_, _) => true,
        }
    }
}

impl Grant {
    /// Does this grant allow the request?
    pub fn allows(&self, ctx: &RequestContext) -> bool {
        let Some(op) = ctx.action.strip_prefix("kms:") else {
            return false;
        };
        if self.grantee_principal != ctx.principal || !self.operations.iter().any(|o| o == op) {
            return false;
        }
        match &self.constraints {
            Some(c) if OPERATIONS_WITH_CONTEXT.contains(&op) => {
                c.satisfied_by(&ctx.encryption_context)
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn grant(subset: Option<&[(&str, &str)]>, equals: Option<&[(&str, &str)]>) -> Grant {
        Grant {
            grantee_principal: "arn:aws:iam::111122223333:role/G".into(),
            operations: vec!["Decrypt".into(), "DescribeKey".into()],
            constraints: Some(GrantConstraints {
                encryption_context_subset: subset.map(ec),
                encryption_context_equals: equals.map(ec),
            }),
            retiring_principal: None,
            grant_id: None,
        }
    }

    fn req(action: &str, pairs: &[(&str, &str)]) -> RequestContext {
        let mut c = RequestContext::new(
            "arn:aws:iam::111122223333:role/G",
            "111122223333",
            action,
            "k",
            "111122223333",
        );
        c.set_encryption_context(&ec(pairs));
        c
    }

    #[test]
    fn subset_and_equals_both_sides() {
        let sub = grant(Some(&[("Dept", "IT")]), None);
        assert!(sub.allows(&req("kms:Decrypt", &[("Dept", "IT")])));
        assert!(sub.allows(&req("kms:Decrypt", &[("Dept", "IT"), ("Purpose", "Test")])));
        assert!(!sub.allows(&req("kms:Decrypt", &[("Dept", "HR")])));
        assert!(!sub.allows(&req("kms:Decrypt", &[])));
        let eq = grant(None, Some(&[("Dept", "IT")]));
        assert!(eq.allows(&req("kms:Decrypt", &[("Dept", "IT")])));
        assert!(!eq.allows(&req("kms:Decrypt", &[("Dept", "IT"), ("Purpose", "Test")])));
        assert!(!eq.allows(&req("kms:Decrypt", &[])));
    }

    #[test]
    fn constraint_keys_ignore_case_and_values_do_not() {
        let sub = grant(Some(&[("dept", "IT")]), None);
        assert!(sub.allows(&req("kms:Decrypt", &[("DEPT", "IT")])));
        assert!(!sub.allows(&req("kms:Decrypt", &[("dept", "it")])));
    }

    #[test]
    fn equals_compares_every_pair_even_when_keys_differ_only_in_case() {
        let eq = grant(None, Some(&[("tenant", "A")]));
        assert!(eq.allows(&req("kms:Decrypt", &[("TENANT", "A")])));
        assert!(!eq.allows(&req("kms:Decrypt", &[("TENANT", "B"), ("tenant", "A")])));
        assert!(!eq.allows(&req("kms:Decrypt", &[("TENANT", "A"), ("tenant", "A")])));
        let two = grant(None, Some(&[("TENANT", "B"), ("tenant", "A")]));
        assert!(two.allows(&req("kms:Decrypt", &[("Tenant", "B"), ("tenant", "A")])));
        assert!(!two.allows(&req("kms:Decrypt", &[("tenant", "A")])));
        let sub = grant(Some(&[("tenant", "A")]), None);
        assert!(sub.allows(&req("kms:Decrypt", &[("TENANT", "B"), ("tenant", "A")])));
        assert!(!sub.allows(&req("kms:Decrypt", &[("TENANT", "B")])));
    }

    fn constraints(
        subset: Option<&[(&str, &str)]>,
        equals: Option<&[(&str, &str)]>,
    ) -> GrantConstraints {
        GrantConstraints {
            encryption_context_subset: subset.map(ec),
            encryption_context_equals: equals.map(ec),
        }
    }

    #[test]
    fn a_child_constraint_implies_its_parent_only_when_it_is_at_least_as_strict() {
        let eq_a = constraints(None, Some(&[("tenant", "A")]));
        // Pairs that fold onto the parent's key do not make a child stricter.
        assert!(!constraints(None, Some(&[("TENANT", "B"), ("tenant", "A")])).implies(&eq_a));
        assert!(!constraints(None, Some(&[("TENANT", "A"), ("tenant", "A")])).implies(&eq_a));
        assert!(constraints(None, Some(&[("Tenant", "A")])).implies(&eq_a));
        assert!(!constraints(Some(&[("tenant", "A")]), None).implies(&eq_a));
        let sub_a = constraints(Some(&[("tenant", "A")]), None);
        assert!(constraints(Some(&[("TENANT", "A"), ("x", "1")]), None).implies(&sub_a));
        assert!(!constraints(Some(&[("x", "1")]), None).implies(&sub_a));
        assert!(constraints(None, Some(&[("tenant", "A"), ("x", "1")])).implies(&sub_a));
        assert!(!constraints(None, Some(&[("tenant", "B")])).implies(&sub_a));
    }

    #[test]
    fn constraints_do_not_apply_to_operations_without_a_context() {
        let sub = grant(Some(&[("Dept", "IT")]), None);
        assert!(sub.allows(&req("kms:DescribeKey", &[])));
        assert!(
            !sub.allows(&req("kms:Encrypt", &[("Dept", "IT")])),
            "not a granted operation"
        );
    }
}
