//! Access keys: CreateAccessKey, ListAccessKeys, DeleteAccessKey.

use std::sync::Arc;

use super::super::shapes::*;
use super::Call;
use crate::domain::SecretAccessKey;
use crate::vault::{
    AccessKeyMetadata, Caller, CreateAccessKeyInput, DeleteAccessKeyInput, KmsError,
    ListAccessKeysInput, Vault,
};

fn shape(m: AccessKeyMetadata, secret: Option<SecretAccessKey>) -> AccessKey {
    AccessKey {
        user_name: m.user_name,
        principal_arn: m.principal_arn,
        access_key_id: m.access_key_id.to_string(),
        status: m.status.as_str(),
        secret_access_key: secret,
        create_date: epoch(m.create_date),
    }
}

impl Call for CreateAccessKeyRequest {
    type Input = CreateAccessKeyInput;
    type Output = CreateAccessKeyResponse;

    fn validate(self) -> Result<Self::Input, KmsError> {
        let principal = Required::one("principalArn", self.principal_arn)?;
        Ok(CreateAccessKeyInput { principal })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: Self::Input,
    ) -> Result<Self::Output, KmsError> {
        let key = vault.create_access_key(&caller, input).await?;
        Ok(CreateAccessKeyResponse {
            access_key: shape(key.metadata, Some(key.secret)),
        })
    }
}

impl Call for ListAccessKeysRequest {
    type Input = ListAccessKeysInput;
    type Output = ListAccessKeysResponse;

    fn validate(self) -> Result<Self::Input, KmsError> {
        Ok(ListAccessKeysInput {
            principal: self.principal_arn,
        })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: Self::Input,
    ) -> Result<Self::Output, KmsError> {
        let keys = vault.list_access_keys(&caller, input).await?;
        Ok(ListAccessKeysResponse {
            access_key_metadata: keys.into_iter().map(|k| shape(k, None)).collect(),
        })
    }
}

impl Call for DeleteAccessKeyRequest {
    type Input = DeleteAccessKeyInput;
    type Output = Empty;

    fn validate(self) -> Result<Self::Input, KmsError> {
        let access_key_id = Required::one("accessKeyId", self.access_key_id)?;
        Ok(DeleteAccessKeyInput { access_key_id })
    }

    async fn run(
        vault: Arc<Vault>,
        caller: Caller,
        input: Self::Input,
    ) -> Result<Self::Output, KmsError> {
        vault.delete_access_key(&caller, input).await?;
        Ok(Empty {})
    }
}
