//! Client side: connecting to the daemon over mTLS with an identity directory. The
//! envelope-encryption library grows here; it never imports the vault.

pub mod cache;
pub mod config;
pub mod envelope;
mod failover;

pub use failover::Failover;

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity as TlsIdentity};
use zeroize::Zeroizing;

use crate::api::ERROR_TYPE_HEADER;
use crate::proto::key_management_service_client::KeyManagementServiceClient;

/// The most items the daemon takes in one BatchEncrypt or BatchDecrypt call.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// The largest gRPC message the daemon takes, and the largest answer [`connect`]'s
/// client accepts (8 MiB): a batch call must fit in it.
pub const MAX_MESSAGE_BYTES: usize = crate::api::MAX_MESSAGE_BYTES;

/// The gRPC client over mTLS channels to one or more daemons (see [`Failover`]). Cheap
/// to clone: clones share the connections.
pub type KmsClient = KeyManagementServiceClient<Failover>;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An identity file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// Which file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No identity to connect with.
    #[error("no identity: pass one (cert.pem, key.pem, ca.pem), or start `p11kms serve --dev` so that the dev admin identity exists in {}", .0.display())]
    NoIdentity(PathBuf),
    /// The endpoint list is empty.
    #[error("no endpoint given")]
    NoEndpoint,
    /// Bad endpoint or TLS failure.
    #[error("cannot connect to {endpoint}")]
    Transport {
        /// Where.
        endpoint: String,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
}

/// A client identity: certificate, key and the CA that signed the server's certificate.
/// Read from a directory holding cert.pem, key.pem and ca.pem.
pub struct Identity {
    cert: Vec<u8>,
    key: Zeroizing<Vec<u8>>,
    ca: Vec<u8>,
}

impl Identity {
    /// Reads `dir/{cert,key,ca}.pem`.
    pub fn from_dir(dir: &Path) -> Result<Self, ClientError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| ClientError::Io { path, source })
        };
        Ok(Self {
            cert: read("cert.pem")?,
            key: Zeroizing::new(read("key.pem")?),
            ca: read("ca.pem")?,
        })
    }
}

/// Connects to `endpoints` (e.g. `https://127.0.0.1:7878`, or several separated by
/// commas: replicas, tried in turn, see [`Failover`]) as `identity`. The server
/// certificate must name `localhost` or the endpoint's IP. Fails when no endpoint
/// connects; the ones that did not are tried again by later calls.
pub async fn connect(endpoints: &str, identity: &Identity) -> Result<KmsClient, ClientError> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&identity.ca))
        .identity(TlsIdentity::from_pem(
            &identity.cert,
            identity.key.as_slice(),
        ));
    let mut channels = Vec::new();
    let mut first = None;
    let mut failure = None;
    for endpoint in endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let err = |source| ClientError::Transport {
            endpoint: endpoint.to_owned(),
            source,
        };
        let configured = Endpoint::from_shared(endpoint.to_owned())
            .map_err(err)?
            .tls_config(tls.clone())
            .map_err(err)?;
        if first.is_none() {
            // The first endpoint that answers is the one calls start with.
            match configured.connect().await {
                Ok(channel) => {
                    first = Some(channels.len());
                    channels.push((endpoint.to_owned(), channel));
                    continue;
                }
                Err(e) => failure = Some(err(e)),
            }
        }
        channels.push((endpoint.to_owned(), configured.connect_lazy()));
    }
    let Some(first) = first else {
        return Err(failure.unwrap_or(ClientError::NoEndpoint));
    };
    Ok(
        KeyManagementServiceClient::new(Failover::new(channels, first))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// Connects the way the CLI does: `endpoint` and `identity` when given, otherwise the
/// dev daemon of the dev directory `dev_root` (default `$P11KMS_DEV_DIR` or
/// ~/.p11kms/dev): the address it wrote there and its admin identity.
pub async fn connect_default(
    endpoint: Option<&str>,
    identity: Option<&Path>,
    dev_root: Option<&Path>,
) -> Result<KmsClient, ClientError> {
    let dev = crate::dev::DevDir::at(
        dev_root
            .map(Path::to_path_buf)
            .unwrap_or_else(crate::dev::DevDir::default_root),
    );
    let identity_dir = match identity {
        Some(d) => d.to_path_buf(),
        None if dev.admin_identity().join("cert.pem").exists() => dev.admin_identity(),
        None => return Err(ClientError::NoIdentity(dev.root().to_path_buf())),
    };
    let endpoint = match endpoint {
        Some(e) => e.to_owned(),
        None => std::fs::read_to_string(dev.endpoint_file())
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| format!("https://{}", crate::dev::DEV_LISTEN)),
    };
    connect(&endpoint, &Identity::from_dir(&identity_dir)?).await
}

/// The AWS KMS error name of a failed call, when the daemon sent one.
pub fn error_name(status: &tonic::Status) -> Option<&str> {
    status.metadata().get(ERROR_TYPE_HEADER)?.to_str().ok()
}

/// A failed call as AWS CLI users read it: the error name, then the message (the
/// daemon's messages already start with the name; it is not repeated). Without a name
/// (a transport failure), the gRPC code stands in.
pub fn describe_status(status: &tonic::Status) -> String {
    let msg = status.message();
    match error_name(status) {
        Some(name) if msg.starts_with(name) => msg.to_owned(),
        Some(name) => format!("{name}: {msg}"),
        None => format!("{:?}: {msg}", status.code()),
    }
}
