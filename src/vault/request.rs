//! One request path for every transport. A transport authenticates the connection and
//! translates the wire; everything else about a request happens here, once: the request
//! id, identifying the caller, the span, running the operation, and one [`Outcome`]
//! with the facts an audit record, a metric or a log line needs (caller, operation,
//! resources, decisions with their deciding statements, AWS error name, latency).

use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::{debug, error, error_span, Instrument as _, Span};
use uuid::Uuid;

use super::{Caller, KmsError, Vault};
use crate::audit::{AuditError, Parameters};
use crate::authz::{Decision, DecisionKind};

/// How a request reached the vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// gRPC over mTLS.
    Grpc,
    /// AWS KMS's own protocol (AWS JSON 1.1 over HTTPS), as the AWS SDKs speak it.
    Json,
    /// The daemon's own work (deletion and rotation sweeps).
    Background,
    /// AWS KMS calling p11kms as its external key store proxy (the XKS proxy API).
    Xks,
}

impl Transport {
    /// The name records and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Json => "json",
            Self::Background => "background",
            Self::Xks => "xks",
        }
    }
}

/// What a transport knows about a request before the vault runs it.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// The AWS operation name, e.g. `Encrypt`.
    pub operation: &'static str,
    /// How it arrived.
    pub transport: Transport,
    /// The KeyId parameter as the caller wrote it ("" when the operation has none):
    /// caller-supplied and unvalidated, so it is only ever shown quoted and cut.
    pub key_id: String,
    /// The client's address, when the transport knows it (recorded even when the
    /// caller cannot be identified).
    pub source_ip: Option<IpAddr>,
}

/// One authorization made while running a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// The action, e.g. `kms:Decrypt`.
    pub action: &'static str,
    /// The resource ARN (a key, an alias, a principal) or `*`.
    pub resource: String,
    /// Allow, ExplicitDeny or ImplicitDeny.
    pub decision: DecisionKind,
    /// The deciding statements or grants, described ("statement Sid \"X\" of the key
    /// policy", "grant 0a1b…").
    pub deciding: Vec<String>,
}

/// The longest KeyId AWS accepts; a longer one is cut before it is logged or recorded.
pub(crate) const MAX_KEY_ID_CHARS: usize = 2048;

/// What the vault learns while a request runs, shared by the clones of its [`Caller`]:
/// the authorizations made and the request parameters worth recording.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trace(Arc<Mutex<Traced>>);

/// Authorizations, parameters, and resources touched outside an authorization.
type Traced = (Vec<Authorization>, Parameters, Vec<String>);

impl Trace {
    /// Records one authorization.
    pub(crate) fn record(&self, action: &'static str, resource: &str, d: &Decision) {
        self.push(Authorization {
            action,
            resource: resource.to_owned(),
            decision: d.decision,
            deciding: d.matched.iter().map(|m| m.describe()).collect(),
        });
    }

    fn push(&self, entry: Authorization) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .push(entry);
    }

    /// Records an authorization decided by a rule of the operation rather than by a
    /// policy (RetireGrant by the grant's retiring principal), described in `why`.
    pub(crate) fn record_rule(
        &self,
        action: &'static str,
        resource: &str,
        decision: crate::authz::DecisionKind,
        why: String,
    ) {
        self.push(Authorization {
            action,
            resource: resource.to_owned(),
            decision,
            deciding: vec![why],
        });
    }

    /// Records a resource the request made or touched outside an authorization (the
    /// key CreateKey makes).
    pub(crate) fn resource(&self, arn: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).2.push(arn);
    }

    /// Records a request parameter for the audit trail (never a secret).
    pub(crate) fn parameter(&self, name: &'static str, value: impl Into<serde_json::Value>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .set(name, value);
    }

    fn take(&self) -> Traced {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Where an item's request sits in its batch call (BatchEncrypt, BatchDecrypt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRef {
    /// The batch call's own request id.
    pub request_id: String,
    /// The item's place in the batch, from 0.
    pub index: usize,
}

