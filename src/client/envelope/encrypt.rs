//! Streaming encryption: an `io::Write` that holds at most one frame of plaintext.

use std::io::{self, Write};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce};
use aws_lc_rs::digest;
use zeroize::Zeroizing;

use super::body::{frame_aad, frame_iv, next_seq, FINAL_MARK};
use super::header::{Header, TAG};
use super::signature::{new_hash, SigningKey};
use super::{EncryptionMaterials, EnvelopeError};

/// Encrypts everything written to it into one message on `W`. Call [`finish`] at the
/// end: a message that is not finished has no final frame, and no reader accepts it.
///
/// [`finish`]: Encryptor::finish
pub struct Encryptor<W: Write> {
    out: W,
    key: LessSafeKey,
    message_id: [u8; 32],
    frame: usize,
    /// Plaintext waiting for a full frame (or for the end); wiped on drop.
    pending: Zeroizing<Vec<u8>>,
    /// Ciphertext of a frame sealed straight from the caller's buffer (one copy fewer).
    sealed: Vec<u8>,
    /// Set when the output is a Vec: frames are then sealed straight into it.
    direct: Option<fn(&mut W) -> &mut Vec<u8>>,
    seq: u32,
    signer: Option<(SigningKey, digest::Context)>,
    broken: bool,
}

/// A message begun: its content key, id, header bytes (with tag) and signing key.
struct Start {
    key: LessSafeKey,
    message_id: [u8; 32],
    frame: usize,
    header: Vec<u8>,
    signing_key: Option<SigningKey>,
}

/// Checks `materials`, picks a message id, derives the keys and writes the header.
fn start(materials: EncryptionMaterials, frame_length: u32) -> Result<Start, EnvelopeError> {
    if frame_length == 0 {
        return Err(EnvelopeError::Malformed(
            "the frame length must be at least 1",
        ));
    }
    if materials.edks.is_empty() {
        return Err(EnvelopeError::BadKeyring("no encrypted data key"));
    }
    if materials.suite.is_signed() != materials.signing_key.is_some() {
        return Err(EnvelopeError::BadKeyring(
            "the signing key does not match the suite",
        ));
    }
    let frame =
        usize::try_from(frame_length).map_err(|_| EnvelopeError::Malformed("frame length"))?;
    let mut message_id = [0u8; 32];
    aws_lc_rs::rand::fill(&mut message_id).map_err(|_| EnvelopeError::Random)?;
    let (key, commitment) = materials
        .suite
        .derive(materials.key()?.expose(), &message_id)?;
    let header = Header {
        suite: materials.suite,
        message_id,
        context: materials.context,
        edks: materials.edks,
        frame_length,
        commitment,
    };
    let mut head = header.body_bytes()?;
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::from(head.as_slice()),
            &mut [],
        )
        .map_err(|_| EnvelopeError::Crypto)?;
    head.extend_from_slice(tag.as_ref());
    Ok(Start {
        key,
        message_id,
        frame,
        header: head,
        signing_key: materials.signing_key,
    })
}

/// Encrypts a whole plaintext in memory, appending the message to `out`.
pub fn encrypt_to_vec(
    materials: EncryptionMaterials,
    plaintext: &[u8],
    frame_length: u32,
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    // Each frame adds 32 bytes (sequence number, IV, tag); the final one 8 more, the
    // header and a signature a few KiB at most.
    let frames = plaintext.len() / frame_length.max(1) as usize + 1;
    out.reserve(plaintext.len() + frames * 32 + 8 + 4096);
    let mut enc = Encryptor::appending_to(out, materials, frame_length)?;
    enc.write_all(plaintext).map_err(EnvelopeError::from_read)?;
    enc.finish().map(|_| ())
}

impl<'a> Encryptor<&'a mut Vec<u8>> {
    /// An encryptor that appends the message to `out`, sealing each whole frame straight
    /// into it: no staging copy, which makes building a message in memory nearly as fast
    /// as raw AES-GCM.
    pub fn appending_to(
        out: &'a mut Vec<u8>,
        materials: EncryptionMaterials,
        frame_length: u32,
    ) -> Result<Self, EnvelopeError> {
        let mut enc = Self::new(out, materials, frame_length)?;
        enc.direct = Some(|v| &mut **v);
        Ok(enc)
    }
}

impl<W: Write> Encryptor<W> {
    /// Writes the header for `materials` and returns the body writer.
    pub fn new(
        out: W,
        materials: EncryptionMaterials,
        frame_length: u32,
    ) -> Result<Self, EnvelopeError> {
        let s = start(materials, frame_length)?;
        let mut this = Self {
            out,
            key: s.key,
            message_id: s.message_id,
            frame: s.frame,
            // The whole frame up front: growing would leave plaintext copies behind.
            pending: Zeroizing::new(Vec::with_capacity(s.frame)),
            sealed: Vec::new(),
            direct: None,
            seq: 1,
            signer: s.signing_key.map(|k| (k, new_hash())),
            broken: false,
        };
        this.emit(&s.header)
            .map_err(|e| EnvelopeError::Io(e.to_string()))?;
        Ok(this)
    }

