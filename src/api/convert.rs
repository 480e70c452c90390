//! Wire ↔ domain conversions that are not one-liners.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::domain::{EncryptionContext, KeyMetadata};
use crate::proto;
use crate::vault::KmsError;

/// A wire map as an encryption context, or a ValidationException naming the field.
pub(super) fn context(
    field: &str,
    map: HashMap<String, String>,
) -> Result<EncryptionContext, KmsError> {
    EncryptionContext::new(map).map_err(|e| KmsError::validation(format!("{field}: {e}")))
}

pub(super) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

pub(super) fn key_metadata(m: KeyMetadata) -> proto::KeyMetadata {
    proto::KeyMetadata {
        aws_account_id: m.account.to_string(),
        key_id: m.key_id.to_string(),
        arn: m.arn.to_string(),
        creation_date: Some(timestamp(m.creation_date)),
        enabled: m.enabled(),
        description: m.description,
        key_usage: m.key_usage.as_str().into(),
        key_state: m.key_state.as_str().into(),
        deletion_date: m.deletion_date.map(timestamp),
        origin: m.origin.as_str().into(),
        key_manager: "CUSTOMER".into(),
        key_spec: m.key_spec.as_str().into(),
        encryption_algorithms: vec!["SYMMETRIC_DEFAULT".into()],
        multi_region: false,
    }
}
