//! The offline evaluation case of `p11kms policy eval`: the input format of the shared
//! policy vectors (key_policy, identity_policies, grants, request). Other fields of a
//! vector (id, expected, …) are ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{
    decide, parse_value, AuthzInput, ContextValue, Decision, Grant, NamedPolicy, PolicyError,
    PolicyKind, RequestContext,
};

/// One case.
#[derive(Debug, Deserialize)]
pub struct EvalCase {
    /// The key policy document.
    pub key_policy: Value,
    /// The caller's identity policies.
    #[serde(default)]
    pub identity_policies: Vec<Value>,
    /// Grants on the key.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// The request.
    pub request: CaseRequest,
}

/// The request of a case.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    /// Caller ARN.
    pub principal: String,
    /// Caller's account.
    pub principal_account: String,
    /// e.g. kms:Decrypt.
    pub action: String,
    /// Key ARN.
    pub resource: String,
    /// Key's account.
    pub key_account: String,
    /// Condition keys → string or list of strings.
    #[serde(default)]
    pub context: BTreeMap<String, Value>,
}

/// Why a case could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// A policy of the case is malformed.
    #[error("{which}: {source}")]
    Policy {
        /// key_policy or identity_policies[i].
        which: String,
        /// The parse error.
        #[source]
        source: PolicyError,
    },
    /// A context value is not a string or list of strings.
    #[error("request.context.{0}: values are strings or arrays of strings")]
    ContextValue(String),
    /// The case is not JSON, names a key twice in one object, or lacks a field.
    #[error("the case is not valid: {0}")]
    Json(String),
}

/// Reads a case from JSON text. A duplicate key anywhere (in a policy, or in the case
/// itself) is refused, as for policies put over the API.
pub fn parse_case(text: &str) -> Result<EvalCase, CaseError> {
    let v = super::from_str_strict(text).map_err(|e| CaseError::Json(e.to_string()))?;
    serde_json::from_value(v).map_err(|e| CaseError::Json(e.to_string()))
}

const EC_PREFIX: &str = "kms:encryptioncontext:";

impl CaseRequest {
    /// The request context: every key as given, and the encryption context rebuilt from
    /// the kms:EncryptionContext:<key> entries (keys in their original case).
    pub fn context(&self) -> Result<RequestContext, CaseError> {
        let mut ctx = RequestContext::new(
            &self.principal,
            &self.principal_account,
            &self.action,
            &self.resource,
            &self.key_account,
        );
        let mut ec = BTreeMap::new();
        for (k, v) in &self.context {
            let one = match v {
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            if let Some(val) = one {
                if let Some(prefix) = k.get(..EC_PREFIX.len()) {
                    if prefix.eq_ignore_ascii_case(EC_PREFIX) {
                        if let Some(name) = k.get(EC_PREFIX.len()..) {
                            ec.insert(name.to_owned(), val.clone());
                        }
                    }
                }
                // Keys that differ only in case (kms:EncryptionContext:TENANT and
                // …:tenant) both stay visible, as in the daemon.
                ctx.add(k, val);
                continue;
            }
            let value = match v {
                Value::Array(a) => ContextValue::Many(
                    a.iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_owned)
                                .ok_or_else(|| CaseError::ContextValue(k.clone()))
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(CaseError::ContextValue(k.clone())),
            };
            ctx.set(k, value);
        }
        ctx.encryption_context = ec;
        Ok(ctx)
    }
}

/// Evaluates a case.
pub fn eval_case(case: &EvalCase) -> Result<Decision, CaseError> {
    let key_policy =
        parse_value(&case.key_policy, PolicyKind::Key).map_err(|source| CaseError::Policy {
            which: "key_policy".into(),
            source,
        })?;
    let names: Vec<String> = (0..case.identity_policies.len())
        .map(|i| format!("identity_policies[{i}]"))
        .collect();
    let identity = case
        .identity_policies
        .iter()
        .zip(&names)
        .map(|(p, name)| {
            parse_value(p, PolicyKind::Identity).map_err(|source| CaseError::Policy {
                which: name.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let named: Vec<NamedPolicy<'_>> = identity
        .iter()
        .zip(&names)
        .map(|(policy, name)| NamedPolicy { name, policy })
        .collect();
    let ctx = case.request.context()?;
    Ok(decide(&AuthzInput {
        key_policy: Some(&key_policy),
        identity_policies: &named,
        grants: &case.grants,
        request: &ctx,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::DecisionKind;

    /// A shared vector: the case plus its metadata. Unknown fields are refused so that a
    /// change of format fails here rather than being silently ignored.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Vector {
        id: String,
        category: String,
        rule: String,
        source: String,
        key_policy: Value,
        identity_policies: Vec<Value>,
        grants: Vec<Grant>,
        request: CaseRequest,
        expected: DecisionKind,
    }

    impl<'de> Deserialize<'de> for DecisionKind {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            match String::deserialize(d)?.as_str() {
                "Allow" => Ok(Self::Allow),
                "ExplicitDeny" => Ok(Self::ExplicitDeny),
                "ImplicitDeny" => Ok(Self::ImplicitDeny),
                other => Err(serde::de::Error::custom(format!(
                    "unknown decision {other}"
                ))),
            }
        }
    }

    fn run_file(path: &std::path::Path) -> usize {
        let text = std::fs::read_to_string(path).unwrap();
        let vectors: Vec<Vector> = serde_json::from_str(&text).unwrap();
        let mut failures = Vec::new();
        for v in &vectors {
            assert!(
                !v.category.is_empty() && !v.rule.is_empty() && !v.source.is_empty(),
                "{}",
                v.id
            );
            let case = EvalCase {
                key_policy: v.key_policy.clone(),
                identity_policies: v.identity_policies.clone(),
                grants: v.grants.clone(),
                request: serde_json::from_value(serde_json::to_value(&v.request).unwrap()).unwrap(),
            };
            match eval_case(&case) {
                Ok(d) if d.decision == v.expected => {}
                Ok(d) => failures.push(format!(
                    "{}: expected {:?}, got {:?} ({})",
                    v.id, v.expected, d.decision, d.reason
                )),
                Err(e) => failures.push(format!("{}: error {e}", v.id)),
            }
        }
        // Every failing case by name, not just the first.
        assert!(
            failures.is_empty(),
            "{} of {} vectors failed:\n{}",
            failures.len(),
            vectors.len(),
            failures.join("\n")
        );
        vectors.len()
    }

    #[test]
    fn every_public_policy_vector_passes() {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(
            run_file(&here.join("tests/policy-vectors/vectors.json")),
            56
        );
        // Our own cases of the same kinds: the cross-account table, policy variables.
        assert_eq!(
            run_file(&here.join("tests/policy-vectors/hardening.json")),
            97
        );
        // The shared copy beside the repository, when present, may hold newer cases.
        let shared = here.join("../shared/policy-vectors/vectors.json");
        if shared.exists() {
            assert!(run_file(&shared) >= 56);
        }
    }
}
