//! Key tags: TagResource, UntagResource, ListResourceTags, and the cached tags that
//! policies see as aws:ResourceTag/<key> (attribute-based access control). A tag
//! request carries aws:RequestTag/<key> and aws:TagKeys.

use std::sync::Arc;

use super::authorize::Authz;
use super::keys::KeyEntry;
use super::marker::Listing;
use super::{Caller, KmsError, Vault};
use crate::authz::{Action, ContextValue};

/// AWS's quota of tags per key.
pub(crate) const MAX_TAGS_PER_KEY: usize = 50;

/// AWS's tag rules: a key of 1..128 and a value of 0..256 characters, letters (any
/// script), digits, white space and `_ . : / = + - @`; keys starting with `aws:` are
/// reserved.
pub(crate) fn check_tag(key: &str, value: &str) -> Result<(), KmsError> {
    let allowed = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
    };
    let key_len = key.chars().count();
    if key_len == 0 || key_len > 128 || value.chars().count() > 256 {
        return Err(KmsError::Tag(
            "a tag key is 1 to 128 characters and a tag value at most 256".into(),
        ));
    }
    if !allowed(key) || !allowed(value) {
        return Err(KmsError::Tag(
            "tags contain only letters, digits, spaces and _ . : / = + - @".into(),
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(KmsError::Tag(
            "tag keys beginning with aws: are reserved".into(),
        ));
    }
    Ok(())
}

/// One page of ListResourceTags.
#[derive(Debug)]
pub struct TagPage {
    /// (key, value), by key.
    pub tags: Vec<(String, String)>,
    /// Marker for the next page, when truncated.
    pub next_marker: Option<String>,
}

impl Vault {
    /// A key's tags, cached on the key.
    pub(crate) async fn key_tags(
        &self,
        key: &KeyEntry,
    ) -> Result<Arc<Vec<(String, String)>>, KmsError> {
        let id = key.key_id();
        self.key_slot(key, |s| &mut s.tags, move |s| s.key_tags(&id))
            .await
    }

    /// TagResource: adds or replaces tags, all or none.
    pub async fn tag_resource(
        &self,
        caller: &Caller,
        key_id: &str,
        tags: Vec<(String, String)>,
    ) -> Result<(), KmsError> {
        if tags.is_empty() {
            return Err(KmsError::validation("Tags must not be empty"));
        }
        for (k, v) in &tags {
            check_tag(k, v)?;
        }
        // The store keeps one value per key; a second value in the same call would be
        // seen by policies but not stored. (Keys that differ in case are two tags.)
        let mut seen = std::collections::HashSet::new();
        if let Some((k, _)) = tags.iter().find(|(k, _)| !seen.insert(k.as_str())) {
            return Err(KmsError::validation(format!(
                "the tag key {:?} appears twice in Tags",
                k.chars().take(128).collect::<String>()
            )));
        }
        let key = self.resolve(caller, key_id).await?;
        let mut a = Authz::key(Action::TAG_RESOURCE, &key);
        a.many.push((
            "aws:TagKeys",
            ContextValue::Many(tags.iter().map(|(k, _)| k.clone()).collect()),
        ));
        for (k, v) in &tags {
            a.named.push((format!("aws:RequestTag/{k}"), v.clone()));
        }
        self.authorize(caller, a).await?;
        key.check_manageable(&self.arn_of(&key))?;
        let id = key.key_id();
        let r = self
            .store_call(move |s| s.tag_key(&id, &tags, MAX_TAGS_PER_KEY))
            .await;
        key.slots(|s| s.tags.invalidate());
        r
    }

    /// UntagResource: removes tags by key.
    pub async fn untag_resource(
        &self,
        caller: &Caller,
        key_id: &str,
        tag_keys: Vec<String>,
    ) -> Result<(), KmsError> {
        if tag_keys.is_empty() {
            return Err(KmsError::validation("TagKeys must not be empty"));
        }
        for k in &tag_keys {
            check_tag(k, "")?;
        }
        let key = self.resolve(caller, key_id).await?;
        let mut a = Authz::key(Action::UNTAG_RESOURCE, &key);
        a.many
            .push(("aws:TagKeys", ContextValue::Many(tag_keys.clone())));
        self.authorize(caller, a).await?;
        key.check_manageable(&self.arn_of(&key))?;
        let id = key.key_id();
        let r = self.store_call(move |s| s.untag_key(&id, &tag_keys)).await;
        key.slots(|s| s.tags.invalidate());
        r
    }

    /// ListResourceTags: a key's tags by key; the marker holds the last tag key of the
    /// previous page (see `marker`).
    pub async fn list_resource_tags(
        &self,
        caller: &Caller,
        key_id: &str,
        limit: Option<i32>,
        marker: &str,
    ) -> Result<TagPage, KmsError> {
        let limit = match limit {
            None => 50,
            Some(n) => super::validate::count("Limit", n, 1, 50)?,
        };
        let listing = Listing::new("ListResourceTags", key_id);
        let after: Option<String> = self.markers.open(&listing, marker)?;
        let key = self.resolve(caller, key_id).await?;
        self.authorize(caller, Authz::key(Action::LIST_RESOURCE_TAGS, &key))
            .await?;
        let all = self.key_tags(&key).await?;
        // After the position even if that tag has been removed since.
        let mut tags: Vec<(String, String)> = all
            .iter()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
            .cloned()
            .collect();
        let truncated = tags.len() > limit;
        tags.truncate(limit);
        let next_marker = if truncated {
            tags.last().map(|(k, _)| self.markers.issue(&listing, k))
        } else {
            None
        };
        Ok(TagPage { tags, next_marker })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_aws_rules() {
        for (k, v) in [
            ("team", "payments"),
            ("cost center", "a/b=c+d-e@f.g:h_i"),
            ("ключ", "значение"),
            ("k", ""),
        ] {
            assert!(check_tag(k, v).is_ok(), "{k}={v}");
        }
        for (k, v) in [
            ("", "x"),
            ("aws:team", "x"),
            ("AWS:Team", "x"),
            ("semi;colon", "x"),
            ("k", "dollar$"),
            (&"k".repeat(129), "x"),
            ("k", &"v".repeat(257)),
        ] {
            assert!(matches!(check_tag(k, v), Err(KmsError::Tag(_))), "{k}={v}");
        }
    }
}
