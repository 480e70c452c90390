//! The `[[xks.stores]]` sections: the logical key stores served to AWS KMS, each under
//! its own URI path with its own SigV4 credentials, principal and external keys.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::domain::Region;
use crate::identity::Principal;

/// `[xks]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XksSection {
    /// Address of the stores' own HTTPS listener. When absent, the stores are served on
    /// the AWS API listener (`[aws_api]`) under their URI paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Certificate chain (PEM) the stores' listener serves: AWS KMS connects only to a
    /// certificate from a public CA. The daemon's `[tls]` certificate when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: the CA certificate(s) (PEM) a client certificate must chain to, for
    /// AWS KMS the Amazon Trust Services roots. Needs `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// Mutual TLS: the subject common names a client certificate may carry;
    /// `cks.kms.<region>.amazonaws.com` for each store's region when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_names: Option<Vec<String>>,
    /// The logical key stores.
    #[serde(default)]
    pub stores: Vec<XksStoreSection>,
}

/// One `[[xks.stores]]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XksStoreSection {
    /// The store's `XksProxyUriPath`, as given to AWS KMS: `[/prefix]/kms/xks/v1`.
    pub uri_path: String,
    /// The AWS region of the AWS KMS that uses the store, which signs its requests
    /// for that region; the daemon's `region` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The principal the store's calls are authorized as, by key policies and grants
    /// (an IAM ARN).
    pub principal: String,
    /// The SigV4 credentials AWS KMS signs with (two during a rotation).
    pub credentials: Vec<XksCredentialSection>,
    /// The external keys, each naming a p11kms key.
    #[serde(default)]
    pub keys: Vec<XksKeySection>,
    /// Requests per second the store's path takes, signed or not, a second's worth at
    /// once; beyond it, ThrottlingException. No quota when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_second: Option<u32>,
}

/// One `[[xks.stores.credentials]]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XksCredentialSection {
    /// `AccessKeyId` of the store's `XksProxyAuthenticationCredential`.
    pub access_key_id: String,
    /// A file holding `RawSecretAccessKey` (never the configuration itself).
    pub secret_file: PathBuf,
}

/// One `[[xks.stores.keys]]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XksKeySection {
    /// The external key id AWS KMS uses (`XksKeyId`).
    pub id: String,
    /// The p11kms key behind it: key id, key ARN, alias name or alias ARN.
    pub key: String,
    /// What AWS KMS may do with it: `ENCRYPT` and/or `DECRYPT` (both when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Vec<String>>,
}

/// A logical key store, checked.
#[derive(Debug, Clone)]
pub struct XksStore {
    /// `[/prefix]/kms/xks/v1`.
    pub uri_path: String,
    /// The region its requests are signed for.
    pub(crate) region: Region,
    /// Who its calls are authorized as.
    pub principal: Principal,
    /// Access key ids and their secrets.
    pub credentials: Vec<XksCredential>,
    /// The external keys.
    pub keys: Vec<XksKey>,
    /// Its request quota, when it has one.
    pub(crate) quota: Option<std::sync::Arc<super::quota::Quota>>,
}

impl XksStore {
    /// The region its requests are signed for.
    pub fn region(&self) -> &str {
        self.region.as_str()
    }

    /// The external key `id`, if the store has it.
    pub fn key(&self, id: &str) -> Option<&XksKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The secret of `access_key_id`, if the store has it (and its secret was read).
    pub(crate) fn secret(&self, access_key_id: &str) -> Option<&str> {
        self.credentials
            .iter()
            .find(|c| c.access_key_id == access_key_id && !c.secret.is_empty())
            .map(|c| c.secret.as_str())
    }
}