/// The one result of a request, whatever the transport.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// A fresh UUID, sent back to the caller (x-amzn-RequestId).
    pub request_id: String,
    /// The AWS operation name.
    pub operation: &'static str,
    /// How it arrived.
    pub transport: Transport,
    /// The caller's principal ARN, when it could be identified.
    pub principal: Option<String>,
    /// Its CloudTrail identity type (Root, IAMUser, AssumedRole), when identified.
    pub principal_type: Option<&'static str>,
    /// The caller's account, when identified.
    pub account: Option<String>,
    /// The client's address, when known.
    pub source_ip: Option<IpAddr>,
    /// The trusted service that relayed the request, if any.
    pub via_service: Option<String>,
    /// The KeyId parameter as given (see [`RequestInfo::key_id`]), cut to AWS's limit of
    /// 2048 characters.
    pub key_id: String,
    /// Every authorization made, in order (ReEncrypt and UpdateAlias make several).
    pub authorizations: Vec<Authorization>,
    /// The resources (key, alias, principal ARNs) the request touched, in order.
    pub resources: Vec<String>,
    /// The AWS error name and message, when the request failed.
    pub error: Option<(&'static str, String)>,
    /// Time from the vault taking the request to its answer.
    pub latency: Duration,
    /// The batch call this request is an item of, if any.
    pub batch: Option<BatchRef>,
}

impl Outcome {
    fn empty() -> Self {
        Self {
            request_id: String::new(),
            operation: "",
            transport: Transport::Grpc,
            principal: None,
            principal_type: None,
            account: None,
            source_ip: None,
            via_service: None,
            key_id: String::new(),
            authorizations: Vec::new(),
            resources: Vec::new(),
            error: None,
            latency: Duration::ZERO,
            batch: None,
        }
    }

    /// The decision that settled the request: the last authorization's, or none when
    /// the request ended before any (bad input, unknown key).
    pub fn decision(&self) -> Option<DecisionKind> {
        self.authorizations.last().map(|a| a.decision)
    }
}

/// A request on its way through the request path. If it is dropped before its record
/// was queued (the caller went away: a deadline, a reset), its work may be done
/// already, so `Drop` still queues a record, marked RequestCanceled.
struct Pending<'a> {
    trail: Option<&'a crate::audit::AuditTrail>,
    /// Taken when the request is counted, so that `Drop` counts only abandoned ones.
    metrics: Option<&'a crate::metrics::Metrics>,
    outcome: Outcome,
    trace: Option<Trace>,
    /// The request parameters to record, once settled.
    params: Parameters,
    started: Instant,
}

impl Pending<'_> {
    /// Takes what the trace learnt into the outcome and the parameters to record, and
    /// the error. Once: a request settled and then dropped (an item waiting for the
    /// rest of its batch) keeps what it learnt in its cancelled record.
    fn settle(&mut self, error: Option<&KmsError>) {
        if let Some(trace) = self.trace.take() {
            let (authorizations, params, made) = trace.take();
            self.outcome.authorizations = authorizations;
            self.params = params;
            let touched = self
                .outcome
                .authorizations
                .iter()
                .map(|a| a.resource.clone());
            for r in touched.chain(made) {
                if r != "*" && !self.outcome.resources.contains(&r) {
                    self.outcome.resources.push(r);
                }
            }
        }
        if let Some(e) = error {
            self.outcome.error = Some((e.name(), e.to_string()));
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.metrics.take() {
            let o = &self.outcome;
            m.request(
                o.operation,
                o.transport.as_str(),
                "RequestCanceled",
                self.started.elapsed(),
            );
        }
        let Some(trail) = self.trail.take() else {
            return;
        };
        self.settle(None);
        self.outcome.error = Some((
            "RequestCanceled",
            "the caller went away before the answer; the operation may have been carried out"
                .into(),
        ));
        self.outcome.latency = self.started.elapsed();
        // A batch's items are dropped together: the background thread writes them.
        trail.record_detached(&self.outcome, &self.params, self.outcome.batch.is_some());
    }
}

/// One request on the request path, in the steps every request takes: opened
/// ([`Vault::begin`]: id, span, pending outcome), executed (`execute`: the trail's
/// health, the caller, the operation), settled (`settle`: the trace into the outcome),
/// recorded with the others of its group ([`Vault::record_group`]) and finished
/// ([`Vault::finish`]: a record failure, the metric, the log line). `Vault::run` takes a
/// request through them alone; a batch call takes its items through them together.
pub(super) struct Ongoing<'a> {
    pending: Pending<'a>,
    span: Span,
}

