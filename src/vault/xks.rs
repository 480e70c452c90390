//! What AWS KMS asks of an external key store proxy (the XKS proxy API), done with a
//! p11kms key: AES-256-GCM in the token under the key's current material, with the AAD
//! AWS KMS sends, the ciphertext, IV and tag answered apart. AWS KMS keeps those parts
//! and hands them back to decrypt, so nothing here is a p11kms blob.
//!
//! The key material version travels in `ciphertextMetadata` (the proxy's own bytes, at
//! most 20, which AWS KMS stores and returns), and the GCM AAD binds it, as the
//! specification lays the AAD out: `u16 len(aad) || aad || u8 len(metadata) || metadata`.

use super::authorize::Authz;
use super::keys::KeyEntry;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{KeyId, KeyState, MaterialVersion, Plaintext};
use crate::xks::XksUsage;

/// The IV p11kms makes: 96 bits, from the daemon's CSPRNG, counted in the IV budget,
/// as for its own blobs.
use super::blob::IV_LEN as XKS_IV_LEN;
/// GCM's full 128-bit tag.
pub(crate) const XKS_TAG_LEN: usize = 16;
/// The largest plaintext (and ciphertext) taken: above the 4,300 bytes the
/// specification asks a proxy to handle. Larger is UnsupportedOperationException.
pub(crate) const XKS_MAX_DATA: usize = 8192;
/// The largest AAD taken: twice the 8,192 bytes the specification asks for. Kept below
/// 0x7031 (28,721) bytes on purpose: the GCM AAD of an XKS call then never begins with
/// `p1`, as every p11kms blob's AAD does, so no XKS request can be made to authenticate
/// as a blob's (each protocol's ciphertexts stay its own).
pub(crate) const XKS_MAX_AAD: usize = 16 * 1024;
const _: () = assert!(XKS_MAX_AAD < 0x7031);
/// `ciphertextMetadata` as p11kms writes it, 20 bytes (the most AWS KMS keeps): a
/// layout version, the material version (u32, big-endian), and the first 15 bytes of
/// the p11kms key's id, so that a ciphertext is never tried under another key (an alias
/// behind the external key that was pointed elsewhere) but refused, naming why.
const METADATA_LAYOUT: u8 = 1;
const KEY_ID_PREFIX: usize = 15;
const METADATA_LEN: usize = 1 + 4 + KEY_ID_PREFIX;

/// Where an XKS call arrived and what AWS KMS says about it (its requestMetadata, which
/// only the store's signature vouches for): condition keys a key policy, identity
/// policy or grant can test, e.g. to let a key serve one AWS KMS key or one AWS caller.
#[derive(Debug, Clone, Default)]
pub struct XksRequest {
    /// `p11kms:XksUriPath`: the store's URI path.
    pub uri_path: String,
    /// `p11kms:XksExternalKeyId`.
    pub external_key_id: String,
    /// `p11kms:XksKmsOperation`: the AWS KMS operation behind the call.
    pub kms_operation: String,
    /// `p11kms:XksKmsKeyArn`: the AWS KMS key.
    pub kms_key_arn: Option<String>,
    /// `p11kms:XksAwsPrincipalArn`: who called AWS KMS.
    pub aws_principal_arn: Option<String>,
    /// `p11kms:XksViaService`: the AWS service that called AWS KMS for them.
    pub kms_via_service: Option<String>,
    /// `p11kms:XksSourceVpc`.
    pub aws_source_vpc: Option<String>,
    /// `p11kms:XksSourceVpce`.
    pub aws_source_vpce: Option<String>,
}

impl XksRequest {
    /// The condition keys, on an authorization.
    fn onto<'a>(&self, mut a: Authz<'a>) -> Authz<'a> {
        a = a
            .with("p11kms:XksUriPath", self.uri_path.clone())
            .with("p11kms:XksExternalKeyId", self.external_key_id.clone())
            .with("p11kms:XksKmsOperation", self.kms_operation.clone());
        for (key, value) in [
            ("p11kms:XksKmsKeyArn", &self.kms_key_arn),
            ("p11kms:XksAwsPrincipalArn", &self.aws_principal_arn),
            ("p11kms:XksViaService", &self.kms_via_service),
            ("p11kms:XksSourceVpc", &self.aws_source_vpc),
            ("p11kms:XksSourceVpce", &self.aws_source_vpce),
        ] {
            if let Some(v) = value {
                a = a.with(key, v.clone());
            }
        }
        a
    }
}

