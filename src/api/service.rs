//! The gRPC handlers: wire → domain, one vault call through the request path
//! (`Vault::run`), domain → wire.

use std::future::Future;
use std::mem;
use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::convert::{self, context, grant_constraints, grant_page, key_metadata};
use super::status::to_status;
use super::tls::Peer;
use super::{ON_BEHALF_OF_HEADER, REQUEST_ID_HEADER};
use crate::domain::Plaintext;
use crate::proto::{self, key_management_service_server::KeyManagementService};
use crate::vault::{
    Caller, CreateAccessKeyInput, CreateGrantInput, CreateKeyInput, DataKeyInput, DecryptInput,
    DeleteAccessKeyInput, EncryptInput, KmsError, ListAccessKeysInput, ListAliasesInput,
    ListGrantsInput, ListKeyPoliciesInput, ListKeysInput, ListRetirableGrantsInput, ReEncryptInput,
    RequestInfo, Transport, Vault, DEFAULT_POLICY_NAME,
};

/// The tonic service over a vault.
pub(super) struct KmsService {
    pub(super) vault: Arc<Vault>,
}

impl KmsService {
    pub(super) fn new(vault: Arc<Vault>) -> Self {
        Self { vault }
    }

    /// Runs one request through the vault's request path (`Vault::run`) and turns the
    /// result into a response or a status; both carry the request id.
    pub(super) async fn handle<T, R, F, Fut>(
        &self,
        operation: &'static str,
        key_id: String,
        req: Request<T>,
        f: F,
    ) -> Result<Response<R>, Status>
    where
        F: FnOnce(Caller, T) -> Fut,
        Fut: Future<Output = Result<R, KmsError>>,
    {
        let presented = Presented::of(&req);
        let message = req.into_inner();
        let info = RequestInfo {
            operation,
            transport: Transport::Grpc,
            key_id,
            source_ip: presented.peer.as_ref().map(|p| p.addr.ip()),
        };
        let (result, outcome) = self
            .vault
            .run(info, async { presented.caller(&self.vault) }, |caller| {
                f(caller, message)
            })
            .await;
        answer(result, &outcome.request_id)
    }

    /// Encrypt, from the wire request to the wire answer (also each BatchEncrypt item).
    pub(super) async fn encrypt_one(
        &self,
        caller: Caller,
        mut m: proto::EncryptRequest,
    ) -> Result<proto::EncryptResponse, KmsError> {
        let input = EncryptInput {
            key_id: mem::take(&mut m.key_id),
            plaintext: Plaintext::new(mem::take(&mut m.plaintext)),
            context: context("EncryptionContext", mem::take(&mut m.encryption_context))?,
            grant_tokens: mem::take(&mut m.grant_tokens),
            algorithm: mem::take(&mut m.encryption_algorithm),
        };
        let out = self.vault.encrypt(&caller, input).await?;
        Ok(proto::EncryptResponse {
            ciphertext_blob: out.ciphertext_blob,
            key_id: out.key_arn.to_string(),
            encryption_algorithm: out.encryption_algorithm.into(),
        })
    }

    /// Decrypt, from the wire request to the wire answer (also each BatchDecrypt item).
    pub(super) async fn decrypt_one(
        &self,
        caller: Caller,
        m: proto::DecryptRequest,
    ) -> Result<proto::DecryptResponse, KmsError> {
        let input = DecryptInput {
            ciphertext_blob: m.ciphertext_blob,
            context: context("EncryptionContext", m.encryption_context)?,
            grant_tokens: m.grant_tokens,
            key_id: m.key_id,
            algorithm: m.encryption_algorithm,
        };
        let out = self.vault.decrypt(&caller, input).await?;
        Ok(proto::DecryptResponse {
            key_id: out.key_arn.to_string(),
            encryption_algorithm: out.encryption_algorithm.into(),
            plaintext: out.plaintext.into_exposed_vec(),
        })
    }
}

/// A result as the response or the status, both carrying the request id.
pub(super) fn answer<R>(
    result: Result<R, KmsError>,
    request_id: &str,
) -> Result<Response<R>, Status> {
    let rid = MetadataValue::try_from(request_id).ok();
    match result {
        Ok(r) => {
            let mut resp = Response::new(r);
            if let Some(rid) = rid {
                resp.metadata_mut().insert(REQUEST_ID_HEADER, rid);
            }
            Ok(resp)
        }
        Err(e) => {
            let mut st = to_status(&e);
            if let Some(rid) = rid {
                st.metadata_mut().insert(REQUEST_ID_HEADER, rid);
            }
            Err(st)
        }
    }
}

