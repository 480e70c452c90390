//! The ciphertext blob (`p11kms::parse_blob`, docs/ciphertext-format.md): whatever the
//! bytes, the parser answers without panicking, and a blob it accepts is exactly its
//! parts: writing the parsed fields back in the v1 layout gives the input, byte for
//! byte, so no byte of an accepted blob is ignored or read twice.

/// The v1 header: magic, format version 1, key id, material version.
fn header(key_id: &[u8; 16], version: u32) -> Vec<u8> {
    let mut h = b"p11\x01".to_vec();
    h.extend_from_slice(key_id);
    h.extend_from_slice(&version.to_be_bytes());
    h
}

/// See the module doc.
pub fn check(data: &[u8]) {
    let Ok(blob) = p11kms::parse_blob(data) else {
        return;
    };
    assert_eq!(
        blob.header,
        header(blob.key_id.as_bytes(), blob.version.0).as_slice(),
        "the header is not the key id and version it names"
    );
    assert_eq!(blob.iv.len(), 12, "an IV of the wrong length");
    assert!(
        blob.ciphertext_and_tag.len() > 16,
        "no ciphertext before the tag"
    );
    assert_ne!(blob.version.0, 0, "material version 0 accepted");
    let written = [blob.header, blob.iv, blob.ciphertext_and_tag].concat();
    assert_eq!(written, data, "the parts do not make up the blob");
}

/// True when the parser accepts `data` (the `valid-*` seeds must stay so).
pub fn accepted(data: &[u8]) -> bool {
    p11kms::parse_blob(data).is_ok()
}
