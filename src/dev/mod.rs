//! Dev mode: a zero-configuration daemon. Creates a data directory with its own
//! softhsm2.conf and token, PINs in 0600 files, a dev CA, a server certificate and an
//! admin client identity, and a p11kms.toml that points at all of it. Restarting reuses
//! everything. The only place (with softhsm/) that knows SoftHSM2.

mod aws_env;
mod ca;
mod credentials;
mod files;
mod xks_env;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tracing::info;

pub use aws_env::DevAccessKey;
pub use ca::DevCa;
pub use xks_env::{DEV_XKS_ALIAS, DEV_XKS_KEYS, DEV_XKS_PREFIX};

use crate::config::{
    AuditSection, AwsApiSection, ConfigFile, HsmSection, MetricsSection, StoreSection, TlsSection,
};
use crate::domain::Pin;
use crate::hsm::{HsmError, Module, ModuleEnv};
use files::{random_secret, write_new, write_private};

/// Label of the dev token.
pub const DEV_TOKEN_LABEL: &str = "p11kms-dev";
/// The dev daemon's default address.
pub(crate) const DEV_LISTEN: &str = "127.0.0.1:7878";
/// The dev daemon's default metrics and health address (localhost only).
pub const DEV_METRICS_LISTEN: &str = crate::config::DEFAULT_METRICS_LISTEN;
/// The dev daemon's default AWS JSON (AWS SDK and CLI) address (localhost only).
pub const DEV_AWS_API_LISTEN: &str = crate::config::DEFAULT_AWS_API_LISTEN;
/// The dev account (AWS's documentation example account).
pub const DEV_ACCOUNT: &str = "111122223333";

