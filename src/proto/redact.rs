//! Debug without secrets, and Drop that wipes, for the messages that carry plaintext or
//! data keys. build.rs turns off the derived Debug for exactly these types.

use std::fmt;

use zeroize::Zeroize;

use super::generated::{
    AccessKey, DecryptResponse, DeriveSharedSecretResponse, EncryptRequest,
    GenerateDataKeyPairResponse, GenerateDataKeyResponse, GenerateMacRequest,
    GenerateRandomResponse, VerifyMacRequest,
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

impl fmt::Debug for GenerateMacRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateMacRequest")
            .field(
                "Message",
                &format_args!("<{} bytes redacted>", self.message.len()),
            )
            .field("KeyId", &self.key_id)
            .field("MacAlgorithm", &self.mac_algorithm)
            .field("GrantTokens", &self.grant_tokens.len())
            .finish()
    }
}

impl fmt::Debug for VerifyMacRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyMacRequest")
            .field(
                "Message",
                &format_args!("<{} bytes redacted>", self.message.len()),
            )
            .field("KeyId", &self.key_id)
            .field("MacAlgorithm", &self.mac_algorithm)
            .field("Mac", &format_args!("<{} bytes>", self.mac.len()))
            .field("GrantTokens", &self.grant_tokens.len())
            .finish()
    }
}

impl fmt::Debug for DeriveSharedSecretResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeriveSharedSecretResponse")
            .field("KeyId", &self.key_id)
            .field(
                "SharedSecret",
                &format_args!("<{} bytes redacted>", self.shared_secret.len()),
            )
            .field("KeyAgreementAlgorithm", &self.key_agreement_algorithm)
            .field("KeyOrigin", &self.key_origin)
            .finish()
    }
}

impl fmt::Debug for GenerateDataKeyPairResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateDataKeyPairResponse")
            .field(
                "PrivateKeyCiphertextBlob",
                &format_args!("<{} bytes>", self.private_key_ciphertext_blob.len()),
            )
            .field(
                "PrivateKeyPlaintext",
                &format_args!("<{} bytes redacted>", self.private_key_plaintext.len()),
            )
            .field(
                "PublicKey",
                &format_args!("<{} bytes>", self.public_key.len()),
            )
            .field("KeyId", &self.key_id)
            .field("KeyPairSpec", &self.key_pair_spec)
            .finish()
    }
}

/// The secret field of each message, wiped when the message goes.
macro_rules! wipe_field_on_drop {
    ($($t:ty => $field:ident),+) => {$(
        impl Drop for $t {
            fn drop(&mut self) {
                self.$field.zeroize();
            }
        }
    )+};
}

wipe_field_on_drop!(
    GenerateMacRequest => message,
    VerifyMacRequest => message,
    DeriveSharedSecretResponse => shared_secret,
    GenerateDataKeyPairResponse => private_key_plaintext
);

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
        let mut mac = GenerateMacRequest::default();
        mac.message = marker.clone();
        let mut vmac = VerifyMacRequest::default();
        vmac.message = marker.clone();
        let mut shared = DeriveSharedSecretResponse::default();
        shared.shared_secret = marker.clone();
        let mut pair = GenerateDataKeyPairResponse::default();
        pair.private_key_plaintext = marker.clone();
        for s in [
            format!("{mac:?}"),
            format!("{vmac:?}"),
            format!("{shared:?}"),
            format!("{pair:?}"),
        ] {
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
