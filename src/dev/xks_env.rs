//! Dev mode's external key store: one logical store (`/dev/kms/xks/v1`) with a random
//! SigV4 credential, and four external keys on one p11kms key, one per usage the
//! specification's test client tries. `xks-env.sh` (0600) holds the `export` lines that client (and curl)
//! needs, rewritten at every start with that start's address.

use std::net::SocketAddr;
use std::path::PathBuf;

use zeroize::Zeroizing;

use super::files::write_private;
use super::{io_err, DevDir, DevError};
use crate::xks::{XksCredentialSection, XksKeySection, XksStoreSection};

/// The dev store's path prefix, without its leading `/` (the test client's
/// `URI_PREFIX`).
pub const DEV_XKS_PREFIX: &str = "dev";

/// The p11kms key behind every external key of the dev store (made at start when its
/// alias is missing): the four external keys differ only in the usage the store allows.
pub const DEV_XKS_ALIAS: &str = "alias/xks/dev";

/// The external keys of the dev store: id, the usage the store allows, and the
/// variable the specification's test client reads it from.
pub const DEV_XKS_KEYS: [(&str, &[&str], &str); 4] = [
    ("dev-key", &["ENCRYPT", "DECRYPT"], "KEY_ID"),
    ("dev-encrypt-only", &["ENCRYPT"], "ENCRYPT_ONLY_KEY_ID"),
    ("dev-decrypt-only", &["DECRYPT"], "DECRYPT_ONLY_KEY_ID"),
    ("dev-impotent", &[], "IMPOTENT_KEY_ID"),
];

/// The base32 alphabet AWS KMS allows in an XKS access key id.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl DevDir {
    /// `xks.secret`: the dev store's secret access key.
    pub fn xks_secret_file(&self) -> PathBuf {
        self.root.join("xks.secret")
    }

    /// `xks-env.sh`: what an XKS test client needs to call the dev store.
    pub fn xks_env_file(&self) -> PathBuf {
        self.root.join("xks-env.sh")
    }

    /// The dev store's section for a new configuration, with a new random credential
    /// (its secret written to [`Self::xks_secret_file`]).
    pub(super) fn new_xks_store(&self, principal: &str) -> Result<XksStoreSection, DevError> {
        let mut random = [0u8; 56];
        // As for the dev PINs: a failing RNG leaves a weak dev secret, nothing worse.
        let _ = aws_lc_rs::rand::fill(&mut random);
        let (id_bytes, secret_bytes) = random.split_at(24);
        let access_key_id: String = id_bytes
            .iter()
            .filter_map(|b| BASE32.get(usize::from(b % 32)).copied().map(char::from))
            .collect();
        use base64::Engine as _;
        let secret = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(secret_bytes));
        write_private(&self.xks_secret_file(), secret.as_bytes())?;
        Ok(XksStoreSection {
            uri_path: format!("/{DEV_XKS_PREFIX}/kms/xks/v1"),
            region: None,
            max_requests_per_second: None,
            principal: principal.to_owned(),
            credentials: vec![XksCredentialSection {
                access_key_id,
                secret_file: "xks.secret".into(),
            }],
            keys: DEV_XKS_KEYS
                .iter()
                .map(|(id, usage, _)| XksKeySection {
                    id: (*id).to_owned(),
                    key: DEV_XKS_ALIAS.to_owned(),
                    usage: Some(usage.iter().map(|u| (*u).to_owned()).collect()),
                })
                .collect(),
        })
    }

    /// The export lines for the dev store served at `addr` (its own listener, or the
    /// AWS API listener in a dev directory older than it), signed for `region` with
    /// `access_key_id` and the secret in [`Self::xks_secret_file`]; written to
    /// [`Self::xks_env_file`] and returned for printing.
    pub fn write_xks_env(
        &self,
        addr: SocketAddr,
        region: &str,
        access_key_id: &str,
    ) -> Result<Zeroizing<String>, DevError> {
        let secret_file = self.xks_secret_file();
        let secret =
            Zeroizing::new(std::fs::read_to_string(&secret_file).map_err(io_err(&secret_file))?);
        let mut lines = Zeroizing::new(format!(
            "export XKS_PROXY_HOST=localhost:{port}\n\
             export SCHEME=https://\n\
             export URI_PREFIX={DEV_XKS_PREFIX}\n\
             export SIGV4_ACCESS_KEY_ID={access_key_id}\n\
             export SIGV4_SECRET_ACCESS_KEY={secret}\n\
             export REGION={region}\n\
             export CURL_CA_BUNDLE='{ca}'\n",
            port = addr.port(),
            secret = secret.trim_end(),
            ca = self
                .root
                .join("ca.pem")
                .display()
                .to_string()
                .replace('\'', r"'\''"),
        ));
        for (id, _, var) in DEV_XKS_KEYS {
            lines.push_str(&format!("export {var}={id}\n"));
        }
        let path = self.xks_env_file();
        write_private(&path, lines.as_bytes())?;
        Ok(lines)
    }
}
