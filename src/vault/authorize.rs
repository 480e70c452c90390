//! Authorization of every operation: builds the request context (aws:* and kms:*
//! condition keys), loads the caller's identity policies and tags (cached), and asks the
//! pure authorizer. Also decides who a caller is when a trusted service acts for it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use time::format_description::well_known::Rfc3339;
use tracing::error;

use super::keys::KeyEntry;
use super::slot::{Slot, Ticket};
use super::{Caller, KmsError, Vault};
use crate::authz::{
    self, Action, AuthzInput, ContextValue, Decision, DecisionKind, NamedPolicy, Policy,
    PolicyKind, RequestContext,
};
use crate::domain::{AccountId, EncryptionContext};
use crate::identity::{Principal, PrincipalKind};

/// A service that may call on behalf of other principals (kms:ViaService).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedService {
    /// The service's own principal ARN (from its client certificate).
    pub principal: String,
    /// The name policies see in kms:ViaService, e.g. `s3.us-east-1.amazonaws.com`.
    pub name: String,
    /// The accounts whose principals (never their roots) it may act for.
    pub accounts: Vec<AccountId>,
}

/// A principal's identity policies (parsed) and tags.
#[derive(Debug, Default)]
pub(crate) struct PrincipalData {
    pub(crate) policies: Vec<(String, Policy)>,
    pub(crate) tags: Vec<(String, String)>,
}

/// Cache of principal data; the vault is its only writer, so it invalidates on write
/// (see `slot` for why a change must also turn away loads under way).
#[derive(Default)]
pub(crate) struct PrincipalCache {
    map: RwLock<HashMap<String, Slot<PrincipalData>>>,
}

impl PrincipalCache {
    fn get(&self, arn: &str) -> Result<Arc<PrincipalData>, Ticket> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(arn)
            .map_or_else(|| Slot::default().get(), Slot::get)
    }
    fn fill(&self, arn: &str, ticket: Ticket, d: Arc<PrincipalData>) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(arn.to_owned())
            .or_default()
            .fill(ticket, d);
    }
    /// Drops every principal's data (each load under way is turned away).
    pub(crate) fn invalidate_all(&self) {
        for slot in self
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .values_mut()
        {
            slot.invalidate();
        }
    }

    pub(crate) fn invalidate(&self, arn: &str) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(arn.to_owned())
            .or_default()
            .invalidate();
    }
}

/// What one authorization is about.
pub(crate) struct Authz<'a> {
    /// The KMS (or IAM) action.
    pub(crate) action: Action,
    /// The key, for key operations; `None` for account-level ones.
    pub(crate) key: Option<&'a KeyEntry>,
    /// The request's encryption context, when it has one.
    pub(crate) context: Option<&'a EncryptionContext>,
    /// Further single-valued condition keys of this operation.
    pub(crate) extra: Vec<(&'static str, String)>,
    /// Further multi-valued condition keys (kms:GrantOperations, aws:TagKeys).
    pub(crate) many: Vec<(&'static str, ContextValue)>,
    /// Condition keys whose names are built per request (aws:RequestTag/<key>).
    pub(crate) named: Vec<(String, String)>,
    /// For account-level actions on another resource (a principal): its ARN and account.
    pub(crate) resource: Option<(String, AccountId)>,
    /// A key policy to decide with instead of the key's own (the lockout check).
    pub(crate) policy_override: Option<&'a Policy>,
}

impl<'a> Authz<'a> {
    pub(crate) fn key(action: Action, key: &'a KeyEntry) -> Self {
        Self {
            action,
            key: Some(key),
            context: None,
            extra: Vec::new(),
            many: Vec::new(),
            named: Vec::new(),
            resource: None,
            policy_override: None,
        }
    }
    pub(crate) fn account(action: Action) -> Self {
        Self {
            action,
            key: None,
            context: None,
            extra: Vec::new(),
            many: Vec::new(),
            named: Vec::new(),
            resource: None,
            policy_override: None,
        }
    }
    pub(crate) fn with_context(mut self, ec: &'a EncryptionContext) -> Self {
        self.context = Some(ec);
        self
    }
    pub(crate) fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((key, value.into()));
        self
    }
    /// Sets kms:RequestAlias when the request named the key by alias name or alias ARN.
    pub(crate) fn requested_as(self, key_id: &str) -> Self {
        let alias = if key_id.starts_with("alias/") {
            Some(key_id)
        } else if key_id.starts_with("arn:") {
            key_id.find(":alias/").and_then(|i| key_id.get(i + 1..))
        } else {
            None
        };
        match alias {
            Some(name) => self.with("kms:RequestAlias", name),
            None => self,
        }
    }
}

