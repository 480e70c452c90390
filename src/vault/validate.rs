//! Parameter checks shared by several operations, with AWS's limits.

use super::KmsError;

/// The only encryption algorithm of a symmetric key, and the default.
pub(crate) const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";

/// AWS: at most 10 grant tokens, each 1..8192 characters. Grants themselves come later;
/// the tokens are accepted and checked for shape now so that clients can send them.
pub(crate) fn grant_tokens(tokens: &[String]) -> Result<(), KmsError> {
    if tokens.len() > 10 {
        return Err(KmsError::validation("GrantTokens has more than 10 members"));
    }
    if tokens
        .iter()
        .any(|t| t.is_empty() || t.chars().count() > 8192)
    {
        return Err(KmsError::validation(
            "each member of GrantTokens must be 1 to 8192 characters",
        ));
    }
    Ok(())
}

/// The algorithm of a symmetric key, the default when none is named. AWS's asymmetric
/// algorithm names are a key-usage mismatch; anything else is not an algorithm at all.
pub(crate) fn symmetric_algorithm(field: &str, alg: &str) -> Result<&'static str, KmsError> {
    match alg {
        "" | SYMMETRIC_DEFAULT => Ok(SYMMETRIC_DEFAULT),
        "RSAES_OAEP_SHA_1" | "RSAES_OAEP_SHA_256" | "SM2PKE" => {
            Err(KmsError::InvalidKeyUsage(format!(
            "{field} {alg} is not compatible with a symmetric encryption key; use SYMMETRIC_DEFAULT"
        )))
        }
        _ => Err(KmsError::validation(format!(
            "{field} must be SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256 or SM2PKE"
        ))),
    }
}

/// A count parameter such as NumberOfBytes within `lo..=hi`.
pub(crate) fn count(field: &str, n: i32, lo: i32, hi: i32) -> Result<usize, KmsError> {
    if n < lo || n > hi {
        return Err(KmsError::validation(format!(
            "{field} must be between {lo} and {hi}"
        )));
    }
    usize::try_from(n).map_err(|_| KmsError::validation(format!("{field} must be positive")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_token_limits_follow_aws() {
        assert!(grant_tokens(&vec!["t".into(); 10]).is_ok());
        assert!(grant_tokens(&vec!["t".into(); 11]).is_err());
        assert!(grant_tokens(&["".into()]).is_err());
        assert!(grant_tokens(&["x".repeat(8193)]).is_err());
    }

    #[test]
    fn algorithm_names_are_classified() {
        assert!(symmetric_algorithm("EncryptionAlgorithm", "").is_ok());
        assert!(matches!(
            symmetric_algorithm("EncryptionAlgorithm", "RSAES_OAEP_SHA_256"),
            Err(KmsError::InvalidKeyUsage(_))
        ));
        assert!(matches!(
            symmetric_algorithm("EncryptionAlgorithm", "AES"),
            Err(KmsError::Validation(_))
        ));
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(count("N", 1, 1, 1024).unwrap(), 1);
        assert!(count("N", 0, 1, 1024).is_err());
        assert!(count("N", 1025, 1, 1024).is_err());
        assert!(count("N", -5, 1, 1024).is_err());
    }
}
