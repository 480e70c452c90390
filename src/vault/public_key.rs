//! GetPublicKey: the public half of an asymmetric key, read from the token, with what
//! the key may be used for.

use super::authorize::Authz;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{KeyArn, KeySpec, KeyUsage, MaterialKind};

/// GetPublicKey's result.
#[derive(Debug)]
pub struct PublicKeyOutput {
    /// The key.
    pub key_arn: KeyArn,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// The key's spec.
    pub key_spec: KeySpec,
    /// The key's usage.
    pub key_usage: KeyUsage,
    /// For ENCRYPT_DECRYPT keys.
    pub encryption_algorithms: Vec<&'static str>,
    /// For SIGN_VERIFY keys.
    pub signing_algorithms: Vec<&'static str>,
    /// For KEY_AGREEMENT keys.
    pub key_agreement_algorithms: Vec<&'static str>,
}

impl Vault {
    /// GetPublicKey.
    pub async fn get_public_key(
        &self,
        caller: &Caller,
        key_id: &str,
        grant_tokens: &[String],
    ) -> Result<PublicKeyOutput, KmsError> {
        self.check_grant_tokens(grant_tokens)?;
        let key = self.resolve(caller, key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(
            caller,
            Authz::key(Action::GET_PUBLIC_KEY, &key).requested_as(key_id),
        )
        .await?;
        key.check_usable(&arn)?;
        let (spec, usage, _) = key.kind();
        let kind = spec.material();
        if !matches!(kind, MaterialKind::Rsa(_) | MaterialKind::Ec(_)) {
            return Err(KmsError::UnsupportedOperation(format!(
                "{arn} is a {} key, which has no public key",
                spec.as_str()
            )));
        }
        let public_key = self
            .hsm
            .public_key(key.material_ref(key.current_version()), kind)
            .await?;
        Ok(PublicKeyOutput {
            key_arn: arn,
            public_key,
            key_spec: spec,
            key_usage: usage,
            encryption_algorithms: spec.encryption_algorithms(usage).to_vec(),
            signing_algorithms: spec
                .signing_algorithms(usage)
                .iter()
                .map(|a| a.as_str())
                .collect(),
            key_agreement_algorithms: spec.key_agreement_algorithms(usage).to_vec(),
        })
    }
}
