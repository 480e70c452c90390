//! Public keys as PEM (RFC 7468 `PUBLIC KEY`, the SubjectPublicKeyInfo DER in base64, 64
//! characters a line), as OpenSSL writes and reads them. Decoding is rustls-pki-types'
//! (`PemObject`); this writes.

use base64::Engine as _;

/// `spki` (DER SubjectPublicKeyInfo) as a PEM `PUBLIC KEY` block.
pub fn public_key_pem(spki: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    // Base64 is ASCII: every 64-byte chunk is a whole str.
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject as _;

    #[test]
    fn what_is_written_reads_back() {
        let der: Vec<u8> = (0..=200u8).collect();
        let pem = super::public_key_pem(&der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back =
            rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), &der[..]);
    }
}
