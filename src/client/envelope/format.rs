//! The message: v2 header, HKDF-SHA512 key derivation with key commitment, framed body.
//!
//! Header body: version 0x02 | suite 0x0478 | message id (32) | context length (u16) and
//! serialized context | EDK count (u16) and EDKs | content type 0x02 (framed) | frame
//! length (u32) | commitment key (32). Then the header tag: AES-GCM under the derived key
//! with a zero IV over the header body. Frames: sequence number from 1, IV = sequence
//! number left-padded to 12 bytes, AAD = message id | content string | sequence | length
//! (u64); the final frame starts with 0xFFFFFFFF and carries its length.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::hkdf;

use super::{serialize_context, EncryptedDataKey, Keyring};
use crate::domain::Plaintext;

const VERSION: u8 = 0x02;
const SUITE: u16 = 0x0478;
const FRAMED: u8 = 0x02;
const TAG: usize = 16;
const FINAL_MARK: u32 = 0xFFFF_FFFF;
const FRAME_AAD: &[u8] = b"AWSKMSEncryptionClient Frame";
const FINAL_AAD: &[u8] = b"AWSKMSEncryptionClient Final Frame";
/// The frame length used when none is given.
pub const DEFAULT_FRAME_LENGTH: u32 = 4096;
/// Encrypted data keys accepted on decrypt by default: a message with more is refused
/// before any keyring is asked (it could make a client try keys without end).
pub const MAX_EDKS: usize = 10;

/// Why a message could not be made or read. Never carries plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The message ends early.
    #[error("the message is truncated")]
    Truncated,
    /// A field has a value the format does not allow.
    #[error("the message is malformed: {0}")]
    Malformed(&'static str),
    /// Not message format version 2.
    #[error("unsupported message format version")]
    UnsupportedVersion,
    /// Another algorithm suite (only committing suites are accepted).
    #[error("unsupported algorithm suite (the commitment policy requires a key-committing suite)")]
    UnsupportedSuite,
    /// More encrypted data keys than allowed.
    #[error("the message has more than {0} encrypted data keys")]
    TooManyEdks(usize),
    /// No keyring could decrypt any data key.
    #[error("no encrypted data key could be decrypted with the given keyring")]
    NoDecryptableKey,
    /// The data key does not commit to this message.
    #[error("key commitment does not match: the message was not made with this data key")]
    CommitmentMismatch,
    /// The header was changed.
    #[error("the message header does not authenticate")]
    BadHeader,
    /// A frame was changed, reordered, or removed.
    #[error("frame {0} does not authenticate or is out of order")]
    BadFrame(u32),
    /// Bytes after the final frame.
    #[error("the message has bytes after its final frame")]
    TrailingData,
    /// The context does not fit the format.
    #[error("the encryption context is too large for the message format")]
    ContextTooLarge,
    /// A keyring's own configuration is wrong.
    #[error("keyring: {0}")]
    BadKeyring(&'static str),
    /// The random number generator failed.
    #[error("the random number generator failed")]
    Random,
    /// A cryptographic primitive failed unexpectedly.
    #[error("a cryptographic operation failed")]
    Crypto,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// (encryption key, commitment key) from a data key and a message id.
fn derive(data_key: &[u8], message_id: &[u8]) -> Result<(LessSafeKey, [u8; 32]), EnvelopeError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA512, message_id).extract(data_key);
    let mut enc = zeroize::Zeroizing::new([0u8; 32]);
    let mut info = SUITE.to_be_bytes().to_vec();
    info.extend_from_slice(b"DERIVEKEY");
    prk.expand(&[&info], Len(32))
        .and_then(|o| o.fill(enc.as_mut()))
        .map_err(|_| EnvelopeError::Crypto)?;
    let mut commit = [0u8; 32];
    prk.expand(&[b"COMMITKEY"], Len(32))
        .and_then(|o| o.fill(&mut commit))
        .map_err(|_| EnvelopeError::Crypto)?;
    let key = UnboundKey::new(&AES_256_GCM, enc.as_ref()).map_err(|_| EnvelopeError::Crypto)?;
    Ok((LessSafeKey::new(key), commit))
}

fn frame_iv(seq: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[8..].copy_from_slice(&seq.to_be_bytes());
    iv
}

fn body_aad(message_id: &[u8], content: &[u8], seq: u32, len: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(message_id.len() + content.len() + 12);
    aad.extend_from_slice(message_id);
    aad.extend_from_slice(content);
    aad.extend_from_slice(&seq.to_be_bytes());
    aad.extend_from_slice(&len.to_be_bytes());
    aad
}