impl Ongoing<'_> {
    /// The request's id.
    pub(super) fn request_id(&self) -> &str {
        &self.pending.outcome.request_id
    }

    /// The request's span, for work done for it outside `execute` (writing its record).
    pub(super) fn span(&self) -> &Span {
        &self.span
    }

    /// Identifies the caller by awaiting `identify` and runs `op`, inside the span.
    ///
    /// `identify` is a future, not a closure, so that a transport may authenticate
    /// asynchronously (SigV4 looks up and unseals a secret); it is first polled inside
    /// the span, after the audit trail's health check, so a failed authentication is
    /// counted, logged and audited like any other failed call.
    pub(super) async fn execute<R, F, Fut>(
        &mut self,
        identify: impl Future<Output = Result<Caller, KmsError>>,
        op: F,
    ) -> Result<R, KmsError>
    where
        F: FnOnce(Caller) -> Fut,
        Fut: Future<Output = Result<R, KmsError>>,
    {
        let pending = &mut self.pending;
        // A trail that failed its last write refuses work before it is done: calls fail
        // until a record (this call's own) goes through again.
        if pending.trail.is_some_and(|t| !t.is_healthy()) {
            return Err(KmsError::internal(AuditError::Unavailable));
        }
        async {
            let caller = identify.await?;
            let o = &mut pending.outcome;
            o.principal = Some(caller.principal.arn().to_owned());
            o.principal_type = Some(caller.principal.identity_type());
            o.account = Some(caller.principal.account().to_string());
            o.source_ip = caller.source_ip;
            o.via_service.clone_from(&caller.via_service);
            pending.trace = Some(caller.trace.clone());
            op(caller).await
        }
        .instrument(self.span.clone())
        .await
    }

    /// Takes what the request learnt, and its error, into its outcome, ready to be
    /// recorded.
    pub(super) fn settle(&mut self, error: Option<&KmsError>) {
        self.pending.settle(error);
        self.pending.outcome.latency = self.pending.started.elapsed();
    }
}

impl Vault {
    /// Runs one request: assigns its id, identifies the caller by awaiting `identify`,
    /// runs `op` inside the request's span, and returns the operation's result with the
    /// request's `Outcome`. Every transport goes through here (a batch call through
    /// `run_batch`, which takes each item through the same steps).
    pub async fn run<R, F, Fut>(
        &self,
        info: RequestInfo,
        identify: impl Future<Output = Result<Caller, KmsError>>,
        op: F,
    ) -> (Result<R, KmsError>, Outcome)
    where
        F: FnOnce(Caller) -> Fut,
        Fut: Future<Output = Result<R, KmsError>>,
    {
        let mut req = self.begin(info, None);
        let result = req.execute(identify, op).await;
        req.settle(result.as_ref().err());
        // In the span: a failed trail write this caller makes is logged under its id.
        let span = req.span().clone();
        let recorded = self.record_group(&mut [&mut req]).instrument(span).await;
        self.finish(req, result, &recorded)
    }

