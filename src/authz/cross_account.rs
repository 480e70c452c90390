//! Which actions a principal may perform on a key of another account. AWS KMS decides
//! this per operation, whatever the policies say: the API reference of each operation
//! says "Cross-account use: Yes" or "No". This table is the only place p11kms decides it.

/// The actions whose API reference says "Cross-account use: Yes". Every other action on
/// a resource of another account is refused before any policy is read.
pub const CROSS_ACCOUNT_ACTIONS: &[&str] = &[
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DeriveSharedSecret",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateMac",
    "kms:GetKeyRotationStatus",
    "kms:GetPublicKey",
    "kms:ListGrants",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:Sign",
    "kms:Verify",
    "kms:VerifyMac",
];

/// True when AWS lets a principal of another account perform `action` on a key.
/// Action names are compared without regard to case, as in policies.
pub fn allowed_across_accounts(action: &str) -> bool {
    CROSS_ACCOUNT_ACTIONS
        .iter()
        .any(|a| a.eq_ignore_ascii_case(action))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_the_cryptographic_and_grant_operations_only() {
        for yes in [
            "kms:Encrypt",
            "kms:decrypt",
            "kms:ReEncryptFrom",
            "kms:DescribeKey",
        ] {
            assert!(allowed_across_accounts(yes), "{yes}");
        }
        for no in [
            "kms:PutKeyPolicy",
            "kms:GetKeyPolicy",
            "kms:ScheduleKeyDeletion",
            "kms:DisableKey",
            "kms:UntagResource",
            "kms:ListKeyRotations",
            "kms:ReEncrypt*",
            "iam:PutRolePolicy",
        ] {
            assert!(!allowed_across_accounts(no), "{no}");
        }
    }
}
