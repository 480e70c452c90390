//! Who is calling: the principal ARN named by the client certificate's URI SAN.
//! Knows nothing of keys or policies.

mod cert;
mod principal;

pub(crate) use cert::principal_from_cert;
pub(crate) use principal::{Principal, PrincipalKind};

/// Why a caller has no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// TLS gave us no client certificate (cannot happen with required client auth, but
    /// the type says so rather than a comment).
    #[error("no client certificate was presented")]
    NoCertificate,
    /// The certificate did not parse as X.509.
    #[error("the client certificate could not be parsed")]
    BadCertificate,
    /// No URI SAN holding an IAM ARN.
    #[error("the client certificate names no principal: it needs a URI subject alternative name such as arn:aws:iam::111122223333:role/NAME")]
    NoPrincipal,
    /// More than one ARN: we will not guess which one is meant.
    #[error("the client certificate names more than one principal ARN")]
    AmbiguousPrincipal,
    /// A URI SAN that looks like an ARN but is not an IAM role, user or root ARN.
    #[error("the client certificate's principal is not an IAM role, user or root ARN")]
    MalformedPrincipal,
}
