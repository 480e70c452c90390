//! Identifiers: account ids, key ids, key ARNs. Parsed once at the edge; the types carry
//! the proof of validity.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// A 12-digit AWS-style account id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    /// The id as written, 12 ASCII digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId::Account)
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A KMS key id: a UUID, shown in its hyphenated lower-case form as AWS shows key ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Uuid);

impl KeyId {
    /// A fresh random key id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }
    /// The 16 bytes written into ciphertext blobs and PKCS#11 CKA_ID attributes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
    /// The key id from its 16-byte form.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(b))
    }
}

impl FromStr for KeyId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the canonical hyphenated form: a key id is a name, not a number, and two
        // spellings of one key would defeat policy string matching later.
        if s.len() != 36 {
            return Err(InvalidId::Key);
        }
        let u = Uuid::parse_str(s).map_err(|_| InvalidId::Key)?;
        if u.hyphenated().to_string() != s {
            return Err(InvalidId::Key);
        }
        Ok(Self(u))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// The ARN partition, `aws` unless configured otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Partition(String);

/// A region name such as `us-east-1` or `onprem-1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Region(String);

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl FromStr for Partition {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_name(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId::Partition)
        }
    }
}

impl FromStr for Region {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_name(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId::Region)
        }
    }
}

impl Partition {
    /// The partition name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Region {
    /// The region name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Partition {
    fn default() -> Self {
        Self("aws".to_owned())
    }
}

/// `arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyArn {
    /// ARN partition.
    pub partition: Partition,
    /// Region of the daemon that holds the key.
    pub region: Region,
    /// Account that owns the key.
    pub account: AccountId,
    /// The key id.
    pub key_id: KeyId,
}

impl FromStr for KeyArn {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(6, ':');
        let (Some("arn"), Some(partition), Some("kms"), Some(region), Some(account), Some(res)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(InvalidId::Arn);
        };
        let key = res.strip_prefix("key/").ok_or(InvalidId::Arn)?;
        Ok(Self {
            partition: partition.parse()?,
            region: region.parse()?,
            account: account.parse()?,
            key_id: key.parse()?,
        })
    }
}

impl fmt::Display for KeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:kms:{}:{}:key/{}",
            self.partition.0, self.region.0, self.account.0, self.key_id
        )
    }
}

/// Why an identifier did not parse. The messages never echo the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    /// Not 12 digits.
    #[error("an account id is 12 digits")]
    Account,
    /// Not a hyphenated UUID.
    #[error("a key id is a UUID such as 1234abcd-12ab-34cd-56ef-1234567890ab")]
    Key,
    /// Not `arn:…:kms:…:…:key/…`.
    #[error("a key ARN has the form arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID")]
    Arn,
    /// Bad partition name.
    #[error("a partition is lower-case letters, digits and hyphens")]
    Partition,
    /// Bad region name.
    #[error("a region is lower-case letters, digits and hyphens")]
    Region,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_arn_round_trips() {
        let s = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let arn: KeyArn = s.parse().unwrap();
        assert_eq!(arn.to_string(), s);
        assert_eq!(arn.account.as_str(), "111122223333");
    }

    #[test]
    fn key_id_accepts_only_the_canonical_form() {
        assert!("1234abcd-12ab-34cd-56ef-1234567890ab"
            .parse::<KeyId>()
            .is_ok());
        assert!("1234ABCD-12AB-34CD-56EF-1234567890AB"
            .parse::<KeyId>()
            .is_err());
        assert!("1234abcd12ab34cd56ef1234567890ab".parse::<KeyId>().is_err());
        assert!("alias/foo".parse::<KeyId>().is_err());
        assert!("".parse::<KeyId>().is_err());
    }

    #[test]
    fn malformed_arns_are_refused() {
        for s in [
            "arn:aws:kms:us-east-1:111122223333:alias/x",
            "arn:aws:iam::111122223333:root",
            "arn:aws:kms:us-east-1:11112222333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:US:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms",
        ] {
            assert!(s.parse::<KeyArn>().is_err(), "{s}");
        }
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!("111122223333".parse::<AccountId>().is_ok());
        assert!("11112222333".parse::<AccountId>().is_err());
        assert!("11112222333a".parse::<AccountId>().is_err());
    }
}
