//! One audit record, CloudTrail's KMS event shape: eventTime, eventName, requestID,
//! userIdentity, sourceIPAddress, requestParameters, resources, errorCode and
//! errorMessage, with p11kms's additions under `p11kms` (transport, decision and
//! deciding statements, via-service, latency).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;

use crate::vault::{Outcome, Transport};

/// The principal named in the records of the daemon's own work.
pub const BACKGROUND_PRINCIPAL: &str = "p11kms";

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

/// Builds the record (without `previousHash`, which the writer adds).
pub(super) fn build(o: &Outcome, params: &Parameters) -> Map<String, Value> {
    let now = time::OffsetDateTime::now_utc();
    let time = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default();
    let mut request_parameters = Map::new();
    if !o.key_id.is_empty() {
        // Caller-supplied: cut to AWS's limit.
        let key_id: String = o.key_id.chars().take(2048).collect();
        request_parameters.insert("keyId".into(), Value::String(key_id));
    }
    for (k, v) in &params.0 {
        request_parameters.insert((*k).into(), v.clone());
    }
    let mut resources: Vec<Value> = Vec::new();
    for arn in &o.resources {
        let account = arn.split(':').nth(4).unwrap_or_default();
        let kind = if arn.contains(":kms:") && arn.contains(":alias/") {
            "AWS::KMS::Alias"
        } else if arn.contains(":kms:") {
            "AWS::KMS::Key"
        } else {
            "AWS::IAM::Principal"
        };
        resources.push(json!({"ARN": arn, "accountId": account, "type": kind}));
    }
    let user = match (&o.principal, o.transport) {
        (_, Transport::Background) => {
            json!({"type": "AWSService", "invokedBy": BACKGROUND_PRINCIPAL})
        }
        (Some(arn), _) => json!({"type": o.principal_type, "arn": arn, "accountId": o.account}),
        (None, _) => json!({"type": "Unknown"}),
    };
    let event_type = match o.transport {
        Transport::Background => "AwsServiceEvent",
        _ => "AwsApiCall",
    };
    let authorizations: Vec<Value> = o
        .authorizations
        .iter()
        .map(|a| {
            json!({"action": a.action, "resource": a.resource,
                   "decision": format!("{:?}", a.decision), "deciding": a.deciding})
        })
        .collect();
    let mut r = Map::new();
    r.insert("eventVersion".into(), json!("1.08"));
    r.insert("eventTime".into(), json!(time));
    r.insert("eventSource".into(), json!("kms.amazonaws.com"));
    r.insert("eventName".into(), json!(o.operation));
    r.insert("eventType".into(), json!(event_type));
    r.insert("requestID".into(), json!(o.request_id));
    r.insert("userIdentity".into(), user);
    r.insert(
        "sourceIPAddress".into(),
        json!(o.source_ip.map(|ip| ip.to_canonical().to_string())),
    );
    r.insert(
        "requestParameters".into(),
        Value::Object(request_parameters),
    );
    r.insert("resources".into(), Value::Array(resources));
    if let Some((code, message)) = &o.error {
        r.insert("errorCode".into(), json!(code));
        r.insert("errorMessage".into(), json!(message));
    }
    r.insert(
        "p11kms".into(),
        json!({
            "transport": o.transport.as_str(),
            "decision": o.decision().map(|d| format!("{d:?}")),
            "decidingStatements": o.authorizations.last().map(|a| a.deciding.clone()).unwrap_or_default(),
            "authorizations": authorizations,
            "viaService": o.via_service,
            "latencyMicros": u64::try_from(o.latency.as_micros()).unwrap_or(u64::MAX),
        }),
    );
    r
}
