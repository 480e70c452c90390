//! JSON → typed policy. Every refusal names where (statement index, Sid, element) and
//! why, for MalformedPolicyDocumentException.

use serde_json::{Map, Value};

use super::model::{
    Condition, Effect, Matcher, Operator, Policy, PrincipalClause, PrincipalSet, Qualifier,
    Statement,
};

/// AWS: a key policy is at most 32 KiB.
pub(crate) const MAX_POLICY_BYTES: usize = 32 * 1024;

/// Which kind of document: key policies name principals, identity policies must not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// A resource policy attached to a key: Principal or NotPrincipal required.
    Key,
    /// A policy attached to a principal: no Principal element.
    Identity,
}

/// Why a document is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not JSON at all.
    #[error("the policy is not valid JSON: {0}")]
    Json(String),
    /// Over 32 KiB.
    #[error("the policy is larger than {MAX_POLICY_BYTES} bytes")]
    TooLarge,
    /// JSON, but not a valid policy; `location` says where.
    #[error("{location}: {reason}")]
    Malformed {
        /// e.g. `Statement[2] (Sid "AllowUse").Action`.
        location: String,
        /// What is wrong there.
        reason: String,
    },
}

fn malformed(location: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError::Malformed {
        location: location.into(),
        reason: reason.into(),
    }
}

/// Parses a policy document from text.
pub fn parse_policy(text: &str, kind: PolicyKind) -> Result<Policy, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge);
    }
    let v = super::json::from_str_strict(text).map_err(|e| PolicyError::Json(e.to_string()))?;
    parse_value(&v, kind)
}

/// Parses a document that was accepted when it was stored, by an older p11kms that
/// allowed what is refused now (a key named twice, a principal ARN with a wildcard).
/// Such a document is read as it was then (the last of duplicate keys wins; a wildcard
/// principal matches nobody), so that its key or principal is not locked out by an
/// upgrade and can be repaired; the second value says what a new write would refuse,
/// for the log.
pub fn parse_stored_policy(
    text: &str,
    kind: PolicyKind,
) -> Result<(Policy, Option<PolicyError>), PolicyError> {
    let strict = match parse_policy(text, kind) {
        Ok(p) => return Ok((p, None)),
        Err(e @ (PolicyError::Json(_) | PolicyError::Malformed { .. })) => e,
        Err(e) => return Err(e),
    };
    let v: Value = serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
    let p = parse_document(&v, kind, true)?;
    Ok((p, Some(strict)))
}

/// Parses a policy document already decoded as JSON.
pub fn parse_value(v: &Value, kind: PolicyKind) -> Result<Policy, PolicyError> {
    parse_document(v, kind, false)
}

/// `stored`: accept what an older p11kms accepted (see [`parse_stored_policy`]).
fn parse_document(v: &Value, kind: PolicyKind, stored: bool) -> Result<Policy, PolicyError> {
    let doc = v
        .as_object()
        .ok_or_else(|| malformed("policy", "the document must be a JSON object"))?;
    for k in doc.keys() {
        if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
            return Err(malformed(k.clone(), "unknown top-level element"));
        }
    }
    let variables = match doc.get("Version") {
        None => false,
        Some(Value::String(s)) if s == "2012-10-17" => true,
        Some(Value::String(s)) if s == "2008-10-17" => false,
        Some(_) => {
            return Err(malformed(
                "Version",
                "must be \"2012-10-17\" or \"2008-10-17\"",
            ))
        }
    };
    if let Some(id) = doc.get("Id") {
        if !id.is_string() {
            return Err(malformed("Id", "must be a string"));
        }
    }
    let raw: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        Some(_) => {
            return Err(malformed(
                "Statement",
                "must be an object or an array of objects",
            ))
        }
        None => return Err(malformed("Statement", "is required")),
    };
    if raw.is_empty() {
        return Err(malformed(
            "Statement",
            "must contain at least one statement",
        ));
    }
    let statements = raw
        .into_iter()
        .enumerate()
        .map(|(i, s)| statement(i, s, kind, stored))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Policy {
        statements,
        variables,
    })
}

