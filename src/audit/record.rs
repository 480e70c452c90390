//! One audit record, CloudTrail's KMS event shape: eventTime, eventName, requestID,
//! userIdentity, sourceIPAddress, requestParameters, resources, errorCode and
//! errorMessage, additionalEventData (the batch call an item belongs to), with
//! p11kms's additions under `p11kms` (transport, decision and deciding statements,
//! via-service, latency).
//!
//! A record is serialized on the caller's task, borrowing from its `Outcome`: the
//! writer thread, which every call waits on, only prepends the chain link and hashes.

use std::collections::BTreeMap;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;

use crate::authz::DecisionKind;
use crate::vault::{Authorization, Outcome, Transport};

/// The principal named in the records of the daemon's own work.
pub(crate) const BACKGROUND_PRINCIPAL: &str = "p11kms";

/// Request parameters that may be recorded. Only names and values that are not secret:
/// no plaintext, data key, grant token or PIN ever gets here.
#[derive(Clone, Debug, Default)]
pub struct Parameters(BTreeMap<&'static str, Value>);

impl Parameters {
    /// Sets one parameter.
    pub fn set(&mut self, name: &'static str, value: impl Into<Value>) {
        self.0.insert(name, value.into());
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    event_version: &'static str,
    event_time: String,
    event_source: &'static str,
    event_name: &'static str,
    event_type: &'static str,
    #[serde(rename = "requestID")]
    request_id: &'a str,
    user_identity: UserIdentity<'a>,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: Option<String>,
    request_parameters: RequestParameters<'a>,
    resources: Vec<Resource<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_event_data: Option<AdditionalEventData<'a>>,
    p11kms: Additions<'a>,
}

/// CloudTrail's place for facts about an event beyond its parameters: here, the batch
/// call (BatchEncrypt, BatchDecrypt) an item's request belongs to, so that a reader can
/// join an item's record to the batch's own record.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdditionalEventData<'a> {
    batch_request_id: &'a str,
    batch_item_index: usize,
}

#[derive(Serialize)]
#[serde(untagged)]
enum UserIdentity<'a> {
    Service {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(rename = "invokedBy")]
        invoked_by: &'static str,
    },
    Principal {
        #[serde(rename = "type")]
        kind: Option<&'static str>,
        arn: &'a str,
        #[serde(rename = "accountId")]
        account_id: Option<&'a str>,
    },
    Unknown {
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

/// `keyId` first, then the parameters the operation chose to record.
struct RequestParameters<'a> {
    key_id: &'a str,
    params: &'a Parameters,
}

impl Serialize for RequestParameters<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if !self.key_id.is_empty() {
            // Already cut to AWS's limit by the request path.
            map.serialize_entry("keyId", self.key_id)?;
        }
        for (k, v) in &self.params.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Resource<'a> {
    #[serde(rename = "ARN")]
    arn: &'a str,
    #[serde(rename = "accountId")]
    account_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Additions<'a> {
    transport: &'static str,
    decision: Option<DecisionKind>,
    deciding_statements: &'a [String],
    authorizations: Vec<AuthorizationRecord<'a>>,
    via_service: Option<&'a str>,
    latency_micros: u64,
}

#[derive(Serialize)]
struct AuthorizationRecord<'a> {
    action: &'static str,
    resource: &'a str,
    decision: DecisionKind,
    deciding: &'a [String],
}

impl<'a> From<&'a Authorization> for AuthorizationRecord<'a> {
    fn from(a: &'a Authorization) -> Self {
        Self {
            action: a.action,
            resource: &a.resource,
            decision: a.decision,
            deciding: &a.deciding,
        }
    }
}

fn resource(arn: &str) -> Resource<'_> {
    let account_id = arn.split(':').nth(4).unwrap_or_default();
    let kind = if arn.contains(":kms:") && arn.contains(":alias/") {
        "AWS::KMS::Alias"
    } else if arn.contains(":kms:") {
        "AWS::KMS::Key"
    } else {
        "AWS::IAM::Principal"
    };
    Resource {
        arn,
        account_id,
        kind,
    }
}

/// Serializes the record as one JSON object (without `previousHash`, which the writer
/// puts first).
pub(super) fn build(o: &Outcome, params: &Parameters) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let event_time = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default();
    let user_identity = match (&o.principal, o.transport) {
        (_, Transport::Background) => UserIdentity::Service {
            kind: "AWSService",
            invoked_by: BACKGROUND_PRINCIPAL,
        },
        (Some(arn), _) => UserIdentity::Principal {
            kind: o.principal_type,
            arn,
            account_id: o.account.as_deref(),
        },
        (None, _) => UserIdentity::Unknown { kind: "Unknown" },
    };
    let record = Record {
        event_version: "1.08",
        event_time,
        event_source: "kms.amazonaws.com",
        event_name: o.operation,
        event_type: match o.transport {
            Transport::Background => "AwsServiceEvent",
            _ => "AwsApiCall",
        },
        request_id: &o.request_id,
        user_identity,
        source_ip_address: o.source_ip.map(|ip| ip.to_canonical().to_string()),
        request_parameters: RequestParameters {
            key_id: &o.key_id,
            params,
        },
        resources: o.resources.iter().map(|arn| resource(arn)).collect(),
        error_code: o.error.as_ref().map(|(code, _)| *code),
        error_message: o.error.as_ref().map(|(_, message)| message.as_str()),
        additional_event_data: o.batch.as_ref().map(|b| AdditionalEventData {
            batch_request_id: &b.request_id,
            batch_item_index: b.index,
        }),
        p11kms: Additions {
            transport: o.transport.as_str(),
            decision: o.decision(),
            deciding_statements: o
                .authorizations
                .last()
                .map_or(&[][..], |a| a.deciding.as_slice()),
            authorizations: o.authorizations.iter().map(Into::into).collect(),
            via_service: o.via_service.as_deref(),
            latency_micros: u64::try_from(o.latency.as_micros()).unwrap_or(u64::MAX),
        },
    };
    // Serializing borrowed strings and plain values into a Vec cannot fail; an empty
    // object would still be a valid (if useless) record.
    serde_json::to_vec(&record).unwrap_or_else(|_| b"{}".to_vec())
}