fn push_u16_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), EnvelopeError> {
    let n = u16::try_from(b.len())
        .map_err(|_| EnvelopeError::Malformed("a field is longer than 65535 bytes"))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// Encrypts `plaintext` into a complete message.
pub fn encrypt(
    plaintext: &[u8],
    keyring: &dyn Keyring,
    context: &BTreeMap<String, String>,
    frame_length: u32,
) -> Result<Vec<u8>, EnvelopeError> {
    encrypt_with_ivs(plaintext, keyring, context, frame_length, &frame_iv)
}

/// `encrypt` with the frame IVs chosen by `iv_for` (tests write foreign IVs with it).
fn encrypt_with_ivs(
    plaintext: &[u8],
    keyring: &dyn Keyring,
    context: &BTreeMap<String, String>,
    frame_length: u32,
    iv_for: &dyn Fn(u32) -> [u8; 12],
) -> Result<Vec<u8>, EnvelopeError> {
    if frame_length == 0 {
        return Err(EnvelopeError::Malformed(
            "the frame length must be at least 1",
        ));
    }
    let mut message_id = [0u8; 32];
    aws_lc_rs::rand::fill(&mut message_id).map_err(|_| EnvelopeError::Random)?;
    let mut dk = zeroize::Zeroizing::new(vec![0u8; 32]);
    aws_lc_rs::rand::fill(&mut dk).map_err(|_| EnvelopeError::Random)?;
    let data_key = Plaintext::new(std::mem::take(&mut *dk));
    let edk = keyring.wrap(&data_key, context)?;
    let (key, commit) = derive(data_key.expose(), &message_id)?;

    let mut out = vec![VERSION];
    out.extend_from_slice(&SUITE.to_be_bytes());
    out.extend_from_slice(&message_id);
    push_u16_bytes(&mut out, &serialize_context(context)?)?;
    out.extend_from_slice(&1u16.to_be_bytes());
    push_u16_bytes(&mut out, edk.provider_id.as_bytes())?;
    push_u16_bytes(&mut out, &edk.provider_info)?;
    push_u16_bytes(&mut out, &edk.ciphertext)?;
    out.push(FRAMED);
    out.extend_from_slice(&frame_length.to_be_bytes());
    out.extend_from_slice(&commit);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::from(out.as_slice()),
            &mut [],
        )
        .map_err(|_| EnvelopeError::Crypto)?;
    out.extend_from_slice(tag.as_ref());

    let frame =
        usize::try_from(frame_length).map_err(|_| EnvelopeError::Malformed("frame length"))?;
    let mut rest = plaintext;
    let mut seq: u32 = 1;
    while rest.len() > frame {
        let (chunk, tail) = rest.split_at(frame);
        let iv = iv_for(seq);
        let mut buf = chunk.to_vec();
        let aad = body_aad(&message_id, FRAME_AAD, seq, frame as u64);
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
            .map_err(|_| EnvelopeError::Crypto)?;
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&buf);
        out.extend_from_slice(tag.as_ref());
        rest = tail;
        seq = seq
            .checked_add(1)
            .filter(|s| *s != FINAL_MARK)
            .ok_or(EnvelopeError::Malformed("too many frames"))?;
    }
    let iv = iv_for(seq);
    let mut buf = rest.to_vec();
    let aad = body_aad(&message_id, FINAL_AAD, seq, rest.len() as u64);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
        .map_err(|_| EnvelopeError::Crypto)?;
    out.extend_from_slice(&FINAL_MARK.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&iv);
    out.extend_from_slice(
        &u32::try_from(rest.len())
            .map_err(|_| EnvelopeError::Malformed("frame length"))?
            .to_be_bytes(),
    );
    out.extend_from_slice(&buf);
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// A reader that hands out only checked slices.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let end = self.pos.checked_add(n).ok_or(EnvelopeError::Truncated)?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(EnvelopeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(*self.take(1)?.first().ok_or(EnvelopeError::Truncated)?)
    }
    fn u16(&mut self) -> Result<u16, EnvelopeError> {
        Ok(u16::from_be_bytes(
            self.take(2)?
                .try_into()
                .map_err(|_| EnvelopeError::Truncated)?,
        ))
    }
    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        Ok(u32::from_be_bytes(
            self.take(4)?
                .try_into()
                .map_err(|_| EnvelopeError::Truncated)?,
        ))
    }
    fn u16_bytes(&mut self) -> Result<&'a [u8], EnvelopeError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

fn parse_context(b: &[u8]) -> Result<BTreeMap<String, String>, EnvelopeError> {
    let mut ctx = BTreeMap::new();
    if b.is_empty() {
        return Ok(ctx);
    }
    let mut r = Reader { buf: b, pos: 0 };
    let count = r.u16()?;
    if count == 0 {
        // Older SDKs wrote an empty context as a zero pair count (00 02 00 00); accept
        // exactly that, nothing longer.
        if r.done() {
            return Ok(ctx);
        }
        return Err(EnvelopeError::Malformed(
            "a zero pair count followed by bytes",
        ));
    }
    let mut last: Option<Vec<u8>> = None;
    for _ in 0..count {
        let k = r.u16_bytes()?;
        let v = r.u16_bytes()?;
        // Sorted by key bytes, no duplicates: one context has one serialization.
        if last.as_deref().is_some_and(|l| l >= k) {
            return Err(EnvelopeError::Malformed(
                "context keys are not sorted and unique",
            ));
        }
        last = Some(k.to_vec());
        let k = String::from_utf8(k.to_vec())
            .map_err(|_| EnvelopeError::Malformed("context key is not UTF-8"))?;
        let v = String::from_utf8(v.to_vec())
            .map_err(|_| EnvelopeError::Malformed("context value is not UTF-8"))?;
        ctx.insert(k, v);
    }
    if !r.done() {
        return Err(EnvelopeError::Malformed("bytes after the context pairs"));
    }
    Ok(ctx)
}

