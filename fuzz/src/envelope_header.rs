//! The envelope message header alone (`MessageHeader::read`: version, suite, message
//! id, encryption context, encrypted data keys, content type, frame length, commitment,
//! header tag). Whatever the bytes, it answers without panicking, and a header it
//! accepts writes back (`Header::body_bytes`, the encryptor's writer) to the bytes it
//! was read from, but for the encryption context: the writer sorts the pairs and writes
//! an empty context as nothing, where other writers may not (the header tag covers the
//! bytes as sent). Reading the written header gives the same header again.

use p11kms::client::envelope::{DecryptOptions, MessageHeader};

/// Version (1), suite (2), message id (32): the context's u16 length follows.
const CONTEXT_LENGTH_AT: usize = 35;

fn context_length(b: &[u8]) -> usize {
    let n = b
        .get(CONTEXT_LENGTH_AT..CONTEXT_LENGTH_AT + 2)
        .unwrap_or_else(|| panic!("a header shorter than its context length"));
    usize::from(u16::from_be_bytes([n[0], n[1]]))
}

/// See the module doc.
pub fn check(data: &[u8]) {
    let options = DecryptOptions::default();
    let Ok(read) = MessageHeader::read(data, &options) else {
        return;
    };
    let header = read.header();
    let written = header
        .body_bytes()
        .unwrap_or_else(|e| panic!("a header that was read cannot be written: {e}"));
    let (ctx_in, ctx_out) = (context_length(data), context_length(&written));
    let after_in = CONTEXT_LENGTH_AT + 2 + ctx_in;
    let after_out = CONTEXT_LENGTH_AT + 2 + ctx_out;
    let rest = written.len() - after_out;
    assert_eq!(
        written.get(..CONTEXT_LENGTH_AT),
        data.get(..CONTEXT_LENGTH_AT),
        "version, suite or message id written back differently"
    );
    assert_eq!(
        written.get(after_out..),
        data.get(after_in..after_in + rest),
        "the data keys, content type, frame length or commitment written back differently"
    );
    if ctx_in != ctx_out {
        // Only the empty context has two forms: nothing, or a zero pair count.
        assert!(
            header.context.is_empty() && ctx_in == 2 && ctx_out == 0,
            "a context written back at another length"
        );
    }
    // Read back (with any tag: the tag is not checked without the data key).
    let mut again = written;
    again.extend_from_slice(&[0u8; 16]);
    let reread = MessageHeader::read(again.as_slice(), &options)
        .unwrap_or_else(|e| panic!("a header that was written cannot be read: {e}"));
    assert_eq!(reread.header(), header, "a header read back differs");
}

/// True when the header reader accepts `data` (the `valid-*` seeds must stay so).
pub fn accepted(data: &[u8]) -> bool {
    MessageHeader::read(data, &DecryptOptions::default()).is_ok()
}
