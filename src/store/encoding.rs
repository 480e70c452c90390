//! How values with structure are written into a text column, the same for every backend:
//! fixed here, in the store, so that a change to a type of another layer (the
//! authorization engine's grant constraints) can neither change what is on disk nor
//! misread what is already there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::authz::GrantConstraints;

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