/// Decrypts a complete message; returns the plaintext and the encryption context.
/// All or nothing: no plaintext is returned from a message with any damaged frame.
pub fn decrypt(
    message: &[u8],
    keyring: &dyn Keyring,
    max_edks: usize,
) -> Result<(Plaintext, BTreeMap<String, String>), EnvelopeError> {
    let mut r = Reader {
        buf: message,
        pos: 0,
    };
    if r.u8()? != VERSION {
        return Err(EnvelopeError::UnsupportedVersion);
    }
    if r.u16()? != SUITE {
        return Err(EnvelopeError::UnsupportedSuite);
    }
    let message_id = r.take(32)?;
    let context = parse_context(r.u16_bytes()?)?;
    let n_edks = usize::from(r.u16()?);
    if n_edks == 0 {
        return Err(EnvelopeError::Malformed("no encrypted data keys"));
    }
    if n_edks > max_edks {
        return Err(EnvelopeError::TooManyEdks(max_edks));
    }
    let mut edks = Vec::with_capacity(n_edks);
    for _ in 0..n_edks {
        let provider_id = String::from_utf8(r.u16_bytes()?.to_vec())
            .map_err(|_| EnvelopeError::Malformed("provider id is not UTF-8"))?;
        let provider_info = r.u16_bytes()?.to_vec();
        let ciphertext = r.u16_bytes()?.to_vec();
        edks.push(EncryptedDataKey {
            provider_id,
            provider_info,
            ciphertext,
        });
    }
    if r.u8()? != FRAMED {
        return Err(EnvelopeError::Malformed("only framed content is supported"));
    }
    let frame_length = r.u32()?;
    if frame_length == 0 {
        return Err(EnvelopeError::Malformed("frame length 0"));
    }
    let commit = r.take(32)?;
    let header_body = message.get(..r.pos).ok_or(EnvelopeError::Truncated)?;
    let header_tag = r.take(TAG)?;

    let data_key = keyring
        .unwrap(&edks, &context)?
        .ok_or(EnvelopeError::NoDecryptableKey)?;
    let (key, expected) = derive(data_key.expose(), message_id)?;
    aws_lc_rs::constant_time::verify_slices_are_equal(&expected, commit)
        .map_err(|_| EnvelopeError::CommitmentMismatch)?;
    let mut empty = header_tag.to_vec();
    key.open_in_place(
        Nonce::assume_unique_for_key([0u8; 12]),
        Aad::from(header_body),
        &mut empty,
    )
    .map_err(|_| EnvelopeError::BadHeader)?;

    let frame =
        usize::try_from(frame_length).map_err(|_| EnvelopeError::Malformed("frame length"))?;
    let mut out = zeroize::Zeroizing::new(Vec::new());
    let mut seq: u32 = 1;
    loop {
        let first = r.u32()?;
        let is_final = first == FINAL_MARK;
        let got_seq = if is_final { r.u32()? } else { first };
        if got_seq != seq {
            return Err(EnvelopeError::BadFrame(seq));
        }
        let iv: [u8; 12] = r
            .take(12)?
            .try_into()
            .map_err(|_| EnvelopeError::Truncated)?;
        // The IV is taken as written: the SDKs write the sequence number, but published
        // messages exist whose IVs differ, and the tag authenticates whatever was used.
        // Order is enforced by the sequence number, which is in the AAD.
        let len = if is_final {
            let l = usize::try_from(r.u32()?).map_err(|_| EnvelopeError::BadFrame(seq))?;
            if l > frame {
                return Err(EnvelopeError::BadFrame(seq));
            }
            l
        } else {
            frame
        };
        let mut buf = zeroize::Zeroizing::new(r.take(len + TAG)?.to_vec());
        let aad = body_aad(
            message_id,
            if is_final { FINAL_AAD } else { FRAME_AAD },
            seq,
            len as u64,
        );
        let pt = key
            .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
            .map_err(|_| EnvelopeError::BadFrame(seq))?;
        out.extend_from_slice(pt);
        if is_final {
            break;
        }
        seq = seq
            .checked_add(1)
            .filter(|s| *s != FINAL_MARK)
            .ok_or(EnvelopeError::BadFrame(seq))?;
    }
    if !r.done() {
        return Err(EnvelopeError::TrailingData);
    }
    Ok((Plaintext::new(std::mem::take(&mut *out)), context))
}

#[cfg(test)]
mod tests;
