//! Key policy calls, and p11kms's principal policy calls.

use std::sync::Arc;

use super::{key_id_of, Call};
use crate::aws_json::shapes::*;
use crate::vault::{Caller, KmsError, ListKeyPoliciesInput, Vault, DEFAULT_POLICY_NAME};

impl Call for GetKeyPolicyRequest {
    type Input = (String, String);
    type Output = GetKeyPolicyResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let key_id = Required::one("keyId", self.key_id)?;
        // PolicyName is optional since 2024 and means "default".
        let name = self
            .policy_name
            .unwrap_or_else(|| DEFAULT_POLICY_NAME.into());
        Ok((key_id, name))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key, name): Self::Input,
    ) -> Result<Self::Output, KmsError> {
        let policy = vault.get_key_policy(&caller, &key, &name).await?;
        Ok(GetKeyPolicyResponse {
            policy,
            policy_name: DEFAULT_POLICY_NAME.into(),
        })
    }
}

impl Call for PutKeyPolicyRequest {
    type Input = (String, String, String, bool);
    type Output = Empty;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let policy = r.need("policy", self.policy);
        r.check()?;
        let name = self
            .policy_name
            .unwrap_or_else(|| DEFAULT_POLICY_NAME.into());
        let bypass = self.bypass_policy_lockout_safety_check.unwrap_or(false);
        Ok((key_id, name, policy, bypass))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key, name, policy, bypass): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault
            .put_key_policy(&caller, &key, &name, policy, bypass)
            .await?;
        Ok(Empty {})
    }
}

impl Call for ListKeyPoliciesRequest {
    type Input = ListKeyPoliciesInput;
    type Output = ListKeyPoliciesResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let key_id = Required::one("keyId", self.key_id)?;
        Ok(ListKeyPoliciesInput {
            key_id,
            limit: self.limit,
            marker: self.marker.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: Self::Input,
    ) -> Result<Self::Output, KmsError> {
        let page = vault.list_key_policies(&caller, input).await?;
        Ok(ListKeyPoliciesResponse {
            policy_names: page.policy_names,
            truncated: page.next_marker.is_some(),
            next_marker: page.next_marker,
        })
    }
}

impl Call for PutPrincipalPolicyRequest {
    type Input = (String, String, String);
    type Output = Empty;

    fn validate(self) -> Result<Self::Input, KmsError> {
        let mut r = Required::default();
        let arn = r.need("principalArn", self.principal_arn);
        let name = r.need("policyName", self.policy_name);
        let doc = r.need("policyDocument", self.policy_document);
        r.check()?;
        Ok((arn, name, doc))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (arn, name, doc): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault
            .put_principal_policy(&caller, &arn, &name, doc)
            .await?;
        Ok(Empty {})
    }
}

/// PrincipalArn and PolicyName, both required.
fn principal_and_name(req: PrincipalPolicyRequest) -> Result<(String, String), KmsError> {
    let mut r = Required::default();
    let arn = r.need("principalArn", req.principal_arn);
    let name = r.need("policyName", req.policy_name);
    r.check()?;
    Ok((arn, name))
}

impl Call for PrincipalPolicyRequest {
    type Input = (String, String);
    type Output = GetPrincipalPolicyResponse;

    fn validate(self) -> Result<Self::Input, KmsError> {
        principal_and_name(self)
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (arn, name): Self::Input,
    ) -> Result<Self::Output, KmsError> {
        let policy_document = vault.get_principal_policy(&caller, &arn, &name).await?;
        Ok(GetPrincipalPolicyResponse {
            principal_arn: arn,
            policy_name: name,
            policy_document,
        })
    }
}

impl Call for DeletePrincipalPolicyRequest {
    type Input = (String, String);
    type Output = Empty;

    fn validate(self) -> Result<Self::Input, KmsError> {
        principal_and_name(self.0)
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (arn, name): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault.delete_principal_policy(&caller, &arn, &name).await?;
        Ok(Empty {})
    }
}

/// PrincipalArn, required.
pub(super) fn principal(req: PrincipalRequest) -> Result<String, KmsError> {
    let arn = Required::one("principalArn", req.principal_arn)?;
    Ok(arn)
}

impl Call for PrincipalRequest {
    type Input = String;
    type Output = ListPrincipalPoliciesResponse;

    fn validate(self) -> Result<String, KmsError> {
        principal(self)
    }

    async fn run(vault: Arc<Vault>, caller: Caller, arn: String) -> Result<Self::Output, KmsError> {
        let policy_names = vault.list_principal_policies(&caller, &arn).await?;
        Ok(ListPrincipalPoliciesResponse { policy_names })
    }
}
