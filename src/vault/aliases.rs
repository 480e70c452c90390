//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases, and the alias cache that
//! lets every KeyId parameter name a key by alias name or alias ARN.
//!
//! As in AWS, managing an alias needs the permission on the alias (an identity policy:
//! an alias has no policy of its own) and on every key it touches (key policy, identity
//! policy or grant). Aliases belong to the caller's account; there is no cross-account
//! alias management.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use super::authorize::Authz;
use super::keys::KeyEntry;
use super::marker::Listing;
use super::slot::{Slot, Ticket};
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{AccountId, KeyId};
use crate::store::{AliasRecord, StoreError};

/// The longest alias name, `alias/` included.
pub(crate) const MAX_ALIAS_NAME_LEN: usize = 256;
/// AWS's quota of aliases per key.
pub(crate) const MAX_ALIASES_PER_KEY: usize = 50;
const PREFIX: &str = "alias/";
const RESERVED: &str = "alias/aws/";

/// How many times UpdateAlias and DeleteAlias read an alias again that another
/// request moved meanwhile.
const ALIAS_ATTEMPTS: usize = 3;

/// An alias that kept moving under UpdateAlias or DeleteAlias.
fn alias_contended(name: &str) -> KmsError {
    KmsError::KmsInvalidState(format!(
        "Alias {} changed while this request ran; retry",
        shown(name)
    ))
}

/// One alias as ListAliases shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasEntry {
    /// `alias/…`.
    pub alias_name: String,
    /// `arn:…:alias/…`.
    pub alias_arn: String,
    /// The key id it points at.
    pub target_key_id: KeyId,
    /// When it was made.
    pub creation_date: SystemTime,
    /// When it was last pointed at a key.
    pub last_updated_date: SystemTime,
}

/// ListAliases parameters.
#[derive(Debug, Default)]
pub struct ListAliasesInput {
    /// Only the aliases of this key (key id or key ARN); all of the account's when empty.
    pub key_id: String,
    /// Page size, 1..100; 50 when absent (as AWS).
    pub limit: Option<i32>,
    /// NextMarker from the previous page; empty for the first page.
    pub marker: String,
}

/// One page of aliases.
#[derive(Debug)]
pub struct ListAliasesOutput {
    /// The aliases, by name.
    pub aliases: Vec<AliasEntry>,
    /// Marker for the next page, when truncated.
    pub next_marker: Option<String>,
}

/// Alias name → key id, per account, for the aliases this process has resolved. Each
/// entry is a generation-checked slot (see `slot`): alias operations empty it after
/// the store changed, and a lookup that read the store before such a change cannot put
/// the old target back (a deleted alias resolving again, a moved one pointing at its
/// old key).
#[derive(Default)]
pub(crate) struct AliasCache(RwLock<HashMap<(AccountId, String), Slot<KeyId>>>);

impl AliasCache {
    fn get(&self, account: &AccountId, name: &str) -> Result<KeyId, Ticket> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        match map.get(&(account.clone(), name.to_owned())) {
            Some(slot) => slot.get().map(|id| *id),
            None => Slot::<KeyId>::default().get().map(|id| *id),
        }
    }

    fn fill(&self, account: &AccountId, name: &str, ticket: Ticket, key: KeyId) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry((account.clone(), name.to_owned()))
            .or_default()
            .fill(ticket, Arc::new(key));
    }

    /// The alias changed in the store: forget it and turn away lookups under way.
    pub(crate) fn invalidate(&self, account: &AccountId, name: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry((account.clone(), name.to_owned()))
            .or_default()
            .invalidate();
    }

    /// Forgets every alias (a key was destroyed). Every slot is emptied, not only those
    /// naming the key: a lookup already under way may be about to fill one with it.
    /// Destruction is rare; the aliases are read again on their next use.
    pub(crate) fn forget_all(&self) {
        for slot in self
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .values_mut()
        {
            slot.invalidate();
        }
    }
}