    /// Opens a request: its id, its span (a child of the current one: a batch item's
    /// span is inside its batch's) and its pending outcome, which records the request
    /// as cancelled if it is dropped before its record is queued.
    pub(super) fn begin(&self, mut info: RequestInfo, batch: Option<BatchRef>) -> Ongoing<'_> {
        let started = Instant::now();
        let request_id = new_request_id();
        // Cut once, here, for the span, the outcome and the audit record alike.
        if let Some((end, _)) = info.key_id.char_indices().nth(MAX_KEY_ID_CHARS) {
            info.key_id.truncate(end);
        }
        // At error level: a span's fields reach the log only while the span is enabled,
        // and one at ERROR is enabled whenever an ERROR line can be logged. So the request
        // id is on every line logged inside the request, text or JSON, whatever the filter
        // (an info span vanished under RUST_LOG=warn, and its error lines with it).
        let span = error_span!(
            "request",
            request_id = %request_id,
            operation = info.operation,
            transport = info.transport.as_str(),
            // Caller-supplied and not yet validated: Debug-quoted (no forged log lines).
            key_id = ?info.key_id,
            error = Empty,
        );
        Ongoing {
            pending: Pending {
                trail: self.audit.as_ref(),
                metrics: Some(&self.metrics),
                outcome: Outcome {
                    request_id,
                    operation: info.operation,
                    transport: info.transport,
                    principal: None,
                    principal_type: None,
                    account: None,
                    source_ip: info.source_ip,
                    via_service: None,
                    key_id: info.key_id,
                    authorizations: Vec::new(),
                    resources: Vec::new(),
                    error: None,
                    latency: Duration::ZERO,
                    batch,
                },
                trace: None,
                params: Parameters::default(),
                started,
            },
            span,
        }
    }

    /// Writes the records of settled requests as one group, in order, and waits until
    /// they are durable: queued together they share one write and one fsync. The
    /// records are durable before the calls answer; Err when they could not be
    /// written, and then every request of the group fails (`finish`).
    pub(super) async fn record_group(
        &self,
        group: &mut [&mut Ongoing<'_>],
    ) -> Result<(), AuditError> {
        let Some(trail) = self.audit.as_ref() else {
            return Ok(());
        };
        let queued = {
            let records: Vec<_> = group
                .iter()
                .map(|r| (&r.pending.outcome, &r.pending.params))
                .collect();
            trail.enqueue(&records).await
        };
        let durable = queued?;
        // Queued: they are written even if these requests are dropped now.
        for r in group.iter_mut() {
            r.pending.trail = None;
        }
        durable.wait().await
    }

    /// Ends a recorded request: a call that could not be recorded fails, whatever it
    /// did (fail closed: nothing succeeds unaudited); then the metric and the log line.
    pub(super) fn finish<R>(
        &self,
        mut req: Ongoing<'_>,
        mut result: Result<R, KmsError>,
        recorded: &Result<(), AuditError>,
    ) -> (Result<R, KmsError>, Outcome) {
        let span = req.span.clone();
        let pending = &mut req.pending;
        if let Err(e) = recorded {
            error!(parent: &span, error = %e, "the request could not be audited; it fails");
            let e = KmsError::internal(e.clone());
            pending.outcome.error = Some((e.name(), e.to_string()));
            result = Err(e);
        }
        pending.trail = None;
        pending.metrics = None;
        let mut outcome = std::mem::replace(&mut pending.outcome, Outcome::empty());
        outcome.latency = pending.started.elapsed();
        // Counted here, once per request whatever the transport; the labels are static
        // names (operation, transport, AWS error name), never caller input.
        self.metrics.request(
            outcome.operation,
            outcome.transport.as_str(),
            outcome.error.as_ref().map_or("ok", |(name, _)| name),
            outcome.latency,
        );
        let _g = span.enter();
        // Only the debug lines below show it: not joined when they are off.
        let deciding = if tracing::enabled!(tracing::Level::DEBUG) {
            outcome
                .authorizations
                .last()
                .map(|a| a.deciding.join("; "))
                .unwrap_or_default()
        } else {
            String::new()
        };
        // The caller and the decision are fields of the request's own line, not of its
        // span: recording them into the span formatted them again for every request,
        // logged or not (the lines inside a request carry its id, which leads here).
        let principal = outcome.principal.as_deref().unwrap_or_default();
        let decision = outcome.decision().map(tracing::field::debug);
        match &result {
            Ok(_) => debug!(
                latency_us = outcome.latency.as_micros(),
                principal, decision, deciding, "request succeeded"
            ),
            Err(e) => {
                span.record("error", e.name());
                match e {
                    // Faults of ours: an operator must see the whole cause chain.
                    KmsError::Internal(_) | KmsError::KeyUnavailable(_) => {
                        error!(error = %ErrorChain(e), principal, decision, "request failed");
                    }
                    _ => debug!(error = %e, principal, decision, deciding, "request refused"),
                }
            }
        }
        (result, outcome)
    }
}

impl Vault {
    /// Records work the daemon did on its own (a scheduled deletion, an automatic
    /// rotation, new material after a spent IV budget) on `resource`. The work is done
    /// already, so a record that cannot be written is logged as an error, not undone.
    pub(crate) async fn audit_background(
        &self,
        event: &'static str,
        resource: String,
        failure: Option<&KmsError>,
    ) {
        let Some(trail) = &self.audit else { return };
        let outcome = Outcome {
            request_id: new_request_id(),
            operation: event,
            transport: Transport::Background,
            principal: None,
            principal_type: None,
            account: resource.split(':').nth(4).map(str::to_owned),
            source_ip: None,
            via_service: None,
            key_id: String::new(),
            authorizations: Vec::new(),
            resources: vec![resource],
            error: failure.map(|e| (e.name(), e.to_string())),
            latency: Duration::ZERO,
            batch: None,
        };
        if let Err(e) = trail.record(&outcome, &Parameters::default()).await {
            error!(error = %e, event, "the daemon's own work could not be audited");
        }
    }
}

/// A fresh request id: a random (version 4) UUID, as AWS's request ids are, hyphenated
/// into a buffer without `fmt`. Every request id the daemon hands out comes from here,
/// those of calls refused before the request path included. `uuid`'s `fast-rng` draws
/// it from a generator per thread seeded by the system (no system call per id, which
/// showed in profiles, nor aws-lc's generator, which read RDRAND for every id and cost
/// as much).
pub(crate) fn new_request_id() -> String {
    Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
}

/// Displays an error and its sources, for the log.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::new_request_id;

    /// Request ids are random version-4 UUIDs in the hyphenated lower-case form AWS
    /// uses, and two are never alike.
    #[test]
    fn request_ids_are_random_v4_uuids() {
        let ids: Vec<String> = (0..1000).map(|_| new_request_id()).collect();
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 4, "{id}");
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(*id, u.hyphenated().to_string(), "{id}");
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
