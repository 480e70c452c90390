//! All statements and grants → one decision, as AWS KMS documents it:
//! 1. An explicit Deny in the key policy or the caller's identity policies wins.
//! 2. The key policy is the root of trust. A statement naming the caller directly allows
//!    a caller of the key's account; a statement naming the caller's account delegates
//!    to the caller's identity policies, which must then allow too.
//! 3. Cross-account: only the actions of [`CROSS_ACCOUNT_ACTIONS`](super::CROSS_ACCOUNT_ACTIONS) are possible on a key
//!    of another account; for those, the key policy must allow the caller (directly or
//!    by account) AND an identity policy in the caller's account must allow.
//! 4. A grant for the caller, the operation and a matching context allows, whatever the
//!    policies say, unless rule 1 applies.
//!
//! Account-level actions (no key: CreateKey, ListKeys, GenerateRandom) are decided by
//! identity policies alone; the account's root user is allowed them.

use serde::Serialize;

use super::context::RequestContext;
use super::cross_account::allowed_across_accounts;
use super::evaluate::{applies, PrincipalMatch};
use super::grants::Grant;
use super::model::{Effect, Policy};

/// Allow, ExplicitDeny or ImplicitDeny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DecisionKind {
    /// Allowed.
    Allow,
    /// A Deny statement applies.
    ExplicitDeny,
    /// Nothing allows it.
    ImplicitDeny,
}

/// Where a deciding statement came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The key policy.
    KeyPolicy,
    /// One of the caller's identity policies.
    IdentityPolicy,
    /// A grant.
    Grant,
}

/// A statement or grant that took part in the decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Matched {
    /// Which document.
    pub source: Source,
    /// Its Sid (or grant id), when it has one.
    pub sid: Option<String>,
    /// Statement index in its document (or grant index).
    #[serde(skip)]
    pub index: usize,
    /// Identity policy name, when the source is an identity policy.
    #[serde(skip)]
    pub policy_name: Option<String>,
}

impl Matched {
    /// "statement Sid X of the key policy", for messages.
    pub fn describe(&self) -> String {
        let what = match &self.sid {
            Some(s) => format!("statement Sid {s:?}"),
            None => format!("statement #{}", self.index),
        };
        match (self.source, &self.policy_name) {
            (Source::KeyPolicy, _) => format!("{what} of the key policy"),
            (Source::IdentityPolicy, Some(n)) => format!("{what} of identity policy {n:?}"),
            (Source::IdentityPolicy, None) => format!("{what} of an identity policy"),
            (Source::Grant, _) => match &self.sid {
                Some(id) => format!("grant {id}"),
                None => format!("grant #{}", self.index),
            },
        }
    }
}

/// The outcome with the statements that decided it and a sentence saying why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The verdict.
    pub decision: DecisionKind,
    /// Deciding statements: the Deny statements for ExplicitDeny, the allowing ones for
    /// Allow, none for ImplicitDeny.
    pub matched: Vec<Matched>,
    /// Why, in words.
    pub reason: String,
}

impl Decision {
    /// True for Allow.
    pub fn is_allowed(&self) -> bool {
        self.decision == DecisionKind::Allow
    }
}

/// An identity policy with its name.
#[derive(Clone, Copy, Debug)]
pub struct NamedPolicy<'a> {
    /// The name it was stored under.
    pub name: &'a str,
    /// The policy.
    pub policy: &'a Policy,
}

/// What the authorizer is given.
#[derive(Clone, Copy, Debug)]
pub struct AuthzInput<'a> {
    /// The key's policy; `None` for account-level actions.
    pub key_policy: Option<&'a Policy>,
    /// The caller's identity policies.
    pub identity_policies: &'a [NamedPolicy<'a>],
    /// Grants on the key.
    pub grants: &'a [Grant],
    /// The request.
    pub request: &'a RequestContext,
}

fn matched(
    source: Source,
    sid: &Option<String>,
    index: usize,
    policy_name: Option<&str>,
) -> Matched {
    Matched {
        source,
        sid: sid.clone(),
        index,
        policy_name: policy_name.map(str::to_owned),
    }
}