    /// Writes `bytes` out and into the signature hash.
    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        if let Some((_, hash)) = &mut self.signer {
            hash.update(bytes);
        }
        Ok(())
    }

    /// Seals the pending plaintext as frame `seq`, final or not.
    fn seal(&mut self, is_final: bool) -> Result<(), EnvelopeError> {
        let len = self.pending.len();
        let iv = frame_iv(self.seq);
        let aad = frame_aad(&self.message_id, is_final, self.seq, len as u64);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(aad),
                &mut self.pending,
            )
            .map_err(|_| EnvelopeError::Crypto)?;
        let mut head = Vec::with_capacity(24);
        if is_final {
            head.extend_from_slice(&FINAL_MARK.to_be_bytes());
        }
        head.extend_from_slice(&self.seq.to_be_bytes());
        head.extend_from_slice(&iv);
        if is_final {
            let n = u32::try_from(len).map_err(|_| EnvelopeError::Malformed("frame length"))?;
            head.extend_from_slice(&n.to_be_bytes());
        }
        let sealed = std::mem::take(&mut *self.pending);
        let io = |e: io::Error| EnvelopeError::Io(e.to_string());
        self.emit(&head).map_err(io)?;
        self.emit(&sealed).map_err(io)?;
        self.emit(tag.as_ref()).map_err(io)?;
        // Reuse the allocation: it now holds ciphertext only.
        *self.pending = sealed;
        self.pending.clear();
        if !is_final {
            self.seq = next_seq(self.seq).ok_or(EnvelopeError::Malformed("too many frames"))?;
        }
        Ok(())
    }

    /// Seals a full regular frame straight from `chunk` (when nothing is pending and
    /// more input follows), without copying the plaintext first.
    fn seal_direct(&mut self, chunk: &[u8]) -> Result<(), EnvelopeError> {
        let len = chunk.len();
        let iv = frame_iv(self.seq);
        let aad = frame_aad(&self.message_id, false, self.seq, len as u64);
        if let Some(vec_of) = self.direct {
            let out = vec_of(&mut self.out);
            let begin = out.len();
            out.extend_from_slice(&self.seq.to_be_bytes());
            out.extend_from_slice(&iv);
            let at = out.len();
            out.resize(at + len + TAG, 0);
            let (ct, tag) = out
                .get_mut(at..)
                .ok_or(EnvelopeError::Crypto)?
                .split_at_mut(len);
            self.key
                .seal_out_of_place_scatter(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(aad),
                    chunk,
                    ct,
                    &[],
                    tag,
                )
                .map_err(|_| EnvelopeError::Crypto)?;
            if let Some((_, hash)) = &mut self.signer {
                hash.update(out.get(begin..).unwrap_or_default());
            }
            self.seq = next_seq(self.seq).ok_or(EnvelopeError::Malformed("too many frames"))?;
            return Ok(());
        }
        self.sealed.resize(len, 0);
        let mut tag = [0u8; TAG];
        self.key
            .seal_out_of_place_scatter(
                Nonce::assume_unique_for_key(iv),
                Aad::from(aad),
                chunk,
                &mut self.sealed,
                &[],
                &mut tag,
            )
            .map_err(|_| EnvelopeError::Crypto)?;
        let mut head = [0u8; 16];
        head[..4].copy_from_slice(&self.seq.to_be_bytes());
        head[4..].copy_from_slice(&iv);
        let sealed = std::mem::take(&mut self.sealed);
        let io = |e: io::Error| EnvelopeError::Io(e.to_string());
        let written = self
            .emit(&head)
            .and_then(|()| self.emit(&sealed))
            .and_then(|()| self.emit(&tag));
        self.sealed = sealed;
        written.map_err(io)?;
        self.seq = next_seq(self.seq).ok_or(EnvelopeError::Malformed("too many frames"))?;
        Ok(())
    }

    /// Seals the final frame, writes the signature (signed suite), flushes, and returns
    /// the writer.
    pub fn finish(mut self) -> Result<W, EnvelopeError> {
        if self.broken {
            return Err(EnvelopeError::Finished);
        }
        self.seal(true)?;
        if let Some((key, hash)) = self.signer.take() {
            let sig = key.sign(hash)?;
            let n = u16::try_from(sig.len()).map_err(|_| EnvelopeError::Crypto)?;
            self.out
                .write_all(&n.to_be_bytes())
                .and_then(|()| self.out.write_all(&sig))
                .map_err(|e| EnvelopeError::Io(e.to_string()))?;
        }
        self.out
            .flush()
            .map_err(|e| EnvelopeError::Io(e.to_string()))?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        if self.broken {
            return Err(EnvelopeError::Finished.into());
        }
        let total = data.len();
        while !data.is_empty() {
            // A full frame is sealed only once more data arrives: until then it may be
            // the final frame.
            if self.pending.is_empty() && data.len() > self.frame {
                let (chunk, rest) = data.split_at(self.frame);
                if let Err(e) = self.seal_direct(chunk) {
                    self.broken = true;
                    return Err(e.into());
                }
                data = rest;
                continue;
            }
            if self.pending.len() == self.frame {
                if let Err(e) = self.seal(false) {
                    self.broken = true;
                    return Err(e.into());
                }
            }
            let n = (self.frame - self.pending.len()).min(data.len());
            let (now, rest) = data.split_at(n);
            self.pending.extend_from_slice(now);
            data = rest;
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
