//! Debug without secrets, and Drop that wipes, for the messages that carry plaintext or
//! data keys. build.rs turns off the derived Debug for exactly these types.

use std::fmt;

use zeroize::Zeroize;

use super::generated::{
    AccessKey, DecryptResponse, EncryptRequest, GenerateDataKeyResponse, GenerateRandomResponse,
};

impl fmt::Debug for EncryptRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptRequest")
            .field("KeyId", &self.key_id)
            .field(
                "Plaintext",
                &format_args!("<{} bytes redacted>", self.plaintext.len()),
            )
            .field("EncryptionContext", &self.encryption_context)
            .field("GrantTokens", &self.grant_tokens.len())
            .field("EncryptionAlgorithm", &self.encryption_algorithm)
            .finish()
    }
}

impl fmt::Debug for DecryptResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptResponse")
            .field("KeyId", &self.key_id)
            .field(
                "Plaintext",
                &format_args!("<{} bytes redacted>", self.plaintext.len()),
            )
            .field("EncryptionAlgorithm", &self.encryption_algorithm)
            .finish()
    }
}

impl fmt::Debug for GenerateDataKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateDataKeyResponse")
            .field(
                "CiphertextBlob",
                &format_args!("<{} bytes>", self.ciphertext_blob.len()),
            )
            .field(
                "Plaintext",
                &format_args!("<{} bytes redacted>", self.plaintext.len()),
            )
            .field("KeyId", &self.key_id)
            .finish()
    }
}

impl fmt::Debug for GenerateRandomResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateRandomResponse")
            .field(
                "Plaintext",
                &format_args!("<{} bytes redacted>", self.plaintext.len()),
            )
            .finish()
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("UserName", &self.user_name)
            .field("AccessKeyId", &self.access_key_id)
            .field("Status", &self.status)
            .field(
                "SecretAccessKey",
                &format_args!("<{} characters redacted>", self.secret_access_key.len()),
            )
            .field("CreateDate", &self.create_date)
            .field("PrincipalArn", &self.principal_arn)
            .finish()
    }
}

impl Drop for AccessKey {
    fn drop(&mut self) {
        self.secret_access_key.zeroize();
    }
}

macro_rules! wipe_on_drop {
    ($($t:ty),+) => {$(
        impl Drop for $t {
            fn drop(&mut self) {
                self.plaintext.zeroize();
            }
        }
    )+};
}

wipe_on_drop!(
    EncryptRequest,
    DecryptResponse,
    GenerateDataKeyResponse,
    GenerateRandomResponse
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_secret_carrying_messages_hides_the_bytes() {
        let marker = b"TOP-SECRET-MARKER".to_vec();
        let mut e = EncryptRequest::default();
        e.plaintext = marker.clone();
        let mut d = DecryptResponse::default();
        d.plaintext = marker.clone();
        let mut g = GenerateDataKeyResponse::default();
        g.plaintext = marker.clone();
        let shown = [
            format!("{e:?}"),
            format!("{d:?}"),
            format!("{g:?}"),
            format!(
                "{:?}",
                GenerateRandomResponse {
                    plaintext: marker.clone()
                }
            ),
        ];
        // The batch messages hold the same messages, so they show them redacted too.
        let batch_in = super::super::generated::BatchEncryptRequest {
            items: vec![e.clone()],
        };
        let batch_out = super::super::generated::BatchDecryptResponse {
            results: vec![super::super::generated::BatchDecryptResult {
                outcome: Some(
                    super::super::generated::batch_decrypt_result::Outcome::Response(d.clone()),
                ),
            }],
        };
        let shown_batches = [format!("{batch_in:?}"), format!("{batch_out:?}")];
        for s in shown_batches {
            assert!(!s.contains("TOP-SECRET"), "{s}");
            assert!(!s.contains("84, 79, 80"), "{s}");
            assert!(s.contains("17 bytes redacted"), "{s}");
        }
        let mut k = AccessKey::default();
        k.secret_access_key = "TOP-SECRET-MARKER".into();
        let shown_key = format!("{k:?}");
        assert!(!shown_key.contains("TOP-SECRET"), "{shown_key}");
        assert!(shown_key.contains("17 characters redacted"), "{shown_key}");
        for s in shown {
            assert!(!s.contains("TOP-SECRET"), "{s}");
            assert!(!s.contains("84, 79, 80"), "{s}"); // "TOP" as a byte list
            assert!(s.contains("17 bytes redacted"), "{s}");
        }
    }
}
