//! Properties of the whole decision.

use proptest::prelude::*;
use std::collections::BTreeMap;

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
        action in prop_oneof![
            Just("kms:Decrypt"),
            Just("kms:Encrypt"),
            Just("kms:ReEncryptFrom"),
            Just("kms:PutKeyPolicy"),
            Just("kms:ScheduleKeyDeletion"),
        ],
        team in prop_oneof![Just(None), Just(Some("blue")), Just(Some("red"))],
        identity_allows in any::<bool>(),
        grant in prop_oneof![
            Just(None),
            Just(Some((vec!["Decrypt", "Encrypt"], None))),
            Just(Some((vec!["Decrypt"], Some("blue")))),
            Just(Some((vec!["PutKeyPolicy", "ScheduleKeyDeletion", "ReEncryptFrom"], None))),
        ],
    ) {
        let identity = parse_value(&json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}), PolicyKind::Identity).unwrap();
        let named = [NamedPolicy { name: "p", policy: &identity }];
        let ids: &[NamedPolicy<'_>] = if identity_allows { &named } else { &[] };
        let c = ctx(principal.0, principal.1, action, team);
        let base = parse_value(&json!({"Version": "2012-10-17", "Statement": allows}), PolicyKind::Key).unwrap();
        let mut with_deny_doc = json!({"Version": "2012-10-17", "Statement": allows});
        with_deny_doc["Statement"].as_array_mut().unwrap().push(deny);
        let with_deny = parse_value(&with_deny_doc, PolicyKind::Key).unwrap();
        let grants: Vec<Grant> = grant
            .into_iter()
            .map(|(ops, team)| Grant {
                grantee_principal: principal.0.to_owned(),
                operations: ops.into_iter().map(str::to_owned).collect(),
                constraints: team.map(|t| GrantConstraints {
                    encryption_context_subset: Some([("team".to_owned(), t.to_owned())].into()),
                    encryption_context_equals: None,
                }),
                retiring_principal: None,
                grant_id: None,
            })
            .collect();
        let before = decide(&AuthzInput { key_policy: Some(&base), identity_policies: ids, grants: &grants, request: &c });
        let after = decide(&AuthzInput { key_policy: Some(&with_deny), identity_policies: ids, grants: &grants, request: &c });
        if !before.is_allowed() {
            prop_assert!(!after.is_allowed());
        }
        // Across accounts, only the table's actions can ever be allowed, whatever the
        // policies and grants say.
        if principal.1 != "111122223333" && !allowed_across_accounts(action) {
            prop_assert_eq!(before.decision, DecisionKind::ImplicitDeny);
            prop_assert!(before.reason.contains("not available across accounts"), "{}", before.reason);
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

fn allow_everything_key_policy() -> Policy {
    parse_value(
        &json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": "444455556666"}, "Action": "kms:*", "Resource": "*"}]}),
        PolicyKind::Key,
    )
    .unwrap()
}

fn decide_with(
    kp: &Policy,
    ids: &[NamedPolicy<'_>],
    grants: &[Grant],
    c: &RequestContext,
) -> Decision {
    decide(&AuthzInput {
        key_policy: Some(kp),
        identity_policies: ids,
        grants,
        request: c,
    })
}

#[test]
fn a_partner_with_kms_star_everywhere_gets_only_the_cross_account_operations() {
    let kp = allow_everything_key_policy();
    let identity = parse_value(
        &json!({"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}),
        PolicyKind::Identity,
    )
    .unwrap();
    let named = [NamedPolicy {
        name: "all",
        policy: &identity,
    }];
    let grant = Grant {
        grantee_principal: "arn:aws:iam::444455556666:role/Ext".into(),
        operations: vec!["PutKeyPolicy".into(), "Decrypt".into()],
        constraints: None,
        retiring_principal: None,
        grant_id: None,
    };
    for action in [
        "kms:PutKeyPolicy",
        "kms:GetKeyPolicy",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion",
        "kms:DisableKey",
        "kms:EnableKey",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:ListResourceTags",
        "kms:EnableKeyRotation",
        "kms:RotateKeyOnDemand",
        "kms:ListKeyRotations",
        "kms:UpdateKeyDescription",
        "kms:CreateAlias",
    ] {
        let c = ctx(
            "arn:aws:iam::444455556666:role/Ext",
            "444455556666",
            action,
            None,
        );
        let d = decide_with(&kp, &named, std::slice::from_ref(&grant), &c);
        assert_eq!(d.decision, DecisionKind::ImplicitDeny, "{action}");
        assert!(
            d.reason
                .contains(&format!("{action} is not available across accounts")),
            "{}",
            d.reason
        );
    }
    for action in CROSS_ACCOUNT_ACTIONS {
        let c = ctx(
            "arn:aws:iam::444455556666:role/Ext",
            "444455556666",
            action,
            None,
        );
        assert!(decide_with(&kp, &named, &[], &c).is_allowed(), "{action}");
    }
    // The key's own account is unaffected.
    let c = ctx(
        "arn:aws:iam::111122223333:root",
        "111122223333",
        "kms:PutKeyPolicy",
        None,
    );
    assert!(decide_with(&kp, &[], &[], &c).is_allowed());
}

#[test]
fn a_bare_account_id_means_that_account_in_the_callers_partition() {
    let kp = parse_value(
        &json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws-us-gov:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": "111122223333"}, "Action": "kms:Decrypt", "Resource": "*"}]}),
        PolicyKind::Key,
    )
    .unwrap();
    let mut c = RequestContext::new(
        "arn:aws-us-gov:iam::111122223333:root",
        "111122223333",
        "kms:Decrypt",
        "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/k",
        "111122223333",
    );
    c.set_one("aws:PrincipalArn", "arn:aws-us-gov:iam::111122223333:root");
    assert_eq!(
        decide_with(&kp, &[], &[], &c).decision,
        DecisionKind::ExplicitDeny
    );
    c.action = "kms:Encrypt".into();
    assert!(decide_with(&kp, &[], &[], &c).is_allowed());
    // A role of that account is delegated to by the bare id, as by the root ARN.
    let allow = parse_value(
        &json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "kms:*", "Resource": "*"}]}),
        PolicyKind::Key,
    )
    .unwrap();
    let identity = parse_value(
        &json!({"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}),
        PolicyKind::Identity,
    )
    .unwrap();
    let named = [NamedPolicy {
        name: "all",
        policy: &identity,
    }];
    let mut role = RequestContext::new(
        "arn:aws-us-gov:iam::111122223333:role/App",
        "111122223333",
        "kms:Decrypt",
        "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/k",
        "111122223333",
    );
    role.set_one(
        "aws:PrincipalArn",
        "arn:aws-us-gov:iam::111122223333:role/App",
    );
    assert!(decide_with(&allow, &named, &[], &role).is_allowed());
    assert!(!decide_with(&allow, &[], &[], &role).is_allowed());
}

#[test]
fn principals_with_wildcards_and_duplicate_keys_are_malformed() {
    for p in [
        "arn:aws:iam::111122223333:role/contractor-*",
        "arn:aws:iam::*:root",
        "arn:aws:iam::111122223333:user/?ob",
    ] {
        let doc = json!({"Statement": [{"Sid": "NoContractors", "Effect": "Deny", "Principal": {"AWS": p}, "Action": "kms:*", "Resource": "*"}]});
        match parse_value(&doc, PolicyKind::Key) {
            Err(PolicyError::Malformed { location, reason }) => {
                assert!(location.contains("Sid \"NoContractors\""), "{location}");
                assert!(reason.contains("wildcard"), "{reason}");
            }
            other => panic!("{p}: {other:?}"),
        }
    }
    // "*" alone is everyone, as before.
    assert!(parse_value(
        &json!({"Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}]}),
        PolicyKind::Key
    )
    .is_ok());
    let dup = r#"{"Statement":[{"Effect":"Deny","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#;
    match parse_policy(dup, PolicyKind::Key) {
        Err(PolicyError::Json(m)) => assert!(m.contains("duplicate key \"Effect\""), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// The role App doing `action` with the encryption context `ec`.
fn app_with_context(action: &str, ec: BTreeMap<String, String>) -> RequestContext {
    let mut c = ctx(
        "arn:aws:iam::111122223333:role/App",
        "111122223333",
        action,
        None,
    );
    c.set_encryption_context(&ec);
    c
}

#[test]
fn encryption_context_keys_that_differ_only_in_case_are_all_seen_by_policies() {
    let kp = parse_value(
        &json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/App"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "B"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"StringNotEquals": {"kms:EncryptionContext:tenant": "A"}}}]}),
        PolicyKind::Key,
    )
    .unwrap();
    let mut c = ctx(
        "arn:aws:iam::111122223333:role/App",
        "111122223333",
        "kms:Decrypt",
        None,
    );
    let ec = [
        ("TENANT".to_owned(), "B".to_owned()),
        ("tenant".to_owned(), "A".to_owned()),
    ]
    .into();
    c.set_encryption_context(&ec);
    assert_eq!(
        decide_with(&kp, &[], &[], &c).decision,
        DecisionKind::ExplicitDeny
    );
    c.action = "kms:Encrypt".into();
    assert_eq!(
        decide_with(&kp, &[], &[], &c).decision,
        DecisionKind::ExplicitDeny
    );
    let only_a = app_with_context(
        "kms:Encrypt",
        [("tenant".to_owned(), "A".to_owned())].into(),
    );
    assert!(decide_with(&kp, &[], &[], &only_a).is_allowed());
    // An Allow that needs tenant A is not satisfied by a context that also says B.
    let conditional = parse_value(
        &json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/App"}, "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "A"}}}]}),
        PolicyKind::Key,
    )
    .unwrap();
    let both = app_with_context("kms:Decrypt", ec.clone());
    assert_eq!(
        decide_with(&conditional, &[], &[], &both).decision,
        DecisionKind::ImplicitDeny
    );
    let just_a = app_with_context(
        "kms:Decrypt",
        [("TENANT".to_owned(), "A".to_owned())].into(),
    );
    assert!(decide_with(&conditional, &[], &[], &just_a).is_allowed());
}

#[test]
fn set_qualifiers_and_variables_on_keys_that_differ_only_in_case_cannot_be_steered() {
    let both: BTreeMap<String, String> = [
        ("TENANT".to_owned(), "B".to_owned()),
        ("tenant".to_owned(), "A".to_owned()),
    ]
    .into();
    let only_a: BTreeMap<String, String> = [("tenant".to_owned(), "A".to_owned())].into();
    let statement = |effect: &str, cond: serde_json::Value| json!({"Effect": effect, "Principal": {"AWS": "arn:aws:iam::111122223333:role/App"}, "Action": "kms:Decrypt", "Resource": "*", "Condition": cond});
    let allow_any = parse_value(
        &json!({"Version": "2012-10-17", "Statement": [statement("Allow", json!({"ForAnyValue:StringEquals": {"kms:EncryptionContext:tenant": "A"}}))]}),
        PolicyKind::Key,
    )
    .unwrap();
    assert!(!decide_with(
        &allow_any,
        &[],
        &[],
        &app_with_context("kms:Decrypt", both.clone())
    )
    .is_allowed());
    assert!(decide_with(
        &allow_any,
        &[],
        &[],
        &app_with_context("kms:Decrypt", only_a.clone())
    )
    .is_allowed());
    let deny_unless_a = parse_value(
        &json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/App"}, "Action": "kms:Decrypt", "Resource": "*"},
            statement("Deny", json!({"ForAllValues:StringNotEquals": {"kms:EncryptionContext:tenant": "A"}}))]}),
        PolicyKind::Key,
    )
    .unwrap();
    assert_eq!(
        decide_with(
            &deny_unless_a,
            &[],
            &[],
            &app_with_context("kms:Decrypt", both.clone())
        )
        .decision,
        DecisionKind::ExplicitDeny
    );
    assert!(decide_with(
        &deny_unless_a,
        &[],
        &[],
        &app_with_context("kms:Decrypt", only_a.clone())
    )
    .is_allowed());
    // A variable naming a folded key: an Allow does not take it, a Deny does.
    let by_variable = |effect: &str| {
        let mut st = vec![statement(
            effect,
            json!({"StringNotEquals": {"aws:PrincipalTag/tenant": "${kms:EncryptionContext:tenant}"}}),
        )];
        if effect == "Deny" {
            st.insert(0, json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/App"}, "Action": "kms:Decrypt", "Resource": "*"}));
        }
        parse_value(
            &json!({"Version": "2012-10-17", "Statement": st}),
            PolicyKind::Key,
        )
        .unwrap()
    };
    let mut tagged = app_with_context("kms:Decrypt", both);
    tagged.set_one("aws:PrincipalTag/tenant", "C");
    assert!(!decide_with(&by_variable("Allow"), &[], &[], &tagged).is_allowed());
    assert_eq!(
        decide_with(&by_variable("Deny"), &[], &[], &tagged).decision,
        DecisionKind::ExplicitDeny
    );
    let mut plain = app_with_context("kms:Decrypt", only_a);
    plain.set_one("aws:PrincipalTag/tenant", "A");
    assert!(decide_with(&by_variable("Deny"), &[], &[], &plain).is_allowed());
}