/// Reads every credential's secret from its file (at start-up, not when the
/// configuration is parsed: parsing has no side effects).
pub(crate) fn read_secrets(stores: &mut [XksStore]) -> Result<(), XksConfigError> {
    for (i, s) in stores.iter_mut().enumerate() {
        for (j, c) in s.credentials.iter_mut().enumerate() {
            c.secret = read_secret(&c.secret_file).map_err(|reason| XksConfigError {
                field: format!("xks.stores[{i}].credentials[{j}].secret_file"),
                reason,
            })?;
        }
    }
    Ok(())
}

/// One SigV4 credential of a store. Its Debug shows the access key id only.
#[derive(Clone)]
pub struct XksCredential {
    /// The access key id.
    pub access_key_id: String,
    /// Where the secret is read from, at start-up ([`XksStore::read_secrets`]).
    pub secret_file: PathBuf,
    secret: Zeroizing<String>,
}

impl std::fmt::Debug for XksCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XksCredential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_file", &self.secret_file)
            .finish_non_exhaustive()
    }
}

/// What AWS KMS may do with an external key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XksUsage {
    /// Encrypt (and GenerateDataKey) through the store.
    pub encrypt: bool,
    /// Decrypt through the store.
    pub decrypt: bool,
}

/// An external key, checked.
#[derive(Debug, Clone)]
pub struct XksKey {
    /// The external key id.
    pub id: String,
    /// The p11kms key behind it.
    pub key: String,
    /// What AWS KMS may do with it.
    pub usage: XksUsage,
}

/// Why `[xks]` was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XksConfigError {
    /// The offending field, e.g. `xks.stores[0].uri_path`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The stores' own listener, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XksListenerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Its certificate chain and key; the daemon's `[tls]` ones when `None`.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Mutual TLS, when on.
    pub client_auth: Option<XksClientAuth>,
}

/// Mutual TLS on the stores' listener: whom a handshake accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XksClientAuth {
    /// The CA certificates (PEM) a client certificate must chain to.
    pub ca: PathBuf,
    /// The subject common names a client certificate may carry.
    pub names: Vec<String>,
}

/// The subject name AWS KMS's client certificate carries in `region`.
pub(crate) fn aws_kms_client_name(region: &Region) -> String {
    format!("cks.kms.{}.amazonaws.com", region.as_str())
}

/// Checks the listener fields of `[xks]` (paths already absolute) against the checked
/// `stores`: `None` when the stores are served on the AWS API listener.
pub(crate) fn listener(
    section: &XksSection,
    stores: &[XksStore],
) -> Result<Option<XksListenerConfig>, XksConfigError> {
    let bad = |field: &str, reason: &str| XksConfigError {
        field: format!("xks.{field}"),
        reason: reason.into(),
    };
    let Some(listen) = &section.listen else {
        for (field, set) in [
            ("tls_cert", section.tls_cert.is_some()),
            ("tls_key", section.tls_key.is_some()),
            ("client_ca", section.client_ca.is_some()),
            ("client_names", section.client_names.is_some()),
        ] {
            if set {
                return Err(bad(
                    field,
                    "belongs to the stores' own listener: give xks.listen too (the AWS API \
                     listener's clients are not AWS KMS)",
                ));
            }
        }
        return Ok(None);
    };
    if stores.is_empty() {
        return Err(bad("listen", "there is no [[xks.stores]] to serve"));
    }
    let listen = listen.parse().map_err(|e| {
        bad(
            "listen",
            &format!("{e}; write an address such as {DEFAULT_XKS_LISTEN}"),
        )
    })?;
    let cert = match (&section.tls_cert, &section.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => {
            return Err(bad(
                "tls_cert",
                "give both xks.tls_cert and xks.tls_key, or neither",
            ))
        }
    };
    let client_auth = match (&section.client_ca, &section.client_names) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(bad(
                "client_names",
                "give xks.client_ca too: a name is checked only on a certificate that \
                 chains to it",
            ))
        }
        (Some(ca), names) => {
            let names = match names {
                Some(n) if n.is_empty() => {
                    return Err(bad("client_names", "name at least one subject name"))
                }
                Some(n) => n.clone(),
                None => {
                    let mut n: Vec<String> = Vec::new();
                    for s in stores {
                        let name = aws_kms_client_name(&s.region);
                        if !n.contains(&name) {
                            n.push(name);
                        }
                    }
                    n
                }
            };
            Some(XksClientAuth {
                ca: ca.clone(),
                names,
            })
        }
    };
    Ok(Some(XksListenerConfig {
        listen,
        cert,
        client_auth,
    }))
}

