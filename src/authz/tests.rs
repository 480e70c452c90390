//! Properties of the whole decision.

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn ctx(principal: &str, account: &str, action: &str, ec_team: Option<&str>) -> RequestContext {
    let mut c = RequestContext::new(
        principal,
        account,
        action,
        "arn:aws:kms:us-east-1:111122223333:key/k",
        "111122223333",
    );
    c.set_one("aws:PrincipalArn", principal);
    c.set_one("kms:CallerAccount", account);
    if let Some(t) = ec_team {
        let ec = [("team".to_string(), t.to_string())].into_iter().collect();
        c.set_encryption_context(&ec);
    }
    c
}

fn arb_statement(effect: &'static str) -> impl Strategy<Value = serde_json::Value> {
    let principal = prop_oneof![
        Just(json!("*")),
        Just(json!({"AWS": "arn:aws:iam::111122223333:root"})),
        Just(json!({"AWS": "arn:aws:iam::111122223333:role/App"})),
        Just(json!({"AWS": "444455556666"})),
    ];
    let action = prop_oneof![
        Just(json!("kms:*")),
        Just(json!("kms:Decrypt")),
        Just(json!(["kms:Encrypt", "kms:ReEncrypt*"]))
    ];
    let cond = prop_oneof![
        Just(json!(null)),
        Just(json!({"StringEquals": {"kms:EncryptionContext:team": "blue"}})),
        Just(json!({"StringNotEquals": {"kms:CallerAccount": "111122223333"}})),
        Just(json!({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["team"]}})),
        Just(json!({"Null": {"kms:EncryptionContext:team": "true"}})),
    ];
    (principal, action, cond, any::<bool>()).prop_map(move |(p, a, c, not_action)| {
        let mut s = json!({"Effect": effect, "Principal": p, "Resource": "*"});
        s[if not_action { "NotAction" } else { "Action" }] = a;
        if !c.is_null() {
            s["Condition"] = c;
        }
        s
    })
}

proptest! {
    /// Adding an explicit Deny statement never turns a denied request into an allowed one.
    #[test]
    fn adding_a_deny_never_allows(
        allows in proptest::collection::vec(arb_statement("Allow"), 1..5),
        deny in arb_statement("Deny"),
        principal in prop_oneof![
            Just(("arn:aws:iam::111122223333:role/App", "111122223333")),
            Just(("arn:aws:iam::111122223333:root", "111122223333")),
            Just(("arn:aws:iam::444455556666:role/Ext", "444455556666")),
        ],
        action in prop_oneof![Just("kms:Decrypt"), Just("kms:Encrypt"), Just("kms:ReEncryptFrom")],
        team in prop_oneof![Just(None), Just(Some("blue")), Just(Some("red"))],
        identity_allows in any::<bool>(),
    ) {
        let identity = parse_value(&json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}), PolicyKind::Identity).unwrap();
        let named = [NamedPolicy { name: "p", policy: &identity }];
        let ids: &[NamedPolicy<'_>] = if identity_allows { &named } else { &[] };
        let c = ctx(principal.0, principal.1, action, team);
        let base = parse_value(&json!({"Version": "2012-10-17", "Statement": allows}), PolicyKind::Key).unwrap();
        let mut with_deny_doc = json!({"Version": "2012-10-17", "Statement": allows});
        with_deny_doc["Statement"].as_array_mut().unwrap().push(deny);
        let with_deny = parse_value(&with_deny_doc, PolicyKind::Key).unwrap();
        let before = decide(&AuthzInput { key_policy: Some(&base), identity_policies: ids, grants: &[], request: &c });
        let after = decide(&AuthzInput { key_policy: Some(&with_deny), identity_policies: ids, grants: &[], request: &c });
        if !before.is_allowed() {
            prop_assert!(!after.is_allowed());
        }
    }
}

#[test]
fn not_principal_deny_exempts_only_when_user_and_account_are_listed() {
    let allow_all = json!({"Effect": "Allow", "Principal": {"AWS": "444455556666"}, "Action": "kms:*", "Resource": "*"});
    let deny_not = |listed: serde_json::Value| json!({"Effect": "Deny", "NotPrincipal": {"AWS": listed}, "Action": "kms:*", "Resource": "*"});
    let identity = parse_value(
        &json!({"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}),
        PolicyKind::Identity,
    )
    .unwrap();
    let named = [NamedPolicy {
        name: "p",
        policy: &identity,
    }];
    let bob = ctx(
        "arn:aws:iam::444455556666:user/Bob",
        "444455556666",
        "kms:Decrypt",
        None,
    );
    for (listed, expect) in [
        (
            json!([
                "arn:aws:iam::444455556666:user/Bob",
                "arn:aws:iam::444455556666:root"
            ]),
            DecisionKind::Allow,
        ),
        // Only the user listed: the account is not exempt, so the Deny still applies.
        (
            json!("arn:aws:iam::444455556666:user/Bob"),
            DecisionKind::ExplicitDeny,
        ),
        (
            json!("arn:aws:iam::444455556666:user/Alice"),
            DecisionKind::ExplicitDeny,
        ),
    ] {
        let kp = parse_value(
            &json!({"Statement": [allow_all.clone(), deny_not(listed)]}),
            PolicyKind::Key,
        )
        .unwrap();
        let d = decide(&AuthzInput {
            key_policy: Some(&kp),
            identity_policies: &named,
            grants: &[],
            request: &bob,
        });
        assert_eq!(d.decision, expect, "{}", d.reason);
    }
}

#[test]
fn deny_reason_names_the_statement() {
    let kp = parse_value(
        &json!({"Statement": [
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "NoDecrypt", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}]}),
        PolicyKind::Key,
    )
    .unwrap();
    let c = ctx(
        "arn:aws:iam::111122223333:root",
        "111122223333",
        "kms:Decrypt",
        None,
    );
    let d = decide(&AuthzInput {
        key_policy: Some(&kp),
        identity_policies: &[],
        grants: &[],
        request: &c,
    });
    assert_eq!(d.decision, DecisionKind::ExplicitDeny);
    assert!(
        d.reason
            .contains("statement Sid \"NoDecrypt\" of the key policy"),
        "{}",
        d.reason
    );
    assert_eq!(d.matched[0].source, Source::KeyPolicy);
}
