//! Policy evaluation speed: a 20-statement key policy with conditions and two identity
#![allow(clippy::unwrap_used)] // A benchmark fails loudly by design.
//! policies, parsed once, decided many times. Prints the time per decision.
//!
//! Run: `cargo bench --bench authz`.

use std::hint::black_box;
use std::time::Instant;

use p11kms::{decide, parse_policy, AuthzInput, NamedPolicy, PolicyKind, RequestContext};
use serde_json::json;

fn main() {
    let mut statements = vec![json!({"Sid": "Root", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"})];
    for i in 0..18 {
        statements.push(json!({
            "Sid": format!("Svc{i}"), "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::111122223333:role/Service{i}")},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
            "Condition": {
                "StringEquals": {"kms:EncryptionContext:service": format!("service-{i}")},
                "ForAllValues:StringLike": {"kms:EncryptionContextKeys": ["service", "tenant*"]},
                "Bool": {"aws:SecureTransport": "true"},
                "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}
            }
        }));
    }
    statements.push(json!({"Sid": "DenyEveryoneElse", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
        "Condition": {"ArnNotLike": {"aws:PrincipalArn": ["arn:aws:iam::111122223333:role/Service*", "arn:aws:iam::111122223333:root"]}}}));
    let key_policy = parse_policy(
        &json!({"Version": "2012-10-17", "Statement": statements}),
        PolicyKind::Key,
    )
    .unwrap();
    let id1 = parse_policy(&json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:*:111122223333:key/*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "${aws:PrincipalTag/tenant}"}}}]}), PolicyKind::Identity).unwrap();
    let id2 = parse_policy(&json!({"Statement": [{"Effect": "Deny", "Action": "kms:ScheduleKeyDeletion", "Resource": "*"}]}), PolicyKind::Identity).unwrap();
    let named = [
        NamedPolicy {
            name: "a",
            policy: &id1,
        },
        NamedPolicy {
            name: "b",
            policy: &id2,
        },
    ];

    let principal = "arn:aws:iam::111122223333:role/Service17";
    let mut ctx = RequestContext::new(
        principal,
        "111122223333",
        "kms:Decrypt",
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "111122223333",
    );
    for (k, v) in [
        ("aws:PrincipalArn", principal),
        ("aws:PrincipalAccount", "111122223333"),
        ("kms:CallerAccount", "111122223333"),
        ("aws:SecureTransport", "true"),
        ("aws:SourceIp", "10.1.2.3"),
        ("aws:CurrentTime", "2026-01-01T00:00:00Z"),
        ("aws:PrincipalTag/tenant", "t1"),
    ] {
        ctx.set_one(k, v);
    }
    let ec = [
        ("service".to_string(), "service-17".to_string()),
        ("tenant".to_string(), "t1".to_string()),
    ]
    .into_iter()
    .collect();
    ctx.set_encryption_context(&ec);

    let input = AuthzInput {
        key_policy: Some(&key_policy),
        identity_policies: &named,
        grants: &[],
        request: &ctx,
    };
    assert!(
        decide(&input).is_allowed(),
        "the benchmark request must be allowed"
    );
    for _ in 0..10_000 {
        black_box(decide(black_box(&input)));
    }
    let n = 200_000u32;
    let t = Instant::now();
    for _ in 0..n {
        black_box(decide(black_box(&input)));
    }
    let per = t.elapsed() / n;
    println!("policy evaluation: 20-statement key policy with conditions + 2 identity policies: {:.2} µs per decision ({:.0} decisions/s)",
        per.as_secs_f64() * 1e6, 1.0 / per.as_secs_f64());
}