/// The stores' listener address in a new dev directory: after the AWS API's.
pub(crate) const DEFAULT_XKS_LISTEN: &str = "127.0.0.1:7881";

/// Checks `[xks]`' stores, each signing for its `region` or else `daemon_region`; the
/// secrets are read later, by [`read_secrets`].
pub(crate) fn load(
    section: &XksSection,
    daemon_region: &Region,
) -> Result<Vec<XksStore>, XksConfigError> {
    let mut stores: Vec<XksStore> = Vec::new();
    for (i, s) in section.stores.iter().enumerate() {
        let at = |f: &str| format!("xks.stores[{i}].{f}");
        let bad = |f: &str, reason: &str| XksConfigError {
            field: at(f),
            reason: reason.into(),
        };
        let region = match &s.region {
            None => daemon_region.clone(),
            Some(r) => r
                .parse()
                .map_err(|_| bad("region", "not a region name such as eu-west-1"))?,
        };
        if !valid_uri_path(&s.uri_path) {
            return Err(bad(
                "uri_path",
                "must be [/prefix]/kms/xks/v1, at most 128 characters of a-z, A-Z, 0-9, /, - and _",
            ));
        }
        if stores.iter().any(|o| o.uri_path == s.uri_path) {
            return Err(bad("uri_path", "another store has the same uri_path"));
        }
        let principal: Principal = s
            .principal
            .parse()
            .map_err(|e| bad("principal", &format!("not a principal ARN: {e}")))?;
        if s.credentials.is_empty() {
            return Err(bad("credentials", "give at least one credential"));
        }
        let mut credentials: Vec<XksCredential> = Vec::new();
        for (j, c) in s.credentials.iter().enumerate() {
            let field = format!("credentials[{j}]");
            if !valid_access_key_id(&c.access_key_id) {
                return Err(bad(
                    &format!("{field}.access_key_id"),
                    "must be 20 to 30 characters of A-Z and 2-7",
                ));
            }
            if credentials
                .iter()
                .any(|o| o.access_key_id == c.access_key_id)
            {
                return Err(bad(
                    &format!("{field}.access_key_id"),
                    "the store has this access key id twice",
                ));
            }
            credentials.push(XksCredential {
                access_key_id: c.access_key_id.clone(),
                secret_file: c.secret_file.clone(),
                secret: Zeroizing::new(String::new()),
            });
        }
        let mut keys: Vec<XksKey> = Vec::new();
        for (j, k) in s.keys.iter().enumerate() {
            let field = format!("keys[{j}]");
            if !valid_external_key_id(&k.id) {
                return Err(bad(
                    &format!("{field}.id"),
                    "must be 1 to 128 characters of a-z, A-Z, 0-9, -, . and _",
                ));
            }
            if keys.iter().any(|o| o.id == k.id) {
                return Err(bad(&format!("{field}.id"), "the store has this id twice"));
            }
            if k.key.is_empty() {
                return Err(bad(&format!("{field}.key"), "name a p11kms key or alias"));
            }
            let usage = match &k.usage {
                None => XksUsage {
                    encrypt: true,
                    decrypt: true,
                },
                Some(list) => {
                    let mut u = XksUsage {
                        encrypt: false,
                        decrypt: false,
                    };
                    for v in list {
                        match v.as_str() {
                            "ENCRYPT" => u.encrypt = true,
                            "DECRYPT" => u.decrypt = true,
                            _ => {
                                return Err(bad(
                                    &format!("{field}.usage"),
                                    "each value must be ENCRYPT or DECRYPT",
                                ))
                            }
                        }
                    }
                    u
                }
            };
            keys.push(XksKey {
                id: k.id.clone(),
                key: k.key.clone(),
                usage,
            });
        }
        let quota = match s.max_requests_per_second {
            None => None,
            Some(0) => {
                return Err(bad(
                    "max_requests_per_second",
                    "must be at least 1 (leave it out for no quota)",
                ))
            }
            Some(n) => Some(std::sync::Arc::new(super::quota::Quota::new(n))),
        };
        stores.push(XksStore {
            uri_path: s.uri_path.clone(),
            region,
            quota,
            principal,
            credentials,
            keys,
        });
    }
    Ok(stores)
}

