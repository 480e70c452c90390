//! TLS of the stores' own listener (`[xks] listen`): its own certificate (AWS KMS
//! connects only to one from a public CA) or the daemon's, TLS 1.2 and 1.3, HTTP/1.1
//! and HTTP/2; and, with `client_ca`, mutual TLS as the specification asks of a proxy:
//! the handshake ends unless the client's certificate chains to `client_ca` and its
//! subject common name is one of `client_names` (AWS KMS presents
//! `cks.kms.<region>.amazonaws.com`, under an Amazon Trust Services CA).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls::{ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::config::{XksClientAuth, XksListenerConfig};
use crate::api::{pem_err, read_chain_and_key, TlsError};

/// The listener's configuration, with `daemon_cert` and `daemon_key` (`[tls]`) when
/// it has no certificate of its own.
pub(crate) fn server_config(
    listener: &XksListenerConfig,
    daemon_cert: &Path,
    daemon_key: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert, key) = match &listener.cert {
        Some((c, k)) => (c.as_path(), k.as_path()),
        None => (daemon_cert, daemon_key),
    };
    let (chain, key) = read_chain_and_key(cert, key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match &listener.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => builder.with_client_cert_verifier(verifier(auth, provider)?),
    };
    let mut cfg = builder.with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn verifier(
    auth: &XksClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&auth.ca).map_err(pem_err("the client CA", &auth.ca))? {
        roots.add(ca.map_err(pem_err("the client CA", &auth.ca))?)?;
    }
    let chain = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
    Ok(Arc::new(SubjectNames {
        chain,
        names: auth.names.clone(),
    }))
}

/// A client certificate verifier that accepts what `chain` accepts (a chain to the
/// client CA, in its validity period) and then only a subject common name of `names`.
#[derive(Debug)]
struct SubjectNames {
    chain: Arc<dyn ClientCertVerifier>,
    names: Vec<String>,
}

impl ClientCertVerifier for SubjectNames {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        if subject_name_allowed(end_entity, &self.names) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// True when the certificate's subject has exactly one common name and it is one of
/// `names` (DNS names: compared without regard to ASCII case). A subject with two
/// common names is refused rather than matched on either.
fn subject_name_allowed(cert: &CertificateDer<'_>, names: &[String]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return false;
    };
    let mut cns = cert.subject().iter_common_name();
    let (Some(cn), None) = (cns.next(), cns.next()) else {
        return false;
    };
    cn.as_str()
        .is_ok_and(|cn| names.iter().any(|n| n.eq_ignore_ascii_case(cn)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(cns: &[&str]) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for cn in cns {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, *cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn only_one_allowed_common_name_passes() {
        let names = vec!["cks.kms.eu-west-1.amazonaws.com".to_owned()];
        assert!(subject_name_allowed(
            &cert_with(&["cks.kms.eu-west-1.amazonaws.com"]),
            &names
        ));
        assert!(subject_name_allowed(
            &cert_with(&["CKS.KMS.EU-WEST-1.AMAZONAWS.COM"]),
            &names
        ));
        for refused in [
            &[][..],
            &["cks.kms.us-east-1.amazonaws.com"][..],
            &["cks.kms.eu-west-1.amazonaws.com.evil.example"][..],
            &["evil.example"][..],
        ] {
            assert!(
                !subject_name_allowed(&cert_with(refused), &names),
                "{refused:?}"
            );
        }
        assert!(!subject_name_allowed(
            &CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]),
            &names
        ));
    }
}