/// Records the request parameters an authorization carries, under CloudTrail's names.
/// Only what a policy may see is here, so nothing secret: encryption contexts, grant
/// fields, the algorithm, tag keys.
fn record_parameters(caller: &Caller, a: &Authz<'_>) {
    if let Some(ec) = a.context {
        let name = match a.action {
            Action::RE_ENCRYPT_FROM => "sourceEncryptionContext",
            Action::RE_ENCRYPT_TO => "destinationEncryptionContext",
            _ => "encryptionContext",
        };
        let pairs: serde_json::Map<String, serde_json::Value> = ec
            .pairs()
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        caller.trace.parameter(name, pairs);
    }
    for (key, value) in &a.extra {
        let name = match *key {
            "kms:GranteePrincipal" => "granteePrincipal",
            "kms:RetiringPrincipal" => "retiringPrincipal",
            "kms:EncryptionAlgorithm" => "encryptionAlgorithm",
            "kms:SigningAlgorithm" => "signingAlgorithm",
            "kms:MessageType" => "messageType",
            "kms:MacAlgorithm" => "macAlgorithm",
            "kms:KeyAgreementAlgorithm" => "keyAgreementAlgorithm",
            "kms:KeySpec" => "keySpec",
            "kms:KeyUsage" => "keyUsage",
            "kms:DataKeyPairSpec" => "keyPairSpec",
            "kms:WrappingAlgorithm" => "wrappingAlgorithm",
            "kms:WrappingKeySpec" => "wrappingKeySpec",
            "kms:ExpirationModel" => "expirationModel",
            "kms:ValidTo" => "validTo",
            "kms:BypassPolicyLockoutSafetyCheck" => "bypassPolicyLockoutSafetyCheck",
            _ => continue,
        };
        caller.trace.parameter(name, value.clone());
    }
    for (key, value) in &a.many {
        let name = match *key {
            "kms:GrantOperations" => "operations",
            "aws:TagKeys" => "tagKeys",
            _ => continue,
        };
        caller.trace.parameter(name, value.values().to_vec());
    }
}

/// Adds the condition keys (aws:* and kms:*) an authorization's policies may read to
/// `ctx`, made by [`Vault::request_context`].
fn add_condition_keys(
    ctx: &mut RequestContext,
    caller: &Caller,
    a: &Authz<'_>,
    data: &PrincipalData,
    key_aliases: Option<&[String]>,
    key_tags: Option<&[(String, String)]>,
) {
    let p = &caller.principal;
    ctx.set_one("aws:PrincipalArn", p.arn());
    ctx.set_one("aws:PrincipalAccount", p.account().as_str());
    ctx.set_one("kms:CallerAccount", p.account().as_str());
    let principal_type = match p.kind() {
        PrincipalKind::Root => "Account",
        PrincipalKind::User(name) => {
            ctx.set_one("aws:username", name.rsplit('/').next().unwrap_or(name));
            "User"
        }
        PrincipalKind::Role(_) => "AssumedRole",
    };
    ctx.set_one("aws:PrincipalType", principal_type);
    ctx.set_one("aws:SecureTransport", "true");
    let now = time::OffsetDateTime::now_utc();
    ctx.set_one(
        "aws:CurrentTime",
        now.replace_nanosecond(0)
            .unwrap_or(now)
            .format(&Rfc3339)
            .unwrap_or_default(),
    );
    ctx.set_one("aws:EpochTime", now.unix_timestamp().to_string());
    if let Some(ip) = caller.source_ip {
        // An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d; policies
        // name it as a.b.c.d.
        ctx.set_one("aws:SourceIp", ip.to_canonical().to_string());
    }
    for (k, v) in &data.tags {
        ctx.add(&format!("aws:PrincipalTag/{k}"), v.clone());
    }
    if !data.tags.is_empty() {
        ctx.set(
            "aws:PrincipalTagKeys",
            ContextValue::Many(data.tags.iter().map(|(k, _)| k.clone()).collect()),
        );
    }
    if let Some(via) = &caller.via_service {
        ctx.set_one("kms:ViaService", via.clone());
    }
    if let Some(k) = a.key {
        let (spec, usage, origin) = k.kind();
        ctx.set_one("kms:KeySpec", spec.as_str());
        ctx.set_one("kms:KeyUsage", usage.as_str());
        ctx.set_one("kms:KeyOrigin", origin.as_str());
    }
    // Key tags are case-sensitive (team and Team are two tags); a policy on
    // aws:ResourceTag/team sees both values.
    for (k, v) in key_tags.unwrap_or_default() {
        ctx.add(&format!("aws:ResourceTag/{k}"), v.clone());
    }
    if let Some(names) = key_aliases.filter(|n| !n.is_empty()) {
        ctx.set("kms:ResourceAliases", ContextValue::Many(names.to_vec()));
    }
    // The pairs themselves are in `ctx` already (`Vault::request_context`).
    if let Some(ec) = a.context {
        ctx.add_encryption_context_keys(ec.pairs());
    }
    for (k, v) in &a.extra {
        ctx.set_one(k, v.clone());
    }
    for (k, v) in &a.many {
        ctx.set(k, v.clone());
    }
    for (k, v) in &a.named {
        ctx.add(k, v.clone());
    }
}