/// What the connection and the request's metadata say about the caller.
pub(super) struct Presented {
    pub(super) peer: Option<Arc<Peer>>,
    on_behalf_of: Option<Result<String, ()>>,
}

impl Presented {
    pub(super) fn of<T>(req: &Request<T>) -> Self {
        Self {
            peer: req.extensions().get::<Arc<Peer>>().cloned(),
            on_behalf_of: req
                .metadata()
                .get(ON_BEHALF_OF_HEADER)
                .map(|v| v.to_str().map(str::to_owned).map_err(|_| ())),
        }
    }

    pub(super) fn caller(&self, vault: &Vault) -> Result<Caller, KmsError> {
        let peer = self.peer.as_ref().ok_or_else(|| {
            KmsError::UnrecognizedClient("the connection carries no client certificate".into())
        })?;
        let principal = peer
            .principal
            .clone()
            .map_err(|e| KmsError::UnrecognizedClient(e.to_string()))?;
        let on_behalf_of = match &self.on_behalf_of {
            None => None,
            Some(Ok(v)) => Some(v.as_str()),
            Some(Err(())) => {
                return Err(KmsError::validation(format!(
                    "{ON_BEHALF_OF_HEADER} must be a principal ARN"
                )))
            }
        };
        vault.caller(principal, on_behalf_of, Some(peer.addr.ip()))
    }
}

#[tonic::async_trait]
impl KeyManagementService for KmsService {
    async fn create_key(
        &self,
        req: Request<proto::CreateKeyRequest>,
    ) -> Result<Response<proto::CreateKeyResponse>, Status> {
        self.handle("CreateKey", String::new(), req, |caller, m| async move {
            let input = CreateKeyInput {
                description: m.description,
                key_usage: m.key_usage,
                key_spec: m.key_spec,
                origin: m.origin,
                policy: m.policy,
                bypass_policy_lockout_safety_check: m.bypass_policy_lockout_safety_check,
            };
            let meta = self.vault.create_key(&caller, input).await?;
            Ok(proto::CreateKeyResponse {
                key_metadata: Some(key_metadata(meta)),
            })
        })
        .await
    }