fn statement(
    index: usize,
    v: &Value,
    kind: PolicyKind,
    stored: bool,
) -> Result<Statement, PolicyError> {
    let mut loc = format!("Statement[{index}]");
    let s = v
        .as_object()
        .ok_or_else(|| malformed(loc.clone(), "a statement must be a JSON object"))?;
    let sid = match s.get("Sid") {
        None => None,
        Some(Value::String(x)) => Some(x.clone()),
        Some(_) => return Err(malformed(format!("{loc}.Sid"), "must be a string")),
    };
    if let Some(sid) = &sid {
        loc = format!("{loc} (Sid {sid:?})");
    }
    for k in s.keys() {
        if !matches!(
            k.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(malformed(format!("{loc}.{k}"), "unknown element"));
        }
    }
    let effect = match s.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(_) => {
            return Err(malformed(
                format!("{loc}.Effect"),
                "must be \"Allow\" or \"Deny\"",
            ))
        }
        None => return Err(malformed(format!("{loc}.Effect"), "is required")),
    };
    let principal = match kind {
        PolicyKind::Identity => {
            if s.contains_key("Principal") || s.contains_key("NotPrincipal") {
                return Err(malformed(
                    format!("{loc}.Principal"),
                    "an identity policy must not name a principal",
                ));
            }
            PrincipalClause::Implicit
        }
        PolicyKind::Key => match (s.get("Principal"), s.get("NotPrincipal")) {
            (Some(_), Some(_)) => {
                return Err(malformed(loc, "has both Principal and NotPrincipal"))
            }
            (Some(p), None) => {
                PrincipalClause::Principal(principals(&format!("{loc}.Principal"), p, stored)?)
            }
            (None, Some(p)) => PrincipalClause::NotPrincipal(principals(
                &format!("{loc}.NotPrincipal"),
                p,
                stored,
            )?),
            (None, None) => {
                return Err(malformed(
                    format!("{loc}.Principal"),
                    "a key policy statement must have Principal or NotPrincipal",
                ))
            }
        },
    };
    let action = match (s.get("Action"), s.get("NotAction")) {
        (Some(_), Some(_)) => return Err(malformed(loc, "has both Action and NotAction")),
        (Some(a), None) => matcher(&format!("{loc}.Action"), a, false, check_action)?,
        (None, Some(a)) => matcher(&format!("{loc}.NotAction"), a, true, check_action)?,
        (None, None) => {
            return Err(malformed(
                format!("{loc}.Action"),
                "Action or NotAction is required",
            ))
        }
    };
    let resource = match (s.get("Resource"), s.get("NotResource")) {
        (Some(_), Some(_)) => return Err(malformed(loc, "has both Resource and NotResource")),
        (Some(r), None) => Some(matcher(
            &format!("{loc}.Resource"),
            r,
            false,
            check_resource,
        )?),
        (None, Some(r)) => Some(matcher(
            &format!("{loc}.NotResource"),
            r,
            true,
            check_resource,
        )?),
        // AWS evaluates such a statement as applying to no resource.
        (None, None) => None,
    };
    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(c)) => conditions(&format!("{loc}.Condition"), c)?,
        Some(_) => return Err(malformed(format!("{loc}.Condition"), "must be an object")),
    };
    Ok(Statement {
        index,
        sid,
        effect,
        principal,
        action,
        resource,
        conditions,
    })
}

fn strings(loc: &str, v: &Value) -> Result<Vec<String>, PolicyError> {
    let out: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| malformed(loc, "every member must be a string"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(malformed(loc, "must be a string or an array of strings")),
    };
    if out.is_empty() {
        return Err(malformed(loc, "must not be empty"));
    }
    Ok(out)
}

fn check_action(loc: &str, a: &str) -> Result<(), PolicyError> {
    if a == "*"
        || a.split_once(':')
            .is_some_and(|(svc, name)| !svc.is_empty() && !name.is_empty())
    {
        Ok(())
    } else {
        Err(malformed(
            loc,
            format!("{a:?} is not an action; write SERVICE:ACTION such as kms:Decrypt"),
        ))
    }
}

fn check_resource(loc: &str, r: &str) -> Result<(), PolicyError> {
    if r == "*" || (r.starts_with("arn:") && r.splitn(6, ':').count() == 6) {
        Ok(())
    } else {
        Err(malformed(loc, format!("{r:?} is not \"*\" or an ARN")))
    }
}

fn matcher(
    loc: &str,
    v: &Value,
    negated: bool,
    check: fn(&str, &str) -> Result<(), PolicyError>,
) -> Result<Matcher, PolicyError> {
    let patterns = strings(loc, v)?;
    for p in &patterns {
        check(loc, p)?;
    }
    Ok(Matcher { negated, patterns })
}

