//! The operation table: `X-Amz-Target: TrentService.<Name>` → the request shape that
//! implements it. AWS KMS's operations keep their names; p11kms's own (principal
//! policies and tags, access keys, the batch calls) are named as their gRPC RPCs.

use super::calls::Serve;
use super::shapes::*;

/// The X-Amz-Target prefix of every KMS operation.
pub(super) const TARGET_PREFIX: &str = "TrentService.";

macro_rules! operations {
    ($($name:ident => $shape:ty,)*) => {
        /// An operation this listener serves.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(super) enum Operation {
            $(
                #[doc = concat!("`TrentService.", stringify!($name), "`")]
                $name,
            )*
        }

        impl Operation {
            /// Every operation, in the table's order.
            pub(super) const ALL: &'static [Operation] = &[$(Operation::$name),*];

            /// The AWS operation name (the audit record's eventName).
            pub(super) fn name(self) -> &'static str {
                match self {
                    $(Operation::$name => stringify!($name),)*
                }
            }

            /// The most bytes a request body of this operation may have: the batch
            /// calls carry up to 1000 items, everything else far less.
            pub(super) fn max_body(self) -> usize {
                match self {
                    Operation::BatchEncrypt | Operation::BatchDecrypt => {
                        super::envelope::MAX_BATCH_BODY
                    }
                    _ => super::envelope::MAX_BODY,
                }
            }

            /// The operation a target header value names, if any.
            pub(super) fn from_target(target: &str) -> Option<Operation> {
                let name = target.strip_prefix(TARGET_PREFIX)?;
                Self::ALL.iter().copied().find(|op| op.name() == name)
            }

            /// Calls `v` with this operation's request shape: the one place that
            /// goes from an operation to its types.
            pub(super) fn visit<V: Visit>(self, v: V) -> V::Out {
                match self {
                    $(Operation::$name => v.visit::<$shape>(),)*
                }
            }
        }
    };
}

/// Something done with an operation's request shape (running it, checking a body).
pub(super) trait Visit {
    /// What it gives.
    type Out;
    /// Does it with `R`.
    fn visit<R: Serve>(self) -> Self::Out;
}

/// Decodes and validates a body as an operation's request without running it: what
/// the property tests and the aws_json fuzz target drive.
pub(super) struct Check<'a>(pub &'a [u8]);

impl Visit for Check<'_> {
    type Out = Result<(), crate::vault::KmsError>;
    fn visit<R: Serve>(self) -> Self::Out {
        super::envelope::decode::<R>(self.0)?.check()
    }
}

operations! {
    CreateKey => CreateKeyRequest,
    DescribeKey => DescribeKeyRequest,
    ListKeys => ListKeysRequest,
    Encrypt => EncryptRequest,
    Decrypt => DecryptRequest,
    GenerateDataKey => GenerateDataKeyRequest,
    GenerateDataKeyWithoutPlaintext => GenerateDataKeyWithoutPlaintextRequest,
    ReEncrypt => ReEncryptRequest,
    GenerateRandom => GenerateRandomRequest,
    Sign => SignRequest,
    Verify => VerifyRequest,
    GetPublicKey => GetPublicKeyRequest,
    GenerateMac => GenerateMacRequest,
    VerifyMac => VerifyMacRequest,
    DeriveSharedSecret => DeriveSharedSecretRequest,
    GetParametersForImport => GetParametersForImportRequest,
    ImportKeyMaterial => ImportKeyMaterialRequest,
    DeleteImportedKeyMaterial => DeleteImportedKeyMaterialRequest,
    GenerateDataKeyPair => GenerateDataKeyPairRequest,
    GenerateDataKeyPairWithoutPlaintext => GenerateDataKeyPairWithoutPlaintextRequest,
    BatchEncrypt => BatchEncryptRequest,
    BatchDecrypt => BatchDecryptRequest,
    GetKeyPolicy => GetKeyPolicyRequest,
    PutKeyPolicy => PutKeyPolicyRequest,
    ListKeyPolicies => ListKeyPoliciesRequest,
    PutPrincipalPolicy => PutPrincipalPolicyRequest,
    GetPrincipalPolicy => PrincipalPolicyRequest,
    ListPrincipalPolicies => PrincipalRequest,
    DeletePrincipalPolicy => DeletePrincipalPolicyRequest,
    TagPrincipal => TagPrincipalRequest,
    UntagPrincipal => UntagPrincipalRequest,
    ListPrincipalTags => ListPrincipalTagsRequest,
    EnableKey => EnableKeyRequest,
    DisableKey => DisableKeyRequest,
    UpdateKeyDescription => UpdateKeyDescriptionRequest,
    ScheduleKeyDeletion => ScheduleKeyDeletionRequest,
    CancelKeyDeletion => CancelKeyDeletionRequest,
    EnableKeyRotation => EnableKeyRotationRequest,
    DisableKeyRotation => DisableKeyRotationRequest,
    GetKeyRotationStatus => GetKeyRotationStatusRequest,
    RotateKeyOnDemand => RotateKeyOnDemandRequest,
    ListKeyRotations => ListKeyRotationsRequest,
    TagResource => TagResourceRequest,
    UntagResource => UntagResourceRequest,
    ListResourceTags => ListResourceTagsRequest,
    CreateGrant => CreateGrantRequest,
    ListGrants => ListGrantsRequest,
    ListRetirableGrants => ListRetirableGrantsRequest,
    RetireGrant => RetireGrantRequest,
    RevokeGrant => RevokeGrantRequest,
    CreateAlias => CreateAliasRequest,
    UpdateAlias => UpdateAliasRequest,
    DeleteAlias => DeleteAliasRequest,
    ListAliases => ListAliasesRequest,
    CreateAccessKey => CreateAccessKeyRequest,
    ListAccessKeys => ListAccessKeysRequest,
    DeleteAccessKey => DeleteAccessKeyRequest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grpc_rpc_has_an_operation_of_the_same_name() {
        let proto = include_str!("../../proto/p11kms/v1/kms.proto");
        let rpcs: Vec<&str> = proto
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .filter_map(|l| l.split('(').next())
            .collect();
        assert_eq!(rpcs.len(), Operation::ALL.len());
        for rpc in rpcs {
            let op = Operation::from_target(&format!("TrentService.{rpc}"));
            assert_eq!(op.map(Operation::name), Some(rpc));
        }
    }

    #[test]
    fn targets_need_the_service_prefix_and_the_exact_name() {
        assert_eq!(
            Operation::from_target("TrentService.Encrypt"),
            Some(Operation::Encrypt)
        );
        for bad in [
            "Encrypt",
            "TrentService.encrypt",
            "TrentService.",
            "KMS.Encrypt",
            "",
        ] {
            assert_eq!(Operation::from_target(bad), None, "{bad}");
        }
    }
}
