//! The AWS KMS request and response shapes as serde structs, with AWS's member names
//! (botocore's `kms/2014-11-01/service-2.json` is the reference). Every request member
//! is optional here: which ones are required is checked after authentication, with
//! AWS's ValidationException message, by [`Required`]. Unknown members are ignored, as
//! AWS JSON services do, so a newer SDK's extra member does not break a call; members
//! AWS defines but p11kms cannot honour are refused (see `calls`), never ignored.

mod aliases;
mod asymmetric;
mod batch;
mod credentials;
mod crypto;
mod grants;
mod import;
mod keys;
mod policies;
mod tags;

pub(super) use aliases::*;
pub(super) use asymmetric::*;
pub(super) use batch::*;
pub(super) use credentials::*;
pub(super) use crypto::*;
pub(super) use grants::*;
pub(super) use import::*;
pub(super) use keys::*;
pub(super) use policies::*;
pub(super) use tags::*;

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serializer};
use zeroize::Zeroizing;

use crate::domain::Plaintext;
use crate::vault::KmsError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A blob member (base64 on the wire).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Blob(pub Vec<u8>);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        B64.decode(text.as_bytes())
            .map(Blob)
            .map_err(|_| serde::de::Error::custom("a blob member is not valid base64"))
    }
}

/// A blob member that carries a secret (Encrypt's Plaintext): decoded straight into a
/// zeroizing buffer.
#[derive(Debug, Default)]
pub(super) struct SecretBlob(pub Plaintext);

impl<'de> Deserialize<'de> for SecretBlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 + 3));
        B64.decode_vec(text.as_bytes(), &mut out)
            .map_err(|_| serde::de::Error::custom("a blob member is not valid base64"))?;
        Ok(SecretBlob(Plaintext::new(std::mem::take(&mut *out))))
    }
}

/// Serializes a blob as base64.
pub(super) fn blob<S: Serializer>(bytes: &Vec<u8>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&B64.encode(bytes))
}

/// Serializes a secret blob as base64 through a zeroizing string.
pub(super) fn secret<S: Serializer>(p: &Plaintext, s: S) -> Result<S::Ok, S::Error> {
    let text = Zeroizing::new(B64.encode(p.expose()));
    s.serialize_str(&text)
}

/// Same, for an optional secret.
pub(super) fn secret_opt<S: Serializer>(p: &Option<Plaintext>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => secret(p, s),
        None => s.serialize_none(),
    }
}

/// AWS JSON timestamps: seconds since the epoch as a JSON number, with milliseconds.
pub(super) fn epoch(t: SystemTime) -> f64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    // Exact to the millisecond for any date before the year 275,000.
    d.as_millis() as f64 / 1000.0
}

/// An encryption context or constraint map as sent.
pub(super) type StringMap = HashMap<String, String>;

/// Collects missing required members, then fails with AWS's message for all of them:
/// "2 validation errors detected: Value null at 'keyId' failed to satisfy constraint:
/// Member must not be null; Value null at …".
#[derive(Debug, Default)]
pub(super) struct Required(Vec<&'static str>);

impl Required {
    /// The member's value, or its type's default with the member noted as missing.
    /// `member` is spelt as AWS spells it in these messages (camelCase).
    pub(super) fn need<T: Default>(&mut self, member: &'static str, v: Option<T>) -> T {
        v.unwrap_or_else(|| {
            self.0.push(member);
            T::default()
        })
    }

    /// The one required member of a request, or AWS's message for it.
    pub(super) fn one<T: Default>(member: &'static str, v: Option<T>) -> Result<T, KmsError> {
        let mut r = Self::default();
        let v = r.need(member, v);
        r.check().map(|()| v)
    }

    /// Ok when nothing was missing.
    pub(super) fn check(self) -> Result<(), KmsError> {
        let n = self.0.len();
        if n == 0 {
            return Ok(());
        }
        let each: Vec<String> = self
            .0
            .iter()
            .map(|m| {
                format!("Value null at '{m}' failed to satisfy constraint: Member must not be null")
            })
            .collect();
        let plural = if n == 1 { "error" } else { "errors" };
        Err(KmsError::validation(format!(
            "{n} validation {plural} detected: {}",
            each.join("; ")
        )))
    }
}

/// A member AWS defines that p11kms cannot honour: refused rather than ignored, since
/// ignoring it could change what the caller gets (Recipient would return plaintext).
pub(super) fn unsupported(member: &str) -> KmsError {
    KmsError::UnsupportedOperation(format!("p11kms does not support the {member} member"))
}

/// Fails when an unsupported member is present (a JSON null counts as absent).
pub(super) fn refuse<T>(member: &str, v: &Option<T>) -> Result<(), KmsError> {
    match v {
        Some(_) => Err(unsupported(member)),
        None => Ok(()),
    }
}

/// Fails on `DryRun: true`; p11kms has no dry runs.
pub(super) fn no_dry_run(v: Option<bool>) -> Result<(), KmsError> {
    match v {
        Some(true) => Err(unsupported("DryRun")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_members_are_named_as_aws_names_them() {
        let mut r = Required::default();
        let k: String = r.need("keyId", None);
        assert_eq!(k, "");
        let e = r.check().unwrap_err();
        assert_eq!(e.name(), "ValidationException");
        assert_eq!(
            e.to_string(),
            "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"
        );
        let mut r = Required::default();
        let _: String = r.need("keyId", None);
        let _: Option<Blob> = r.need("plaintext", None);
        assert!(r
            .check()
            .unwrap_err()
            .to_string()
            .starts_with("2 validation errors detected: Value null at 'keyId'"));
    }

    #[test]
    fn timestamps_are_epoch_seconds_with_milliseconds() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(epoch(t), 1_700_000_000.123);
    }

    #[test]
    fn blobs_are_standard_base64_and_refuse_anything_else() {
        let b: Blob = serde_json::from_str("\"AAEC/w==\"").unwrap();
        assert_eq!(b.0, vec![0, 1, 2, 255]);
        assert!(serde_json::from_str::<Blob>("\"not base64!\"").is_err());
        assert!(serde_json::from_str::<Blob>("12").is_err());
        let s: SecretBlob = serde_json::from_str("\"aGk=\"").unwrap();
        assert_eq!(s.0.expose(), b"hi");
    }
}