fn principals(loc: &str, v: &Value, stored: bool) -> Result<PrincipalSet, PolicyError> {
    let mut set = PrincipalSet::default();
    match v {
        Value::String(s) if s == "*" => set.any = true,
        Value::Object(m) if !m.is_empty() => {
            for (kind, vals) in m {
                let loc = format!("{loc}.{kind}");
                let vals = strings(&loc, vals)?;
                match kind.as_str() {
                    "AWS" => {
                        for p in vals {
                            if p == "*" {
                                set.any = true;
                            } else if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
                                set.accounts.push(p);
                            } else if p.contains(['*', '?']) && !stored {
                                // AWS: a wildcard cannot match part of a principal. Such a
                                // statement would never match, so a Deny written that way
                                // would silently do nothing.
                                return Err(malformed(
                                    loc,
                                    format!("{p:?}: a principal cannot contain wildcards; use \"*\" alone, or a condition on aws:PrincipalArn with ArnLike"),
                                ));
                            } else if p.starts_with("arn:")
                                && (p.contains(":iam::") || p.contains(":sts::"))
                            {
                                set.arns.push(p);
                            } else {
                                return Err(malformed(
                                    loc,
                                    format!("{p:?} is not an account id or IAM principal ARN"),
                                ));
                            }
                        }
                    }
                    "Service" | "Federated" | "CanonicalUser" => set.others.extend(vals),
                    _ => {
                        return Err(malformed(
                            loc,
                            "unknown principal type; use AWS, Service, Federated or CanonicalUser",
                        ))
                    }
                }
            }
        }
        _ => {
            return Err(malformed(
                loc,
                "must be \"*\" or an object such as {\"AWS\": \"arn:aws:iam::111122223333:root\"}",
            ))
        }
    }
    Ok(set)
}

fn operator(loc: &str, name: &str) -> Result<(Operator, Qualifier, bool), PolicyError> {
    let lower = name.to_ascii_lowercase();
    let (qualifier, rest) = if let Some(r) = lower.strip_prefix("forallvalues:") {
        (Qualifier::ForAllValues, r)
    } else if let Some(r) = lower.strip_prefix("foranyvalue:") {
        (Qualifier::ForAnyValue, r)
    } else {
        (Qualifier::Single, lower.as_str())
    };
    let (base, if_exists) = match rest.strip_suffix("ifexists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let op = Operator::ALL
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(base))
        .map(|(_, op)| *op)
        .ok_or_else(|| malformed(loc, format!("unknown condition operator {name:?}")))?;
    if op == Operator::Null && (if_exists || qualifier != Qualifier::Single) {
        return Err(malformed(
            loc,
            "Null takes neither IfExists nor a set qualifier",
        ));
    }
    Ok((op, qualifier, if_exists))
}

fn conditions(loc: &str, c: &Map<String, Value>) -> Result<Vec<Condition>, PolicyError> {
    let mut out = Vec::new();
    for (op_name, keys) in c {
        let loc = format!("{loc}.{op_name}");
        let (op, qualifier, if_exists) = operator(&loc, op_name)?;
        let keys = keys
            .as_object()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| malformed(&loc, "must map condition keys to values"))?;
        for (key, vals) in keys {
            let kloc = format!("{loc}.{key}");
            let values = condition_values(&kloc, vals)?;
            if op == Operator::Null
                && !values
                    .iter()
                    .all(|v| v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"))
            {
                return Err(malformed(kloc, "Null takes true or false"));
            }
            out.push(Condition {
                operator: op,
                qualifier,
                if_exists,
                key: key.to_ascii_lowercase(),
                values,
            });
        }
    }
    Ok(out)
}

fn scalar(loc: &str, v: &Value) -> Result<String, PolicyError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(malformed(
            loc,
            "condition values are strings, numbers or booleans",
        )),
    }
}

