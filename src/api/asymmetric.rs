//! The gRPC handlers of the asymmetric and HMAC calls: wire request → the vault's
//! input, the vault's output → wire answer, as the AWS JSON calls do it.

use std::mem::take;

use tonic::{Request, Response, Status};

use super::convert::context;
use super::service::KmsService;
use crate::domain::Plaintext;
use crate::proto;
use crate::vault::{DataKeyPairInput, DeriveSharedSecretInput, MacInput, SignInput};

fn owned(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(str::to_owned).collect()
}

impl KmsService {
    /// Sign.
    pub(super) async fn serve_sign(
        &self,
        req: Request<proto::SignRequest>,
    ) -> Result<Response<proto::SignResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("Sign", key_id, req, |caller, m| async move {
            let input = SignInput {
                key_id: m.key_id,
                message: m.message,
                message_type: m.message_type,
                signing_algorithm: m.signing_algorithm,
                grant_tokens: m.grant_tokens,
            };
            let out = self.vault.sign(&caller, input).await?;
            Ok(proto::SignResponse {
                key_id: out.key_arn.to_string(),
                signature: out.signature,
                signing_algorithm: out.signing_algorithm.as_str().into(),
            })
        })
        .await
    }

    /// Verify.
    pub(super) async fn serve_verify(
        &self,
        req: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("Verify", key_id, req, |caller, m| async move {
            let input = SignInput {
                key_id: m.key_id,
                message: m.message,
                message_type: m.message_type,
                signing_algorithm: m.signing_algorithm,
                grant_tokens: m.grant_tokens,
            };
            let out = self.vault.verify(&caller, input, m.signature).await?;
            Ok(proto::VerifyResponse {
                key_id: out.key_arn.to_string(),
                signature_valid: true,
                signing_algorithm: out.signing_algorithm.as_str().into(),
            })
        })
        .await
    }

    /// GetPublicKey.
    pub(super) async fn serve_get_public_key(
        &self,
        req: Request<proto::GetPublicKeyRequest>,
    ) -> Result<Response<proto::GetPublicKeyResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("GetPublicKey", key_id, req, |caller, m| async move {
            let out = self
                .vault
                .get_public_key(&caller, &m.key_id, &m.grant_tokens)
                .await?;
            Ok(proto::GetPublicKeyResponse {
                key_id: out.key_arn.to_string(),
                public_key: out.public_key,
                key_spec: out.key_spec.as_str().into(),
                key_usage: out.key_usage.as_str().into(),
                encryption_algorithms: owned(out.encryption_algorithms),
                signing_algorithms: owned(out.signing_algorithms),
                key_agreement_algorithms: owned(out.key_agreement_algorithms),
            })
        })
        .await
    }

    /// GenerateMac.
    pub(super) async fn serve_generate_mac(
        &self,
        req: Request<proto::GenerateMacRequest>,
    ) -> Result<Response<proto::GenerateMacResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("GenerateMac", key_id, req, |caller, mut m| async move {
            let input = MacInput {
                key_id: take(&mut m.key_id),
                message: Plaintext::new(take(&mut m.message)),
                mac_algorithm: take(&mut m.mac_algorithm),
                grant_tokens: take(&mut m.grant_tokens),
            };
            let out = self.vault.generate_mac(&caller, input).await?;
            Ok(proto::GenerateMacResponse {
                mac: out.mac,
                mac_algorithm: out.mac_algorithm.as_str().into(),
                key_id: out.key_arn.to_string(),
            })
        })
        .await
    }

    /// VerifyMac.
    pub(super) async fn serve_verify_mac(
        &self,
        req: Request<proto::VerifyMacRequest>,
    ) -> Result<Response<proto::VerifyMacResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("VerifyMac", key_id, req, |caller, mut m| async move {
            let input = MacInput {
                key_id: take(&mut m.key_id),
                message: Plaintext::new(take(&mut m.message)),
                mac_algorithm: take(&mut m.mac_algorithm),
                grant_tokens: take(&mut m.grant_tokens),
            };
            let out = self
                .vault
                .verify_mac(&caller, input, take(&mut m.mac))
                .await?;
            Ok(proto::VerifyMacResponse {
                key_id: out.key_arn.to_string(),
                mac_valid: true,
                mac_algorithm: out.mac_algorithm.as_str().into(),
            })
        })
        .await
    }

    /// DeriveSharedSecret.
    pub(super) async fn serve_derive_shared_secret(
        &self,
        req: Request<proto::DeriveSharedSecretRequest>,
    ) -> Result<Response<proto::DeriveSharedSecretResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("DeriveSharedSecret", key_id, req, |caller, m| async move {
            let input = DeriveSharedSecretInput {
                key_id: m.key_id,
                key_agreement_algorithm: m.key_agreement_algorithm,
                public_key: m.public_key,
                grant_tokens: m.grant_tokens,
            };
            let out = self.vault.derive_shared_secret(&caller, input).await?;
            Ok(proto::DeriveSharedSecretResponse {
                key_id: out.key_arn.to_string(),
                // Wiped when the answer is dropped (src/proto/redact.rs).
                shared_secret: out.shared_secret.into_exposed_vec(),
                key_agreement_algorithm: "ECDH".into(),
                key_origin: out.key_origin.as_str().into(),
            })
        })
        .await
    }

    /// GenerateDataKeyPair.
    pub(super) async fn serve_generate_data_key_pair(
        &self,
        req: Request<proto::GenerateDataKeyPairRequest>,
    ) -> Result<Response<proto::GenerateDataKeyPairResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("GenerateDataKeyPair", key_id, req, |caller, m| async move {
            let input = DataKeyPairInput {
                key_id: m.key_id,
                context: context("EncryptionContext", m.encryption_context)?,
                key_pair_spec: m.key_pair_spec,
                grant_tokens: m.grant_tokens,
            };
            let out = self
                .vault
                .generate_data_key_pair(&caller, input, true)
                .await?;
            Ok(proto::GenerateDataKeyPairResponse {
                private_key_ciphertext_blob: out.private_key_ciphertext_blob,
                // Wiped when the answer is dropped (src/proto/redact.rs).
                private_key_plaintext: out
                    .private_key_plaintext
                    .map(Plaintext::into_exposed_vec)
                    .unwrap_or_default(),
                public_key: out.public_key,
                key_id: out.key_arn.to_string(),
                key_pair_spec: out.key_pair_spec.into(),
            })
        })
        .await
    }

    /// GenerateDataKeyPairWithoutPlaintext.
    pub(super) async fn serve_generate_data_key_pair_without_plaintext(
        &self,
        req: Request<proto::GenerateDataKeyPairWithoutPlaintextRequest>,
    ) -> Result<Response<proto::GenerateDataKeyPairWithoutPlaintextResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle(
            "GenerateDataKeyPairWithoutPlaintext",
            key_id,
            req,
            |caller, m| async move {
                let input = DataKeyPairInput {
                    key_id: m.key_id,
                    context: context("EncryptionContext", m.encryption_context)?,
                    key_pair_spec: m.key_pair_spec,
                    grant_tokens: m.grant_tokens,
                };
                let out = self
                    .vault
                    .generate_data_key_pair(&caller, input, false)
                    .await?;
                Ok(proto::GenerateDataKeyPairWithoutPlaintextResponse {
                    private_key_ciphertext_blob: out.private_key_ciphertext_blob,
                    public_key: out.public_key,
                    key_id: out.key_arn.to_string(),
                    key_pair_spec: out.key_pair_spec.into(),
                })
            },
        )
        .await
    }
}