/// Why dev mode could not set itself up.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A file or directory.
    #[error("cannot write {}", path.display())]
    Io {
        /// Which.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation.
    #[error("cannot make dev certificates")]
    Cert(#[from] rcgen::Error),
    /// The token.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// SoftHSM2 is not installed.
    #[error("SoftHSM2 is not installed (no libsofthsm2.so found); run softhsm/install.sh, or set P11KMS_PKCS11_MODULE")]
    NoSoftHsm,
    /// Bad principal for a certificate.
    #[error("{0}")]
    Principal(String),
    /// The generated configuration or a PIN file.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The configuration could not be written.
    #[error("cannot write the dev configuration")]
    Toml(#[from] toml::ser::Error),
    /// A certificate file could not be read or parsed.
    #[error("cannot read the certificate {}: {reason}", path.display())]
    BadCertificate {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The metadata store.
    #[error("cannot open the dev metadata store")]
    Store(#[source] crate::store::StoreError),
    /// The vault could not be set up over the dev token and store.
    #[error("cannot set up the vault")]
    Vault(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The vault refused, named as the daemon would name it.
    #[error("{name}")]
    Kms {
        /// The AWS error name.
        name: &'static str,
        /// The refusal.
        source: crate::vault::KmsError,
    },
    /// No dev directory yet.
    #[error("no dev CA in {0}; start `p11kms serve --dev` once first")]
    NotInitialised(PathBuf),
    /// The token directory cannot be read: the dev token may be in it, so none is
    /// initialised.
    #[error("cannot read the dev token directory {}; it may hold the token labelled {DEV_TOKEN_LABEL}, so p11kms will not initialise another: make it readable by this user and start again", path.display())]
    TokenDirUnreadable {
        /// The token directory.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// SoftHSM2 shows no dev token, but the token directory is not empty: a token is
    /// there that SoftHSM2 could not load, so none is initialised.
    #[error("SoftHSM2 shows no token labelled {DEV_TOKEN_LABEL}, but the token directory holds {} (unreadable, or not a token SoftHSM2 can load); p11kms will not initialise a second token with that label: make it readable, or move it out of {} to start with a new token", entry.display(), dir.display())]
    TokenNotLoaded {
        /// The token directory.
        dir: PathBuf,
        /// What is in it.
        entry: PathBuf,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DevError + '_ {
    move |source| DevError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The dev data directory and what lives in it.
#[derive(Clone, Debug)]
pub struct DevDir {
    root: PathBuf,
}

impl DevDir {
    /// `$P11KMS_DEV_DIR`, else `~/.p11kms/dev`.
    pub fn default_root() -> PathBuf {
        if let Some(d) = std::env::var_os("P11KMS_DEV_DIR") {
            return PathBuf::from(d);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".p11kms").join("dev")
    }

    /// A dev directory at `root` (not created yet).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The generated configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("p11kms.toml")
    }
    /// SoftHSM2's configuration for this directory's token.
    pub fn softhsm_conf(&self) -> PathBuf {
        self.root.join("softhsm2.conf")
    }
    /// SoftHSM2's token directory for this dev directory (`directories.tokendir`).
    pub fn tokens_dir(&self) -> PathBuf {
        self.root.join("tokens")
    }
    /// The admin client identity (cert.pem, key.pem, ca.pem).
    pub fn admin_identity(&self) -> PathBuf {
        self.root.join("identities").join("admin")
    }
    /// Where the running dev daemon writes its address.
    pub fn endpoint_file(&self) -> PathBuf {
        self.root.join("endpoint")
    }
    /// The dev CA.
    pub fn ca(&self) -> Result<DevCa, DevError> {
        DevCa::load(&self.root)
    }

    /// Creates whatever is missing; keeps whatever exists.
    pub fn prepare(&self) -> Result<(), DevError> {
        files::create_private_dir(&self.root)?;
        let tokens = self.tokens_dir();
        files::create_private_dir(&tokens)?;
        write_new(
            &self.softhsm_conf(),
            format!(
                "# SoftHSM2 configuration of the p11kms dev token (written by p11kms serve --dev)\n\
                 directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            )
            .as_bytes(),
        )?;
        for pin in ["user.pin", "so.pin"] {
            let path = self.root.join(pin);
            if !path.exists() {
                write_private(&path, random_secret().as_bytes())?;
            }
        }
        let ca = DevCa::load_or_create(&self.root)?;
        if !self.root.join("server.pem").exists() {
            ca.issue_server(&self.root)?;
        }
        if !self.admin_identity().join("cert.pem").exists() {
            let admin = format!("arn:aws:iam::{DEV_ACCOUNT}:root");
            ca.issue_client(Some(&admin), &self.admin_identity())?;
        }
        if !self.config_path().exists() {
            let module = softhsm_module()?;
            let cfg = ConfigFile {
                listen: DEV_LISTEN.into(),
                account: DEV_ACCOUNT.into(),
                region: "us-east-1".into(),
                partition: None,
                shutdown_timeout_secs: None,
                tls: TlsSection {
                    cert: "server.pem".into(),
                    key: "server.key".into(),
                    client_ca: "ca.pem".into(),
                    client_crl: None,
                    max_connection_age_secs: None,
                },
                hsm: HsmSection {
                    module,
                    token_label: Some(DEV_TOKEN_LABEL.into()),
                    slot: None,
                    pin_env: None,
                    pin_file: Some("user.pin".into()),
                    sessions: None,
                    inline_sessions: None,
                    copy_keys: None,
                    call_timeout_ms: None,
                    health_check_ms: None,
                    env: None,
                },
                store: StoreSection {
                    sqlite: Some("p11kms.db".into()),
                    ..StoreSection::default()
                },
                limits: None,
                trusted_services: Vec::new(),
                lifecycle: None,
                // Written out so that a reader sees where the trail is.
                audit: Some(AuditSection {
                    dir: Some("audit".into()),
                    sync: None,
                    max_file_bytes: None,
                    enabled: None,
                    checkpoint_records: None,
                    checkpoint_secs: None,
                    checkpoint_public_key: None,
                }),
                metrics: Some(MetricsSection {
                    listen: Some(DEV_METRICS_LISTEN.into()),
                    tls_cert: None,
                    tls_key: None,
                }),
                aws_api: Some(AwsApiSection {
                    listen: Some(DEV_AWS_API_LISTEN.into()),
                    require_client_certificate: None,
                }),
                connections: None,
                xks: Some(crate::xks::XksSection {
                    listen: Some(crate::xks::DEFAULT_XKS_LISTEN.into()),
                    stores: vec![self.new_xks_store(&format!("arn:aws:iam::{DEV_ACCOUNT}:root"))?],
                    ..crate::xks::XksSection::default()
                }),
            };
            let text =
                toml::to_string_pretty(&cfg).map_err(|e| DevError::Principal(e.to_string()))?;
            write_new(
                &self.config_path(),
                format!("# Written by p11kms serve --dev. The same format serves production (see README).\n{text}").as_bytes(),
            )?;
        }
        Ok(())
    }

    /// Initialises the dev token if this directory has none yet: only when SoftHSM2
    /// shows no token with its label and the token directory is readable and empty.
    /// SOFTHSM2_CONF must already point at [`Self::softhsm_conf`]. `env` is the module's
    /// environment (`hsm.env`), for a module other than SoftHSM2.
    pub fn init_token_if_missing(
        &self,
        module_path: &Path,
        env: &ModuleEnv,
    ) -> Result<(), DevError> {
        // SoftHSM2 skips a token it cannot read, and would then let us initialise a
        // second token with the same label beside it: a fork, the first token's keys
        // out of sight while the store still names them. So the directory is read
        // first, by us, and a token SoftHSM2 does not show must not be on disk.
        let dir = self.tokens_dir();
        let on_disk = first_entry(&dir)?;
        let module = Module::load_with_env(module_path, env)?;
        if module.has_token(DEV_TOKEN_LABEL)? {
            return module.finalize().map_err(DevError::from);
        }
        if let Some(entry) = on_disk {
            let _ = module.finalize();
            return Err(DevError::TokenNotLoaded { dir, entry });
        }
        let read = |name: &str| -> Result<Pin, DevError> {
            let path = self.root.join(name);
            let s = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            Ok(Pin::new(s.trim().to_owned()))
        };
        module.init_token(DEV_TOKEN_LABEL, &read("so.pin")?, &read("user.pin")?)?;
        info!(label = DEV_TOKEN_LABEL, "initialised the dev token");
        // Re-initialise the module so that the new token shows under its final slot.
        module.finalize()?;
        Ok(())
    }

    /// The token's secret-key and private-key objects, read directly over PKCS#11. SOFTHSM2_CONF must
    /// already point at [`Self::softhsm_conf`].
    pub fn token_objects(&self) -> Result<Vec<crate::hsm::TokenObject>, DevError> {
        let config = crate::config::Config::load(&self.config_path())?;
        let pin = config.pin.read()?;
        let module = Module::load_with_env(&config.module, &config.module_env)?;
        let slot = module.find_slot(&config.token)?;
        Ok(module.key_objects(slot, &pin)?)
    }

    /// Records the address the dev daemon listens on, for the CLI to find.
    pub fn write_endpoint(&self, addr: SocketAddr) -> Result<(), DevError> {
        let path = self.endpoint_file();
        std::fs::write(&path, format!("https://{addr}\n")).map_err(io_err(&path))
    }
}

/// The first entry of the token directory `dir`, None when it is empty; an error naming
/// it when it cannot be read.
fn first_entry(dir: &Path) -> Result<Option<PathBuf>, DevError> {
    let unreadable = |source| DevError::TokenDirUnreadable {
        path: dir.to_owned(),
        source,
    };
    match std::fs::read_dir(dir).map_err(unreadable)?.next() {
        None => Ok(None),
        Some(entry) => Ok(Some(entry.map_err(unreadable)?.path())),
    }
}

/// Finds libsofthsm2.so: `$P11KMS_PKCS11_MODULE`, else the paths Debian, Fedora and a
/// source build use.
pub fn softhsm_module() -> Result<PathBuf, DevError> {
    if let Some(p) = std::env::var_os("P11KMS_PKCS11_MODULE") {
        return Ok(PathBuf::from(p));
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib64/pkcs11/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .ok_or(DevError::NoSoftHsm)
}
