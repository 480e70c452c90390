//! mTLS for the server: TLS 1.3 only, client certificates required and verified against
//! the configured CA (and CRLs, when given), and the caller's principal read from the
//! certificate once per connection.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::identity::{principal_from_cert, IdentityError, Principal};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot read {what} from {path}")]
    Pem {
        /// Which file (certificate, key, CA).
        what: &'static str,
        /// Its path.
        path: String,
        /// The cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the material.
    #[error("invalid TLS material: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA set is unusable.
    #[error("invalid client CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A CRL file could not be read or holds no CRL that rustls accepts.
    #[error("cannot use the client CRL file {path}: {reason}")]
    Crl {
        /// Its path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl TlsError {
    /// The configuration field whose file is at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Crl { .. } => "tls.client_crl",
            _ => "tls",
        }
    }
}

pub(crate) fn pem_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError {
    let path = path.display().to_string();
    move |source| TlsError::Pem { what, path, source }
}

/// Reads a server's certificate chain (leaf first) and private key from PEM files: the
/// API listener's and the metrics listener's.
pub(crate) fn read_chain_and_key(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err("the server certificate", cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err("the server certificate", cert))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err("the server key", key))?;
    Ok((chain, key))
}

/// The files the server's rustls configuration is built from. Kept after start-up so
/// that a reload (SIGHUP) rebuilds the configuration from the same paths.
#[derive(Clone, Debug)]
pub(crate) struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA certificate(s) whose client certificates are accepted (PEM).
    pub client_ca: PathBuf,
    /// CRL files (PEM); empty when revocation is not checked.
    pub client_crl: Vec<PathBuf>,
}

/// Whether a listener built from [`TlsFiles`] requires a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientCerts {
    /// The gRPC API: the certificate is the caller's identity.
    Required,
    /// The AWS JSON API: SigV4 authenticates; a certificate, when sent, must still
    /// chain to the client CA and not be revoked.
    Optional,
}

/// Which listener a configuration is for: its TLS versions and ALPN protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocols {
    /// gRPC: TLS 1.3 and HTTP/2 only.
    Grpc,
    /// AWS JSON: TLS 1.2 too, and HTTP/1.1 beside HTTP/2, as the AWS tools need.
    AwsApi,
}

impl TlsFiles {
    /// Reads every file and builds the gRPC server's rustls configuration.
    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.build(ClientCerts::Required, Protocols::Grpc)
    }

    /// The AWS JSON listener's configuration: the same certificate, client CA and
    /// CRLs, but a client certificate is optional, TLS 1.2 is offered beside 1.3 (AWS
    /// KMS accepts it, and older SDKs and Java runtimes need it), and ALPN offers
    /// HTTP/2 and HTTP/1.1 (the AWS CLI and boto3 speak only HTTP/1.1). With
    /// `require_client_cert` (`[aws_api] require_client_certificate`), a client without
    /// a certificate from `tls.client_ca` cannot connect at all: mutual TLS in front of
    /// SigV4.
    pub(crate) fn aws_api_config(
        &self,
        require_client_cert: bool,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let certs = if require_client_cert {
            ClientCerts::Required
        } else {
            ClientCerts::Optional
        };
        self.build(certs, Protocols::AwsApi)
    }

    fn build(
        &self,
        client_certs: ClientCerts,
        protocols: Protocols,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let client_ca = &self.client_ca;
        let (chain, key) = read_chain_and_key(&self.cert, &self.key)?;
        let mut roots = RootCertStore::empty();
        for ca in
            CertificateDer::pem_file_iter(client_ca).map_err(pem_err("the client CA", client_ca))?
        {
            roots.add(ca.map_err(pem_err("the client CA", client_ca))?)?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut crls = Vec::new();
        // Issuer (DER) of each full-scope CRL so far, and its file.
        let mut scopes: Vec<(Vec<u8>, &Path)> = Vec::new();
        for path in &self.client_crl {
            let file = read_crls(path)?;
            // rustls parses CRLs only when the verifier is built, and its error does not
            // say which file is at fault: build a throwaway verifier per file to find out.
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .with_crls(file.iter().cloned())
                .build()
                .map_err(|e| crl_err(path, e))?;
            for crl in &file {
                let Some(issuer) = full_scope_issuer(crl) else {
                    continue;
                };
                // rustls checks a certificate against the first CRL of its issuer only, so
                // an older CRL listed before a newer one would hide the newer revocations.
                if let Some((_, first)) = scopes.iter().find(|(i, _)| *i == issuer) {
                    return Err(crl_err(
                        path,
                        format!(
                            "it holds a CRL from the same CA as {}, and only the first would be used; give one CRL per CA",
                            first.display()
                        ),
                    ));
                }
                scopes.push((issuer, path));
            }
            crls.extend(file);
        }
        // With CRLs, rustls's defaults fail closed: every certificate of the client's
        // chain (but the trust anchor) must be covered by a CRL of its issuer, or the
        // handshake is refused. nextUpdate is not enforced, so a stale CRL file keeps
        // its revocations rather than locking every client out.
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .with_crls(crls);
        let verifier = match client_certs {
            ClientCerts::Required => verifier.build()?,
            ClientCerts::Optional => verifier.allow_unauthenticated().build()?,
        };
        let (versions, alpn): (&[_], _) = match protocols {
            Protocols::Grpc => (&[&rustls::version::TLS13], vec![b"h2".to_vec()]),
            Protocols::AwsApi => (
                &[&rustls::version::TLS13, &rustls::version::TLS12],
                vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ),
        };
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        cfg.alpn_protocols = alpn;
        Ok(Arc::new(cfg))
    }
}