/// Checks an alias name against AWS's rules: `alias/` and then 1.. characters of
/// `[A-Za-z0-9/_-]`, 256 at most in all, and not under the reserved `alias/aws/`.
pub(crate) fn validate_alias_name(name: &str) -> Result<(), KmsError> {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias must start with the prefix \"{PREFIX}\": {}",
            shown(name)
        )));
    };
    if rest.is_empty() || name.len() > MAX_ALIAS_NAME_LEN {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias names are 1 to {MAX_ALIAS_NAME_LEN} characters including \"{PREFIX}\""
        )));
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'))
    {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias {} contains characters other than letters, digits, /, _ and -",
            shown(name)
        )));
    }
    if name.starts_with(RESERVED) {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias {} uses the prefix {RESERVED}, which is reserved for AWS managed keys",
            shown(name)
        )));
    }
    Ok(())
}

/// A caller's string for an error message: quoted, cut to a sane length.
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(300).collect();
    format!("{cut:?}")
}

impl Vault {
    /// `arn:<partition>:kms:<region>:<account>:alias/<name>`.
    pub(crate) fn alias_arn(&self, account: &AccountId, name: &str) -> String {
        format!(
            "arn:{}:kms:{}:{}:{name}",
            self.settings.partition.as_str(),
            self.settings.region.as_str(),
            account.as_str()
        )
    }

    /// The key an alias of `account` points at.
    pub(crate) async fn key_of_alias(
        &self,
        account: &AccountId,
        name: &str,
    ) -> Result<KeyId, KmsError> {
        let cached = self.aliases.get(account, name);
        self.metrics.cache_lookup("alias", cached.is_ok());
        let ticket = match cached {
            Ok(id) => return Ok(id),
            Err(t) => t,
        };
        let (acct, n) = (account.clone(), name.to_owned());
        match self.store_call(move |s| s.alias(&acct, &n)).await? {
            Some(rec) => {
                self.aliases.fill(account, name, ticket, rec.key_id);
                Ok(rec.key_id)
            }
            None => Err(KmsError::NotFound(format!(
                "Alias {} is not found.",
                self.alias_arn(account, name)
            ))),
        }
    }

