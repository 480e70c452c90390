//! Unit tests of the condition operators, one group per family, with IAM's traps.

use super::holds;
use crate::authz::context::{ContextValue, RequestContext};
use crate::authz::model::{Condition, Effect, Operator, Qualifier};

fn cond(op: &str, key: &str, values: &[&str]) -> Condition {
    let doc = serde_json::json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*",
        "Condition": {op: {key: values}}}]});
    let p = crate::authz::parse_value(&doc, crate::authz::PolicyKind::Key).unwrap();
    p.statements[0].conditions[0].clone()
}

fn ctx(pairs: &[(&str, &str)]) -> RequestContext {
    let mut c = RequestContext::new(
        "arn:aws:iam::111122223333:role/App",
        "111122223333",
        "kms:Decrypt",
        "*",
        "111122223333",
    );
    for (k, v) in pairs {
        c.set_one(k, *v);
    }
    c
}

fn with_many(mut c: RequestContext, key: &str, values: &[&str]) -> RequestContext {
    c.set(
        key,
        ContextValue::Many(values.iter().map(|s| s.to_string()).collect()),
    );
    c
}

fn t(op: &str, key: &str, values: &[&str], c: &RequestContext) -> bool {
    holds(&cond(op, key, values), c, true, Effect::Allow)
}

#[test]
fn string_operators() {
    let c = ctx(&[("kms:EncryptionContext:Dept", "IT")]);
    assert!(
        t(
            "StringEquals",
            "kms:EncryptionContext:Dept",
            &["HR", "IT"],
            &c
        ),
        "values are OR'd"
    );
    assert!(
        !t("StringEquals", "kms:EncryptionContext:Dept", &["it"], &c),
        "case-sensitive"
    );
    assert!(t(
        "StringEqualsIgnoreCase",
        "kms:EncryptionContext:Dept",
        &["it"],
        &c
    ));
    assert!(
        !t(
            "StringNotEquals",
            "kms:EncryptionContext:Dept",
            &["HR", "IT"],
            &c
        ),
        "negated values are NOR'd"
    );
    assert!(t(
        "StringNotEquals",
        "kms:EncryptionContext:Dept",
        &["HR"],
        &c
    ));
    assert!(!t(
        "StringNotEqualsIgnoreCase",
        "kms:EncryptionContext:Dept",
        &["it"],
        &c
    ));
    assert!(t("StringLike", "kms:EncryptionContext:Dept", &["I*"], &c));
    assert!(t("StringLike", "kms:EncryptionContext:Dept", &["?T"], &c));
    assert!(!t(
        "StringNotLike",
        "kms:EncryptionContext:Dept",
        &["*T"],
        &c
    ));
    assert!(
        t("StringEquals", "KMS:ENCRYPTIONCONTEXT:DEPT", &["IT"], &c),
        "key names are case-insensitive"
    );
}

#[test]
fn missing_keys_make_positive_operators_false_and_negated_ones_true() {
    let c = ctx(&[]);
    assert!(!t("StringEquals", "aws:PrincipalTag/team", &["blue"], &c));
    assert!(!t("StringLike", "aws:PrincipalTag/team", &["*"], &c));
    assert!(t("StringNotEquals", "aws:PrincipalTag/team", &["blue"], &c));
    // Trap: StringNotLike in a Deny applies to a request that lacks the key entirely.
    assert!(t("StringNotLike", "aws:PrincipalTag/team", &["*"], &c));
    assert!(t("ArnNotLike", "aws:SourceArn", &["arn:aws:s3:::b"], &c));
    assert!(!t("NumericLessThan", "kms:X", &["5"], &c));
}

#[test]
fn if_exists_is_true_when_the_key_is_missing_and_tests_it_when_present() {
    assert!(t(
        "StringEqualsIfExists",
        "kms:ViaService",
        &["s3.us-east-1.amazonaws.com"],
        &ctx(&[])
    ));
    let present = ctx(&[("kms:ViaService", "ec2.us-east-1.amazonaws.com")]);
    assert!(!t(
        "StringEqualsIfExists",
        "kms:ViaService",
        &["s3.us-east-1.amazonaws.com"],
        &present
    ));
    assert!(t(
        "StringNotEqualsIfExists",
        "kms:ViaService",
        &["s3.us-east-1.amazonaws.com"],
        &present
    ));
    assert!(!t(
        "StringNotEqualsIfExists",
        "kms:ViaService",
        &["ec2.us-east-1.amazonaws.com"],
        &present
    ));
}