fn crl_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Crl {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The issuer name (DER) of a CRL that covers all of its issuer's certificates, i.e. has
/// no issuing distribution point; `None` for a partitioned CRL (several of one CA may
/// then be needed) or one that does not parse (rustls has accepted it by now).
fn full_scope_issuer(crl: &CertificateRevocationListDer<'_>) -> Option<Vec<u8>> {
    use x509_parser::oid_registry::OID_X509_EXT_ISSUER_DISTRIBUTION_POINT;
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    let (_, crl) = CertificateRevocationList::from_der(crl).ok()?;
    let partitioned = crl
        .extensions()
        .iter()
        .any(|e| e.oid == OID_X509_EXT_ISSUER_DISTRIBUTION_POINT);
    (!partitioned).then(|| crl.issuer().as_raw().to_vec())
}

/// The CRLs of one PEM file; a file with none is an error, not an empty list, so that a
/// wrong path or an empty file cannot quietly drop revocations.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| crl_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crl_err(path, e))?;
    if crls.is_empty() {
        return Err(crl_err(path, "the file holds no PEM \"X509 CRL\" block"));
    }
    Ok(crls)
}

/// What the transport knows about a connection: where it came from and who it is.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    /// Remote address.
    pub addr: SocketAddr,
    /// The principal, or why the certificate names none.
    pub principal: Result<Principal, IdentityError>,
}

impl Peer {
    /// The peer of a finished handshake: its address and the principal its client
    /// certificate names (`NoCertificate` when it sent none).
    pub(crate) fn of(tls: &TlsStream<TcpStream>, addr: SocketAddr) -> Self {
        let principal = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or(IdentityError::NoCertificate)
            .and_then(|leaf| principal_from_cert(leaf));
        Self { addr, principal }
    }
}

/// An accepted mTLS connection, carrying its [`Peer`] into every request's extensions.
pub(crate) struct TlsConn {
    inner: TlsStream<TcpStream>,
    peer: Arc<Peer>,
    /// Dropped with the connection, which tells whoever watches it that it is closed.
    _gone: oneshot::Sender<()>,
}

impl TlsConn {
    /// Wraps a finished handshake; the receiver learns when the connection is dropped
    /// (closed by either side).
    pub(crate) fn new(
        inner: TlsStream<TcpStream>,
        addr: SocketAddr,
    ) -> (Self, oneshot::Receiver<()>) {
        let peer = Arc::new(Peer::of(&inner, addr));
        let (tx, rx) = oneshot::channel();
        (
            Self {
                inner,
                peer,
                _gone: tx,
            },
            rx,
        )
    }
}

impl Connected for TlsConn {
    type ConnectInfo = Arc<Peer>;
    fn connect_info(&self) -> Self::ConnectInfo {
        Arc::clone(&self.peer)
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
