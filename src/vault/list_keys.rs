//! ListKeys: the caller's account's keys in key-id order, a page at a time.

use super::authorize::Authz;
use super::marker::Listing;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{KeyArn, KeyId};

/// ListKeys parameters.
#[derive(Debug, Default)]
pub struct ListKeysInput {
    /// Page size, 1..1000; 100 when absent (as AWS).
    pub limit: Option<i32>,
    /// NextMarker from the previous page; empty for the first page.
    pub marker: String,
}

/// One page.
#[derive(Debug)]
pub struct ListKeysOutput {
    /// Key ids and ARNs.
    pub keys: Vec<(KeyId, KeyArn)>,
    /// Marker for the next page, when truncated.
    pub next_marker: Option<String>,
}

impl Vault {
    /// ListKeys.
    pub async fn list_keys(
        &self,
        caller: &Caller,
        input: ListKeysInput,
    ) -> Result<ListKeysOutput, KmsError> {
        let limit = match input.limit {
            None => 100,
            Some(n) => super::validate::count("Limit", n, 1, 1000)?,
        };
        let account = caller.principal.account().clone();
        // The marker holds the last key id of the previous page (see `marker`).
        let listing = Listing::new("ListKeys", account.as_str());
        let after: Option<KeyId> = self.markers.open(&listing, &input.marker)?;
        self.authorize(caller, Authz::account(Action::LIST_KEYS))
            .await?;
        let acct = account.clone();
        let mut ids = self
            .store_call(move |s| s.list_keys(&acct, after.as_ref(), limit + 1))
            .await?;
        let truncated = ids.len() > limit;
        ids.truncate(limit);
        let next_marker = if truncated {
            ids.last()
                .map(|k| self.markers.issue(&listing, &k.to_string()))
        } else {
            None
        };
        Ok(ListKeysOutput {
            keys: ids
                .into_iter()
                .map(|id| (id, self.arn(&account, id)))
                .collect(),
            next_marker,
        })
    }
}