#[test]
fn null_tests_presence() {
    let c = ctx(&[("aws:PrincipalTag/team", "blue")]);
    assert!(t("Null", "aws:PrincipalTag/team", &["false"], &c));
    assert!(!t("Null", "aws:PrincipalTag/team", &["true"], &c));
    assert!(t("Null", "aws:PrincipalTag/other", &["true"], &c));
    assert!(!t("Null", "aws:PrincipalTag/other", &["false"], &c));
}

#[test]
fn set_operators_follow_aws_rules_for_missing_keys() {
    let none = ctx(&[]);
    // Trap: ForAllValues is true when the key is missing.
    assert!(t(
        "ForAllValues:StringEquals",
        "kms:EncryptionContextKeys",
        &["AppName"],
        &none
    ));
    assert!(!t(
        "ForAnyValue:StringEquals",
        "kms:EncryptionContextKeys",
        &["AppName"],
        &none
    ));
    let one = with_many(ctx(&[]), "kms:EncryptionContextKeys", &["AppName"]);
    assert!(t(
        "ForAllValues:StringEquals",
        "kms:EncryptionContextKeys",
        &["AppName", "Other"],
        &one
    ));
    let two = with_many(ctx(&[]), "kms:EncryptionContextKeys", &["AppName", "Extra"]);
    assert!(!t(
        "ForAllValues:StringEquals",
        "kms:EncryptionContextKeys",
        &["AppName"],
        &two
    ));
    assert!(t(
        "ForAnyValue:StringEquals",
        "kms:EncryptionContextKeys",
        &["Extra"],
        &two
    ));
    assert!(t(
        "ForAnyValue:StringNotEquals",
        "kms:EncryptionContextKeys",
        &["AppName"],
        &two
    ));
    assert!(!t(
        "ForAllValues:StringNotEquals",
        "kms:EncryptionContextKeys",
        &["AppName"],
        &two
    ));
    let empty = with_many(ctx(&[]), "kms:GrantOperations", &[]);
    assert!(t(
        "ForAllValues:StringEquals",
        "kms:GrantOperations",
        &["Decrypt"],
        &empty
    ));
}

#[test]
fn numeric_date_bool_binary_and_ip() {
    let c = ctx(&[
        ("kms:N", "7200"),
        ("aws:CurrentTime", "2026-01-01T00:00:00Z"),
        ("aws:SecureTransport", "true"),
        ("aws:SourceIp", "203.0.113.10"),
        ("kms:B", "QUJD"),
    ]);
    assert!(!t("NumericLessThan", "kms:N", &["3600"], &c));
    assert!(t("NumericGreaterThanEquals", "kms:N", &["7200"], &c));
    assert!(t("NumericEquals", "kms:N", &["7200.0"], &c));
    assert!(!t("NumericNotEquals", "kms:N", &["7200"], &c));
    assert!(!t("NumericEquals", "kms:N", &["not a number"], &c));
    assert!(t(
        "DateLessThan",
        "aws:CurrentTime",
        &["2026-06-01T00:00:00Z"],
        &c
    ));
    assert!(t("DateGreaterThan", "aws:CurrentTime", &["2025-12-31"], &c));
    assert!(
        t("DateEquals", "aws:CurrentTime", &["1767225600"], &c),
        "epoch seconds"
    );
    assert!(!t(
        "DateNotEquals",
        "aws:CurrentTime",
        &["2026-01-01T00:00:00+00:00"],
        &c
    ));
    assert!(t("Bool", "aws:SecureTransport", &["True"], &c));
    assert!(!t("Bool", "aws:SecureTransport", &["false"], &c));
    assert!(t("BinaryEquals", "kms:B", &["QUJD"], &c));
    assert!(t(
        "IpAddress",
        "aws:SourceIp",
        &["10.0.0.0/8", "203.0.113.0/24"],
        &c
    ));
    assert!(!t("IpAddress", "aws:SourceIp", &["203.0.114.0/24"], &c));
    assert!(t("NotIpAddress", "aws:SourceIp", &["198.51.100.0/24"], &c));
    assert!(
        t("IpAddress", "aws:SourceIp", &["203.0.113.10"], &c),
        "a bare address is a /32"
    );
    let v6 = ctx(&[("aws:SourceIp", "2001:db8::7")]);
    assert!(t("IpAddress", "aws:SourceIp", &["2001:db8::/32"], &v6));
    assert!(!t("IpAddress", "aws:SourceIp", &["203.0.113.0/24"], &v6));
}