    async fn describe_key(
        &self,
        req: Request<proto::DescribeKeyRequest>,
    ) -> Result<Response<proto::DescribeKeyResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("DescribeKey", key_id, req, |caller, m| async move {
            let meta = self
                .vault
                .describe_key(&caller, &m.key_id, &m.grant_tokens)
                .await?;
            Ok(proto::DescribeKeyResponse {
                key_metadata: Some(key_metadata(meta)),
            })
        })
        .await
    }

    async fn list_keys(
        &self,
        req: Request<proto::ListKeysRequest>,
    ) -> Result<Response<proto::ListKeysResponse>, Status> {
        self.handle("ListKeys", String::new(), req, |caller, m| async move {
            let out = self
                .vault
                .list_keys(
                    &caller,
                    ListKeysInput {
                        limit: m.limit,
                        marker: m.marker,
                    },
                )
                .await?;
            Ok(proto::ListKeysResponse {
                keys: out
                    .keys
                    .into_iter()
                    .map(|(id, arn)| proto::KeyListEntry {
                        key_id: id.to_string(),
                        key_arn: arn.to_string(),
                    })
                    .collect(),
                truncated: out.next_marker.is_some(),
                next_marker: out.next_marker.unwrap_or_default(),
            })
        })
        .await
    }

    async fn encrypt(
        &self,
        req: Request<proto::EncryptRequest>,
    ) -> Result<Response<proto::EncryptResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("Encrypt", key_id, req, |caller, m| {
            self.encrypt_one(caller, m)
        })
        .await
    }

    async fn decrypt(
        &self,
        req: Request<proto::DecryptRequest>,
    ) -> Result<Response<proto::DecryptResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("Decrypt", key_id, req, |caller, m| {
            self.decrypt_one(caller, m)
        })
        .await
    }

    async fn sign(
        &self,
        req: Request<proto::SignRequest>,
    ) -> Result<Response<proto::SignResponse>, Status> {
        self.serve_sign(req).await
    }

    async fn verify(
        &self,
        req: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        self.serve_verify(req).await
    }

    async fn get_public_key(
        &self,
        req: Request<proto::GetPublicKeyRequest>,
    ) -> Result<Response<proto::GetPublicKeyResponse>, Status> {
        self.serve_get_public_key(req).await
    }

    async fn generate_mac(
        &self,
        req: Request<proto::GenerateMacRequest>,
    ) -> Result<Response<proto::GenerateMacResponse>, Status> {
        self.serve_generate_mac(req).await
    }

    async fn verify_mac(
        &self,
        req: Request<proto::VerifyMacRequest>,
    ) -> Result<Response<proto::VerifyMacResponse>, Status> {
        self.serve_verify_mac(req).await
    }

    async fn derive_shared_secret(
        &self,
        req: Request<proto::DeriveSharedSecretRequest>,
    ) -> Result<Response<proto::DeriveSharedSecretResponse>, Status> {
        self.serve_derive_shared_secret(req).await
    }

    async fn get_parameters_for_import(
        &self,
        req: Request<proto::GetParametersForImportRequest>,
    ) -> Result<Response<proto::GetParametersForImportResponse>, Status> {
        self.serve_get_parameters_for_import(req).await
    }

    async fn import_key_material(
        &self,
        req: Request<proto::ImportKeyMaterialRequest>,
    ) -> Result<Response<proto::ImportKeyMaterialResponse>, Status> {
        self.serve_import_key_material(req).await
    }

    async fn delete_imported_key_material(
        &self,
        req: Request<proto::DeleteImportedKeyMaterialRequest>,
    ) -> Result<Response<proto::DeleteImportedKeyMaterialResponse>, Status> {
        self.serve_delete_imported_key_material(req).await
    }

    async fn generate_data_key_pair(
        &self,
        req: Request<proto::GenerateDataKeyPairRequest>,
    ) -> Result<Response<proto::GenerateDataKeyPairResponse>, Status> {
        self.serve_generate_data_key_pair(req).await
    }

    async fn generate_data_key_pair_without_plaintext(
        &self,
        req: Request<proto::GenerateDataKeyPairWithoutPlaintextRequest>,
    ) -> Result<Response<proto::GenerateDataKeyPairWithoutPlaintextResponse>, Status> {
        self.serve_generate_data_key_pair_without_plaintext(req)
            .await
    }

    async fn batch_encrypt(
        &self,
        req: Request<proto::BatchEncryptRequest>,
    ) -> Result<Response<proto::BatchEncryptResponse>, Status> {
        self.serve_batch_encrypt(req).await
    }

    async fn batch_decrypt(
        &self,
        req: Request<proto::BatchDecryptRequest>,
    ) -> Result<Response<proto::BatchDecryptResponse>, Status> {
        self.serve_batch_decrypt(req).await
    }

    async fn generate_data_key(
        &self,
        req: Request<proto::GenerateDataKeyRequest>,
    ) -> Result<Response<proto::GenerateDataKeyResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("GenerateDataKey", key_id, req, |caller, m| async move {
            let input = DataKeyInput {
                key_id: m.key_id,
                context: context("EncryptionContext", m.encryption_context)?,
                number_of_bytes: m.number_of_bytes,
                key_spec: m.key_spec,
                grant_tokens: m.grant_tokens,
            };
            let out = self.vault.generate_data_key(&caller, input, true).await?;
            Ok(proto::GenerateDataKeyResponse {
                ciphertext_blob: out.ciphertext_blob,
                plaintext: out
                    .plaintext
                    .map(Plaintext::into_exposed_vec)
                    .unwrap_or_default(),
                key_id: out.key_arn.to_string(),
            })
        })
        .await
    }

    async fn generate_data_key_without_plaintext(
        &self,
        req: Request<proto::GenerateDataKeyWithoutPlaintextRequest>,
    ) -> Result<Response<proto::GenerateDataKeyWithoutPlaintextResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle(
            "GenerateDataKeyWithoutPlaintext",
            key_id,
            req,
            |caller, m| async move {
                let input = DataKeyInput {
                    key_id: m.key_id,
                    context: context("EncryptionContext", m.encryption_context)?,
                    number_of_bytes: m.number_of_bytes,
                    key_spec: m.key_spec,
                    grant_tokens: m.grant_tokens,
                };
                let out = self.vault.generate_data_key(&caller, input, false).await?;
                Ok(proto::GenerateDataKeyWithoutPlaintextResponse {
                    ciphertext_blob: out.ciphertext_blob,
                    key_id: out.key_arn.to_string(),
                })
            },
        )
        .await
    }

    async fn re_encrypt(
        &self,
        req: Request<proto::ReEncryptRequest>,
    ) -> Result<Response<proto::ReEncryptResponse>, Status> {
        let key_id = req.get_ref().destination_key_id.clone();
        self.handle("ReEncrypt", key_id, req, |caller, m| async move {
            let input = ReEncryptInput {
                ciphertext_blob: m.ciphertext_blob,
                source_context: context("SourceEncryptionContext", m.source_encryption_context)?,
                source_key_id: m.source_key_id,
                destination_key_id: m.destination_key_id,
                destination_context: context(
                    "DestinationEncryptionContext",
                    m.destination_encryption_context,
                )?,
                source_algorithm: m.source_encryption_algorithm,
                destination_algorithm: m.destination_encryption_algorithm,
                grant_tokens: m.grant_tokens,
            };
            let out = self.vault.re_encrypt(&caller, input).await?;
            Ok(proto::ReEncryptResponse {
                ciphertext_blob: out.ciphertext_blob,
                source_key_id: out.source_key_arn.to_string(),
                key_id: out.key_arn.to_string(),
                source_encryption_algorithm: out.source_algorithm.into(),
                destination_encryption_algorithm: out.destination_algorithm.into(),
            })
        })
        .await
    }

    async fn generate_random(
        &self,
        req: Request<proto::GenerateRandomRequest>,
    ) -> Result<Response<proto::GenerateRandomResponse>, Status> {
        self.handle(
            "GenerateRandom",
            String::new(),
            req,
            |caller, m| async move {
                let bytes = self
                    .vault
                    .generate_random(&caller, m.number_of_bytes)
                    .await?;
                Ok(proto::GenerateRandomResponse {
                    plaintext: bytes.into_exposed_vec(),
                })
            },
        )
        .await
    }

    async fn get_key_policy(
        &self,
        req: Request<proto::GetKeyPolicyRequest>,
    ) -> Result<Response<proto::GetKeyPolicyResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("GetKeyPolicy", key_id, req, |caller, m| async move {
            let policy = self
                .vault
                .get_key_policy(&caller, &m.key_id, &m.policy_name)
                .await?;
            Ok(proto::GetKeyPolicyResponse {
                policy,
                policy_name: DEFAULT_POLICY_NAME.into(),
            })
        })
        .await
    }

    async fn put_key_policy(
        &self,
        req: Request<proto::PutKeyPolicyRequest>,
    ) -> Result<Response<proto::PutKeyPolicyResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("PutKeyPolicy", key_id, req, |caller, m| async move {
            self.vault
                .put_key_policy(
                    &caller,
                    &m.key_id,
                    &m.policy_name,
                    m.policy,
                    m.bypass_policy_lockout_safety_check,
                )
                .await?;
            Ok(proto::PutKeyPolicyResponse {})
        })
        .await
    }

    async fn list_key_policies(
        &self,
        req: Request<proto::ListKeyPoliciesRequest>,
    ) -> Result<Response<proto::ListKeyPoliciesResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("ListKeyPolicies", key_id, req, |caller, m| async move {
            let page = self
                .vault
                .list_key_policies(
                    &caller,
                    ListKeyPoliciesInput {
                        key_id: m.key_id,
                        limit: m.limit,
                        marker: m.marker,
                    },
                )
                .await?;
            Ok(proto::ListKeyPoliciesResponse {
                policy_names: page.policy_names,
                truncated: page.next_marker.is_some(),
                next_marker: page.next_marker.unwrap_or_default(),
            })
        })
        .await
    }

    async fn put_principal_policy(
        &self,
        req: Request<proto::PutPrincipalPolicyRequest>,
    ) -> Result<Response<proto::PutPrincipalPolicyResponse>, Status> {
        self.handle(
            "PutPrincipalPolicy",
            String::new(),
            req,
            |caller, m| async move {
                self.vault
                    .put_principal_policy(
                        &caller,
                        &m.principal_arn,
                        &m.policy_name,
                        m.policy_document,
                    )
                    .await?;
                Ok(proto::PutPrincipalPolicyResponse {})
            },
        )
        .await
    }

    async fn get_principal_policy(
        &self,
        req: Request<proto::GetPrincipalPolicyRequest>,
    ) -> Result<Response<proto::GetPrincipalPolicyResponse>, Status> {
        self.handle(
            "GetPrincipalPolicy",
            String::new(),
            req,
            |caller, m| async move {
                let doc = self
                    .vault
                    .get_principal_policy(&caller, &m.principal_arn, &m.policy_name)
                    .await?;
                Ok(proto::GetPrincipalPolicyResponse {
                    principal_arn: m.principal_arn,
                    policy_name: m.policy_name,
                    policy_document: doc,
                })
            },
        )
        .await
    }

    async fn list_principal_policies(
        &self,
        req: Request<proto::ListPrincipalPoliciesRequest>,
    ) -> Result<Response<proto::ListPrincipalPoliciesResponse>, Status> {
        self.handle(
            "ListPrincipalPolicies",
            String::new(),
            req,
            |caller, m| async move {
                let policy_names = self
                    .vault
                    .list_principal_policies(&caller, &m.principal_arn)
                    .await?;
                Ok(proto::ListPrincipalPoliciesResponse { policy_names })
            },
        )
        .await
    }

    async fn delete_principal_policy(
        &self,
        req: Request<proto::DeletePrincipalPolicyRequest>,
    ) -> Result<Response<proto::DeletePrincipalPolicyResponse>, Status> {
        self.handle(
            "DeletePrincipalPolicy",
            String::new(),
            req,
            |caller, m| async move {
                self.vault
                    .delete_principal_policy(&caller, &m.principal_arn, &m.policy_name)
                    .await?;
                Ok(proto::DeletePrincipalPolicyResponse {})
            },
        )
        .await
    }

    async fn tag_principal(
        &self,
        req: Request<proto::TagPrincipalRequest>,
    ) -> Result<Response<proto::TagPrincipalResponse>, Status> {
        self.handle("TagPrincipal", String::new(), req, |caller, m| async move {
            let tags = m
                .tags
                .into_iter()
                .map(|t| (t.tag_key, t.tag_value))
                .collect();
            self.vault
                .tag_principal(&caller, &m.principal_arn, tags)
                .await?;
            Ok(proto::TagPrincipalResponse {})
        })
        .await
    }

    async fn untag_principal(
        &self,
        req: Request<proto::UntagPrincipalRequest>,
    ) -> Result<Response<proto::UntagPrincipalResponse>, Status> {
        self.handle(
            "UntagPrincipal",
            String::new(),
            req,
            |caller, m| async move {
                self.vault
                    .untag_principal(&caller, &m.principal_arn, m.tag_keys)
                    .await?;
                Ok(proto::UntagPrincipalResponse {})
            },
        )
        .await
    }

    async fn list_principal_tags(
        &self,
        req: Request<proto::ListPrincipalTagsRequest>,
    ) -> Result<Response<proto::ListPrincipalTagsResponse>, Status> {
        self.handle(
            "ListPrincipalTags",
            String::new(),
            req,
            |caller, m| async move {
                let tags = self
                    .vault
                    .list_principal_tags(&caller, &m.principal_arn)
                    .await?;
                Ok(proto::ListPrincipalTagsResponse {
                    tags: tags
                        .into_iter()
                        .map(|(tag_key, tag_value)| proto::Tag { tag_key, tag_value })
                        .collect(),
                })
            },
        )
        .await
    }

    async fn create_grant(
        &self,
        req: Request<proto::CreateGrantRequest>,
    ) -> Result<Response<proto::CreateGrantResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("CreateGrant", key_id, req, |caller, m| async move {
            let input = CreateGrantInput {
                key_id: m.key_id,
                grantee_principal: m.grantee_principal,
                retiring_principal: m.retiring_principal,
                operations: m.operations,
                constraints: m.constraints.map(grant_constraints),
                grant_tokens: m.grant_tokens,
                name: m.name,
            };
            let (grant_id, grant_token) = self.vault.create_grant(&caller, input).await?;
            Ok(proto::CreateGrantResponse {
                grant_token,
                grant_id,
            })
        })
        .await
    }

    async fn list_grants(
        &self,
        req: Request<proto::ListGrantsRequest>,
    ) -> Result<Response<proto::ListGrantsResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("ListGrants", key_id, req, |caller, m| async move {
            let page = self
                .vault
                .list_grants(
                    &caller,
                    ListGrantsInput {
                        key_id: m.key_id,
                        limit: m.limit,
                        marker: m.marker,
                        grant_id: m.grant_id,
                        grantee_principal: m.grantee_principal,
                    },
                )
                .await?;
            Ok(grant_page(page))
        })
        .await
    }

    async fn list_retirable_grants(
        &self,
        req: Request<proto::ListRetirableGrantsRequest>,
    ) -> Result<Response<proto::ListGrantsResponse>, Status> {
        self.handle(
            "ListRetirableGrants",
            String::new(),
            req,
            |caller, m| async move {
                let page = self
                    .vault
                    .list_retirable_grants(
                        &caller,
                        ListRetirableGrantsInput {
                            retiring_principal: m.retiring_principal,
                            limit: m.limit,
                            marker: m.marker,
                        },
                    )
                    .await?;
                Ok(grant_page(page))
            },
        )
        .await
    }

    async fn retire_grant(
        &self,
        req: Request<proto::RetireGrantRequest>,
    ) -> Result<Response<proto::RetireGrantResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("RetireGrant", key_id, req, |caller, m| async move {
            self.vault
                .retire_grant(&caller, &m.grant_token, &m.key_id, &m.grant_id)
                .await?;
            Ok(proto::RetireGrantResponse {})
        })
        .await
    }

    async fn revoke_grant(
        &self,
        req: Request<proto::RevokeGrantRequest>,
    ) -> Result<Response<proto::RevokeGrantResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("RevokeGrant", key_id, req, |caller, m| async move {
            self.vault
                .revoke_grant(&caller, &m.key_id, &m.grant_id)
                .await?;
            Ok(proto::RevokeGrantResponse {})
        })
        .await
    }

    async fn enable_key(
        &self,
        req: Request<proto::EnableKeyRequest>,
    ) -> Result<Response<proto::EnableKeyResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("EnableKey", key_id, req, |caller, m| async move {
            self.vault.set_enabled(&caller, &m.key_id, true).await?;
            Ok(proto::EnableKeyResponse {})
        })
        .await
    }

    async fn update_key_description(
        &self,
        req: Request<proto::UpdateKeyDescriptionRequest>,
    ) -> Result<Response<proto::UpdateKeyDescriptionResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle(
            "UpdateKeyDescription",
            key_id,
            req,
            |caller, m| async move {
                self.vault
                    .update_key_description(&caller, &m.key_id, &m.description)
                    .await?;
                Ok(proto::UpdateKeyDescriptionResponse {})
            },
        )
        .await
    }

    async fn schedule_key_deletion(
        &self,
        req: Request<proto::ScheduleKeyDeletionRequest>,
    ) -> Result<Response<proto::ScheduleKeyDeletionResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("ScheduleKeyDeletion", key_id, req, |caller, m| async move {
            let out = self
                .vault
                .schedule_key_deletion(&caller, &m.key_id, m.pending_window_in_days)
                .await?;
            Ok(proto::ScheduleKeyDeletionResponse {
                key_id: out.key_arn.to_string(),
                deletion_date: Some(convert::timestamp(out.deletion_date)),
                key_state: out.key_state.as_str().to_owned(),
                pending_window_in_days: out.pending_window_in_days,
            })
        })
        .await
    }

    async fn cancel_key_deletion(
        &self,
        req: Request<proto::CancelKeyDeletionRequest>,
    ) -> Result<Response<proto::CancelKeyDeletionResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("CancelKeyDeletion", key_id, req, |caller, m| async move {
            let arn = self.vault.cancel_key_deletion(&caller, &m.key_id).await?;
            Ok(proto::CancelKeyDeletionResponse {
                key_id: arn.to_string(),
            })
        })
        .await
    }

    async fn enable_key_rotation(
        &self,
        req: Request<proto::EnableKeyRotationRequest>,
    ) -> Result<Response<proto::EnableKeyRotationResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("EnableKeyRotation", key_id, req, |caller, m| async move {
            self.vault
                .enable_key_rotation(&caller, &m.key_id, m.rotation_period_in_days)
                .await?;
            Ok(proto::EnableKeyRotationResponse {})
        })
        .await
    }

    async fn disable_key_rotation(
        &self,
        req: Request<proto::DisableKeyRotationRequest>,
    ) -> Result<Response<proto::DisableKeyRotationResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("DisableKeyRotation", key_id, req, |caller, m| async move {
            self.vault.disable_key_rotation(&caller, &m.key_id).await?;
            Ok(proto::DisableKeyRotationResponse {})
        })
        .await
    }

    async fn get_key_rotation_status(
        &self,
        req: Request<proto::GetKeyRotationStatusRequest>,
    ) -> Result<Response<proto::GetKeyRotationStatusResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle(
            "GetKeyRotationStatus",
            key_id,
            req,
            |caller, m| async move {
                let st = self.vault.key_rotation_status(&caller, &m.key_id).await?;
                Ok(proto::GetKeyRotationStatusResponse {
                    key_rotation_enabled: st.enabled,
                    key_id: st.key_arn.to_string(),
                    rotation_period_in_days: st.period_days.and_then(|d| i32::try_from(d).ok()),
                    next_rotation_date: st.next_rotation.map(convert::timestamp),
                })
            },
        )
        .await
    }

    async fn rotate_key_on_demand(
        &self,
        req: Request<proto::RotateKeyOnDemandRequest>,
    ) -> Result<Response<proto::RotateKeyOnDemandResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("RotateKeyOnDemand", key_id, req, |caller, m| async move {
            let arn = self.vault.rotate_key_on_demand(&caller, &m.key_id).await?;
            Ok(proto::RotateKeyOnDemandResponse {
                key_id: arn.to_string(),
            })
        })
        .await
    }

    async fn list_key_rotations(
        &self,
        req: Request<proto::ListKeyRotationsRequest>,
    ) -> Result<Response<proto::ListKeyRotationsResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("ListKeyRotations", key_id, req, |caller, m| async move {
            let page = self
                .vault
                .list_key_rotations(&caller, &m.key_id, m.limit, &m.marker)
                .await?;
            let arn = page.key_arn.to_string();
            Ok(proto::ListKeyRotationsResponse {
                rotations: page
                    .rotations
                    .into_iter()
                    .map(|r| proto::RotationsListEntry {
                        key_id: arn.clone(),
                        rotation_date: Some(convert::timestamp(r.date)),
                        rotation_type: r.kind.as_str().to_owned(),
                    })
                    .collect(),
                truncated: page.next_marker.is_some(),
                next_marker: page.next_marker.unwrap_or_default(),
            })
        })
        .await
    }

    async fn tag_resource(
        &self,
        req: Request<proto::TagResourceRequest>,
    ) -> Result<Response<proto::TagResourceResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("TagResource", key_id, req, |caller, m| async move {
            let tags = m
                .tags
                .into_iter()
                .map(|t| (t.tag_key, t.tag_value))
                .collect();
            self.vault.tag_resource(&caller, &m.key_id, tags).await?;
            Ok(proto::TagResourceResponse {})
        })
        .await
    }

    async fn untag_resource(
        &self,
        req: Request<proto::UntagResourceRequest>,
    ) -> Result<Response<proto::UntagResourceResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("UntagResource", key_id, req, |caller, m| async move {
            self.vault
                .untag_resource(&caller, &m.key_id, m.tag_keys)
                .await?;
            Ok(proto::UntagResourceResponse {})
        })
        .await
    }

    async fn list_resource_tags(
        &self,
        req: Request<proto::ListResourceTagsRequest>,
    ) -> Result<Response<proto::ListResourceTagsResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("ListResourceTags", key_id, req, |caller, m| async move {
            let page = self
                .vault
                .list_resource_tags(&caller, &m.key_id, m.limit, &m.marker)
                .await?;
            Ok(proto::ListResourceTagsResponse {
                tags: page
                    .tags
                    .into_iter()
                    .map(|(tag_key, tag_value)| proto::Tag { tag_key, tag_value })
                    .collect(),
                truncated: page.next_marker.is_some(),
                next_marker: page.next_marker.unwrap_or_default(),
            })
        })
        .await
    }

    async fn create_alias(
        &self,
        req: Request<proto::CreateAliasRequest>,
    ) -> Result<Response<proto::CreateAliasResponse>, Status> {
        let key_id = req.get_ref().target_key_id.clone();
        self.handle("CreateAlias", key_id, req, |caller, m| async move {
            self.vault
                .create_alias(&caller, &m.alias_name, &m.target_key_id)
                .await?;
            Ok(proto::CreateAliasResponse {})
        })
        .await
    }

    async fn update_alias(
        &self,
        req: Request<proto::UpdateAliasRequest>,
    ) -> Result<Response<proto::UpdateAliasResponse>, Status> {
        let key_id = req.get_ref().target_key_id.clone();
        self.handle("UpdateAlias", key_id, req, |caller, m| async move {
            self.vault
                .update_alias(&caller, &m.alias_name, &m.target_key_id)
                .await?;
            Ok(proto::UpdateAliasResponse {})
        })
        .await
    }

    async fn delete_alias(
        &self,
        req: Request<proto::DeleteAliasRequest>,
    ) -> Result<Response<proto::DeleteAliasResponse>, Status> {
        let name = req.get_ref().alias_name.clone();
        self.handle("DeleteAlias", name, req, |caller, m| async move {
            self.vault.delete_alias(&caller, &m.alias_name).await?;
            Ok(proto::DeleteAliasResponse {})
        })
        .await
    }

    async fn list_aliases(
        &self,
        req: Request<proto::ListAliasesRequest>,
    ) -> Result<Response<proto::ListAliasesResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("ListAliases", key_id, req, |caller, m| async move {
            let out = self
                .vault
                .list_aliases(
                    &caller,
                    ListAliasesInput {
                        key_id: m.key_id,
                        limit: m.limit,
                        marker: m.marker,
                    },
                )
                .await?;
            Ok(proto::ListAliasesResponse {
                aliases: out.aliases.into_iter().map(convert::alias_entry).collect(),
                truncated: out.next_marker.is_some(),
                next_marker: out.next_marker.unwrap_or_default(),
            })
        })
        .await
    }

    async fn disable_key(
        &self,
        req: Request<proto::DisableKeyRequest>,
    ) -> Result<Response<proto::DisableKeyResponse>, Status> {
        let key_id = req.get_ref().key_id.clone();
        self.handle("DisableKey", key_id, req, |caller, m| async move {
            self.vault.set_enabled(&caller, &m.key_id, false).await?;
            Ok(proto::DisableKeyResponse {})
        })
        .await
    }

    async fn create_access_key(
        &self,
        req: Request<proto::CreateAccessKeyRequest>,
    ) -> Result<Response<proto::CreateAccessKeyResponse>, Status> {
        self.handle(
            "CreateAccessKey",
            String::new(),
            req,
            |caller, m| async move {
                let input = CreateAccessKeyInput {
                    principal: m.principal_arn,
                };
                let key = self.vault.create_access_key(&caller, input).await?;
                Ok(proto::CreateAccessKeyResponse {
                    access_key: Some(convert::access_key(key.metadata, Some(&key.secret))),
                })
            },
        )
        .await
    }

    async fn list_access_keys(
        &self,
        req: Request<proto::ListAccessKeysRequest>,
    ) -> Result<Response<proto::ListAccessKeysResponse>, Status> {
        self.handle(
            "ListAccessKeys",
            String::new(),
            req,
            |caller, m| async move {
                let input = ListAccessKeysInput {
                    principal: (!m.principal_arn.is_empty()).then_some(m.principal_arn),
                };
                let keys = self.vault.list_access_keys(&caller, input).await?;
                Ok(proto::ListAccessKeysResponse {
                    access_key_metadata: keys
                        .into_iter()
                        .map(|k| convert::access_key(k, None))
                        .collect(),
                })
            },
        )
        .await
    }

    async fn delete_access_key(
        &self,
        req: Request<proto::DeleteAccessKeyRequest>,
    ) -> Result<Response<proto::DeleteAccessKeyResponse>, Status> {
        self.handle(
            "DeleteAccessKey",
            String::new(),
            req,
            |caller, m| async move {
                let input = DeleteAccessKeyInput {
                    access_key_id: m.access_key_id,
                };
                self.vault.delete_access_key(&caller, input).await?;
                Ok(proto::DeleteAccessKeyResponse {})
            },
        )
        .await
    }
}
