//! RetireGrant and RevokeGrant. Retiring is decided by the grant itself (its retiring
//! principal, its grantee when it includes RetireGrant, or the account that created
//! it); revoking is decided by policy (kms:RevokeGrant). Either takes effect at once.

use super::token::decode_id;
use super::Vault;
use crate::authz::Action;
use crate::authz::DecisionKind;
use crate::store::GrantRecord;
use crate::vault::authorize::Authz;
use crate::vault::{Caller, KmsError};

fn grant_id(id: &str) -> Result<(), KmsError> {
    decode_id(id)
        .map(|_| ())
        .ok_or_else(|| KmsError::InvalidGrantId("a grant id is 64 hexadecimal characters".into()))
}

impl Vault {
    async fn grant_on_key(
        &self,
        caller: &Caller,
        key_id: &str,
        id: &str,
    ) -> Result<GrantRecord, KmsError> {
        grant_id(id)?;
        let key = self.resolve(caller, key_id).await?;
        let gid = id.to_owned();
        match self.store_call(move |s| s.grant(&gid)).await? {
            Some(g) if g.key_id == key.key_id() => Ok(g),
            _ => Err(KmsError::NotFound(format!(
                "grant {id} does not exist on this key"
            ))),
        }
    }

    async fn delete(&self, g: &GrantRecord) -> Result<(), KmsError> {
        let id = g.grant_id.clone();
        self.store_call(move |s| s.delete_grant(&id)).await?;
        // Only a cached key has grants to forget.
        if let Some(key) = self.cached_key(g.key_id) {
            key.slots(|s| s.grants.invalidate());
        }
        tracing::info!(key_id = %g.key_id, grant_id = %g.grant_id, "grant removed");
        Ok(())
    }

    /// RetireGrant by token, or by key and grant id.
    pub async fn retire_grant(
        &self,
        caller: &Caller,
        token: &str,
        key_id: &str,
        id: &str,
    ) -> Result<(), KmsError> {
        let g = if !token.is_empty() {
            let gid = self
                .grant_tokens
                .verify(token)
                .map_err(|e| KmsError::InvalidGrantToken(e.to_string()))?;
            let lookup = gid.clone();
            self.store_call(move |s| s.grant(&lookup))
                .await?
                .ok_or_else(|| KmsError::NotFound(format!("grant {gid} does not exist")))?
        } else if !key_id.is_empty() && !id.is_empty() {
            self.grant_on_key(caller, key_id, id).await?
        } else {
            return Err(KmsError::validation(
                "give GrantToken, or KeyId and GrantId",
            ));
        };
        let who = caller.principal.arn();
        let why = if g.retiring.as_deref() == Some(who) {
            Some("the grant's retiring principal")
        } else if g.grantee == who && g.operations.iter().any(|o| o == "RetireGrant") {
            Some("the grant's grantee, with RetireGrant")
        } else if g.issuing_account == who {
            Some("the account that created the grant")
        } else {
            None
        };
        // The trail names the key and why the caller may (or may not) retire the grant.
        let resource = match self.key(g.key_id).await? {
            Some(k) => self.arn(k.account(), g.key_id).to_string(),
            None => "*".to_owned(),
        };
        caller.trace.record_rule(
            "kms:RetireGrant",
            &resource,
            if why.is_some() {
                DecisionKind::Allow
            } else {
                DecisionKind::ImplicitDeny
            },
            format!(
                "grant {}: {}",
                g.grant_id,
                why.unwrap_or("the caller is none of its retiring principal, grantee with RetireGrant, or creating account")
            ),
        );
        if why.is_none() {
            return Err(KmsError::AccessDenied(format!(
                "User: {who} is not authorized to perform: kms:RetireGrant on grant {} because it is neither the grant's retiring principal, nor its grantee with RetireGrant, nor the account that created it",
                g.grant_id
            )));
        }
        self.delete(&g).await
    }

    /// RevokeGrant: needs kms:RevokeGrant on the key.
    pub async fn revoke_grant(
        &self,
        caller: &Caller,
        key_id: &str,
        id: &str,
    ) -> Result<(), KmsError> {
        grant_id(id)?;
        let key = self.resolve(caller, key_id).await?;
        self.authorize(caller, Authz::key(Action::REVOKE_GRANT, &key))
            .await?;
        let g = self.grant_on_key(caller, key_id, id).await?;
        self.delete(&g).await
    }
}
