//! Client side: connecting to the daemon over mTLS with an identity directory. The
//! envelope-encryption library grows here; it never imports the vault.

pub mod cache;
pub mod config;
pub mod envelope;

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity as TlsIdentity};
use zeroize::Zeroizing;

use crate::api::ERROR_TYPE_HEADER;
use crate::proto::key_management_service_client::KeyManagementServiceClient;

/// The raw gRPC client over a channel.
pub type KmsClient = KeyManagementServiceClient<Channel>;

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

/// Connects to `endpoint` (e.g. `https://127.0.0.1:7878`) as `identity`. The server
/// certificate must name `localhost` or the endpoint's IP.
pub async fn connect(endpoint: &str, identity: &Identity) -> Result<KmsClient, ClientError> {
    let err = |source| ClientError::Transport {
        endpoint: endpoint.to_owned(),
        source,
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&identity.ca))
        .identity(TlsIdentity::from_pem(
            &identity.cert,
            identity.key.as_slice(),
        ));
    let channel = Endpoint::from_shared(endpoint.to_owned())
        .map_err(err)?
        .tls_config(tls)
        .map_err(err)?
        .connect()
        .await
        .map_err(err)?;
    Ok(KeyManagementServiceClient::new(channel))
}

/// The AWS KMS error name of a failed call, when the daemon sent one.
pub fn error_name(status: &tonic::Status) -> Option<&str> {
    status.metadata().get(ERROR_TYPE_HEADER)?.to_str().ok()
}
