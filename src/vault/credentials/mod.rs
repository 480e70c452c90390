//! Access keys (IAM's CreateAccessKey, ListAccessKeys, DeleteAccessKey) for the SigV4
//! authentication of the AWS JSON listener. Managed by the principal's account root, or
//! by whom that account's identity policies allow the IAM action on the principal; a
//! root's own keys only by the root. The secret is sealed in the HSM (`sealed.rs`) and
//! opened for SigV4 through a small cache (`cache.rs`, `lookup.rs`).

pub(super) mod cache;
mod lookup;
mod sealed;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use super::authorize::Authz;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{AccessKeyId, AccessKeyStatus, SecretAccessKey};
use crate::identity::{Principal, PrincipalKind};
use crate::store::AccessKeyRecord;

pub(super) use cache::SecretCache;
pub(crate) use lookup::AccessKeySecret;

/// IAM's quota: at most two access keys per user.
const MAX_ACCESS_KEYS: usize = 2;

/// A new access key with its secret, as CreateAccessKey returns it: the only time the
/// secret leaves the daemon. Debug shows nothing of the secret.
#[derive(Clone, Debug)]
pub struct AccessKey {
    /// The key's metadata.
    pub metadata: AccessKeyMetadata,
    /// The secret access key.
    pub secret: SecretAccessKey,
}

/// An access key without its secret (ListAccessKeys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKeyMetadata {
    /// The principal's name (IAM's UserName: the last part of a user or role ARN);
    /// `None` for an account root.
    pub user_name: Option<String>,
    /// The principal ARN the key authenticates as.
    pub principal_arn: String,
    /// The access key id.
    pub access_key_id: AccessKeyId,
    /// Active.
    pub status: AccessKeyStatus,
    /// When it was made.
    pub create_date: SystemTime,
}

impl AccessKeyMetadata {
    fn of(r: &AccessKeyRecord) -> Self {
        let user_name = r
            .principal
            .parse::<Principal>()
            .ok()
            .and_then(|p| user_name(&p));
        Self {
            user_name,
            principal_arn: r.principal.clone(),
            access_key_id: r.access_key_id.clone(),
            status: r.status,
            create_date: r.created,
        }
    }
}

/// IAM's UserName: the name without its path; none for a root.
fn user_name(p: &Principal) -> Option<String> {
    match p.kind() {
        PrincipalKind::Root => None,
        PrincipalKind::User(n) | PrincipalKind::Role(n) => {
            Some(n.rsplit('/').next().unwrap_or(n).to_owned())
        }
    }
}

/// CreateAccessKey's parameters.
#[derive(Clone, Debug)]
pub(crate) struct CreateAccessKeyInput {
    /// The principal ARN the key will authenticate as.
    pub(crate) principal: String,
}

/// ListAccessKeys' parameters.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListAccessKeysInput {
    /// Whose keys; the caller's own when `None` (as IAM without UserName).
    pub(crate) principal: Option<String>,
}

/// DeleteAccessKey's parameters.
#[derive(Clone, Debug)]
pub(crate) struct DeleteAccessKeyInput {
    /// The access key id.
    pub(crate) access_key_id: String,
}

fn parse_principal(arn: &str) -> Result<Principal, KmsError> {
    arn.parse()
        .map_err(|e| KmsError::validation(format!("PrincipalArn: {e}")))
}

fn parse_id(id: &str) -> Result<AccessKeyId, KmsError> {
    id.parse()
        .map_err(|e| KmsError::validation(format!("AccessKeyId: {e}")))
}

