//! Policy documents (`parse_policy_text`, what PutKeyPolicy and PutPrincipalPolicy
//! parse, and `parse_stored_policy_text`, what reading a stored policy parses), as key
//! policies and as identity policies, then decided (`p11kms::decide`) for a fixed set
//! of requests. Whatever the text:
//! - parsing answers without panicking; a document the strict parser accepts, the
//!   stored-policy parser reads the same, with nothing to report; one it reads leniently
//!   reports what the strict parser refused;
//! - the same JSON written compactly parses to the same policy (the meaning does not
//!   depend on layout or escapes);
//! - every decision is made without panicking, the same way twice;
//! - with a `Deny` of everything added, every request the policy takes part in is an
//!   explicit deny, whatever the rest of the document allows (a Deny always wins).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use p11kms::{
    decide, parse_case, parse_policy_text, parse_stored_policy_text, AuthzInput, NamedPolicy,
    PolicyKind,
};
use serde_json::Value;

/// AWS's (and p11kms's) limit on a policy document.
const MAX_POLICY_BYTES: usize = 32 * 1024;

/// The requests every policy is decided for, in the format of the policy vectors
/// (tests/policy-vectors): the key's own account, its root, another account, an
/// account-level action; with an encryption context, multi-valued keys and grants.
const CASES: &[&str] = &[
    r#"{"key_policy": {}, "grants": [
        {"grantee_principal": "arn:aws:iam::111122223333:role/App", "operations": ["Decrypt", "Encrypt"],
         "constraints": {"encryption_context_subset": {"purpose": "test"}}, "grant_id": "g1"},
        {"grantee_principal": "arn:aws:iam::444455556666:role/Consumer", "operations": ["Decrypt"]}],
      "request": {"principal": "arn:aws:iam::111122223333:role/App", "principal_account": "111122223333",
        "action": "kms:Decrypt", "resource": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "key_account": "111122223333",
        "context": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/App", "aws:PrincipalAccount": "111122223333",
          "kms:CallerAccount": "111122223333", "aws:SecureTransport": "true", "aws:CurrentTime": "2026-01-01T00:00:00Z",
          "aws:SourceIp": "203.0.113.10", "kms:KeySpec": "SYMMETRIC_DEFAULT", "kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
          "kms:EncryptionContext:purpose": "test", "kms:EncryptionContext:Tenant": "a",
          "kms:EncryptionContextKeys": ["purpose", "Tenant"], "aws:PrincipalTag/team": "blue",
          "kms:GrantOperations": ["Decrypt"], "kms:ViaService": "ec2.us-east-1.amazonaws.com"}}}"#,
    r#"{"key_policy": {}, "request": {"principal": "arn:aws:iam::111122223333:root", "principal_account": "111122223333",
        "action": "kms:PutKeyPolicy", "resource": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "key_account": "111122223333",
        "context": {"aws:PrincipalArn": "arn:aws:iam::111122223333:root", "aws:CurrentTime": "2026-06-30T23:59:59Z",
          "aws:SourceIp": "2001:db8::1", "aws:MultiFactorAuthPresent": "false"}}}"#,
    r#"{"key_policy": {}, "grants": [
        {"grantee_principal": "arn:aws:iam::444455556666:user/Dev", "operations": ["Encrypt"],
         "constraints": {"encryption_context_equals": {"k": "v"}}}],
      "request": {"principal": "arn:aws:iam::444455556666:user/Dev", "principal_account": "444455556666",
        "action": "kms:Encrypt", "resource": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "key_account": "111122223333",
        "context": {"aws:PrincipalArn": "arn:aws:iam::444455556666:user/Dev", "kms:CallerAccount": "444455556666",
          "kms:EncryptionContext:k": "v", "kms:EncryptionContextKeys": ["k"], "aws:SecureTransport": "false",
          "aws:CurrentTime": "2026-01-01T00:00:00Z", "aws:SourceIp": "198.51.100.7"}}}"#,
    r#"{"key_policy": {}, "request": {"principal": "arn:aws:iam::111122223333:role/Admin", "principal_account": "111122223333",
        "action": "kms:CreateKey", "resource": "*", "key_account": "111122223333",
        "context": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/Admin", "kms:KeySpec": "SYMMETRIC_DEFAULT",
          "kms:KeyUsage": "ENCRYPT_DECRYPT", "kms:KeyOrigin": "AWS_KMS", "aws:RequestTag/env": "prod",
          "aws:TagKeys": ["env"], "aws:CurrentTime": "2026-01-01T00:00:00Z"}}}"#,
];

/// A key policy that delegates to the account's identity policies, for deciding an
/// identity policy under test.
const DELEGATING: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}]}"#;