/// A tag on a p11kms key that narrows what any external key store may do with it:
/// `ENCRYPT`, `DECRYPT`, `ENCRYPT_DECRYPT`, or anything else (e.g. `NONE`) for neither.
/// The store's own `usage` still applies: the key may do what both allow.
pub(crate) const XKS_USAGE_TAG: &str = "p11kms:xks-usage";

/// GetKeyMetadata's answer.
#[derive(Debug)]
pub struct XksKeyMetadata {
    /// `AES_256`: every p11kms symmetric key.
    pub key_spec: &'static str,
    /// `ENCRYPT` and/or `DECRYPT`, as the store allows.
    pub key_usage: Vec<&'static str>,
    /// `ENABLED` when the p11kms key is Enabled, else `DISABLED`.
    pub key_status: &'static str,
}

/// An XKS Encrypt.
#[derive(Debug)]
pub struct XksEncryptInput {
    /// The p11kms key (id, ARN or alias) the external key names.
    pub key: String,
    /// What the store allows AWS KMS to do with it.
    pub usage: XksUsage,
    /// What to encrypt.
    pub plaintext: Plaintext,
    /// AWS KMS's additional authenticated data (empty when absent).
    pub aad: Vec<u8>,
    /// Whether AWS KMS asked for the ciphertext data integrity value (SHA_256).
    pub integrity: bool,
    /// The call's condition keys.
    pub request: XksRequest,
}

/// An XKS Encrypt's answer.
#[derive(Debug)]
pub struct XksEncryptOutput {
    /// As long as the plaintext; no tag.
    pub ciphertext: Vec<u8>,
    /// 12 bytes.
    pub iv: Vec<u8>,
    /// 16 bytes.
    pub tag: Vec<u8>,
    /// The material version, to be handed back to decrypt.
    pub metadata: Vec<u8>,
    /// SHA-256(aad || metadata || iv || ciphertext || tag), when asked for.
    pub integrity: Option<Vec<u8>>,
}

/// An XKS Decrypt.
#[derive(Debug)]
pub struct XksDecryptInput {
    /// The p11kms key the external key names.
    pub key: String,
    /// What the store allows AWS KMS to do with it.
    pub usage: XksUsage,
    /// The ciphertext, without its tag.
    pub ciphertext: Vec<u8>,
    /// The IV Encrypt answered.
    pub iv: Vec<u8>,
    /// The tag Encrypt answered.
    pub tag: Vec<u8>,
    /// The AAD given to Encrypt (empty when absent).
    pub aad: Vec<u8>,
    /// The `ciphertextMetadata` Encrypt answered (empty when absent).
    pub metadata: Vec<u8>,
    /// The call's condition keys.
    pub request: XksRequest,
}

/// The bytes GCM authenticates: the specification's layout of AAD and metadata.
fn gcm_aad(aad: &[u8], metadata: &[u8]) -> Result<Vec<u8>, KmsError> {
    let aad_len = u16::try_from(aad.len())
        .ok()
        .filter(|_| aad.len() <= XKS_MAX_AAD)
        .ok_or_else(|| {
            KmsError::UnsupportedOperation(format!(
                "additionalAuthenticatedData must be at most {XKS_MAX_AAD} bytes"
            ))
        })?;
    let meta_len = u8::try_from(metadata.len())
        .map_err(|_| KmsError::validation("ciphertextMetadata must be at most 20 bytes"))?;
    let mut out = Vec::with_capacity(3 + aad.len() + metadata.len());
    out.extend_from_slice(&aad_len.to_be_bytes());
    out.extend_from_slice(aad);
    out.push(meta_len);
    out.extend_from_slice(metadata);
    Ok(out)
}

