//! Reads the principal ARN out of a client certificate that TLS already verified.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{IdentityError, Principal};

/// The principal named by the certificate's single `arn:` URI SAN.
pub(crate) fn principal_from_cert(der: &[u8]) -> Result<Principal, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| IdentityError::BadCertificate)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::BadCertificate)?;
    let mut arns = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|n| match n {
            GeneralName::URI(u) if u.starts_with("arn:") => Some(*u),
            _ => None,
        });
    let first = arns.next().ok_or(IdentityError::NoPrincipal)?;
    if arns.next().is_some() {
        return Err(IdentityError::AmbiguousPrincipal);
    }
    first.parse()
}
