//! Streaming decryption: read the header, get the data key for it, then an `io::Read`
//! that yields each frame's plaintext only after that frame authenticates.
//!
//! The final frame's plaintext is held back until everything after it checks out (the
//! signature of a signed message, no trailing bytes), so end-of-stream means the whole
//! message was authentic. A reader that must not act on a prefix of a message that
//! later fails (a damaged or truncated frame) keeps what it reads until `read` returns
//! 0, as `p11kms decrypt-file` does with its temporary file.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce};
use aws_lc_rs::digest;

use super::body::{frame_aad, next_seq, single_block_aad, FINAL_MARK};
use super::frame_buf::FrameBuf;
use super::header::{Header, TAG};
use super::signature::{new_hash, VerificationKey};
use super::{DecryptOptions, DecryptionMaterials, DecryptionRequest, EnvelopeError};

/// A message whose header has been read and checked against the caller's options, but
/// not yet authenticated: that needs the data key.
pub struct MessageHeader<R: BufRead> {
    reader: R,
    header: Header,
    /// Header body and tag, as read.
    raw: Vec<u8>,
    max_unframed: u64,
}

impl<R: BufRead> MessageHeader<R> {
    /// Reads the header from `reader`, refusing too many data keys and a context that
    /// lacks a pair the caller requires, before any keyring is asked.
    pub fn read(mut reader: R, options: &DecryptOptions) -> Result<Self, EnvelopeError> {
        let (header, mut raw) = Header::read(&mut reader, options.max_edks)?;
        for (k, v) in &options.expected_context {
            if header.context.get(k) != Some(v) {
                return Err(EnvelopeError::ContextMismatch(k.clone()));
            }
        }
        let mut tag = [0u8; TAG];
        reader
            .read_exact(&mut tag)
            .map_err(EnvelopeError::from_read)?;
        raw.extend_from_slice(&tag);
        Ok(Self {
            reader,
            header,
            raw,
            max_unframed: options.max_unframed_length,
        })
    }

