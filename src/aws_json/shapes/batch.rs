//! The batch calls, beyond AWS (BatchEncrypt, BatchDecrypt): `Items` holds requests of
//! exactly Encrypt's or Decrypt's shape, and `Results` holds, for each item in order,
//! the single call's answer or the error it would have failed with.

use serde::{Deserialize, Serialize};

use super::{DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse};

/// BatchEncrypt.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct BatchEncryptRequest {
    pub items: Option<Vec<EncryptRequest>>,
}

/// BatchDecrypt.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct BatchDecryptRequest {
    pub items: Option<Vec<DecryptRequest>>,
}

/// A batch call's answer: BatchEncrypt's with `EncryptResponse`, BatchDecrypt's with
/// `DecryptResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::aws_json) struct BatchResponse<T> {
    pub results: Vec<BatchResult<T>>,
}

/// One item's result: the single call's answer, or its error's name and message as a
/// single call's error answer carries them (`__type`, `message`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(in crate::aws_json) enum BatchResult<T> {
    Ok(T),
    #[serde(rename_all = "PascalCase")]
    Error {
        error_code: &'static str,
        error_message: String,
    },
}

/// BatchEncrypt's answer.
pub(in crate::aws_json) type BatchEncryptResponse = BatchResponse<EncryptResponse>;

/// BatchDecrypt's answer.
pub(in crate::aws_json) type BatchDecryptResponse = BatchResponse<DecryptResponse>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_the_answer_or_the_error_by_name() {
        let r = BatchEncryptResponse {
            results: vec![
                BatchResult::Ok(EncryptResponse {
                    ciphertext_blob: vec![1, 2, 3],
                    key_id: "arn:k".into(),
                    encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
                }),
                BatchResult::Error {
                    error_code: "NotFoundException",
                    error_message: "no such key".into(),
                },
            ],
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"Results": [
                {"CiphertextBlob": "AQID", "KeyId": "arn:k", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"},
                {"ErrorCode": "NotFoundException", "ErrorMessage": "no such key"},
            ]})
        );
    }

    #[test]
    fn items_have_the_single_calls_members() {
        let b: BatchDecryptRequest = serde_json::from_str(
            r#"{"Items": [{"CiphertextBlob": "AQID", "KeyId": "alias/x",
                "EncryptionContext": {"a": "b"}, "GrantTokens": ["t"],
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}]}"#,
        )
        .unwrap();
        let items = b.items.unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].key_id.as_deref(), Some("alias/x"));
        assert_eq!(items[0].ciphertext_blob.as_ref().unwrap().0, vec![1, 2, 3]);
    }
}
