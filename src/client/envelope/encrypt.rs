//! Streaming encryption: an `io::Write` that holds at most one frame of plaintext.

use std::io::{self, Write};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce};
use aws_lc_rs::digest;
use zeroize::Zeroizing;

use super::body::{frame_aad, frame_iv, next_seq, FINAL_MARK};
use super::header::Header;
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
    seq: u32,
    signer: Option<(SigningKey, digest::Context)>,
    broken: bool,
}

impl<W: Write> Encryptor<W> {
    /// Writes the header for `materials` and returns the body writer.
    pub fn new(
        out: W,
        materials: EncryptionMaterials,
        frame_length: u32,
    ) -> Result<Self, EnvelopeError> {
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
        let mut this = Self {
            out,
            key,
            message_id,
            frame,
            // The whole frame up front: growing would leave plaintext copies behind.
            pending: Zeroizing::new(Vec::with_capacity(frame)),
            seq: 1,
            signer: materials.signing_key.map(|k| (k, new_hash())),
            broken: false,
        };
        this.emit(&head)
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
