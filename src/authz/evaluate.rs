//! One statement against a request: principal, action, resource, conditions.

use super::condition::holds;
use super::context::RequestContext;
use super::model::{Effect, Matcher, Policy, PrincipalClause, PrincipalSet, Statement};
use super::pattern::{arn_like, glob_ignore_case};
use super::variables::{names_folded_key, substitute};

/// How a statement's principal matched the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PrincipalMatch {
    /// Named directly: the caller's ARN, `*`, or (for the root user) its account.
    Direct,
    /// Through the caller's account principal: the key policy delegates to the
    /// account's identity policies.
    Account,
}

/// The identities a request is made as: the caller and, unless it is the root user
/// itself, its account. NotPrincipal must exclude all of them to exempt the caller.
fn identities(ctx: &RequestContext) -> [String; 2] {
    [ctx.principal.clone(), ctx.account_root()]
}

fn principal_match(clause: &PrincipalClause, ctx: &RequestContext) -> Option<PrincipalMatch> {
    match clause {
        PrincipalClause::Implicit => Some(PrincipalMatch::Direct),
        PrincipalClause::Principal(set) => {
            if set.any || contains(set, &ctx.principal, ctx) {
                Some(PrincipalMatch::Direct)
            } else if contains(set, &ctx.account_root(), ctx) {
                Some(PrincipalMatch::Account)
            } else {
                None
            }
        }
        PrincipalClause::NotPrincipal(set) => {
            let excluded = |id: &String| set.any || contains(set, id, ctx);
            if identities(ctx).iter().all(excluded) {
                None
            } else {
                Some(PrincipalMatch::Direct)
            }
        }
    }
}

/// Does the set name `id`, one of the request's identities? A bare account id names
/// the caller's account root in the caller's (the daemon's) partition.
fn contains(set: &PrincipalSet, id: &String, ctx: &RequestContext) -> bool {
    set.arns.contains(id)
        || (set.accounts.contains(&ctx.principal_account) && *id == ctx.account_root())
}

fn action_matches(m: &Matcher, action: &str) -> bool {
    m.patterns.iter().any(|p| glob_ignore_case(p, action)) != m.negated
}

/// A pattern holding a policy variable with no value in the request (and no default)
/// matches no resource, as AWS documents; so under NotResource it excludes nothing. A
/// variable naming a key that request keys differing only in case folded onto leaves
/// the outcome to the caller, so it matches for a Deny and not for an Allow.
fn resource_matches(
    m: &Matcher,
    resource: &str,
    ctx: &RequestContext,
    variables: bool,
    effect: Effect,
) -> bool {
    let hit = m.patterns.iter().any(|p| {
        if variables && p.contains("${") {
            if ctx.has_folded() && names_folded_key(p, ctx) {
                return (effect == Effect::Deny) != m.negated;
            }
            substitute(p, ctx).is_some_and(|p| arn_like(&p, resource))
        } else {
            arn_like(p, resource)
        }
    });
    hit != m.negated
}

/// Does `s` apply to the request, and how did its principal match?
pub(super) fn applies(
    s: &Statement,
    policy: &Policy,
    ctx: &RequestContext,
) -> Option<PrincipalMatch> {
    let how = principal_match(&s.principal, ctx)?;
    if !action_matches(&s.action, &ctx.action) {
        return None;
    }
    let resource = s.resource.as_ref()?;
    if !resource_matches(resource, &ctx.resource, ctx, policy.variables, s.effect) {
        return None;
    }
    if !s
        .conditions
        .iter()
        .all(|c| holds(c, ctx, policy.variables, s.effect))
    {
        return None;
    }
    // The root user is its account: a statement naming the account names it directly.
    if how == PrincipalMatch::Account && ctx.caller_is_root() {
        return Some(PrincipalMatch::Direct);
    }
    Some(how)
}
