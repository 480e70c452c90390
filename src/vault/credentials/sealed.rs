//! A secret access key sealed for the store: `0x01 || IV (12) || AES-256-GCM output`,
//! under the token's secret-sealing key, with AAD binding the access key id and the
//! principal, so that a sealed secret moved to another row does not open.

use zeroize::Zeroizing;

use super::super::{KmsError, Vault};
use crate::domain::{AccessKeyId, Plaintext, RandomFailed, SecretAccessKey};

/// The format byte of a sealed secret.
const FORMAT_V1: u8 = 1;
const IV_LEN: usize = 12;

/// A sealed secret that is not one: damaged, or moved to another row.
#[derive(Debug, thiserror::Error)]
#[error("the sealed secret of access key {0} does not open: the database was edited or damaged")]
pub(super) struct SealedSecretInvalid(String);

/// Domain separation, then the two fields. The id has a fixed length (20), so the
/// boundary between id and ARN is unambiguous.
fn aad(id: &AccessKeyId, principal_arn: &str) -> Vec<u8> {
    let mut aad = b"p11kms-access-key-secret/1\0".to_vec();
    aad.extend_from_slice(id.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(principal_arn.as_bytes());
    aad
}

impl Vault {
    /// Seals `secret` for the row of `id` and `principal_arn`.
    pub(super) async fn seal_access_secret(
        &self,
        id: &AccessKeyId,
        principal_arn: &str,
        secret: &SecretAccessKey,
    ) -> Result<Vec<u8>, KmsError> {
        let mut iv = [0u8; IV_LEN];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| KmsError::internal(RandomFailed))?;
        let plaintext = Plaintext::new(secret.expose().as_bytes().to_vec());
        let ct = self
            .hsm
            .seal_secret(iv, aad(id, principal_arn), plaintext)
            .await?;
        let mut out = Vec::with_capacity(1 + IV_LEN + ct.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens the sealed secret of the row of `id` and `principal_arn`. A secret that
    /// does not open is a fault of the store (KMSInternalException), never the caller's.
    pub(super) async fn open_access_secret(
        &self,
        id: &AccessKeyId,
        principal_arn: &str,
        sealed: &[u8],
    ) -> Result<SecretAccessKey, KmsError> {
        let bad = || KmsError::internal(SealedSecretInvalid(id.to_string()));
        let (format, rest) = sealed.split_first().ok_or_else(bad)?;
        let (iv, ct) = rest.split_at_checked(IV_LEN).ok_or_else(bad)?;
        let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| bad())?;
        if *format != FORMAT_V1 {
            return Err(bad());
        }
        let opened = self
            .hsm
            .open_secret(iv, aad(id, principal_arn), ct.to_vec())
            .await
            .map_err(|e| match e {
                crate::hsm::HsmError::TagMismatch => bad(),
                e => KmsError::from(e),
            })?;
        let text = std::str::from_utf8(opened.expose()).map_err(|_| bad())?;
        Ok(SecretAccessKey::new(Zeroizing::new(text.to_owned())))
    }
}
