//! Key lifecycle calls.

use std::sync::Arc;

use super::{key_id_of, Call};
use crate::aws_json::shapes::*;
use crate::vault::{Caller, CreateKeyInput, KmsError, ListKeysInput, Vault};

/// The vault's metadata in AWS's shape.
pub(in crate::aws_json) fn key_metadata(m: crate::domain::KeyMetadata) -> KeyMetadata {
    let (key_manager, multi_region) = (m.key_manager().as_str().to_owned(), m.multi_region());
    let owned = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<String>>();
    let encryption_algorithms = owned(m.encryption_algorithms());
    let signing_algorithms = owned(&m.signing_algorithms());
    let mac_algorithms = owned(&m.mac_algorithms());
    let key_agreement_algorithms = owned(m.key_agreement_algorithms());
    let key_spec = m.key_spec.as_str().to_owned();
    KeyMetadata {
        aws_account_id: m.account.to_string(),
        key_id: m.key_id.to_string(),
        arn: m.arn.to_string(),
        creation_date: epoch(m.creation_date),
        enabled: m.enabled(),
        description: m.description,
        key_usage: m.key_usage.as_str().into(),
        key_state: m.key_state.as_str().into(),
        deletion_date: m.deletion_date.map(epoch),
        origin: m.origin.as_str().into(),
        key_manager,
        customer_master_key_spec: key_spec.clone(),
        key_spec,
        encryption_algorithms,
        signing_algorithms,
        mac_algorithms,
        key_agreement_algorithms,
        multi_region,
        expiration_model: m.expiration_model.map(|e| e.as_str().to_owned()),
        valid_to: m.valid_to.map(epoch),
    }
}

impl Call for CreateKeyRequest {
    type Input = CreateKeyInput;
    type Output = KeyMetadataResponse;

    fn validate(self) -> Result<CreateKeyInput, KmsError> {
        refuse("CustomKeyStoreId", &self.custom_key_store_id)?;
        refuse("XksKeyId", &self.xks_key_id)?;
        if self.multi_region == Some(true) {
            return Err(unsupported("MultiRegion"));
        }
        // Tags at creation are not built yet; TagResource after CreateKey works.
        if self.tags.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(unsupported("Tags"));
        }
        let key_spec = match (self.key_spec, self.customer_master_key_spec) {
            (Some(a), Some(b)) if a != b => {
                return Err(KmsError::validation(
                    "give KeySpec or CustomerMasterKeySpec, not both",
                ))
            }
            (a, b) => a.or(b).unwrap_or_default(),
        };
        Ok(CreateKeyInput {
            description: self.description.unwrap_or_default(),
            key_usage: self.key_usage.unwrap_or_default(),
            key_spec,
            origin: self.origin.unwrap_or_default(),
            policy: self.policy.unwrap_or_default(),
            bypass_policy_lockout_safety_check: self
                .bypass_policy_lockout_safety_check
                .unwrap_or(false),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: CreateKeyInput,
    ) -> Result<Self::Output, KmsError> {
        let meta = vault.create_key(&caller, input).await?;
        Ok(KeyMetadataResponse {
            key_metadata: key_metadata(meta),
        })
    }
}

impl Call for DescribeKeyRequest {
    type Input = (String, Vec<String>);
    type Output = KeyMetadataResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let key_id = Required::one("keyId", self.key_id)?;
        Ok((key_id, self.grant_tokens.unwrap_or_default()))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key_id, tokens): Self::Input,
    ) -> Result<Self::Output, KmsError> {
        let meta = vault.describe_key(&caller, &key_id, &tokens).await?;
        Ok(KeyMetadataResponse {
            key_metadata: key_metadata(meta),
        })
    }
}

impl Call for ListKeysRequest {
    type Input = ListKeysInput;
    type Output = ListKeysResponse;

