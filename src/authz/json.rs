//! JSON text → `serde_json::Value`, refusing an object that names the same key twice.
//!
//! serde_json keeps the last of duplicate keys, so `{"Effect":"Deny","Effect":"Allow"}`
//! would be read as Allow while a reviewer reads Deny. A policy must mean one thing.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses JSON text, failing on the first object with a duplicate key; the error names
/// the key and where it is.
pub(crate) fn from_str_strict(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|s| s.0)
}

/// A JSON value read with duplicate keys refused.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let shown: String = key.chars().take(128).collect();
                return Err(de::Error::custom(format!(
                    "duplicate key {shown:?} in one object"
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_duplicate_key_is_refused_at_any_depth_and_named() {
        for doc in [
            r#"{"Effect":"Deny","Effect":"Allow"}"#,
            r#"{"Statement":[{"Sid":"a","Condition":{"StringEquals":{"k":"1","k":"2"}}}]}"#,
        ] {
            let e = from_str_strict(doc).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{e}");
        }
        let e = from_str_strict(r#"{"Effect":"Deny","Effect":"Allow"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"Effect\""), "{e}");
        // Keys that differ only in case are different JSON keys.
        assert!(from_str_strict(r#"{"a":1,"A":2}"#).is_ok());
    }

    proptest! {
        /// Without duplicates, the strict reader and serde_json agree on every document.
        #[test]
        fn agrees_with_serde_json_without_duplicates(
            m in proptest::collection::btree_map("[a-zA-Z]{0,4}", any::<i32>(), 0..6),
            nested in proptest::collection::vec(any::<bool>(), 0..4),
        ) {
            let v = serde_json::json!({"m": m, "n": nested, "s": "x\u{e9}\\\"", "f": 1.5, "z": null});
            let text = v.to_string();
            prop_assert_eq!(from_str_strict(&text).unwrap(), v);
        }

        #[test]
        fn never_panics_on_arbitrary_text(s in ".{0,120}") {
            let _ = from_str_strict(&s);
        }
    }
}