    /// A TargetKeyId of an alias operation: a key of the caller's account, by key id or
    /// key ARN (not by alias, as AWS), not pending deletion.
    async fn alias_target(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<std::sync::Arc<KeyEntry>, KmsError> {
        if key_id.starts_with(PREFIX) || key_id.contains(":alias/") {
            return Err(KmsError::validation(
                "TargetKeyId must be a key id or key ARN, not an alias",
            ));
        }
        let key = self.resolve(caller, key_id).await?;
        if key.account() != caller.principal.account() {
            return Err(KmsError::NotFound(format!(
                "Key '{}' does not exist",
                self.arn_of(&key)
            )));
        }
        key.check_manageable(&self.arn_of(&key))?;
        Ok(key)
    }

    /// The alias names of `key` (for kms:ResourceAliases), cached on the key.
    pub(crate) async fn key_aliases(&self, key: &KeyEntry) -> Result<Arc<Vec<String>>, KmsError> {
        let (account, id) = (key.account().clone(), key.key_id());
        self.key_slot(
            key,
            |s| &mut s.aliases,
            move |s| {
                let rows = s.list_aliases(&account, Some(&id), None, usize::MAX >> 1)?;
                Ok(rows.into_iter().map(|r| r.name).collect())
            },
        )
        .await
    }

    /// Forgets the cached alias names of the key `id`, if that key is cached (an
    /// uncached key has nothing to forget).
    fn aliases_changed(&self, id: KeyId) {
        if let Some(k) = self.cached_key(id) {
            k.slots(|s| s.aliases.invalidate());
        }
    }

    /// Authorizes `action` on the alias resource itself (identity policies only).
    async fn authorize_alias(
        &self,
        caller: &Caller,
        action: Action,
        name: &str,
    ) -> Result<(), KmsError> {
        let account = caller.principal.account().clone();
        let mut a = Authz::account(action);
        a.resource = Some((self.alias_arn(&account, name), account));
        self.authorize(caller, a).await.map(|_| ())
    }

    /// CreateAlias.
    pub async fn create_alias(
        &self,
        caller: &Caller,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        validate_alias_name(alias_name)?;
        let key = self.alias_target(caller, target_key_id).await?;
        self.authorize_alias(caller, Action::CREATE_ALIAS, alias_name)
            .await?;
        self.authorize(caller, Authz::key(Action::CREATE_ALIAS, &key))
            .await?;
        let now = SystemTime::now();
        let account = caller.principal.account().clone();
        let rec = AliasRecord {
            account: account.clone(),
            name: alias_name.to_owned(),
            key_id: key.key_id(),
            created: now,
            updated: now,
        };
        let arn = self.alias_arn(&account, alias_name);
        self.store_call(move |s| match s.insert_alias(&rec, MAX_ALIASES_PER_KEY) {
            Err(StoreError::AlreadyExists(_)) => Ok(Err(KmsError::AlreadyExists(format!(
                "An alias with the name {arn} already exists"
            )))),
            other => other.map(Ok),
        })
        .await??;
        crate::failpoint::hit("alias.after_write");
        self.aliases.invalidate(&account, alias_name);
        self.aliases_changed(key.key_id());
        tracing::info!(alias = alias_name, key_id = %key.key_id(), "alias created");
        Ok(())
    }

    /// UpdateAlias: points an alias at another key of the same account. The store
    /// moves it only from the key that was authorized; if another request moved it
    /// meanwhile, the alias is read again and the whole check repeated.
    pub async fn update_alias(
        &self,
        caller: &Caller,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        validate_alias_name(alias_name)?;
        let account = caller.principal.account().clone();
        let new = self.alias_target(caller, target_key_id).await?;
        self.authorize_alias(caller, Action::UPDATE_ALIAS, alias_name)
            .await?;
        self.authorize(caller, Authz::key(Action::UPDATE_ALIAS, &new))
            .await?;
        for _ in 0..ALIAS_ATTEMPTS {
            let old = self.key_of_alias(&account, alias_name).await?;
            if let Some(old_key) = self.key(old).await? {
                self.authorize(caller, Authz::key(Action::UPDATE_ALIAS, &old_key))
                    .await?;
            }
            let (acct, name, to) = (account.clone(), alias_name.to_owned(), new.key_id());
            let moved = self
                .store_call(move |s| {
                    match s.update_alias(
                        &acct,
                        &name,
                        &old,
                        &to,
                        SystemTime::now(),
                        MAX_ALIASES_PER_KEY,
                    ) {
                        Err(StoreError::Missing(_)) => Ok(false),
                        other => other.map(|()| true),
                    }
                })
                .await?;
            self.aliases.invalidate(&account, alias_name);
            if !moved {
                continue;
            }
            self.aliases_changed(new.key_id());
            self.aliases_changed(old);
            tracing::info!(alias = alias_name, key_id = %new.key_id(), "alias updated");
            return Ok(());
        }
        Err(alias_contended(alias_name))
    }

    /// DeleteAlias. The key is untouched. As UpdateAlias, the store deletes the alias
    /// only while it still points at the key that was authorized.
    pub async fn delete_alias(&self, caller: &Caller, alias_name: &str) -> Result<(), KmsError> {
        validate_alias_name(alias_name)?;
        let account = caller.principal.account().clone();
        self.authorize_alias(caller, Action::DELETE_ALIAS, alias_name)
            .await?;
        for _ in 0..ALIAS_ATTEMPTS {
            let target = self.key_of_alias(&account, alias_name).await?;
            if let Some(key) = self.key(target).await? {
                self.authorize(caller, Authz::key(Action::DELETE_ALIAS, &key))
                    .await?;
            }
            let (acct, name) = (account.clone(), alias_name.to_owned());
            let deleted = self
                .store_call(move |s| s.delete_alias(&acct, &name, &target))
                .await?;
            self.aliases.invalidate(&account, alias_name);
            if deleted {
                self.aliases_changed(target);
                tracing::info!(alias = alias_name, "alias deleted");
                return Ok(());
            }
        }
        Err(alias_contended(alias_name))
    }

    /// ListAliases: the caller's account's aliases (or one key's) by name, a page at a
    /// time.
    pub async fn list_aliases(
        &self,
        caller: &Caller,
        input: ListAliasesInput,
    ) -> Result<ListAliasesOutput, KmsError> {
        let limit = match input.limit {
            None => 50,
            Some(n) => super::validate::count("Limit", n, 1, 100)?,
        };
        let account = caller.principal.account().clone();
        // The marker holds the last alias name of the previous page, for this account
        // and KeyId (see `marker`).
        let scope = format!("{}/{}", account.as_str(), input.key_id);
        let listing = Listing::new("ListAliases", &scope);
        let after: Option<String> = self.markers.open(&listing, &input.marker)?;
        let key = if input.key_id.is_empty() {
            None
        } else {
            let k = self.resolve(caller, &input.key_id).await?;
            if k.account() != &account {
                return Err(KmsError::NotFound(format!(
                    "Key '{}' does not exist",
                    self.arn_of(&k)
                )));
            }
            Some(k.key_id())
        };
        self.authorize(caller, Authz::account(Action::LIST_ALIASES))
            .await?;
        let acct = account.clone();
        let mut rows = self
            .store_call(move |s| s.list_aliases(&acct, key.as_ref(), after.as_deref(), limit + 1))
            .await?;
        let truncated = rows.len() > limit;
        rows.truncate(limit);
        let next_marker = if truncated {
            rows.last().map(|r| self.markers.issue(&listing, &r.name))
        } else {
            None
        };
        Ok(ListAliasesOutput {
            aliases: rows
                .into_iter()
                .map(|r| AliasEntry {
                    alias_arn: self.alias_arn(&account, &r.name),
                    alias_name: r.name,
                    target_key_id: r.key_id,
                    creation_date: r.created,
                    last_updated_date: r.updated,
                })
                .collect(),
            next_marker,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_follow_aws_rules() {
        for ok in [
            "alias/a",
            "alias/my-key_2/prod",
            &format!("alias/{}", "x".repeat(250)),
        ] {
            assert!(validate_alias_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "alias/",
            "my-key",
            "Alias/x",
            "alias/has space",
            "alias/dot.s",
            "alias/ünïcode",
            "alias/aws/s3",
            &format!("alias/{}", "x".repeat(251)),
        ] {
            assert!(
                matches!(validate_alias_name(bad), Err(KmsError::InvalidAliasName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_lookup_that_read_the_store_before_a_change_does_not_bring_the_alias_back() {
        let cache = AliasCache::default();
        let account: AccountId = "111122223333".parse().unwrap();
        let key = KeyId::generate();
        // A lookup starts (nothing cached), DeleteAlias lands, then the lookup fills.
        let ticket = cache.get(&account, "alias/a").unwrap_err();
        cache.invalidate(&account, "alias/a");
        cache.fill(&account, "alias/a", ticket, key);
        assert!(cache.get(&account, "alias/a").is_err());
        // A lookup that starts after the change fills as usual.
        let ticket = cache.get(&account, "alias/a").unwrap_err();
        cache.fill(&account, "alias/a", ticket, key);
        assert_eq!(cache.get(&account, "alias/a").unwrap(), key);
        // Destroying a key forgets every alias.
        cache.forget_all();
        assert!(cache.get(&account, "alias/a").is_err());
    }
}