impl Vault {
    /// Authorizes `action` on `target`'s access keys for the caller: never another
    /// account's (or partition's) principals; a root's keys only by that root (an
    /// identity policy allowing iam:CreateAccessKey on `*` must not hand out the whole
    /// account); anyone else by identity policies, which see the target's tags as
    /// aws:ResourceTag/<key> as IAM's do.
    async fn authorize_access_keys(
        &self,
        caller: &Caller,
        target: &Principal,
        action: Action,
    ) -> Result<(), KmsError> {
        let denied = |why: &str| {
            KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: {} on resource: {target} because {why}",
                caller.principal, action.0
            ))
        };
        if target.account() != caller.principal.account()
            || target.partition() != caller.principal.partition()
        {
            return Err(denied("it belongs to another account"));
        }
        if matches!(target.kind(), PrincipalKind::Root)
            && !matches!(caller.principal.kind(), PrincipalKind::Root)
        {
            return Err(denied("only the account root manages its own access keys"));
        }
        let mut a = Authz::account(action);
        a.resource = Some((target.arn().to_owned(), target.account().clone()));
        let arn = target.arn().to_owned();
        let tags = self.store_call(move |s| s.principal_tags(&arn)).await?;
        for (k, v) in tags {
            a.named.push((format!("aws:ResourceTag/{k}"), v));
        }
        self.authorize(caller, a).await?;
        Ok(())
    }

    /// CreateAccessKey: a new key for a principal, with its secret (shown only now).
    pub(crate) async fn create_access_key(
        &self,
        caller: &Caller,
        input: CreateAccessKeyInput,
    ) -> Result<AccessKey, KmsError> {
        let target = parse_principal(&input.principal)?;
        self.authorize_access_keys(caller, &target, Action::IAM_CREATE_ACCESS_KEY)
            .await?;
        let key = self.issue_access_key(&target).await?;
        caller
            .trace
            .parameter("accessKeyId", key.metadata.access_key_id.to_string());
        Ok(key)
    }

    /// Makes an access key for `target` without asking who may: the end of
    /// CreateAccessKey after authorization, and `p11kms dev issue-credentials`, which
    /// mints offline as `dev issue-cert` does.
    pub(crate) async fn issue_access_key(&self, target: &Principal) -> Result<AccessKey, KmsError> {
        let id = AccessKeyId::generate().map_err(KmsError::internal)?;
        let secret = SecretAccessKey::generate().map_err(KmsError::internal)?;
        let sealed = self.seal_access_secret(&id, target.arn(), &secret).await?;
        let record = AccessKeyRecord {
            access_key_id: id.clone(),
            principal: target.arn().to_owned(),
            account: target.account().clone(),
            status: AccessKeyStatus::Active,
            created: self.settings.clock.now(),
            sealed_secret: sealed,
        };
        let metadata = AccessKeyMetadata::of(&record);
        let ticket = self.access_keys.ticket();
        self.store_call(move |s| s.insert_access_key(&record, MAX_ACCESS_KEYS))
            .await?;
        // The first SigV4 request with the new key then costs no HSM call.
        self.access_keys.fill(
            ticket,
            id.clone(),
            std::sync::Arc::new(AccessKeySecret {
                principal: target.clone(),
                secret: secret.clone().into_zeroizing(),
            }),
        );
        tracing::info!(principal = %target, access_key_id = %id, "access key created");
        Ok(AccessKey { metadata, secret })
    }

    /// ListAccessKeys: a principal's keys, without their secrets.
    pub(crate) async fn list_access_keys(
        &self,
        caller: &Caller,
        input: ListAccessKeysInput,
    ) -> Result<Vec<AccessKeyMetadata>, KmsError> {
        let target = match &input.principal {
            Some(arn) => parse_principal(arn)?,
            None => caller.principal.clone(),
        };
        self.authorize_access_keys(caller, &target, Action::IAM_LIST_ACCESS_KEYS)
            .await?;
        let arn = target.arn().to_owned();
        let rows = self.store_call(move |s| s.access_keys(&arn)).await?;
        Ok(rows.iter().map(AccessKeyMetadata::of).collect())
    }

    /// DeleteAccessKey: the key stops working at once (the cache entry goes with it).
    pub(crate) async fn delete_access_key(
        &self,
        caller: &Caller,
        input: DeleteAccessKeyInput,
    ) -> Result<(), KmsError> {
        let id = parse_id(&input.access_key_id)?;
        caller.trace.parameter("accessKeyId", id.to_string());
        let not_found = || KmsError::NotFound(format!("the access key {id} does not exist"));
        let look = id.clone();
        let record = self
            .store_call(move |s| s.access_key(&look))
            .await?
            .ok_or_else(not_found)?;
        // Another account's key is not visible: NotFound, as for another account's keys.
        if record.account != *caller.principal.account() {
            return Err(not_found());
        }
        let target = record
            .principal
            .parse::<Principal>()
            .map_err(KmsError::internal)?;
        self.authorize_access_keys(caller, &target, Action::IAM_DELETE_ACCESS_KEY)
            .await?;
        let del = id.clone();
        let deleted = self.store_call(move |s| s.delete_access_key(&del)).await?;
        self.access_keys.remove(&id);
        if !deleted {
            return Err(not_found());
        }
        tracing::info!(principal = %target, access_key_id = %id, "access key deleted");
        Ok(())
    }
}
