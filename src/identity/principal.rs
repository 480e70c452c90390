//! IAM principal ARNs: `arn:PARTITION:iam::ACCOUNT:root | user/NAME | role/NAME`.

use std::fmt;
use std::str::FromStr;

use crate::domain::{AccountId, Partition};

use super::IdentityError;

/// What sort of IAM principal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// The account itself (`:root`).
    Root,
    /// An IAM user; the name (with any path) after `user/`.
    User(String),
    /// An IAM role; the name (with any path) after `role/`.
    Role(String),
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    arn: String,
    partition: Partition,
    account: AccountId,
    kind: PrincipalKind,
}

impl Principal {
    /// The ARN as presented.
    pub fn arn(&self) -> &str {
        &self.arn
    }
    /// The principal's account.
    pub fn account(&self) -> &AccountId {
        &self.account
    }
    /// The ARN partition.
    pub fn partition(&self) -> &Partition {
        &self.partition
    }
    /// Root, user or role.
    pub fn kind(&self) -> &PrincipalKind {
        &self.kind
    }

    /// The `userIdentity.type` CloudTrail gives this kind of caller.
    pub fn identity_type(&self) -> &'static str {
        match self.kind {
            PrincipalKind::Root => "Root",
            PrincipalKind::User(_) => "IAMUser",
            PrincipalKind::Role(_) => "AssumedRole",
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// IAM names with paths: letters, digits and `+=,.@_-/`. Length as IAM allows for a
/// path (512) plus a name (64).
fn is_iam_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 576
        && !s.starts_with('/')
        && !s.ends_with('/')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
}

impl FromStr for Principal {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = IdentityError::MalformedPrincipal;
        let mut parts = s.splitn(6, ':');
        let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(res)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad);
        };
        let kind = if res == "root" {
            PrincipalKind::Root
        } else if let Some(n) = res.strip_prefix("user/").filter(|n| is_iam_name(n)) {
            PrincipalKind::User(n.to_owned())
        } else if let Some(n) = res.strip_prefix("role/").filter(|n| is_iam_name(n)) {
            PrincipalKind::Role(n.to_owned())
        } else {
            return Err(bad);
        };
        Ok(Self {
            arn: s.to_owned(),
            partition: partition.parse().map_err(|_| bad.clone())?,
            account: account.parse().map_err(|_| bad)?,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_user_and_role_arns_parse() {
        let p: Principal = "arn:aws:iam::111122223333:root".parse().unwrap();
        assert_eq!(p.kind(), &PrincipalKind::Root);
        assert_eq!(p.account().as_str(), "111122223333");
        let p: Principal = "arn:aws:iam::111122223333:user/alice".parse().unwrap();
        assert_eq!(p.kind(), &PrincipalKind::User("alice".into()));
        let p: Principal = "arn:aws:iam::444455556666:role/ops/DBA".parse().unwrap();
        assert_eq!(p.kind(), &PrincipalKind::Role("ops/DBA".into()));
    }

    #[test]
    fn other_arns_are_refused() {
        for s in [
            "arn:aws:iam::111122223333:group/x",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam:us-east-1:111122223333:root",
            "arn:aws:kms:us-east-1:111122223333:key/x",
            "arn:aws:iam::1111:root",
            "arn:aws:iam::111122223333:role/a b",
            "urn:x",
        ] {
            assert!(s.parse::<Principal>().is_err(), "{s}");
        }
    }
}