#[test]
fn arn_operators_match_segment_by_segment() {
    let c = ctx(&[(
        "aws:PrincipalArn",
        "arn:aws:iam::111122223333:role/svc-billing",
    )]);
    assert!(t(
        "ArnLike",
        "aws:PrincipalArn",
        &["arn:aws:iam::*:role/svc-*"],
        &c
    ));
    assert!(t(
        "ArnEquals",
        "aws:PrincipalArn",
        &["arn:aws:iam::111122223333:role/svc-billing"],
        &c
    ));
    assert!(!t(
        "ArnNotEquals",
        "aws:PrincipalArn",
        &["arn:aws:iam::111122223333:role/svc-billing"],
        &c
    ));
    assert!(t(
        "ArnNotLike",
        "aws:PrincipalArn",
        &["arn:aws:iam::111122223333:role/admin"],
        &c
    ));
    assert!(!t(
        "ArnLike",
        "aws:PrincipalArn",
        &["arn:aws:iam::111122223333:*"],
        &ctx(&[("aws:PrincipalArn", "arn:aws:iam")])
    ));
}

#[test]
fn policy_variables_substitute_and_a_missing_one_matches_nothing() {
    let c = ctx(&[
        ("aws:PrincipalTag/team", "blue"),
        ("kms:EncryptionContext:team", "blue"),
    ]);
    assert!(t(
        "StringEquals",
        "kms:EncryptionContext:team",
        &["${aws:PrincipalTag/team}"],
        &c
    ));
    let untagged = ctx(&[("kms:EncryptionContext:team", "blue")]);
    assert!(!t(
        "StringEquals",
        "kms:EncryptionContext:team",
        &["${aws:PrincipalTag/team}"],
        &untagged
    ));
    // AWS (IAM guide, "Policy variables with no value"): the value is effectively null;
    // inverted operators match it. AWS's own guardrail "Deny when the caller has no
    // team tag" is written this way, so it must fire.
    assert!(t(
        "StringNotEquals",
        "kms:EncryptionContext:team",
        &["${aws:PrincipalTag/team}"],
        &untagged
    ));
    // A default value stands in for the missing one.
    assert!(!t(
        "StringNotEquals",
        "kms:EncryptionContext:team",
        &["${aws:PrincipalTag/team, 'blue'}"],
        &untagged
    ));
    assert!(t(
        "StringEquals",
        "kms:EncryptionContext:team",
        &["${aws:PrincipalTag/team, 'blue'}"],
        &untagged
    ));
    // Not substituted in 2008-10-17 policies: the text is compared literally.
    let lit = cond(
        "StringEquals",
        "kms:EncryptionContext:team",
        &["${aws:PrincipalTag/team}"],
    );
    let literal = ctx(&[("kms:EncryptionContext:team", "${aws:PrincipalTag/team}")]);
    assert!(holds(&lit, &literal, false, Effect::Allow));
}

#[test]
fn qualifier_operator_and_if_exists_are_parsed_apart() {
    let c = cond(
        "ForAnyValue:StringLikeIfExists",
        "kms:ResourceAliases",
        &["alias/finance-*"],
    );
    assert_eq!(
        (c.operator, c.qualifier, c.if_exists),
        (Operator::StringLike, Qualifier::ForAnyValue, true)
    );
}
