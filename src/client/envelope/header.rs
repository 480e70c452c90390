//! The message header, version 2: version 0x02 | suite (u16) | message id (32) | context
//! (u16 length, serialized pairs) | encrypted data keys (u16 count; per key provider id,
//! provider info and ciphertext, each with a u16 length) | content type 0x02 (framed) |
//! frame length (u32) | commitment key (32). The header tag (16) follows: AES-GCM under
//! the content key, zero IV, empty plaintext, the header body as AAD.

use std::collections::BTreeMap;
use std::io::Read;

use super::{serialize_context, EncryptedDataKey, EnvelopeError, Suite};

const VERSION: u8 = 0x02;
const FRAMED: u8 = 0x02;
const NON_FRAMED: u8 = 0x01;
/// GCM tag length.
pub(crate) const TAG: usize = 16;

/// A parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The suite.
    pub suite: Suite,
    /// The message id (HKDF salt).
    pub message_id: [u8; 32],
    /// The full encryption context.
    pub context: BTreeMap<String, String>,
    /// The encrypted copies of the data key.
    pub edks: Vec<EncryptedDataKey>,
    /// Plaintext bytes per frame; 0 for a non-framed message (one block, which other
    /// SDKs can write; read here, never written).
    pub frame_length: u32,
    pub(crate) commitment: [u8; 32],
}

fn push_u16_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), EnvelopeError> {
    let n = u16::try_from(b.len())
        .map_err(|_| EnvelopeError::Malformed("a field is longer than 65535 bytes"))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

impl Header {
    /// The header body's bytes (what the header tag and the signature cover). Public
    /// only for the envelope_header fuzz target, which checks that a header read from
    /// bytes writes back to them (fuzz/src/envelope_header.rs); not an API.
    #[doc(hidden)]
    pub fn body_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.suite.id().to_be_bytes());
        out.extend_from_slice(&self.message_id);
        push_u16_bytes(&mut out, &serialize_context(&self.context)?)?;
        let n = u16::try_from(self.edks.len())
            .map_err(|_| EnvelopeError::Malformed("too many encrypted data keys"))?;
        out.extend_from_slice(&n.to_be_bytes());
        for edk in &self.edks {
            push_u16_bytes(&mut out, edk.provider_id.as_bytes())?;
            push_u16_bytes(&mut out, &edk.provider_info)?;
            push_u16_bytes(&mut out, &edk.ciphertext)?;
        }
        out.push(if self.frame_length == 0 {
            NON_FRAMED
        } else {
            FRAMED
        });
        out.extend_from_slice(&self.frame_length.to_be_bytes());
        out.extend_from_slice(&self.commitment);
        Ok(out)
    }

    /// Reads a header body from `r`, keeping the bytes read (for the tag and the
    /// signature). Refuses more than `max_edks` encrypted data keys before reading them.
    pub(crate) fn read(
        r: &mut impl Read,
        max_edks: usize,
    ) -> Result<(Self, Vec<u8>), EnvelopeError> {
        let mut r = Recorder {
            inner: r,
            seen: Vec::new(),
        };
        if r.u8()? != VERSION {
            return Err(EnvelopeError::UnsupportedVersion);
        }
        let suite = Suite::from_id(r.u16()?)?;
        let message_id = r.array::<32>()?;
        let context = parse_context(&r.u16_bytes()?)?;
        let n_edks = usize::from(r.u16()?);
        if n_edks == 0 {
            return Err(EnvelopeError::Malformed("no encrypted data keys"));
        }
        if n_edks > max_edks {
            return Err(EnvelopeError::TooManyEdks(max_edks));
        }
        let mut edks = Vec::with_capacity(n_edks);
        for _ in 0..n_edks {
            let provider_id = String::from_utf8(r.u16_bytes()?)
                .map_err(|_| EnvelopeError::Malformed("provider id is not UTF-8"))?;
            edks.push(EncryptedDataKey {
                provider_id,
                provider_info: r.u16_bytes()?,
                ciphertext: r.u16_bytes()?,
            });
        }
        let content_type = r.u8()?;
        let frame_length = r.u32()?;
        match (content_type, frame_length) {
            (FRAMED, 1..) | (NON_FRAMED, 0) => {}
            (FRAMED, 0) => return Err(EnvelopeError::Malformed("frame length 0")),
            (NON_FRAMED, _) => {
                return Err(EnvelopeError::Malformed(
                    "a non-framed message with a frame length",
                ))
            }
            _ => return Err(EnvelopeError::Malformed("unknown content type")),
        }
        let commitment = r.array::<32>()?;
        let header = Self {
            suite,
            message_id,
            context,
            edks,
            frame_length,
            commitment,
        };
        Ok((header, r.seen))
    }
}

/// Reads exact fields and remembers every byte.
struct Recorder<'a, R: Read> {
    inner: &'a mut R,
    seen: Vec<u8>,
}

impl<R: Read> Recorder<'_, R> {
    fn take(&mut self, n: usize) -> Result<&[u8], EnvelopeError> {
        let start = self.seen.len();
        // Grow with the bytes that actually arrive: a length field cannot make us
        // allocate more than the input holds.
        let got = (&mut *self.inner)
            .take(n as u64)
            .read_to_end(&mut self.seen)
            .map_err(EnvelopeError::from_read)?;
        if got != n {
            return Err(EnvelopeError::Truncated);
        }
        self.seen.get(start..).ok_or(EnvelopeError::Truncated)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        self.take(N)?
            .try_into()
            .map_err(|_| EnvelopeError::Truncated)
    }
    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(u8::from_be_bytes(self.array::<1>()?))
    }
    fn u16(&mut self) -> Result<u16, EnvelopeError> {
        Ok(u16::from_be_bytes(self.array::<2>()?))
    }
    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        Ok(u32::from_be_bytes(self.array::<4>()?))
    }
    fn u16_bytes(&mut self) -> Result<Vec<u8>, EnvelopeError> {
        let n = self.u16()?;
        Ok(self.take(usize::from(n))?.to_vec())
    }
}

/// Parses a serialized context: unique UTF-8 keys, nothing after the pairs.
pub(crate) fn parse_context(b: &[u8]) -> Result<BTreeMap<String, String>, EnvelopeError> {
    let mut ctx = BTreeMap::new();
    if b.is_empty() {
        return Ok(ctx);
    }
    let mut cursor = b;
    let mut r = Recorder {
        inner: &mut cursor,
        seen: Vec::new(),
    };
    let count = r.u16()?;
    for _ in 0..count {
        let k = r.u16_bytes()?;
        let v = r.u16_bytes()?;
        let k = String::from_utf8(k)
            .map_err(|_| EnvelopeError::Malformed("context key is not UTF-8"))?;
        let v = String::from_utf8(v)
            .map_err(|_| EnvelopeError::Malformed("context value is not UTF-8"))?;
        // Writers sort the pairs, but published SDK messages exist that do not, and
        // the header tag covers the bytes as written; a key twice is refused.
        if ctx.insert(k, v).is_some() {
            return Err(EnvelopeError::Malformed("a context key appears twice"));
        }
    }
    // Older SDKs wrote an empty context as a zero pair count (00 02 00 00); that and
    // nothing longer is accepted, since the loop above read no pairs.
    if !cursor.is_empty() {
        return Err(EnvelopeError::Malformed("bytes after the context pairs"));
    }
    Ok(ctx)
}
