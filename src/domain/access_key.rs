//! Access keys as AWS shapes them: an id (`AKIA` + 16 base32 characters) that is no
//! secret, a 40-character secret access key that is, and the key's status.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

/// IAM's long-term access key prefix.
const PREFIX: &str = "AKIA";
/// Characters after the prefix.
const ID_BODY: usize = 16;
/// RFC 4648 base32 alphabet: what AWS uses after the prefix.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// The characters of AWS secret access keys.
const SECRET_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Length of a secret access key.
pub(crate) const SECRET_LEN: usize = 40;

/// The system random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub(crate) struct RandomFailed;

/// `n` characters drawn uniformly from `alphabet`, whose length divides 256 (so taking
/// each random byte modulo the length has no bias).
fn draw(alphabet: &[u8], n: usize) -> Result<Zeroizing<String>, RandomFailed> {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RandomFailed)?;
    let len = alphabet.len();
    let mut out = Zeroizing::new(String::with_capacity(n));
    for b in bytes.iter() {
        let c = alphabet.get(usize::from(*b) % len).copied().unwrap_or(b'A');
        out.push(char::from(c));
    }
    Ok(out)
}

/// An access key id, e.g. `AKIAIOSFODNN7EXAMPLE`. Checked at construction: 20
/// characters, `AKIA` then uppercase base32.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessKeyId(String);

impl AccessKeyId {
    /// A fresh id from the system CSPRNG (80 random bits).
    pub(crate) fn generate() -> Result<Self, RandomFailed> {
        let body = draw(BASE32, ID_BODY)?;
        Ok(Self(format!("{PREFIX}{}", body.as_str())))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccessKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a string is not an access key id.
#[derive(Debug, thiserror::Error)]
#[error("an access key id is 20 characters: AKIA followed by 16 of A-Z and 2-7")]
pub struct BadAccessKeyId;

impl FromStr for AccessKeyId {
    type Err = BadAccessKeyId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.strip_prefix(PREFIX).ok_or(BadAccessKeyId)?;
        if body.len() == ID_BODY && body.bytes().all(|b| BASE32.contains(&b)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadAccessKeyId)
        }
    }
}

/// A secret access key: 40 characters of `A-Z a-z 0-9 + /`. Wiped on drop; Debug
/// shows nothing of it; no Display.
#[derive(Clone)]
pub struct SecretAccessKey(Zeroizing<String>);

impl SecretAccessKey {
    /// A fresh secret from the system CSPRNG (240 random bits).
    pub(crate) fn generate() -> Result<Self, RandomFailed> {
        draw(SECRET_ALPHABET, SECRET_LEN).map(Self)
    }

    /// Takes a secret opened from the store.
    pub(crate) fn new(secret: Zeroizing<String>) -> Self {
        Self(secret)
    }

    /// The secret itself. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret as a zeroizing string, for whoever keeps it.
    pub(crate) fn into_zeroizing(self) -> Zeroizing<String> {
        self.0
    }
}

impl fmt::Debug for SecretAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretAccessKey(<redacted>)")
    }
}

/// Whether an access key may be used. IAM also has Inactive; p11kms makes keys Active
/// and deletes them, so only Active exists yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessKeyStatus {
    /// Usable.
    Active,
}

impl AccessKeyStatus {
    /// IAM's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
        }
    }
}

impl FromStr for AccessKeyStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "Active" => Ok(Self::Active),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_and_secrets_have_aws_shapes() {
        for _ in 0..100 {
            let id = AccessKeyId::generate().unwrap();
            assert_eq!(id.as_str().len(), 20);
            assert!(id.as_str().starts_with("AKIA"));
            assert_eq!(id.as_str().parse::<AccessKeyId>().unwrap(), id);
            let s = SecretAccessKey::generate().unwrap();
            assert_eq!(s.expose().len(), 40);
            assert!(s
                .expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
        }
        assert_ne!(
            AccessKeyId::generate().unwrap(),
            AccessKeyId::generate().unwrap()
        );
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "AKIA",
            "ASIAIOSFODNN7EXAMPLE",
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLEX",
            "AKIAiosfodnn7example",
            "AKIAIOSFODNN1EXAMPLE",
        ] {
            assert!(bad.parse::<AccessKeyId>().is_err(), "{bad}");
        }
        assert!("AKIAIOSFODNN7EXAMPLE".parse::<AccessKeyId>().is_ok());
    }

    #[test]
    fn debug_of_a_secret_shows_nothing_of_it() {
        let s = SecretAccessKey::generate().unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains(s.expose()));
    }
}
