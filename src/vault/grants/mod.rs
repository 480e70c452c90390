//! Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant, and
//! the grant cache and grant tokens the authorizer and crypto calls use.

mod create;
mod list;
mod retire;
mod token;

use std::sync::Arc;

pub(crate) use create::CreateGrantInput;
pub(crate) use list::{GrantPage, ListGrantsInput, ListRetirableGrantsInput};
pub(crate) use token::TokenKey;

use super::keys::KeyEntry;
use super::{KmsError, Vault};
use crate::authz::{Grant, GrantConstraints};
use crate::store::GrantRecord;

/// AWS: grants on one KMS key.
pub(crate) const MAX_GRANTS_PER_KEY: usize = 50_000;
/// AWS: grants for one grantee principal on one KMS key.
pub(crate) const MAX_GRANTS_PER_GRANTEE: usize = 500;

fn to_authz(g: &GrantRecord) -> Grant {
    Grant {
        grantee_principal: g.grantee.clone(),
        operations: g.operations.clone(),
        constraints: g.constraints.clone(),
        retiring_principal: g.retiring.clone(),
        grant_id: Some(g.grant_id.clone()),
    }
}

/// Is `child` at least as strict as `parent`? A grant created through a grant must not
/// loosen the constraint it was created under (`GrantConstraints::implies`).
pub(crate) fn at_least_as_strict(
    child: Option<&GrantConstraints>,
    parent: Option<&GrantConstraints>,
) -> bool {
    match (child, parent) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(c), Some(p)) => c.implies(p),
    }
}

impl Vault {
    /// The key's grants for the authorizer, from the cache or the store.
    pub(crate) async fn key_grants(&self, key: &KeyEntry) -> Result<Arc<Vec<Grant>>, KmsError> {
        let id = key.key_id();
        self.key_slot(
            key,
            |s| &mut s.grants,
            move |s| Ok(s.grants_for_key(&id)?.iter().map(to_authz).collect()),
        )
        .await
    }

    /// Grant tokens on any call: at most 10, each a token this daemon minted
    /// (InvalidGrantTokenException otherwise). A genuine token adds no authority: the
    /// grant it names is looked up like any other.
    pub(crate) fn check_grant_tokens(&self, tokens: &[String]) -> Result<(), KmsError> {
        super::validate::grant_tokens(tokens)?;
        for t in tokens {
            self.grant_tokens
                .verify(t)
                .map_err(|e| KmsError::InvalidGrantToken(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(subset: Option<&[(&str, &str)]>, equals: Option<&[(&str, &str)]>) -> GrantConstraints {
        let m = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        GrantConstraints {
            encryption_context_subset: subset.map(m),
            encryption_context_equals: equals.map(m),
        }
    }

    #[test]
    fn narrowing_rules() {
        let parent_sub = c(Some(&[("a", "1")]), None);
        assert!(at_least_as_strict(
            Some(&c(Some(&[("a", "1")]), None)),
            Some(&parent_sub)
        ));
        assert!(at_least_as_strict(
            Some(&c(Some(&[("a", "1"), ("b", "2")]), None)),
            Some(&parent_sub)
        ));
        assert!(at_least_as_strict(
            Some(&c(None, Some(&[("A", "1"), ("b", "2")]))),
            Some(&parent_sub)
        ));
        assert!(
            !at_least_as_strict(None, Some(&parent_sub)),
            "dropping the constraint"
        );
        assert!(!at_least_as_strict(
            Some(&c(Some(&[("a", "2")]), None)),
            Some(&parent_sub)
        ));
        let parent_eq = c(None, Some(&[("a", "1")]));
        assert!(at_least_as_strict(
            Some(&c(None, Some(&[("a", "1")]))),
            Some(&parent_eq)
        ));
        assert!(
            !at_least_as_strict(Some(&c(Some(&[("a", "1")]), None)), Some(&parent_eq)),
            "subset is looser than equals"
        );
        assert!(!at_least_as_strict(
            Some(&c(None, Some(&[("a", "1"), ("b", "2")]))),
            Some(&parent_eq)
        ));
        assert!(at_least_as_strict(None, None));
        assert!(at_least_as_strict(Some(&parent_sub), None));
    }
}
