//! Whole envelope messages (AWS Encryption SDK format v2: header, frames, signature)
//! decrypted under a raw AES keyring (namespace "fuzz", name "k", key 0x11 × 32; the
//! seeds are messages made under it, so mutations reach the frame reader past a genuine
//! header). Whatever the bytes:
//! - `envelope::decrypt` (the whole message in memory) answers without panicking;
//! - the streaming [`Decryptor`](p11kms::client::envelope::Decryptor), read in pieces of
//!   varied sizes (both its in-place and its buffered path), agrees with it: the same
//!   plaintext and context, or an error for the same messages;
//! - before an error, the stream releases only whole regular frames (all or nothing per
//!   frame, and the final frame is held back until the end checks pass).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use p11kms::client::envelope::{
    decrypt, DecryptOptions, EnvelopeError, MaterialsManager, MessageHeader, RawAesKeyring,
};

/// The keyring the seeds were made under.
pub fn keyring() -> &'static RawAesKeyring {
    static KEYRING: OnceLock<RawAesKeyring> = OnceLock::new();
    KEYRING.get_or_init(|| {
        RawAesKeyring::new("fuzz", "k", &[0x11; 32]).unwrap_or_else(|e| panic!("keyring: {e}"))
    })
}

/// Runs a future that a raw keyring completes at once (no I/O, no runtime needed).
pub fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a raw keyring's future was not ready at once"),
    }
}

/// What a streaming decryption gave: the plaintext released, and the context when the
/// message ended well.
struct Streamed {
    released: Vec<u8>,
    frame_length: u32,
    end: Result<BTreeMap<String, String>, ()>,
}

/// Reads the message through a `Decryptor`, `sizes` giving the length of each read.
fn stream(data: &[u8], sizes: &[usize]) -> Result<Streamed, EnvelopeError> {
    let head = MessageHeader::read(data, &DecryptOptions::default())?;
    let frame_length = head.header().frame_length;
    let materials = ready(keyring().decryption_materials(head.request()))?;
    let mut dec = head.into_decryptor(materials)?;
    let mut released = Vec::new();
    let mut buf = vec![0u8; sizes.iter().copied().max().unwrap_or(1)];
    for size in sizes.iter().copied().cycle() {
        let Some(piece) = buf.get_mut(..size) else {
            unreachable!("the buffer is as long as the longest read");
        };
        match dec.read(piece) {
            Ok(0) => {
                let end = Ok(dec.context().clone());
                return Ok(Streamed {
                    released,
                    frame_length,
                    end,
                });
            }
            Ok(n) => released.extend_from_slice(piece.get(..n).unwrap_or_default()),
            Err(_) => {
                return Ok(Streamed {
                    released,
                    frame_length,
                    end: Err(()),
                })
            }
        }
    }
    unreachable!("cycle() never ends")
}

/// See the module doc.
pub fn check(data: &[u8]) {
    let whole = ready(decrypt(data, keyring(), &DecryptOptions::default()));
    // Read sizes from the input's length, so that one input always reads the same way:
    // a byte, less than a frame, and more than one (the Decryptor's direct path).
    let odd = 1 + data.len() % 61;
    let sizes = [odd, 1, 4096 + odd, 100_000];
    match (whole, stream(data, &sizes)) {
        (Ok((plaintext, context)), Ok(s)) => {
            assert_eq!(s.end, Ok(context), "the stream ended unlike decrypt()");
            assert!(
                s.released == plaintext.expose(),
                "the stream released another plaintext than decrypt()"
            );
        }
        (Ok(_), Err(e)) => panic!("decrypt() succeeded, the stream's header failed: {e}"),
        (Err(_), Ok(s)) => {
            assert!(
                s.end.is_err(),
                "the stream succeeded where decrypt() failed"
            );
            // Only regular frames that authenticated, each whole; a non-framed body
            // (frame length 0) is released only once its one tag checks.
            let released = s.released.len() as u64;
            match s.frame_length {
                0 => assert_eq!(released, 0, "part of a failed non-framed body released"),
                f => assert_eq!(
                    released % u64::from(f),
                    0,
                    "part of a frame released before an error"
                ),
            }
        }
        (Err(_), Err(_)) => {}
    }
}

/// True when `data` decrypts under the fuzz keyring (the `valid-*` seeds must stay so).
pub fn accepted(data: &[u8]) -> bool {
    ready(decrypt(data, keyring(), &DecryptOptions::default())).is_ok()
}