    /// The parsed (unauthenticated) header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// What to ask a materials manager for.
    pub fn request(&self) -> DecryptionRequest<'_> {
        DecryptionRequest {
            suite: self.header.suite,
            context: &self.header.context,
            edks: &self.header.edks,
        }
    }

    /// Checks the key commitment and the header tag with `materials`' data key, and
    /// returns the body reader.
    pub fn into_decryptor(
        self,
        materials: DecryptionMaterials,
    ) -> Result<Decryptor<R>, EnvelopeError> {
        let data_key = materials
            .data_key
            .as_ref()
            .ok_or(EnvelopeError::NoDecryptableKey)?;
        if materials.suite != self.header.suite {
            return Err(EnvelopeError::BadKeyring(
                "the materials are for another suite",
            ));
        }
        let (key, expected) = self
            .header
            .suite
            .derive(data_key.expose(), &self.header.message_id)?;
        aws_lc_rs::constant_time::verify_slices_are_equal(&expected, &self.header.commitment)
            .map_err(|_| EnvelopeError::CommitmentMismatch)?;
        let split = self.raw.len() - TAG;
        let (body, tag) = self.raw.split_at(split);
        let mut tag = tag.to_vec();
        key.open_in_place(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::from(body),
            &mut tag,
        )
        .map_err(|_| EnvelopeError::BadHeader)?;
        let verifier = match (self.header.suite.is_signed(), materials.verification_key) {
            (true, Some(v)) => {
                let mut hash = new_hash();
                hash.update(&self.raw);
                Some((v, hash))
            }
            (true, None) => {
                return Err(EnvelopeError::BadKeyring(
                    "no verification key for a signed message",
                ))
            }
            (false, _) => None,
        };
        let frame = usize::try_from(self.header.frame_length)
            .map_err(|_| EnvelopeError::Malformed("frame length"))?;
        Ok(Decryptor {
            reader: self.reader,
            key,
            message_id: self.header.message_id,
            frame,
            context: self.header.context,
            seq: 1,
            buf: FrameBuf::with_capacity(0),
            ready: 0..0,
            state: State::Frames,
            verifier,
            max_unframed: self.max_unframed,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Frames,
    /// The final frame's plaintext is in `buf`; nothing more to read.
    Done,
    Failed(EnvelopeError),
}

/// Yields a message's plaintext frame by frame. Memory: one frame.
pub struct Decryptor<R: BufRead> {
    reader: R,
    key: LessSafeKey,
    message_id: [u8; 32],
    frame: usize,
    context: BTreeMap<String, String>,
    seq: u32,
    /// The current frame's plaintext, and its ciphertext while it is read when the
    /// reader's buffer does not hold it whole. Wiped on drop.
    buf: FrameBuf,
    /// The plaintext in `buf` not yet handed out.
    ready: std::ops::Range<usize>,
    state: State,
    verifier: Option<(VerificationKey, digest::Context)>,
    /// The largest non-framed body read (it must be held whole until its tag checks).
    max_unframed: u64,
}

impl<R: BufRead> Decryptor<R> {
    /// The message's encryption context (authenticated by the header tag).
    pub fn context(&self) -> &BTreeMap<String, String> {
        &self.context
    }

    /// Exactly `N` bytes (a frame's small fields), into the signature hash too.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let mut b = [0u8; N];
        self.reader
            .read_exact(&mut b)
            .map_err(EnvelopeError::from_read)?;
        if let Some((_, hash)) = &mut self.verifier {
            hash.update(&b);
        }
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads, authenticates and decrypts a non-framed body into `buf`. It cannot be
    /// released before its one tag checks, so it is held whole, up to `max_unframed`.
    fn single_block(&mut self) -> Result<(), EnvelopeError> {
        let iv: [u8; 12] = self.array()?;
        let len_bytes: [u8; 8] = self.array()?;
        let len64 = u64::from_be_bytes(len_bytes);
        if len64 > self.max_unframed {
            return Err(EnvelopeError::UnframedTooLarge(self.max_unframed));
        }
        let len = usize::try_from(len64)
            .map_err(|_| EnvelopeError::UnframedTooLarge(self.max_unframed))?;
        self.read_frame_body(len)?;
        let aad = single_block_aad(&self.message_id, len64);
        self.key
            .open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(aad),
                self.buf.upto(len + TAG),
            )
            .map_err(|_| EnvelopeError::BadFrame(1))?;
        self.ready = 0..len;
        self.advance(true)
    }

    /// Reads the next frame's header; returns (IV, content length, final?).
    fn read_frame_head(&mut self) -> Result<([u8; 12], usize, bool), EnvelopeError> {
        let seq = self.seq;
        let first = self.u32()?;
        let is_final = first == FINAL_MARK;
        let got_seq = if is_final { self.u32()? } else { first };
        if got_seq != seq {
            return Err(EnvelopeError::BadFrame(seq));
        }
        // The IV is taken as written: the SDKs write the sequence number, but published
        // messages exist whose IVs differ, and the tag authenticates whatever was used.
        // Order is enforced by the sequence number, which is in the AAD.
        let iv: [u8; 12] = self.array()?;
        let len = if is_final {
            let l = usize::try_from(self.u32()?).map_err(|_| EnvelopeError::BadFrame(seq))?;
            if l > self.frame {
                return Err(EnvelopeError::BadFrame(seq));
            }
            l
        } else {
            self.frame
        };
        Ok((iv, len, is_final))
    }

    /// Reads a frame's ciphertext and tag into `buf` (growing it with the bytes that
    /// arrive, since `len` may come from a forged header), into the signature hash too.
    fn read_frame_body(&mut self, len: usize) -> Result<(), EnvelopeError> {
        let body = self
            .buf
            .read_exact_from(&mut self.reader, len + TAG)
            .map_err(EnvelopeError::from_read)?;
        if let Some((_, hash)) = &mut self.verifier {
            hash.update(body);
        }
        Ok(())
    }

    /// After a frame authenticated: the next sequence number, or the end checks.
    fn advance(&mut self, is_final: bool) -> Result<(), EnvelopeError> {
        if is_final {
            self.finish_message()?;
            self.state = State::Done;
        } else {
            self.seq = next_seq(self.seq).ok_or(EnvelopeError::BadFrame(self.seq))?;
        }
        Ok(())
    }

    /// Reads, authenticates and decrypts the next frame into `buf`.
    fn next_frame(&mut self) -> Result<(), EnvelopeError> {
        let (iv, len, is_final) = self.read_frame_head()?;
        self.open_body(iv, len, is_final, None)?;
        self.ready = 0..len;
        Ok(())
    }

    /// Like `next_frame`, but a regular frame is decrypted straight into `out`; returns
    /// the bytes placed in `out`. The final frame always goes through `buf`, so that it
    /// is held back until the end checks pass.
    fn next_frame_into(&mut self, out: &mut [u8]) -> Result<usize, EnvelopeError> {
        let (iv, len, is_final) = self.read_frame_head()?;
        let Some(dst) = out.get_mut(..len).filter(|_| !is_final) else {
            self.open_body(iv, len, is_final, None)?;
            self.ready = 0..len;
            return Ok(0);
        };
        self.open_body(iv, len, is_final, Some(dst))?;
        Ok(len)
    }

    /// Authenticates and decrypts the body of the frame whose head was just read into
    /// `dst`, or into `buf` if none is given. Straight from the reader's buffer when
    /// that holds the whole frame (one pass over the bytes, no copy), else after
    /// reading the frame into `buf`.
    fn open_body(
        &mut self,
        iv: [u8; 12],
        len: usize,
        is_final: bool,
        mut dst: Option<&mut [u8]>,
    ) -> Result<(), EnvelopeError> {
        let seq = self.seq;
        let aad = Aad::from(frame_aad(&self.message_id, is_final, seq, len as u64));
        let nonce = Nonce::assume_unique_for_key(iv);
        let avail = self.reader.fill_buf().map_err(EnvelopeError::from_read)?;
        let opened = if let Some(frame) = avail.get(..len + TAG) {
            if let Some((_, hash)) = &mut self.verifier {
                hash.update(frame);
            }
            let (ct, tag) = frame.split_at(len);
            let out = match dst.as_deref_mut() {
                Some(d) => d,
                // Room for the tag too, so that a later frame read whole into `buf`
                // (when the reader's buffer holds only part of it) fits as it is.
                None => self.buf.upto(len + TAG).get_mut(..len).unwrap_or_default(),
            };
            let r = self.key.open_separate_gather(nonce, aad, ct, tag, out);
            self.reader.consume(len + TAG);
            r
        } else {
            self.read_frame_body(len)?;
            let frame = self.buf.upto(len + TAG);
            match dst.as_deref_mut() {
                Some(d) => {
                    let (ct, tag) = frame.split_at(len);
                    self.key.open_separate_gather(nonce, aad, ct, tag, d)
                }
                None => self.key.open_in_place(nonce, aad, frame).map(|_| ()),
            }
        };
        if opened.is_err() {
            // The caller's buffer may hold unauthenticated plaintext: wipe it (`buf` is
            // wiped by `read` on any error).
            if let Some(d) = dst {
                d.iter_mut().for_each(|b| *b = 0);
            }
            return Err(EnvelopeError::BadFrame(seq));
        }
        self.advance(is_final)
    }

    /// After the final frame: the signature (signed suite), then the end of input.
    fn finish_message(&mut self) -> Result<(), EnvelopeError> {
        if let Some((key, hash)) = self.verifier.take() {
            let mut len = [0u8; 2];
            self.reader
                .read_exact(&mut len)
                .map_err(|_| EnvelopeError::BadSignature)?;
            let mut sig = Vec::new();
            let n = u64::from(u16::from_be_bytes(len));
            let got = (&mut self.reader)
                .take(n)
                .read_to_end(&mut sig)
                .map_err(EnvelopeError::from_read)?;
            if got as u64 != n {
                return Err(EnvelopeError::BadSignature);
            }
            key.verify(hash, &sig)?;
        }
        let mut one = [0u8; 1];
        loop {
            match self.reader.read(&mut one) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(EnvelopeError::TrailingData),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(EnvelopeError::from_read(e)),
            }
        }
    }
}

impl<R: BufRead> Read for Decryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.ready.is_empty() {
                let src = self.buf.get(self.ready.clone());
                let n = src.len().min(out.len());
                let (dst, _) = out.split_at_mut(n);
                dst.copy_from_slice(src.get(..n).unwrap_or_default());
                self.ready.start += n;
                return Ok(n);
            }
            match &self.state {
                State::Done => return Ok(0),
                State::Failed(e) => return Err(e.clone().into()),
                State::Frames => {}
            }
            // A caller's buffer that holds a whole frame gets it decrypted in place of
            // a copy; otherwise the frame waits in `buf`.
            let result = if self.frame == 0 {
                self.single_block().map(|()| 0)
            } else if out.len() >= self.frame {
                self.next_frame_into(out)
            } else {
                self.next_frame().map(|()| 0)
            };
            match result {
                Ok(0) => {}
                Ok(n) => return Ok(n),
                Err(e) => {
                    // Nothing of a damaged frame is handed out.
                    self.ready = 0..0;
                    self.buf.wipe();
                    self.state = State::Failed(e.clone());
                    return Err(e.into());
                }
            }
        }
    }
}