impl Vault {
    /// Who the request is from. A trusted service may name the principal it acts for;
    /// the request is then authorized as that principal with kms:ViaService set.
    pub fn caller(
        &self,
        transport: Principal,
        on_behalf_of: Option<&str>,
        source_ip: Option<std::net::IpAddr>,
    ) -> Result<Caller, KmsError> {
        // ARNs of another partition name nobody this daemon knows.
        if transport.partition() != &self.settings.partition {
            return Err(KmsError::UnrecognizedClient(format!(
                "the client certificate names a principal in partition {}, but this daemon serves {}",
                transport.partition().as_str(),
                self.settings.partition.as_str()
            )));
        }
        let Some(end) = on_behalf_of else {
            return Ok(Caller {
                principal: transport,
                source_ip,
                via_service: None,
                trace: Default::default(),
            });
        };
        let service = self
            .settings
            .trusted_services
            .iter()
            .find(|s| s.principal == transport.arn())
            .ok_or_else(|| {
                KmsError::AccessDenied(format!(
                    "{transport} is not a trusted service and may not act on behalf of another principal"
                ))
            })?;
        let principal: Principal = end.parse().map_err(|e| {
            KmsError::validation(format!("the on-behalf-of principal is invalid: {e}"))
        })?;
        if principal.partition() != &self.settings.partition {
            return Err(KmsError::AccessDenied(format!(
                "{transport} may not act for {principal}, a principal of another partition"
            )));
        }
        // A relay holds its own certificate, not the end caller's: scope what it can
        // claim, so that one compromised service cannot speak for every account, and
        // never for a root, which holds every permission of its account.
        if matches!(principal.kind(), PrincipalKind::Root) {
            return Err(KmsError::AccessDenied(format!(
                "{transport} is a trusted service and may not act as an account root ({principal})"
            )));
        }
        if !service.accounts.contains(principal.account()) {
            return Err(KmsError::AccessDenied(format!(
                "{transport} is a trusted service for other accounts and may not act for {principal}"
            )));
        }
        Ok(Caller {
            principal,
            source_ip,
            via_service: Some(service.name.clone()),
            trace: Default::default(),
        })
    }

