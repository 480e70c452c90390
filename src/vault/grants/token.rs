//! Grant tokens: opaque to clients, unforgeable, unique per CreateGrant call.
//!
//! `base64url(0x01 || grant id (32 bytes) || nonce (16 bytes) || HMAC-SHA256(key, all before))`
//!
//! A token names a grant; it never carries authority of its own: every request still
//! looks the grant up, so a retired or revoked grant stops working at once, token or
//! not. The MAC key is a daemon secret in the metadata store.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

const VERSION: u8 = 1;
const ID_LEN: usize = 32;
const NONCE_LEN: usize = 16;
const MAC_LEN: usize = 32;
const TOKEN_LEN: usize = 1 + ID_LEN + NONCE_LEN + MAC_LEN;

/// Mints and checks grant tokens.
pub(crate) struct TokenKey(hmac::Key);

/// Why a token was refused: one error, whatever the cause, to give a forger nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the grant token is not valid")]
pub(crate) struct BadToken;

impl TokenKey {
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A fresh token for `grant_id` (64 hex characters).
    pub(crate) fn mint(&self, grant_id: &str) -> Result<String, BadToken> {
        let id = decode_id(grant_id).ok_or(BadToken)?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| BadToken)?;
        let mut body = Vec::with_capacity(TOKEN_LEN);
        body.push(VERSION);
        body.extend_from_slice(&id);
        body.extend_from_slice(&nonce);
        let tag = hmac::sign(&self.0, &body);
        body.extend_from_slice(tag.as_ref());
        Ok(URL_SAFE_NO_PAD.encode(body))
    }

    /// The grant id a genuine token names.
    pub(crate) fn verify(&self, token: &str) -> Result<String, BadToken> {
        let raw = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| BadToken)?;
        if raw.len() != TOKEN_LEN || raw.first() != Some(&VERSION) {
            return Err(BadToken);
        }
        let (body, tag) = raw.split_at_checked(TOKEN_LEN - MAC_LEN).ok_or(BadToken)?;
        hmac::verify(&self.0, body, tag).map_err(|_| BadToken)?;
        let id = body.get(1..1 + ID_LEN).ok_or(BadToken)?;
        Ok(crate::domain::to_hex(id))
    }
}

/// A grant id: 64 lower-case hex characters.
pub(crate) fn decode_id(id: &str) -> Option<[u8; ID_LEN]> {
    if id.len() != 2 * ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; ID_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A fresh random grant id.
pub(crate) fn new_grant_id() -> Option<String> {
    let mut b = [0u8; ID_LEN];
    aws_lc_rs::rand::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> TokenKey {
        TokenKey::new(&[7u8; 32])
    }

    #[test]
    fn tokens_round_trip_and_are_unique_per_mint() {
        let id = new_grant_id().unwrap();
        let (a, b) = (key().mint(&id).unwrap(), key().mint(&id).unwrap());
        assert_ne!(a, b);
        assert_eq!(key().verify(&a).unwrap(), id);
        assert_eq!(key().verify(&b).unwrap(), id);
    }

    #[test]
    fn forged_and_damaged_tokens_are_refused() {
        let id = new_grant_id().unwrap();
        let t = key().mint(&id).unwrap();
        assert_eq!(
            TokenKey::new(&[8u8; 32]).verify(&t),
            Err(BadToken),
            "another daemon's key"
        );
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[5] ^= 1;
        assert_eq!(
            key().verify(&URL_SAFE_NO_PAD.encode(&raw)),
            Err(BadToken),
            "another grant id"
        );
        assert_eq!(key().verify(&t[..t.len() - 2]), Err(BadToken));
        assert_eq!(key().verify("not a token"), Err(BadToken));
        assert_eq!(key().verify(""), Err(BadToken));
    }

    #[test]
    fn grant_ids_are_64_lower_hex() {
        assert!(decode_id(&"a".repeat(64)).is_some());
        assert!(decode_id(&"A".repeat(64)).is_none());
        assert!(decode_id(&"a".repeat(63)).is_none());
        assert!(decode_id("zz").is_none());
    }

    proptest! {
        #[test]
        fn verify_never_panics(s in ".{0,200}") {
            let _ = key().verify(&s);
        }
    }
}