/// AWS KMS's rule for `XksProxyUriPath`, for version 1 of the API.
fn valid_uri_path(p: &str) -> bool {
    let Some(prefix) = p.strip_suffix("/kms/xks/v1") else {
        return false;
    };
    p.len() <= 128
        && (prefix.is_empty()
            || (prefix.starts_with('/')
                && prefix.len() > 1
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_'))))
}

/// AWS KMS's rule for an XKS access key id: 20 to 30 characters of the base32 alphabet.
fn valid_access_key_id(id: &str) -> bool {
    (20..=30).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

/// The external key id rule: 1 to 128 characters of letters, digits, `-`, `.` and `_`.
pub(crate) fn valid_external_key_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Reads a secret access key from its file: 43 to 64 characters of a-z, A-Z, 0-9, /,
/// + and =, AWS KMS's rule (a trailing newline is not part of it).
fn read_secret(path: &std::path::Path) -> Result<Zeroizing<String>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "an XKS secret file is readable by others than its owner; chmod 600 it");
        }
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    let secret = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned());
    let valid = (43..=64).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+' | b'='));
    if !valid {
        return Err(format!(
            "{} must hold 43 to 64 characters of a-z, A-Z, 0-9, /, + and =",
            path.display()
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> Region {
        "us-east-1".parse().unwrap()
    }

    #[test]
    fn uri_paths_follow_aws_kms_rules() {
        for ok in ["/kms/xks/v1", "/example/kms/xks/v1", "/a/b-c_d/kms/xks/v1"] {
            assert!(valid_uri_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/kms/xks/v2",
            "kms/xks/v1",
            "example/kms/xks/v1",
            "/ex ample/kms/xks/v1",
            "/ex.ample/kms/xks/v1",
            &format!("/{}/kms/xks/v1", "a".repeat(120)),
        ] {
            assert!(!valid_uri_path(bad), "{bad}");
        }
    }

    #[test]
    fn access_key_ids_and_external_key_ids_follow_aws_kms_rules() {
        assert!(valid_access_key_id("AKIAXKSEXAMPLE234567"));
        assert!(!valid_access_key_id("AKIAXKSEXAMPLE23456"));
        assert!(!valid_access_key_id(
            "AKIAXKSEXAMPLE2345678"[..].to_lowercase().as_str()
        ));
        assert!(!valid_access_key_id("AKIAXKSEXAMPLE2345671"));
        assert!(valid_external_key_id("a.b-c_D9"));
        assert!(!valid_external_key_id(""));
        assert!(!valid_external_key_id("a/b"));
        assert!(!valid_external_key_id(&"k".repeat(129)));
    }

    #[test]
    fn a_store_is_loaded_with_its_secret_and_its_debug_hides_it() {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==";
        std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
        let section = XksSection {
            stores: vec![XksStoreSection {
                uri_path: "/store1/kms/xks/v1".into(),
                region: None,
                principal: "arn:aws:iam::111122223333:user/xks".into(),
                credentials: vec![XksCredentialSection {
                    access_key_id: "XKSPROXYEXAMPLEKEYID".into(),
                    secret_file: secret_file.clone(),
                }],
                keys: vec![XksKeySection {
                    id: "ext-1".into(),
                    key: "alias/x".into(),
                    usage: Some(vec!["ENCRYPT".into()]),
                }],
                max_requests_per_second: None,
            }],
            ..XksSection::default()
        };
        let mut stores = load(&section, &region()).unwrap();
        assert_eq!(stores[0].secret("XKSPROXYEXAMPLEKEYID"), None);
        read_secrets(&mut stores).unwrap();
        assert_eq!(stores[0].secret("XKSPROXYEXAMPLEKEYID"), Some(secret));
        assert_eq!(
            stores[0].key("ext-1").unwrap().usage,
            XksUsage {
                encrypt: true,
                decrypt: false
            }
        );
        assert!(!format!("{stores:?}").contains(secret));

        let mut bad = section.clone();
        bad.stores[0].keys[0].usage = Some(vec!["SIGN".into()]);
        assert_eq!(
            load(&bad, &region()).unwrap_err().field,
            "xks.stores[0].keys[0].usage"
        );
        std::fs::write(&secret_file, "short").unwrap();
        let err = read_secrets(&mut load(&section, &region()).unwrap()).unwrap_err();
        assert_eq!(err.field, "xks.stores[0].credentials[0].secret_file");
        assert!(!err.reason.contains("short"));
    }

    #[test]
    fn the_stores_listener_is_checked_and_names_aws_kms_of_each_region() {
        let store = |uri: &str, region: Option<&str>| XksStoreSection {
            uri_path: uri.into(),
            region: region.map(Into::into),
            principal: "arn:aws:iam::111122223333:user/xks".into(),
            credentials: vec![XksCredentialSection {
                access_key_id: "XKSPROXYEXAMPLEKEYID".into(),
                secret_file: "s".into(),
            }],
            keys: vec![],
            max_requests_per_second: None,
        };
        let mut section = XksSection {
            stores: vec![
                store("/a/kms/xks/v1", None),
                store("/b/kms/xks/v1", Some("eu-west-1")),
                store("/c/kms/xks/v1", Some("eu-west-1")),
            ],
            ..XksSection::default()
        };
        let stores = load(&section, &region()).unwrap();
        assert_eq!(stores[0].region(), "us-east-1");
        assert_eq!(stores[1].region(), "eu-west-1");
        assert_eq!(listener(&section, &stores).unwrap(), None);

        section.client_ca = Some("/ca.pem".into());
        assert_eq!(
            listener(&section, &stores).unwrap_err().field,
            "xks.client_ca"
        );
        section.listen = Some("127.0.0.1:7881".into());
        let l = listener(&section, &stores).unwrap().unwrap();
        assert_eq!(
            l.client_auth.unwrap().names,
            [
                "cks.kms.us-east-1.amazonaws.com",
                "cks.kms.eu-west-1.amazonaws.com"
            ]
        );
        assert_eq!(l.cert, None);
        section.client_names = Some(vec![]);
        assert_eq!(
            listener(&section, &stores).unwrap_err().field,
            "xks.client_names"
        );
        section.client_names = None;
        section.tls_cert = Some("/c.pem".into());
        assert_eq!(
            listener(&section, &stores).unwrap_err().field,
            "xks.tls_cert"
        );
        section.tls_key = Some("/k.pem".into());
        assert!(listener(&section, &stores).unwrap().unwrap().cert.is_some());
        section.listen = Some("nowhere".into());
        assert_eq!(listener(&section, &stores).unwrap_err().field, "xks.listen");
        assert_eq!(listener(&section, &[]).unwrap_err().field, "xks.listen");

        section.stores[1].region = Some("EU".into());
        assert_eq!(
            load(&section, &region()).unwrap_err().field,
            "xks.stores[1].region"
        );
    }
}