    /// The caller's identity policies and tags, from the cache or the store.
    pub(crate) async fn principal_data(&self, arn: &str) -> Result<Arc<PrincipalData>, KmsError> {
        let cached = self.principals.get(arn);
        self.metrics.cache_lookup("principal", cached.is_ok());
        let ticket = match cached {
            Ok(d) => return Ok(d),
            Err(t) => t,
        };
        let key = arn.to_owned();
        let (docs, tags) = self
            .store_call(move |s| Ok((s.identity_policies(&key)?, s.principal_tags(&key)?)))
            .await?;
        let mut policies = Vec::with_capacity(docs.len());
        for (name, doc) in docs {
            // Stored documents were validated when put; one that no longer parses is
            // refused outright (fail closed: skipping it could skip a Deny).
            let (p, problem) = authz::parse_stored_policy(&doc, PolicyKind::Identity).map_err(|e| {
                error!(principal = arn, policy = %name, error = %e, "stored identity policy does not parse");
                KmsError::internal(e)
            })?;
            if let Some(e) = problem {
                tracing::warn!(principal = arn, policy = %name, problem = %e, "the stored identity policy would be refused today; replace it");
            }
            policies.push((name, p));
        }
        // Tags stored before IAM's character rules were enforced could hold `*` or `?`,
        // which `${aws:PrincipalTag/…}` would turn into wildcards: leave them out.
        let tags = tags
            .into_iter()
            .filter(|(k, v)| {
                let ok = super::principal_policy::check_tag(k, v).is_ok();
                if !ok {
                    tracing::warn!(principal = arn, tag = %k, "a stored principal tag breaks IAM's rules and is ignored; remove it");
                }
                ok
            })
            .collect();
        let data = Arc::new(PrincipalData { policies, tags });
        self.principals.fill(arn, ticket, Arc::clone(&data));
        Ok(data)
    }

    /// The request context of an authorization: who, what, on which resource, and the
    /// encryption context (grant constraints read it), without condition keys (see
    /// [`add_condition_keys`]).
    fn request_context(&self, caller: &Caller, a: &Authz<'_>) -> RequestContext {
        let p = &caller.principal;
        let (resource, account) = match (a.key, &a.resource) {
            (Some(k), _) => (self.arn_of(k).to_string(), k.account().clone()),
            (None, Some((r, acct))) => (r.clone(), acct.clone()),
            (None, None) => ("*".to_owned(), p.account().clone()),
        };
        let mut ctx = RequestContext::new(
            p.arn(),
            p.account().as_str(),
            a.action.0,
            &resource,
            account.as_str(),
        );
        if let Some(ec) = a.context {
            ctx.encryption_context.clone_from(ec.pairs());
        }
        ctx
    }

    /// Authorizes one action; AccessDeniedException names the principal, the action, the
    /// resource and why, as AWS's messages do.
    pub(crate) async fn authorize(
        &self,
        caller: &Caller,
        a: Authz<'_>,
    ) -> Result<Decision, KmsError> {
        let data = self.principal_data(caller.principal.arn()).await?;
        let key_policy = match (a.policy_override, a.key) {
            (Some(p), _) => Some(Arc::new(p.clone())),
            (None, Some(k)) => Some(k.policy()),
            (None, None) => None,
        };
        let mut ctx = self.request_context(caller, &a);
        // Condition keys only for policies that can read them: most key policies (the
        // default one among them) have no Condition and no variable, and the keys cost
        // more to build than the decision itself.
        let reads = key_policy
            .as_deref()
            .is_some_and(Policy::reads_condition_keys)
            || data.policies.iter().any(|(_, p)| p.reads_condition_keys());
        if reads {
            let (aliases, tags) = match a.key {
                Some(k) => (
                    Some(self.key_aliases(k).await?),
                    Some(self.key_tags(k).await?),
                ),
                None => (None, None),
            };
            add_condition_keys(
                &mut ctx,
                caller,
                &a,
                &data,
                aliases.as_deref().map(Vec::as_slice),
                tags.as_deref().map(Vec::as_slice),
            );
        }
        // The lockout check asks what the new policy alone allows: no grants.
        let grants = match (a.key, a.policy_override) {
            (Some(k), None) => self.key_grants(k).await?,
            _ => Arc::new(Vec::new()),
        };
        let named: Vec<NamedPolicy<'_>> = data
            .policies
            .iter()
            .map(|(name, policy)| NamedPolicy { name, policy })
            .collect();
        let decision = authz::decide(&AuthzInput {
            key_policy: key_policy.as_deref(),
            identity_policies: &named,
            grants: &grants,
            request: &ctx,
        });
        caller.trace.record(a.action.0, &ctx.resource, &decision);
        record_parameters(caller, &a);
        match decision.decision {
            DecisionKind::Allow => Ok(decision),
            DecisionKind::ExplicitDeny | DecisionKind::ImplicitDeny => {
                Err(KmsError::AccessDenied(format!(
                    "User: {} is not authorized to perform: {} on resource: {} because {}",
                    caller.principal, a.action.0, ctx.resource, decision.reason
                )))
            }
        }
    }
}
