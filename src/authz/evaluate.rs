//! One statement against a request: principal, action, resource, conditions.

use super::condition::holds;
use super::context::RequestContext;
use super::model::{Matcher, Policy, PrincipalClause, PrincipalSet, Statement};
use super::pattern::{arn_like, glob_ignore_case};
use super::variables::substitute;

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
            if set.any || set.arns.contains(&ctx.principal) {
                Some(PrincipalMatch::Direct)
            } else if set.arns.contains(&ctx.account_root()) {
                Some(PrincipalMatch::Account)
            } else {
                None
            }
        }
        PrincipalClause::NotPrincipal(set) => {
            let excluded = |id: &String| set.any || contains(set, id);
            if identities(ctx).iter().all(excluded) {
                None
            } else {
                Some(PrincipalMatch::Direct)
            }
        }
    }
}

fn contains(set: &PrincipalSet, id: &String) -> bool {
    set.arns.contains(id)
}

fn action_matches(m: &Matcher, action: &str) -> bool {
    m.patterns.iter().any(|p| glob_ignore_case(p, action)) != m.negated
}

fn resource_matches(m: &Matcher, resource: &str, ctx: &RequestContext, variables: bool) -> bool {
    let hit = m.patterns.iter().any(|p| {
        let p = if variables {
            substitute(p, ctx)
        } else {
            Some(p.clone())
        };
        p.is_some_and(|p| arn_like(&p, resource))
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
    if !resource_matches(resource, &ctx.resource, ctx, policy.variables) {
        return None;
    }
    if !s.conditions.iter().all(|c| holds(c, ctx, policy.variables)) {
        return None;
    }
    // The root user is its account: a statement naming the account names it directly.
    if how == PrincipalMatch::Account && ctx.caller_is_root() {
        return Some(PrincipalMatch::Direct);
    }
    Some(how)
}
