//! The dev CA: self-signed, made with rcgen, issuing the server certificate and client
//! certificates whose URI SAN names a principal ARN, and CRLs that revoke them.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::files::write_private;
use super::{io_err, DevError};
use crate::identity::Principal;

/// The dev certificate authority.
pub struct DevCa {
    cert_pem: String,
    key: KeyPair,
}

fn read(path: &Path) -> Result<String, DevError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

impl DevCa {
    /// Loads the CA from a dev directory.
    pub fn load(root: &Path) -> Result<Self, DevError> {
        let cert = root.join("ca.pem");
        if !cert.exists() {
            return Err(DevError::NotInitialised(root.to_owned()));
        }
        Ok(Self {
            cert_pem: read(&cert)?,
            key: KeyPair::from_pem(&read(&root.join("ca.key"))?)?,
        })
    }

    /// Loads the CA, creating it first if the directory has none.
    pub fn load_or_create(root: &Path) -> Result<Self, DevError> {
        if root.join("ca.pem").exists() {
            return Self::load(root);
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "p11kms dev CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // CrlSign: verifiers refuse a CRL from a CA whose key usage lacks it.
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        write_private(&root.join("ca.key"), key.serialize_pem().as_bytes())?;
        write_private(&root.join("ca.pem"), cert.pem().as_bytes())?;
        Ok(Self {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, DevError> {
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?)
    }

    /// Server certificate for localhost, 127.0.0.1 and ::1 (server.pem, server.key).
    pub fn issue_server(&self, root: &Path) -> Result<(), DevError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        params
            .distinguished_name
            .push(DnType::CommonName, "p11kms dev server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer()?)?;
        write_private(&root.join("server.key"), key.serialize_pem().as_bytes())?;
        write_private(&root.join("server.pem"), cert.pem().as_bytes())?;
        Ok(())
    }

    /// A client identity directory (cert.pem, key.pem, ca.pem) for `principal`. `None`
    /// makes a certificate that names no principal, which the daemon refuses: for tests.
    pub fn issue_client(&self, principal: Option<&str>, out: &Path) -> Result<PathBuf, DevError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let cn = match principal {
            Some(arn) => {
                arn.parse::<Principal>()
                    .map_err(|e| DevError::Principal(format!("--principal: {e}")))?;
                let uri = arn.to_string().try_into()?;
                params.subject_alt_names.push(SanType::URI(uri));
                arn.rsplit([':', '/']).next().unwrap_or(arn).to_owned()
            }
            None => "no principal".to_owned(),
        };
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer()?)?;
        write_private(&out.join("key.pem"), key.serialize_pem().as_bytes())?;
        write_private(&out.join("cert.pem"), cert.pem().as_bytes())?;
        write_private(&out.join("ca.pem"), self.cert_pem.as_bytes())?;
        Ok(out.to_owned())
    }

    /// Writes `out` (PEM, replacing it): a CRL signed by this CA that revokes the
    /// certificates in the PEM files `revoked` (each file's first certificate; none makes
    /// a CRL that revokes nothing). A daemon whose `tls.client_crl` names `out` refuses
    /// them from its next start or SIGHUP on.
    pub fn write_crl(&self, revoked: &[&Path], out: &Path) -> Result<(), DevError> {
        let now = time::OffsetDateTime::now_utc();
        let revoked_certs = revoked
            .iter()
            .map(|path| {
                Ok(RevokedCertParams {
                    serial_number: serial_of(path)?,
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, DevError>>()?;
        let params = CertificateRevocationListParams {
            // A minute back, for clocks slightly behind this one.
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(30),
            // CRL numbers must grow from one CRL to the next; the time does.
            crl_number: SerialNumber::from(u64::try_from(now.unix_timestamp()).unwrap_or(0)),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer()?)?;
        write_private(out, crl.pem()?.as_bytes())
    }
}

/// The serial number of the first certificate in the PEM file `path`.
fn serial_of(path: &Path) -> Result<SerialNumber, DevError> {
    let bad = |reason: String| DevError::BadCertificate {
        path: path.to_owned(),
        reason,
    };
    let der = CertificateDer::from_pem_file(path).map_err(|e| bad(e.to_string()))?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?;
    Ok(SerialNumber::from_slice(cert.raw_serial()))
}
