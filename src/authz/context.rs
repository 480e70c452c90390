//! The request context: everything a policy can test about one request.

use std::collections::{BTreeMap, HashMap, HashSet};

/// A context key's value: one string, or a list for multi-valued keys such as
/// kms:EncryptionContextKeys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextValue {
    /// Single-valued.
    One(String),
    /// Multi-valued.
    Many(Vec<String>),
}

impl ContextValue {
    /// The values as a slice.
    pub fn values(&self) -> &[String] {
        match self {
            Self::One(v) => std::slice::from_ref(v),
            Self::Many(v) => v,
        }
    }
}

/// One request, as the authorizer sees it.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// Caller ARN.
    pub principal: String,
    /// Caller's account.
    pub principal_account: String,
    /// Caller's ARN partition (for the account principal `arn:P:iam::A:root`).
    pub partition: String,
    /// e.g. `kms:Decrypt`.
    pub action: String,
    /// Key ARN, or `*` for account-level actions.
    pub resource: String,
    /// Account that owns the resource.
    pub key_account: String,
    /// The request's encryption context exactly as sent (for grant constraints).
    pub encryption_context: BTreeMap<String, String>,
    keys: HashMap<String, ContextValue>,
    /// Single-valued keys that hold several values because request keys differing only
    /// in case folded onto them (see [`RequestContext::add`]).
    folded: HashSet<String>,
}

impl RequestContext {
    /// A context for `principal` doing `action` on `resource` of `key_account`.
    pub fn new(
        principal: &str,
        principal_account: &str,
        action: &str,
        resource: &str,
        key_account: &str,
    ) -> Self {
        let partition = principal.split(':').nth(1).unwrap_or("aws").to_owned();
        Self {
            principal: principal.to_owned(),
            principal_account: principal_account.to_owned(),
            partition,
            action: action.to_owned(),
            resource: resource.to_owned(),
            key_account: key_account.to_owned(),
            ..Self::default()
        }
    }

    /// Sets a condition key (name case-insensitive).
    pub fn set(&mut self, key: &str, value: ContextValue) {
        let key = key.to_ascii_lowercase();
        self.folded.remove(&key);
        self.keys.insert(key, value);
    }

    /// Sets a single-valued key.
    pub fn set_one(&mut self, key: &str, value: impl Into<String>) {
        self.set(key, ContextValue::One(value.into()));
    }

    /// Adds a value to a key whose name is built from request data (an encryption
    /// context key, a tag key). Condition key names ignore case, so two request keys
    /// that differ only in case land on the same condition key: it then holds every
    /// value, and neither can hide the other from a policy.
    pub fn add(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self.keys.entry(key.to_ascii_lowercase()) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(ContextValue::One(value));
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                self.folded.insert(e.key().clone());
                let v = e.get_mut();
                *v = match std::mem::replace(v, ContextValue::Many(Vec::new())) {
                    ContextValue::One(old) => ContextValue::Many(vec![old, value]),
                    ContextValue::Many(mut all) => {
                        all.push(value);
                        ContextValue::Many(all)
                    }
                };
            }
        }
    }

    /// Adds the encryption context: kms:EncryptionContext:<k> for each pair (every
    /// value whose key folds to the same name, see [`RequestContext::add`]) and
    /// kms:EncryptionContextKeys, and keeps the pairs for grant constraints.
    pub fn set_encryption_context(&mut self, ec: &BTreeMap<String, String>) {
        self.add_encryption_context_keys(ec);
        self.encryption_context = ec.clone();
    }

    /// The condition keys of [`Self::set_encryption_context`] alone, for a context
    /// that already holds the pairs.
    pub fn add_encryption_context_keys(&mut self, ec: &BTreeMap<String, String>) {
        for (k, v) in ec {
            self.add(&format!("kms:EncryptionContext:{k}"), v.clone());
        }
        if !ec.is_empty() {
            self.set(
                "kms:EncryptionContextKeys",
                ContextValue::Many(ec.keys().cloned().collect()),
            );
        }
    }

    /// True when `lower_key` holds several values folded from request keys that differ
    /// only in case.
    pub fn is_folded(&self, lower_key: &str) -> bool {
        // Almost every request has none: skip hashing the key.
        !self.folded.is_empty() && self.folded.contains(lower_key)
    }

    /// True when any key holds values folded from request keys that differ only in case.
    pub fn has_folded(&self) -> bool {
        !self.folded.is_empty()
    }

    /// A key's value; `key` must already be lower-case (policies are lowered at parse).
    pub fn get(&self, lower_key: &str) -> Option<&ContextValue> {
        self.keys.get(lower_key)
    }

    /// The caller's account principal ARN.
    pub fn account_root(&self) -> String {
        format!(
            "arn:{}:iam::{}:root",
            self.partition, self.principal_account
        )
    }

    /// True when the caller is its account's root.
    pub fn caller_is_root(&self) -> bool {
        self.principal == self.account_root()
    }
}
