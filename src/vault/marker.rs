//! Pagination markers: opaque to clients and checked, so that a marker this daemon did
//! not issue (made up, edited, or issued for another listing) is
//! InvalidMarkerException, as in AWS.
//!
//! `base64url(HMAC-SHA256(key, len ‖ operation ‖ len ‖ scope ‖ position) ‖ position)`
//! (each `len` a u64, big-endian)
//!
//! The position is where the next page starts after (the page's last key id, alias
//! name, grant id, tag key or material version); the scope is what the call lists, as
//! the request named it (the account for ListKeys, the KeyId parameter for a key's
//! grants), so a marker continues only the listing it came from. The MAC key is a daemon
//! secret in the metadata store, as the grant-token key is, so markers outlive a restart.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::KmsError;

const MAC_LEN: usize = 32;

/// The longest `Marker` AWS takes (its length constraint in the API reference). An
/// issued marker is shorter: base64 of the MAC and a position of at most 512 bytes (a
/// tag key of 128 letters of four bytes each), 726 characters.
const MAX_MARKER_CHARS: usize = 1024;

/// AWS's constraints on any `Marker` member: at most 1024 characters, each from U+0020
/// to U+00FF. A marker outside them is a ValidationException, as AWS's request
/// validation answers before the operation looks at the marker; any other marker not
/// issued for the listing is InvalidMarkerException.
pub(crate) fn check_shape(marker: &str) -> Result<(), KmsError> {
    let constraint = if marker.chars().count() > MAX_MARKER_CHARS {
        format!("Member must have length less than or equal to {MAX_MARKER_CHARS}")
    } else if marker.chars().any(|c| !(' '..='\u{ff}').contains(&c)) {
        "Member must satisfy regular expression pattern: [\\u0020-\\u00FF]*".to_owned()
    } else {
        return Ok(());
    };
    Err(KmsError::validation(format!(
        "1 validation error detected: Value at 'marker' failed to satisfy constraint: {constraint}"
    )))
}

/// One listing a marker may continue: an operation over one scope.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Listing<'a> {
    operation: &'static str,
    scope: &'a str,
}

impl<'a> Listing<'a> {
    /// `operation` (its AWS name) over `scope` (what it lists, as the request named it).
    pub(crate) fn new(operation: &'static str, scope: &'a str) -> Self {
        Self { operation, scope }
    }

    fn refused(&self) -> KmsError {
        KmsError::InvalidMarker(format!(
            "the marker is not one that {} returned for this request",
            self.operation
        ))
    }
}

/// Issues and checks markers.
pub(crate) struct MarkerKey(hmac::Key);

impl MarkerKey {
    /// A key from the daemon's stored secret.
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The marker for the page after `position` in `listing`.
    pub(crate) fn issue(&self, listing: &Listing<'_>, position: &str) -> String {
        let tag = hmac::sign(&self.0, &Self::message(listing, position));
        let mut raw = Vec::with_capacity(MAC_LEN + position.len());
        raw.extend_from_slice(tag.as_ref());
        raw.extend_from_slice(position.as_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The position a marker of `listing` continues after, parsed; None for no marker
    /// (the first page). Every marker this key did not issue for this listing is
    /// refused with the same error, whatever is wrong with it.
    pub(crate) fn open<T: std::str::FromStr>(
        &self,
        listing: &Listing<'_>,
        marker: &str,
    ) -> Result<Option<T>, KmsError> {
        if marker.is_empty() {
            return Ok(None);
        }
        check_shape(marker)?;
        let raw = URL_SAFE_NO_PAD
            .decode(marker.as_bytes())
            .map_err(|_| listing.refused())?;
        let (tag, position) = raw
            .split_at_checked(MAC_LEN)
            .ok_or_else(|| listing.refused())?;
        let position = std::str::from_utf8(position).map_err(|_| listing.refused())?;
        hmac::verify(&self.0, &Self::message(listing, position), tag)
            .map_err(|_| listing.refused())?;
        // Only a position this daemon wrote gets here; it parses unless the kind of
        // position a listing uses has changed since.
        position.parse().map(Some).map_err(|_| listing.refused())
    }

    /// What the MAC covers: the operation and the scope each after its length, so that
    /// no two listings and positions give the same bytes (a KeyId as given may hold
    /// any character).
    fn message(listing: &Listing<'_>, position: &str) -> Vec<u8> {
        let (op, scope) = (listing.operation.as_bytes(), listing.scope.as_bytes());
        let mut m = Vec::with_capacity(16 + op.len() + scope.len() + position.len());
        for field in [op, scope] {
            m.extend_from_slice(&(field.len() as u64).to_be_bytes());
            m.extend_from_slice(field);
        }
        m.extend_from_slice(position.as_bytes());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MarkerKey {
        MarkerKey::new(&[7; 32])
    }

    #[test]
    fn an_issued_marker_opens_to_its_position() {
        let k = key();
        let l = Listing::new("ListKeys", "111122223333");
        let m = k.issue(&l, "fea2f8f5-622c-4309-96c3-f888df9f4e6e");
        assert_eq!(
            k.open::<String>(&l, &m).unwrap().as_deref(),
            Some("fea2f8f5-622c-4309-96c3-f888df9f4e6e")
        );
        assert_eq!(
            k.open::<String>(&l, "").unwrap(),
            None,
            "no marker: the first page"
        );
        assert!(k.open::<u32>(&l, &m).is_err(), "a position of another kind");
    }

    #[test]
    fn markers_not_issued_for_this_listing_are_invalid() {
        let k = key();
        let l = Listing::new("ListGrants", "alias/a");
        let m = k.issue(&l, "aa");
        let mut edited = URL_SAFE_NO_PAD.decode(&m).unwrap();
        *edited.last_mut().unwrap() ^= 1;
        let edited = URL_SAFE_NO_PAD.encode(edited);
        let made_up = "fea2f8f5-622c-4309-96c3-f888df9f4e6e".to_owned();
        let too_short = URL_SAFE_NO_PAD.encode([1; 8]);
        let other_key = MarkerKey::new(&[8; 32]).issue(&l, "aa");
        let other_scope = k.issue(&Listing::new("ListGrants", "alias/b"), "aa");
        let other_operation = k.issue(&Listing::new("ListRetirableGrants", "alias/a"), "aa");
        for bad in [
            edited,
            made_up,
            too_short,
            other_key,
            other_scope,
            other_operation,
            "not base64!".to_owned(),
        ] {
            let e = k.open::<String>(&l, &bad).unwrap_err();
            assert_eq!(e.name(), "InvalidMarkerException", "{bad}");
        }
    }

    #[test]
    fn markers_outside_aws_constraints_are_validation_errors() {
        let k = key();
        let l = Listing::new("ListKeys", "111122223333");
        for bad in [
            "m".repeat(1025),
            "\0".into(),
            "a\u{100}".into(),
            "\u{7f}\n".into(),
        ] {
            let e = k.open::<String>(&l, &bad).unwrap_err();
            assert_eq!(e.name(), "ValidationException", "{bad:?}");
        }
        for within in ["m".repeat(1024), "\u{ff} ~".into()] {
            let e = k.open::<String>(&l, &within).unwrap_err();
            assert_eq!(e.name(), "InvalidMarkerException", "{within:?}");
        }
    }

    #[test]
    fn fields_cannot_slide_into_each_other() {
        let k = key();
        let m = k.issue(&Listing::new("ListAliases", "a"), "b\0c");
        assert!(k
            .open::<String>(&Listing::new("ListAliases", "a\0b"), &m)
            .is_err());
    }
}
