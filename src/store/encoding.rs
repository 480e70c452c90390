//! How values with structure are written into a text column, the same for every backend:
//! fixed here, in the store, so that a change to a type of another layer (the
//! authorization engine's grant constraints) can neither change what is on disk nor
//! misread what is already there.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{ImportedMaterial, StoreError};
use crate::authz::GrantConstraints;
use crate::domain::ExpirationModel;

/// A grant's constraints column: a JSON object with one or both members, each an object
/// of context pairs. Members are never renamed: add new ones.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstraintsColumn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption_context_subset: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption_context_equals: Option<BTreeMap<String, String>>,
}

/// The column text of `c`.
pub(crate) fn constraints_to_column(c: &GrantConstraints) -> String {
    let column = ConstraintsColumn {
        encryption_context_subset: c.encryption_context_subset.clone(),
        encryption_context_equals: c.encryption_context_equals.clone(),
    };
    // An object of optional maps of strings always serializes.
    serde_json::to_string(&column).unwrap_or_default()
}

/// The constraints a column holds; Corrupt when it is not what
/// [`constraints_to_column`] writes.
pub(crate) fn constraints_from_column(text: &str) -> Result<GrantConstraints, StoreError> {
    let corrupt = |_| StoreError::Corrupt("grant constraints");
    // An object only: serde would also take a JSON array as a struct, and read `[]` as
    // a grant without constraints.
    let value: serde_json::Value = serde_json::from_str(text).map_err(corrupt)?;
    if !value.is_object() {
        return Err(StoreError::Corrupt("grant constraints"));
    }
    let c: ConstraintsColumn = serde_json::from_value(value).map_err(corrupt)?;
    Ok(GrantConstraints {
        encryption_context_subset: c.encryption_context_subset,
        encryption_context_equals: c.encryption_context_equals,
    })
}

/// A grant's operations column: a JSON array of operation names.
pub(crate) fn operations_to_column(ops: &[String]) -> String {
    serde_json::to_string(ops).unwrap_or_default()
}

/// The operations a column holds.
pub(crate) fn operations_from_column(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt("grant operations"))
}

/// A time as its column: milliseconds since the epoch (0 before it).
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The time a milliseconds column holds.
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A counter column (never negative unless the database was edited).
pub(crate) fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt("counter"))
}

/// A counter as its column, saturating.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The claim that follows `reserved` invocations: the next `block`, capped at `max`;
/// None when `max` are reserved already.
pub(crate) fn next_claim(reserved: u64, block: u64, max: u64) -> Option<std::ops::Range<u64>> {
    (reserved < max).then(|| reserved..reserved.saturating_add(block).min(max))
}

/// A tag table: its name, its owner column, and what the limit error calls the owner.
#[derive(Clone, Copy)]
pub(crate) struct TagTable {
    pub(crate) table: &'static str,
    pub(crate) owner: &'static str,
    pub(crate) what: &'static str,
    /// IAM tag keys ignore case (a new `Team` replaces `team`); KMS tag keys do not.
    pub(crate) fold_case: bool,
}

impl TagTable {
    /// A key's tags.
    pub(crate) const KEY: Self = Self {
        table: "key_tags",
        owner: "key_id",
        what: "a key",
        fold_case: false,
    };
    /// A principal's tags.
    pub(crate) const PRINCIPAL: Self = Self {
        table: "principal_tags",
        owner: "principal",
        what: "a principal",
        fold_case: true,
    };
}

/// The stored terms of imported material (both columns are NULL while there is none).
pub(crate) fn imported_terms(
    model: Option<&str>,
    valid_to: Option<i64>,
) -> Result<Option<ImportedMaterial>, StoreError> {
    model
        .map(|m| {
            Ok(ImportedMaterial {
                expiration_model: ExpirationModel::parse(m)
                    .ok_or(StoreError::Corrupt("expiration model"))?,
                valid_to: valid_to.map(from_ms),
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_columns_are_pinned() {
        let c = GrantConstraints {
            encryption_context_subset: Some(BTreeMap::from([("a".into(), "1".into())])),
            encryption_context_equals: None,
        };
        // What databases already hold: this text must keep reading the same.
        let text = r#"{"encryption_context_subset":{"a":"1"}}"#;
        assert_eq!(constraints_to_column(&c), text);
        assert_eq!(constraints_from_column(text).unwrap(), c);
        let both = r#"{"encryption_context_subset":{},"encryption_context_equals":{"k":"v"}}"#;
        let read = constraints_from_column(both).unwrap();
        assert_eq!(read.encryption_context_subset, Some(BTreeMap::new()));
        assert_eq!(constraints_to_column(&read), both);
        for bad in [
            "",
            "[]",
            r#"{"encryptionContextSubset":{}}"#,
            r#"{"encryption_context_equals":{"k":1}}"#,
        ] {
            assert!(matches!(
                constraints_from_column(bad),
                Err(StoreError::Corrupt("grant constraints"))
            ));
        }
        let ops = vec!["Decrypt".to_owned(), "RetireGrant".to_owned()];
        assert_eq!(operations_to_column(&ops), r#"["Decrypt","RetireGrant"]"#);
        assert_eq!(
            operations_from_column(r#"["Decrypt","RetireGrant"]"#).unwrap(),
            ops
        );
        assert!(operations_from_column("Decrypt").is_err());
    }
}
