//! GenerateDataKey and GenerateDataKeyWithoutPlaintext: random bytes from the HSM,
//! encrypted under the KMS key in the same trip to the HSM.

use super::authorize::Authz;
use super::{validate, Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{EncryptionContext, KeyArn, Plaintext};

/// Parameters of both operations.
#[derive(Debug)]
pub struct DataKeyInput {
    /// Key id or key ARN.
    pub key_id: String,
    /// Bound to the encrypted data key.
    pub context: EncryptionContext,
    /// 1..1024; exactly one of this and `key_spec`.
    pub number_of_bytes: Option<i32>,
    /// "", AES_256 or AES_128.
    pub key_spec: String,
    /// Accepted for API compatibility.
    pub grant_tokens: Vec<String>,
}

/// Result of both operations; `plaintext` is None for WithoutPlaintext.
#[derive(Debug)]
pub struct DataKeyOutput {
    /// The encrypted data key.
    pub ciphertext_blob: Vec<u8>,
    /// The data key itself.
    pub plaintext: Option<Plaintext>,
    /// The KMS key.
    pub key_arn: KeyArn,
}

fn data_key_len(input: &DataKeyInput) -> Result<usize, KmsError> {
    match (input.number_of_bytes, input.key_spec.as_str()) {
        (Some(_), s) if !s.is_empty() => Err(KmsError::validation(
            "specify either NumberOfBytes or KeySpec, not both",
        )),
        (Some(n), _) => validate::count("NumberOfBytes", n, 1, 1024),
        (None, "AES_256") => Ok(32),
        (None, "AES_128") => Ok(16),
        (None, "") => Err(KmsError::validation(
            "specify either NumberOfBytes or KeySpec",
        )),
        (None, _) => Err(KmsError::validation("KeySpec must be AES_256 or AES_128")),
    }
}

impl Vault {
    /// GenerateDataKey (with_plaintext) or GenerateDataKeyWithoutPlaintext.
    pub async fn generate_data_key(
        &self,
        caller: &Caller,
        input: DataKeyInput,
        with_plaintext: bool,
    ) -> Result<DataKeyOutput, KmsError> {
        let len = data_key_len(&input)?;
        self.check_grant_tokens(&input.grant_tokens)?;
        let action = if with_plaintext {
            Action::GENERATE_DATA_KEY
        } else {
            Action::GENERATE_DATA_KEY_WITHOUT_PLAINTEXT
        };
        let key = self.resolve(caller, &input.key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(
            caller,
            Authz::key(action, &key)
                .requested_as(&input.key_id)
                .with_context(&input.context)
                // AWS sets it for GenerateDataKey*: the algorithm that encrypts the data
                // key under the KMS key.
                .with("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT"),
        )
        .await?;
        key.check_usable(&arn)?;
        key.check_symmetric_encryption(&arn)?;
        let (data_key, ciphertext_blob) = self.seal_new_data_key(&key, &input.context, len).await?;
        Ok(DataKeyOutput {
            ciphertext_blob,
            plaintext: with_plaintext.then_some(data_key),
            key_arn: arn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(n: Option<i32>, spec: &str) -> DataKeyInput {
        DataKeyInput {
            key_id: String::new(),
            context: EncryptionContext::default(),
            number_of_bytes: n,
            key_spec: spec.into(),
            grant_tokens: vec![],
        }
    }

    #[test]
    fn exactly_one_of_number_of_bytes_and_key_spec() {
        assert_eq!(data_key_len(&input(None, "AES_256")).unwrap(), 32);
        assert_eq!(data_key_len(&input(None, "AES_128")).unwrap(), 16);
        assert_eq!(data_key_len(&input(Some(1024), "")).unwrap(), 1024);
        assert!(data_key_len(&input(Some(32), "AES_256")).is_err());
        assert!(data_key_len(&input(None, "")).is_err());
        assert!(data_key_len(&input(Some(0), "")).is_err());
        assert!(data_key_len(&input(Some(1025), "")).is_err());
        assert!(data_key_len(&input(None, "AES_512")).is_err());
    }
}
