//! TLS to the database (`[store] tls_ca_file`, and a client certificate with
//! `tls_cert_file`/`tls_key_file`): tokio-postgres's connector traits over rustls, with
//! the same crypto provider as the daemon's own listeners. The server's certificate
//! must chain to the configured CA and name the host the URL connects to; the
//! connection is refused otherwise (libpq's `verify-full`).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::Socket;

use crate::store::StoreError;

/// The files TLS to the database is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbTlsFiles {
    /// PEM certificates of the CA(s) the server's certificate must chain to.
    pub ca: PathBuf,
    /// PEM certificate chain and private key presented to the server, if it asks for
    /// one (`cert` authentication in pg_hba.conf).
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The connector handed to the pool and the listening connection: TLS with the loaded
/// configuration, or none (then the connection is made with `sslmode=disable`, so this
/// connector is never asked for a stream).
#[derive(Clone)]
pub(crate) struct DbTls(Option<Arc<rustls::ClientConfig>>);

fn bad(path: &Path, what: &str) -> StoreError {
    StoreError::Database(format!("{}: {what}", path.display()).into())
}

fn read_pem(path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| bad(path, &format!("cannot read it ({e})")))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    use rustls::pki_types::pem::PemObject as _;
    let pem = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, &format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(bad(path, "holds no certificate"));
    }
    Ok(certs)
}

impl DbTls {
    /// No TLS.
    pub(crate) fn none() -> Self {
        Self(None)
    }

    /// Loads the files: every certificate of the CA file a trust anchor, and the client
    /// certificate and key if given.
    pub(crate) fn load(files: &DbTlsFiles) -> Result<Self, StoreError> {
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(&files.ca)? {
            roots
                .add(cert)
                .map_err(|e| bad(&files.ca, &format!("not a usable CA certificate ({e})")))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Database(Box::new(e)))?
        .with_root_certificates(roots);
        let config = match &files.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let key_pem = zeroize::Zeroizing::new(read_pem(key)?);
                let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|_| bad(key, "holds no PEM private key"))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| bad(cert, &format!("does not go with its key ({e})")))?
            }
        };
        Ok(Self(Some(Arc::new(config))))
    }

    /// Whether connections use TLS.
    pub(crate) fn enabled(&self) -> bool {
        self.0.is_some()
    }
}

impl MakeTlsConnect<Socket> for DbTls {
    type Stream = DbTlsStream;
    type TlsConnect = DbTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<DbTlsConnect, io::Error> {
        // Checked at the handshake, not here: tokio-postgres asks for a connector for
        // every host, a Unix socket's (named "") too, even when TLS is off.
        Ok(DbTlsConnect {
            config: self.0.clone(),
            domain: domain.to_owned(),
        })
    }
}

/// One connection's TLS handshake, for the host it connects to.
pub(crate) struct DbTlsConnect {
    config: Option<Arc<rustls::ClientConfig>>,
    domain: String,
}

impl TlsConnect<Socket> for DbTlsConnect {
    type Stream = DbTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<DbTlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let config = self.config.ok_or_else(|| {
                io::Error::other("TLS to the database is not configured (store.tls_ca_file)")
            })?;
            let name = ServerName::try_from(self.domain).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("TLS to the database needs a host name or address to check its certificate against ({e})"),
                )
            })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await?;
            Ok(DbTlsStream(Box::new(tls)))
        })
    }
}

/// A TLS connection to the database.
pub(crate) struct DbTlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl AsyncRead for DbTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for DbTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}

impl TlsStream for DbTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding: the server is authenticated by its certificate.
        ChannelBinding::none()
    }
}