/// The ciphertext data integrity value (the specification's Appendix C).
pub(crate) fn integrity_value(
    aad: &[u8],
    metadata: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Vec<u8> {
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [aad, metadata, iv, ciphertext, tag] {
        h.update(part);
    }
    h.finish().as_ref().to_vec()
}

fn metadata_of(key: &KeyId, version: MaterialVersion) -> Vec<u8> {
    let mut m = Vec::with_capacity(METADATA_LEN);
    m.push(METADATA_LAYOUT);
    m.extend_from_slice(&version.0.to_be_bytes());
    m.extend_from_slice(key.as_bytes().get(..KEY_ID_PREFIX).unwrap_or_default());
    m
}

/// The material version in `ciphertextMetadata` p11kms wrote for `key`; anything else
/// is a ciphertext this proxy did not make, or made under another key.
fn version_in(metadata: &[u8], key: &KeyId) -> Result<MaterialVersion, KmsError> {
    let Some((&METADATA_LAYOUT, rest)) = metadata.split_first() else {
        return Err(invalid_ciphertext());
    };
    let (v, id) = rest.split_at_checked(4).ok_or_else(invalid_ciphertext)?;
    if id.len() != KEY_ID_PREFIX {
        return Err(invalid_ciphertext());
    }
    if key.as_bytes().get(..KEY_ID_PREFIX) != Some(id) {
        return Err(KmsError::InvalidCiphertext(
            "the ciphertext was made under another p11kms key than the one the external key names now (was its alias pointed elsewhere?)".into(),
        ));
    }
    let mut b = [0u8; 4];
    b.copy_from_slice(v);
    Ok(MaterialVersion(u32::from_be_bytes(b)))
}

fn invalid_ciphertext() -> KmsError {
    KmsError::InvalidCiphertext(
        "the ciphertext, IV, tag, AAD or ciphertext metadata is not what this key's encryption produced".into(),
    )
}

fn refuse_usage(key: &str, what: &str) -> KmsError {
    KmsError::InvalidKeyUsage(format!(
        "the external key store does not allow {what} with the key behind '{key}'"
    ))
}

impl Vault {
    /// GetKeyMetadata: the key's spec, the usage the store allows, and whether it is
    /// enabled. Authorized as kms:DescribeKey.
    pub async fn xks_key_metadata(
        &self,
        caller: &Caller,
        key: &str,
        usage: XksUsage,
        request: &XksRequest,
    ) -> Result<XksKeyMetadata, KmsError> {
        let entry = self.resolve(caller, key).await?;
        self.authorize(
            caller,
            request.onto(Authz::key(Action::DESCRIBE_KEY, &entry).requested_as(key)),
        )
        .await?;
        entry.check_symmetric_encryption(&self.arn_of(&entry))?;
        let usage = self.xks_usage(&entry, usage).await?;
        let mut key_usage = Vec::new();
        if usage.encrypt {
            key_usage.push("ENCRYPT");
        }
        if usage.decrypt {
            key_usage.push("DECRYPT");
        }
        Ok(XksKeyMetadata {
            key_spec: "AES_256",
            key_usage,
            key_status: if entry.state() == KeyState::Enabled {
                "ENABLED"
            } else {
                "DISABLED"
            },
        })
    }

    /// Encrypt, authorized as kms:Encrypt. With `integrity`, the output is decrypted
    /// once more before it is answered (a check the specification asks for), which
    /// the store must allow too.
    pub async fn xks_encrypt(
        &self,
        caller: &Caller,
        input: XksEncryptInput,
    ) -> Result<XksEncryptOutput, KmsError> {
        if input.plaintext.len() > XKS_MAX_DATA {
            return Err(KmsError::UnsupportedOperation(format!(
                "plaintext must be at most {XKS_MAX_DATA} bytes"
            )));
        }
        let entry = self.resolve(caller, &input.key).await?;
        // The usage first: a use the store or the key's tag does not allow is
        // InvalidKeyUsageException, whatever the policies would say.
        let usage = self.xks_usage(&entry, input.usage).await?;
        if !usage.encrypt {
            return Err(refuse_usage(&input.key, "ENCRYPT"));
        }
        if input.integrity && !usage.decrypt {
            // The integrity value is only given for output that was decrypted again.
            return Err(refuse_usage(
                &input.key,
                "the DECRYPT that checks the integrity value",
            ));
        }
        let key = self
            .usable(caller, entry, &input.key, Action::ENCRYPT, &input.request)
            .await?;
        let version = self.take_invocation(&key).await?;
        let metadata = metadata_of(&key.key_id(), version);
        let aad = gcm_aad(&input.aad, &metadata)?;
        let mut iv = [0u8; XKS_IV_LEN];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| {
            KmsError::internal(std::io::Error::other(
                "the system random number generator failed",
            ))
        })?;
        let material = key.material_ref(version);
        let mut sealed = self
            .hsm
            .encrypt(material, iv, aad.clone(), input.plaintext)
            .await?;
        let Some(cut) = sealed.len().checked_sub(XKS_TAG_LEN) else {
            return Err(KmsError::internal(std::io::Error::other(
                "the token answered AES-GCM without a whole tag",
            )));
        };
        let tag = sealed.split_off(cut);
        let integrity = if input.integrity {
            // Computed before the check, so that a fault after the encryption shows.
            let value = integrity_value(&input.aad, &metadata, &iv, &sealed, &tag);
            let mut both = sealed.clone();
            both.extend_from_slice(&tag);
            self.hsm
                .decrypt(material, iv, aad, both)
                .await
                .map_err(|e| {
                    KmsError::internal(std::io::Error::other(format!(
                        "the check decryption of a fresh ciphertext failed: {e}"
                    )))
                })?;
            Some(value)
        } else {
            None
        };
        Ok(XksEncryptOutput {
            ciphertext: sealed,
            iv: iv.to_vec(),
            tag,
            metadata,
            integrity,
        })
    }

    /// Decrypt, authorized as kms:Decrypt.
    pub async fn xks_decrypt(
        &self,
        caller: &Caller,
        input: XksDecryptInput,
    ) -> Result<Plaintext, KmsError> {
        if input.ciphertext.len() > XKS_MAX_DATA {
            return Err(KmsError::UnsupportedOperation(format!(
                "ciphertext must be at most {XKS_MAX_DATA} bytes"
            )));
        }
        let entry = self.resolve(caller, &input.key).await?;
        if !self.xks_usage(&entry, input.usage).await?.decrypt {
            return Err(refuse_usage(&input.key, "DECRYPT"));
        }
        let key = self
            .usable(caller, entry, &input.key, Action::DECRYPT, &input.request)
            .await?;
        let version = version_in(&input.metadata, &key.key_id())?;
        let iv: [u8; XKS_IV_LEN] = input
            .iv
            .as_slice()
            .try_into()
            .map_err(|_| invalid_ciphertext())?;
        if input.tag.len() != XKS_TAG_LEN || !key.has_version(version) {
            return Err(invalid_ciphertext());
        }
        let aad = gcm_aad(&input.aad, &input.metadata)?;
        let mut both = input.ciphertext;
        both.extend_from_slice(&input.tag);
        self.hsm
            .decrypt(key.material_ref(version), iv, aad, both)
            .await
            .map_err(|e| match KmsError::from(e) {
                KmsError::InvalidCiphertext(_) => invalid_ciphertext(),
                other => other,
            })
    }

    /// What an external key store may do with `key`: what the store allows (`store`),
    /// narrowed by the key's [`XKS_USAGE_TAG`] when it has one.
    async fn xks_usage(&self, key: &KeyEntry, store: XksUsage) -> Result<XksUsage, KmsError> {
        let tags = self.key_tags(key).await?;
        let Some((_, value)) = tags.iter().find(|(k, _)| k == XKS_USAGE_TAG) else {
            return Ok(store);
        };
        let (encrypt, decrypt) = match value.as_str() {
            "ENCRYPT_DECRYPT" => (true, true),
            "ENCRYPT" => (true, false),
            "DECRYPT" => (false, true),
            _ => (false, false),
        };
        Ok(XksUsage {
            encrypt: store.encrypt && encrypt,
            decrypt: store.decrypt && decrypt,
        })
    }

    /// The key behind an external key (`entry`, named `key`), authorized for
    /// `action`, and enabled.
    async fn usable(
        &self,
        caller: &Caller,
        entry: std::sync::Arc<KeyEntry>,
        key: &str,
        action: Action,
        request: &XksRequest,
    ) -> Result<std::sync::Arc<KeyEntry>, KmsError> {
        let arn = self.arn_of(&entry);
        self.authorize(
            caller,
            request.onto(Authz::key(action, &entry).requested_as(key)),
        )
        .await?;
        entry.check_usable(&arn)?;
        // Only AES keys back an external key (the proxy API is AES-256-GCM).
        entry.check_symmetric_encryption(&arn)?;
        Ok(entry)
    }

    /// GetHealthStatus: `ACTIVE` when the token answers a PKCS#11 call within `limit`,
    /// `DEGRADED` when it has not answered yet (busy, or slow: it may still serve),
    /// `UNAVAILABLE` when the call failed (the token is down).
    pub async fn xks_token_health(&self, limit: std::time::Duration) -> &'static str {
        match tokio::time::timeout(limit, self.hsm.probe()).await {
            Ok(Ok(())) => "ACTIVE",
            Err(_) => "DEGRADED",
            Ok(Err(_)) => "UNAVAILABLE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_integrity_value_matches_the_specifications_example() {
        // Appendix C's example: AAD, metadata, IV, ciphertext and tag as in its Encrypt
        // answer, and the value it gives.
        let b64 = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(s).unwrap()
        };
        let value = integrity_value(
            b"project=nile,department=marketing",
            b"key_version=1",
            &b64("HMrlRw85cAJUd5Ax"),
            &b64("ghxkK1txeDNn3q8Y"),
            &b64("vBxN2ncH1oEkR8WVXpmyYQ=="),
        );
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(value),
            "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc="
        );
    }

    #[test]
    fn the_gcm_aad_is_length_prefixed_aad_then_metadata() {
        assert_eq!(gcm_aad(b"", b"").unwrap(), vec![0, 0, 0]);
        assert_eq!(
            gcm_aad(b"ab", b"xyz").unwrap(),
            vec![0, 2, b'a', b'b', 3, b'x', b'y', b'z']
        );
        assert!(gcm_aad(&vec![0; XKS_MAX_AAD], b"").is_ok());
        assert!(gcm_aad(&vec![0; XKS_MAX_AAD + 1], b"").is_err());
    }

    #[test]
    fn metadata_carries_the_material_version_and_its_key_and_nothing_else_is_taken() {
        let key: KeyId = "1234abcd-12ab-34cd-56ef-1234567890ab".parse().unwrap();
        let other: KeyId = "1234abcd-12ab-34cd-56ef-1234567890ac".parse().unwrap();
        let m = metadata_of(&key, MaterialVersion(7));
        assert_eq!(m.len(), METADATA_LEN);
        assert!(m.len() <= 20, "AWS KMS keeps at most 20 bytes");
        assert_eq!(version_in(&m, &key).unwrap(), MaterialVersion(7));
        let mut longer = m.clone();
        longer.push(0);
        let mut layout = m.clone();
        layout[0] = 2;
        for bad in [&b""[..], &m[..5], &m[..19], &longer, &layout] {
            assert!(matches!(
                version_in(bad, &key),
                Err(KmsError::InvalidCiphertext(_))
            ));
        }
        // Made under a key whose id differs in its first 15 bytes: refused.
        let third: KeyId = "ffffffff-12ab-34cd-56ef-1234567890ab".parse().unwrap();
        assert!(version_in(&metadata_of(&third, MaterialVersion(7)), &key).is_err());
        // The last byte is not compared: 120 bits tell keys apart.
        assert!(version_in(&metadata_of(&other, MaterialVersion(7)), &key).is_ok());
    }
}
