//! The algorithm suites the commitment policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT allows,
//! and their key derivation: HKDF-SHA512 over the data key, salted with the message id,
//! gives the AES-256-GCM content key ("DERIVEKEY", prefixed by the suite id) and a
//! 32-byte commitment key ("COMMITKEY") that the header carries.

use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use aws_lc_rs::hkdf;

use super::EnvelopeError;

/// An algorithm suite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES_256_GCM_HKDF_SHA512_COMMIT_KEY (0x0478): the default.
    #[default]
    Committing,
    /// AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384 (0x0578): also signed, so that
    /// whoever can decrypt the data key still cannot forge a message.
    CommittingSigned,
}

/// Data keys are 32 bytes in both suites.
pub(crate) const DATA_KEY_LEN: usize = 32;

impl Suite {
    /// The suite's two-byte identifier.
    pub const fn id(self) -> u16 {
        match self {
            Self::Committing => 0x0478,
            Self::CommittingSigned => 0x0578,
        }
    }

    /// The suite with identifier `id`, if the commitment policy allows it.
    pub fn from_id(id: u16) -> Result<Self, EnvelopeError> {
        match id {
            0x0478 => Ok(Self::Committing),
            0x0578 => Ok(Self::CommittingSigned),
            _ => Err(EnvelopeError::UnsupportedSuite),
        }
    }

    /// True for the suite with an ECDSA signature footer.
    pub const fn is_signed(self) -> bool {
        matches!(self, Self::CommittingSigned)
    }

    /// (content key, commitment key) for a data key and a message id.
    pub(crate) fn derive(
        self,
        data_key: &[u8],
        message_id: &[u8],
    ) -> Result<(LessSafeKey, [u8; 32]), EnvelopeError> {
        if data_key.len() != DATA_KEY_LEN {
            return Err(EnvelopeError::BadKeyring("a data key is 32 bytes"));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA512, message_id).extract(data_key);
        let mut enc = zeroize::Zeroizing::new([0u8; 32]);
        let id = self.id().to_be_bytes();
        prk.expand(&[&id, b"DERIVEKEY"], Len(32))
            .and_then(|o| o.fill(enc.as_mut()))
            .map_err(|_| EnvelopeError::Crypto)?;
        let mut commit = [0u8; 32];
        prk.expand(&[b"COMMITKEY"], Len(32))
            .and_then(|o| o.fill(&mut commit))
            .map_err(|_| EnvelopeError::Crypto)?;
        let key = UnboundKey::new(&AES_256_GCM, enc.as_ref()).map_err(|_| EnvelopeError::Crypto)?;
        Ok((LessSafeKey::new(key), commit))
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}
