//! How a `KeyId` parameter names a key: a key id, a key ARN, an alias name or an alias
//! ARN. Parsed once at the edge; which account a bare id or alias belongs to is the
//! caller's, decided by the vault.

use std::str::FromStr;

use super::ids::{AccountId, KeyArn, KeyId};

/// AWS's limit on the KeyId parameter, in characters.
pub(crate) const MAX_KEY_ID_LEN: usize = 2048;

/// A parsed `KeyId` parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyRef {
    /// A bare key id: a key of the caller's account.
    Id(KeyId),
    /// A key ARN.
    Arn(KeyArn),
    /// `alias/…`: an alias of the caller's account.
    Alias(String),
    /// `arn:<partition>:kms:<region>:<account>:alias/<name>`.
    AliasArn {
        /// The ARN's partition, as written.
        partition: String,
        /// The ARN's region, as written.
        region: String,
        /// The account that owns the alias.
        account: AccountId,
        /// `alias/<name>`.
        name: String,
    },
}

/// Why a `KeyId` parameter names no key. AWS answers the first two with
/// ValidationException and the others with NotFoundException.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyRefError {
    /// Empty.
    #[error("KeyId is required")]
    Empty,
    /// Longer than [`MAX_KEY_ID_LEN`].
    #[error("KeyId must be at most {MAX_KEY_ID_LEN} characters")]
    TooLong,
    /// An alias ARN that does not parse; the text is quoted and cut.
    #[error("Invalid arn: {0}")]
    AliasArn(String),
    /// A key ARN that does not parse.
    #[error("Invalid arn: {0}")]
    Arn(String),
    /// Neither an ARN nor an alias nor a key id.
    #[error("Invalid keyId: {0}")]
    KeyId(String),
}

impl FromStr for KeyRef {
    type Err = KeyRefError;

    fn from_str(s: &str) -> Result<Self, KeyRefError> {
        if s.is_empty() {
            return Err(KeyRefError::Empty);
        }
        if s.chars().count() > MAX_KEY_ID_LEN {
            return Err(KeyRefError::TooLong);
        }
        if s.starts_with("alias/") {
            return Ok(Self::Alias(s.to_owned()));
        }
        if s.starts_with("arn:") && s.contains(":alias/") {
            return alias_arn(s).ok_or_else(|| KeyRefError::AliasArn(format!("{s:?}")));
        }
        if s.starts_with("arn:") {
            return s
                .parse()
                .map(Self::Arn)
                .map_err(|e| KeyRefError::Arn(e.to_string()));
        }
        s.parse()
            .map(Self::Id)
            .map_err(|e| KeyRefError::KeyId(e.to_string()))
    }
}

/// `arn:<partition>:kms:<region>:<account>:alias/<name>`.
fn alias_arn(s: &str) -> Option<KeyRef> {
    let mut parts = s.splitn(6, ':');
    let (arn, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if arn != "arn" || service != "kms" || !resource.starts_with("alias/") {
        return None;
    }
    Some(KeyRef::AliasArn {
        partition: partition.to_owned(),
        region: region.to_owned(),
        account: account.parse().ok()?,
        name: resource.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_form_parses() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(matches!(id.parse(), Ok(KeyRef::Id(_))));
        assert!(matches!(
            format!("arn:aws:kms:us-east-1:111122223333:key/{id}").parse(),
            Ok(KeyRef::Arn(_))
        ));
        assert_eq!(
            "alias/app".parse::<KeyRef>(),
            Ok(KeyRef::Alias("alias/app".into()))
        );
        assert_eq!(
            "arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/app".parse::<KeyRef>(),
            Ok(KeyRef::AliasArn {
                partition: "aws-us-gov".into(),
                region: "us-gov-west-1".into(),
                account: "111122223333".parse().unwrap(),
                name: "alias/app".into(),
            })
        );
    }

    #[test]
    fn bad_references_say_why() {
        assert_eq!("".parse::<KeyRef>(), Err(KeyRefError::Empty));
        assert_eq!(
            "k".repeat(MAX_KEY_ID_LEN + 1).parse::<KeyRef>(),
            Err(KeyRefError::TooLong)
        );
        assert!(matches!(
            "arn:aws:s3:x:111122223333:alias/a".parse::<KeyRef>(),
            Err(KeyRefError::AliasArn(_))
        ));
        assert!(matches!(
            "arn:aws:kms:us-east-1:1:key/x".parse::<KeyRef>(),
            Err(KeyRefError::Arn(_))
        ));
        assert!(matches!(
            "not-a-key".parse::<KeyRef>(),
            Err(KeyRefError::KeyId(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in ".{0,80}") {
            let _ = s.parse::<KeyRef>();
        }

        #[test]
        fn never_panics_on_arn_like_text(s in "arn:[a-z:/0-9-]{0,60}") {
            let _ = s.parse::<KeyRef>();
        }
    }
}