    fn validate(self) -> Result<ListKeysInput, KmsError> {
        Ok(ListKeysInput {
            limit: self.limit,
            marker: self.marker.unwrap_or_default(),
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: ListKeysInput,
    ) -> Result<Self::Output, KmsError> {
        let out = vault.list_keys(&caller, input).await?;
        Ok(ListKeysResponse {
            keys: out
                .keys
                .into_iter()
                .map(|(id, arn)| KeyListEntry {
                    key_id: id.to_string(),
                    key_arn: arn.to_string(),
                })
                .collect(),
            truncated: out.next_marker.is_some(),
            next_marker: out.next_marker,
        })
    }
}

/// Calls whose only member is a required KeyId.
macro_rules! key_id_call {
    ($req:ty, $out:ty, |$vault:ident, $caller:ident, $key:ident| $body:expr) => {
        impl Call for $req {
            type Input = String;
            type Output = $out;

            fn key_id(&self) -> String {
                key_id_of(&self.key_id)
            }

            fn validate(self) -> Result<String, KmsError> {
                let key_id = Required::one("keyId", self.key_id)?;
                Ok(key_id)
            }

            async fn run(
                $vault: Arc<Vault>,
                $caller: Caller,
                $key: String,
            ) -> Result<$out, KmsError> {
                $body
            }
        }
    };
}

key_id_call!(EnableKeyRequest, Empty, |vault, caller, key| {
    vault.set_enabled(&caller, &key, true).await?;
    Ok(Empty {})
});

key_id_call!(DisableKeyRequest, Empty, |vault, caller, key| {
    vault.set_enabled(&caller, &key, false).await?;
    Ok(Empty {})
});

key_id_call!(
    CancelKeyDeletionRequest,
    KeyIdResponse,
    |vault, caller, key| {
        let arn = vault.cancel_key_deletion(&caller, &key).await?;
        Ok(KeyIdResponse {
            key_id: arn.to_string(),
        })
    }
);

key_id_call!(DisableKeyRotationRequest, Empty, |vault, caller, key| {
    vault.disable_key_rotation(&caller, &key).await?;
    Ok(Empty {})
});

key_id_call!(
    GetKeyRotationStatusRequest,
    GetKeyRotationStatusResponse,
    |vault, caller, key| {
        let st = vault.key_rotation_status(&caller, &key).await?;
        Ok(GetKeyRotationStatusResponse {
            key_rotation_enabled: st.enabled,
            key_id: st.key_arn.to_string(),
            rotation_period_in_days: st.period_days.and_then(|d| i32::try_from(d).ok()),
            next_rotation_date: st.next_rotation.map(epoch),
        })
    }
);

key_id_call!(
    RotateKeyOnDemandRequest,
    KeyIdResponse,
    |vault, caller, key| {
        let arn = vault.rotate_key_on_demand(&caller, &key).await?;
        Ok(KeyIdResponse {
            key_id: arn.to_string(),
        })
    }
);

impl Call for UpdateKeyDescriptionRequest {
    type Input = (String, String);
    type Output = Empty;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let mut r = Required::default();
        let key_id = r.need("keyId", self.key_id);
        let description = r.need("description", self.description);
        r.check()?;
        Ok((key_id, description))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key, description): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault
            .update_key_description(&caller, &key, &description)
            .await?;
        Ok(Empty {})
    }
}

impl Call for ScheduleKeyDeletionRequest {
    type Input = (String, Option<i32>);
    type Output = ScheduleKeyDeletionResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let key_id = Required::one("keyId", self.key_id)?;
        Ok((key_id, self.pending_window_in_days))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key, days): Self::Input,
    ) -> Result<Self::Output, KmsError> {
        let out = vault.schedule_key_deletion(&caller, &key, days).await?;
        Ok(ScheduleKeyDeletionResponse {
            key_id: out.key_arn.to_string(),
            deletion_date: epoch(out.deletion_date),
            key_state: out.key_state.as_str().to_owned(),
            pending_window_in_days: out.pending_window_in_days,
        })
    }
}

impl Call for EnableKeyRotationRequest {
    type Input = (String, Option<i32>);
    type Output = Empty;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let key_id = Required::one("keyId", self.key_id)?;
        Ok((key_id, self.rotation_period_in_days))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key, days): Self::Input,
    ) -> Result<Empty, KmsError> {
        vault.enable_key_rotation(&caller, &key, days).await?;
        Ok(Empty {})
    }
}

impl Call for ListKeyRotationsRequest {
    type Input = (String, Option<i32>, String);
    type Output = ListKeyRotationsResponse;

    fn key_id(&self) -> String {
        key_id_of(&self.key_id)
    }

    fn validate(self) -> Result<Self::Input, KmsError> {
        let key_id = Required::one("keyId", self.key_id)?;
        Ok((key_id, self.limit, self.marker.unwrap_or_default()))
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        (key, limit, marker): Self::Input,
    ) -> Result<Self::Output, KmsError> {
        let page = vault
            .list_key_rotations(&caller, &key, limit, &marker)
            .await?;
        let arn = page.key_arn.to_string();
        Ok(ListKeyRotationsResponse {
            rotations: page
                .rotations
                .into_iter()
                .map(|r| RotationsListEntry {
                    key_id: arn.clone(),
                    rotation_date: epoch(r.date),
                    rotation_type: r.kind.as_str().to_owned(),
                })
                .collect(),
            truncated: page.next_marker.is_some(),
            next_marker: page.next_marker,
        })
    }
}