/// Decides a request. Pure: no I/O, no clock (aws:CurrentTime is in the context).
pub fn decide(input: &AuthzInput<'_>) -> Decision {
    let ctx = input.request;
    let mut denies = Vec::new();
    let mut key_direct = Vec::new();
    let mut key_account = Vec::new();
    let mut identity_allows = Vec::new();

    if let Some(kp) = input.key_policy {
        for s in &kp.statements {
            if let Some(how) = applies(s, kp, ctx) {
                let m = matched(Source::KeyPolicy, &s.sid, s.index, None);
                match (s.effect, how) {
                    (Effect::Deny, _) => denies.push(m),
                    (Effect::Allow, PrincipalMatch::Direct) => key_direct.push(m),
                    (Effect::Allow, PrincipalMatch::Account) => key_account.push(m),
                }
            }
        }
    }
    for np in input.identity_policies {
        for s in &np.policy.statements {
            if applies(s, np.policy, ctx).is_some() {
                let m = matched(Source::IdentityPolicy, &s.sid, s.index, Some(np.name));
                match s.effect {
                    Effect::Deny => denies.push(m),
                    Effect::Allow => identity_allows.push(m),
                }
            }
        }
    }
    if !denies.is_empty() {
        let reason = format!(
            "an explicit deny in {}",
            denies
                .iter()
                .map(Matched::describe)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Decision {
            decision: DecisionKind::ExplicitDeny,
            matched: denies,
            reason,
        };
    }

    let same_account = ctx.principal_account == ctx.key_account;
    // AWS refuses these before looking at any Allow: no policy or grant can open them.
    if !same_account && !allowed_across_accounts(&ctx.action) {
        return Decision {
            decision: DecisionKind::ImplicitDeny,
            matched: Vec::new(),
            reason: format!(
                "{} is not available across accounts: the resource belongs to account {}",
                ctx.action, ctx.key_account
            ),
        };
    }
    // The root user holds every permission of its own account without identity policies.
    let identity_ok = !identity_allows.is_empty() || ctx.caller_is_root();
    let allowed_by_policies = match input.key_policy {
        None => same_account && identity_ok,
        Some(_) if same_account => {
            !key_direct.is_empty() || (!key_account.is_empty() && identity_ok)
        }
        Some(_) => (!key_direct.is_empty() || !key_account.is_empty()) && identity_ok,
    };
    if allowed_by_policies {
        let mut m = key_direct;
        m.extend(key_account);
        m.extend(identity_allows);
        return Decision {
            decision: DecisionKind::Allow,
            matched: m,
            reason: "allowed by policy".into(),
        };
    }

    let grants: Vec<Matched> = input
        .grants
        .iter()
        .enumerate()
        .filter(|(_, g)| g.allows(ctx))
        .map(|(i, g)| matched(Source::Grant, &g.grant_id, i, None))
        .collect();
    if !grants.is_empty() {
        return Decision {
            decision: DecisionKind::Allow,
            matched: grants,
            reason: "allowed by a grant".into(),
        };
    }

    let reason = if input.key_policy.is_none() {
        "no identity policy allows this action".to_owned()
    } else if same_account && !key_account.is_empty() {
        "the key policy delegates to the account's identity policies, and none of them allows it"
            .to_owned()
    } else if !same_account && (!key_direct.is_empty() || !key_account.is_empty()) {
        "the key policy allows this account, but no identity policy in the caller's account allows it".to_owned()
    } else if !same_account && !identity_allows.is_empty() {
        "an identity policy allows it, but the key policy does not allow the caller's account"
            .to_owned()
    } else if !identity_allows.is_empty() {
        "an identity policy allows it, but the key policy does not delegate to the account's identity policies".to_owned()
    } else {
        "no policy statement and no grant allows it".to_owned()
    };
    Decision {
        decision: DecisionKind::ImplicitDeny,
        matched: Vec::new(),
        reason,
    }
}