fn condition_values(loc: &str, v: &Value) -> Result<Vec<String>, PolicyError> {
    let out = match v {
        Value::Array(a) => a
            .iter()
            .map(|x| scalar(loc, x))
            .collect::<Result<Vec<_>, _>>()?,
        other => vec![scalar(loc, other)?],
    };
    if out.is_empty() {
        return Err(malformed(loc, "must have at least one value"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_key_policy_parses() {
        let p = parse_policy(
            r#"{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions",
            "Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#,
            PolicyKind::Key,
        )
        .unwrap();
        assert!(p.variables);
        assert_eq!(p.statements.len(), 1);
        assert_eq!(
            p.statements[0].sid.as_deref(),
            Some("Enable IAM User Permissions")
        );
    }

    #[test]
    fn single_statement_object_and_account_id_principals_parse() {
        let p = parse_policy(
            r#"{"Statement":{"Effect":"Deny","Principal":{"AWS":["111122223333","arn:aws:iam::444455556666:role/R"]},
            "NotAction":"kms:Decrypt","Resource":"*","Condition":{"ForAnyValue:StringLikeIfExists":{"KMS:EncryptionContextKeys":["a*"]}}}}"#,
            PolicyKind::Key,
        )
        .unwrap();
        let s = &p.statements[0];
        assert!(!p.variables, "no Version means 2008-10-17");
        let PrincipalClause::Principal(set) = &s.principal else {
            panic!()
        };
        assert_eq!(set.accounts[0], "111122223333");
        assert_eq!(set.arns[0], "arn:aws:iam::444455556666:role/R");
        assert!(s.action.negated);
        let c = &s.conditions[0];
        assert_eq!(
            (c.operator, c.qualifier, c.if_exists),
            (Operator::StringLike, Qualifier::ForAnyValue, true)
        );
        assert_eq!(c.key, "kms:encryptioncontextkeys");
    }

    #[test]
    fn errors_say_where_and_why() {
        let cases = [
            (
                r#"{"Statement":[{"Sid":"X","Effect":"Permit","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
                "Statement[0] (Sid \"X\").Effect",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#,
                "Statement[0].Principal",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"Decrypt","Resource":"*"}]}"#,
                "Statement[0].Action",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEqualz":{"a":"b"}}}]}"#,
                "Condition.StringEqualz",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Extra":1}]}"#,
                "Statement[0].Extra",
            ),
            (r#"{"Version":"2020-01-01","Statement":[]}"#, "Version"),
            (r#"{"Statement":[]}"#, "Statement"),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"bob"},"Action":"kms:*","Resource":"*"}]}"#,
                "Principal.AWS",
            ),
        ];
        for (doc, loc) in cases {
            match parse_policy(doc, PolicyKind::Key) {
                Err(PolicyError::Malformed { location, .. }) => {
                    assert!(location.contains(loc), "{location} vs {loc}")
                }
                other => panic!("{doc}: {other:?}"),
            }
        }
        assert!(matches!(
            parse_policy("{", PolicyKind::Key),
            Err(PolicyError::Json(_))
        ));
        assert_eq!(
            parse_policy(&" ".repeat(MAX_POLICY_BYTES + 1), PolicyKind::Key),
            Err(PolicyError::TooLarge)
        );
    }

    #[test]
    fn a_stored_document_an_older_version_accepted_is_read_as_then() {
        let dup = r#"{"Statement":[{"Effect":"Deny","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#;
        assert!(parse_policy(dup, PolicyKind::Key).is_err());
        let (p, problem) = parse_stored_policy(dup, PolicyKind::Key).unwrap();
        assert_eq!(
            p.statements[0].effect,
            Effect::Allow,
            "the last value, as serde_json read it"
        );
        assert!(matches!(problem, Some(PolicyError::Json(m)) if m.contains("duplicate key")));
        let wild = r#"{"Statement":[{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:role/c-*"},"Action":"kms:*","Resource":"*"}]}"#;
        let (p, problem) = parse_stored_policy(wild, PolicyKind::Key).unwrap();
        assert!(problem.is_some());
        let PrincipalClause::Principal(set) = &p.statements[0].principal else {
            panic!()
        };
        assert_eq!(set.arns, ["arn:aws:iam::111122223333:role/c-*"]);
        // What never parsed still does not.
        assert!(parse_stored_policy(r#"{"Statement":[]}"#, PolicyKind::Key).is_err());
        let (_, none) = parse_stored_policy(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
            PolicyKind::Key,
        )
        .unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn identity_policies_must_not_name_principals() {
        let doc =
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#;
        assert!(parse_policy(doc, PolicyKind::Identity).is_err());
        let doc = r#"{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
        let p = parse_policy(doc, PolicyKind::Identity).unwrap();
        assert_eq!(p.statements[0].principal, PrincipalClause::Implicit);
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            prop_oneof![
                Just("Allow".to_string()),
                Just("Deny".to_string()),
                Just("*".to_string()),
                Just("kms:*".to_string()),
                Just("2012-10-17".to_string()),
                Just("Statement".to_string()),
                Just("StringEquals".to_string()),
                Just("ForAllValues:StringLike".to_string()),
                ".{0,12}"
            ]
            .prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                Just("Version".to_string()),
                Just("Statement".to_string()),
                Just("Effect".to_string()),
                Just("Principal".to_string()),
                Just("NotPrincipal".to_string()),
                Just("AWS".to_string()),
                Just("Action".to_string()),
                Just("NotAction".to_string()),
                Just("Resource".to_string()),
                Just("Condition".to_string()),
                Just("Sid".to_string()),
                Just("Null".to_string()),
                ".{0,8}"
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(key, inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_arbitrary_json(v in arb_json()) {
            let _ = parse_value(&v, PolicyKind::Key);
            let _ = parse_value(&v, PolicyKind::Identity);
        }

        #[test]
        fn parser_never_panics_on_arbitrary_text(s in ".{0,200}") {
            let _ = parse_policy(&s, PolicyKind::Key);
        }
    }
}