/// One value of type `T` per process, made the first time. The authorizer's types are
/// not exported by name (a parsed case, a policy), so they cannot go in a typed
/// `static`; a generic function can still hold them.
fn cached<T: Any + Send + Sync>(make: impl FnOnce() -> T) -> &'static T {
    type Map = HashMap<TypeId, &'static (dyn Any + Send + Sync)>;
    static CACHE: OnceLock<Mutex<Map>> = OnceLock::new();
    let mut map = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let v: &'static (dyn Any + Send + Sync) = *map
        .entry(TypeId::of::<T>())
        .or_insert_with(|| Box::leak(Box::new(make())));
    v.downcast_ref::<T>()
        .unwrap_or_else(|| unreachable!("the cache holds a T under T's id"))
}

/// The document with a statement denying everything added (without a principal in an
/// identity policy), or None when the text is not a JSON object with statements.
fn with_deny_all(text: &str, kind: PolicyKind) -> Option<String> {
    let mut doc: Value = serde_json::from_str(text).ok()?;
    let deny = match kind {
        PolicyKind::Key => {
            serde_json::json!({"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*"})
        }
        PolicyKind::Identity => {
            serde_json::json!({"Effect": "Deny", "Action": "*", "Resource": "*"})
        }
    };
    let statements = doc.as_object_mut()?.get_mut("Statement")?;
    match statements {
        Value::Array(a) => a.push(deny),
        one @ Value::Object(_) => *one = Value::Array(vec![one.take(), deny]),
        _ => return None,
    }
    Some(doc.to_string())
}

fn check_kind(text: &str, kind: PolicyKind) {
    let cases = cached(|| {
        CASES
            .iter()
            .map(|c| {
                let case = parse_case(c).unwrap_or_else(|e| panic!("a fixed case: {e}"));
                let request = case
                    .request
                    .context()
                    .unwrap_or_else(|e| panic!("a fixed request: {e}"));
                (case, request)
            })
            .collect::<Vec<_>>()
    });
    let delegating = cached(|| parse_policy_text(DELEGATING, PolicyKind::Key));
    let Ok(delegating) = delegating else {
        panic!("the delegating key policy does not parse");
    };
    // Every request decided with `p` in its place: as the key policy, or as the one
    // identity policy under the delegating key policy.
    let decide_all = |p: &_| -> Vec<_> {
        cases
            .iter()
            .map(|(case, request)| {
                let account_level = request.resource == "*";
                let (key_policy, identity) = match kind {
                    PolicyKind::Key => (Some(p), &[][..]),
                    PolicyKind::Identity => (
                        Some(delegating),
                        &[NamedPolicy {
                            name: "fuzzed",
                            policy: p,
                        }][..],
                    ),
                };
                decide(&AuthzInput {
                    key_policy: key_policy.filter(|_| !account_level),
                    identity_policies: identity,
                    grants: &case.grants,
                    request,
                })
            })
            .collect()
    };

    let strict = parse_policy_text(text, kind);
    let stored = parse_stored_policy_text(text, kind);
    let policy = match (&strict, &stored) {
        (Ok(p), _) => {
            assert_eq!(
                stored.as_ref().map(|(q, w)| (q, w.is_none())),
                Ok((p, true)),
                "a policy the strict parser accepts is read otherwise when stored"
            );
            // The same JSON written compactly means the same.
            let compact = serde_json::from_str::<Value>(text)
                .unwrap_or_else(|e| panic!("an accepted policy is not JSON: {e}"))
                .to_string();
            if compact.len() <= MAX_POLICY_BYTES {
                assert_eq!(
                    parse_policy_text(&compact, kind).as_ref(),
                    Ok(p),
                    "the policy written compactly parses otherwise"
                );
            }
            p
        }
        (Err(e), Ok((p, warning))) => {
            assert_eq!(
                warning.as_ref(),
                Some(e),
                "a lenient read does not report the strict refusal"
            );
            p
        }
        (Err(_), Err(_)) => return,
    };
    let first = decide_all(policy);
    assert_eq!(
        first,
        decide_all(policy),
        "a decision changed between two runs"
    );

    let Some(denying) = with_deny_all(text, kind) else {
        return;
    };
    if denying.len() > MAX_POLICY_BYTES {
        return;
    }
    let Ok((denying, _)) = parse_stored_policy_text(&denying, kind) else {
        panic!("adding a Deny statement made the policy unreadable: {denying}");
    };
    for (d, (_, request)) in decide_all(&denying).iter().zip(cases) {
        // A key policy takes no part in an account-level request.
        if kind == PolicyKind::Key && request.resource == "*" {
            continue;
        }
        assert!(
            format!("{:?}", d.decision) == "ExplicitDeny",
            "a Deny of everything did not deny {}: {d:?}",
            request.action
        );
    }
}

/// See the module doc.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_kind(text, PolicyKind::Key);
    check_kind(text, PolicyKind::Identity);
}

/// True when `data` is a policy the strict parser accepts, of either kind (the
/// `valid-*` seeds must stay so).
pub fn accepted(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|text| {
        parse_policy_text(text, PolicyKind::Key).is_ok()
            || parse_policy_text(text, PolicyKind::Identity).is_ok()
    })
}
