//! Grants as the authorizer sees them: a grantee, operations, and an optional
//! encryption-context constraint.

use std::collections::BTreeMap;

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

impl Grant {
    /// Does this grant allow the request?
    pub fn allows(&self, ctx: &RequestContext) -> bool {
        let Some(op) = ctx.action.strip_prefix("kms:") else {
            return false;
        };
        if self.grantee_principal != ctx.principal || !self.operations.iter().any(|o| o == op) {
            return false;
        }
        let ec = &ctx.encryption_context;
        match &self.constraints {
            None => true,
            Some(c) => {
                let subset_ok = c
                    .encryption_context_subset
                    .as_ref()
                    .is_none_or(|want| want.iter().all(|(k, v)| ec.get(k) == Some(v)));
                let equals_ok = c
                    .encryption_context_equals
                    .as_ref()
                    .is_none_or(|want| want == ec);
                subset_ok && equals_ok
            }
        }
    }
}