proptest! {
    /// A policy that reads no condition key (`Policy::reads_condition_keys`) decides a
    /// request the same with or without them: the vault builds them only for policies
    /// that read them.
    #[test]
    fn a_policy_that_reads_no_condition_key_decides_the_same_without_them(
        statements in proptest::collection::vec(
            (prop_oneof![arb_statement("Allow"), arb_statement("Deny")], 0..4usize),
            1..4,
        ),
        version in prop_oneof![Just("2012-10-17"), Just("2008-10-17")],
        action in prop_oneof![Just("kms:Decrypt"), Just("kms:Encrypt"), Just("kms:PutKeyPolicy")],
        team in prop_oneof![Just(None), Just(Some("blue"))],
    ) {
        let resources = [
            json!("*"),
            json!("arn:aws:kms:*:111122223333:key/*"),
            json!("arn:aws:kms:us-east-1:111122223333:key/${aws:username}"),
            json!(["arn:aws:kms:*:*:key/k", "arn:aws:kms:*:*:key/${kms:EncryptionContext:team}"]),
        ];
        let st: Vec<serde_json::Value> = statements
            .into_iter()
            .map(|(mut s, r)| {
                s["Resource"] = resources[r].clone();
                s
            })
            .collect();
        let policy = parse_value(&json!({"Version": version, "Statement": st}), PolicyKind::Key).unwrap();
        let (principal, account) = ("arn:aws:iam::111122223333:user/k", "111122223333");
        let mut bare = RequestContext::new(
            principal,
            account,
            action,
            "arn:aws:kms:us-east-1:111122223333:key/k",
            "111122223333",
        );
        let mut full = ctx(principal, account, action, team);
        full.set_one("aws:username", "k");
        bare.encryption_context = full.encryption_context.clone();
        let input = |request| AuthzInput { key_policy: Some(&policy), identity_policies: &[], grants: &[], request };
        let with_keys = decide(&input(&full));
        let without = decide(&input(&bare));
        if !policy.reads_condition_keys() {
            prop_assert_eq!(with_keys, without);
        }
        let has_condition = policy.statements.iter().any(|s| !s.conditions.is_empty());
        prop_assert!(!has_condition || policy.reads_condition_keys());
    }
}
