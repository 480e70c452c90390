//! Streaming encryption: an `io::Write` that holds at most one frame of plaintext.

use std::io::{self, Write};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce};
use aws_lc_rs::digest;

use super::body::{frame_aad, frame_iv, next_seq, FINAL_MARK};
use super::frame_buf::FrameBuf;
use super::header::{Header, TAG};
use super::signature::{new_hash, SigningKey};
use super::{EncryptionMaterials, EnvelopeError};

/// Bytes before a frame's body in the frame buffer: the final frame's head (mark,
/// sequence number, IV, length). A regular frame's head (sequence number, IV) ends at
/// the same place, so a frame of either kind leaves the buffer as one slice.
const HEAD: usize = 4 + 4 + 12 + 4;
/// A regular frame's head: sequence number and IV.
const REGULAR_HEAD: usize = 4 + 12;

/// Encrypts everything written to it into one message on `W`. Call [`finish`] at the
/// end: a message that is not finished has no final frame, and no reader accepts it.
///
/// Each frame is built in one buffer the encryptor owns (head, body, tag) and goes to
/// `W` in one `write_all`. A write that holds more than a frame is sealed from the
/// caller's slice straight into that buffer, without copying the plaintext; shorter
/// writes are copied into the buffer's body and sealed there in place. The other copy is
/// the one `W` makes of each frame, which `io::Write` cannot avoid (it is handed a
/// slice); [`Encryptor::appending_to`] seals whole frames straight into a `Vec` instead.
///
/// [`finish`]: Encryptor::finish
pub struct Encryptor<W: Write> {
    out: W,
    key: LessSafeKey,
    message_id: [u8; 32],
    frame: usize,
    /// The frame being built: `HEAD` bytes of head, then the body, then the tag. The
    /// body holds plaintext until it is sealed in place; wiped on drop.
    buf: FrameBuf,
    /// Plaintext bytes waiting at the start of the body.
    pending: usize,
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

/// Copies `bytes` into `buf` at `at`; returns where they end.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    let end = at + bytes.len();
    if let Some(dst) = buf.get_mut(at..end) {
        dst.copy_from_slice(bytes);
    }
    end
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
    /// into it rather than into a buffer that is then copied. (The new bytes are
    /// zero-filled before the cipher writes them, since safe code cannot hand it
    /// uninitialized memory; in a message larger than the caches that costs about as
    /// much as the copy would: `cargo bench --bench envelope`.)
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
        let size = s
            .frame
            .checked_add(HEAD + TAG)
            .ok_or(EnvelopeError::Malformed("frame length"))?;
        let mut this = Self {
            out,
            key: s.key,
            message_id: s.message_id,
            frame: s.frame,
            // Room for a whole frame from the start, so the buffer never moves.
            buf: FrameBuf::with_capacity(size),
            pending: 0,
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

    /// Completes the frame whose body (`len` bytes of ciphertext) is in `buf`: its head
    /// before the body, `tag` after it; then writes it out in one piece and moves on to
    /// the next sequence number.
    fn send_frame(
        &mut self,
        is_final: bool,
        len: usize,
        iv: &[u8; 12],
        tag: &[u8],
    ) -> Result<(), EnvelopeError> {
        let n = u32::try_from(len).map_err(|_| EnvelopeError::Malformed("frame length"))?;
        let seq = self.seq.to_be_bytes();
        let begin = if is_final { 0 } else { HEAD - REGULAR_HEAD };
        let end = HEAD + len + TAG;
        let buf = self.buf.upto(end);
        let mut at = begin;
        if is_final {
            at = put(buf, at, &FINAL_MARK.to_be_bytes());
        }
        at = put(buf, at, &seq);
        at = put(buf, at, iv);
        if is_final {
            put(buf, at, &n.to_be_bytes());
        }
        put(buf, HEAD + len, tag);
        let frame = buf.get(begin..).unwrap_or_default();
        self.out
            .write_all(frame)
            .map_err(|e| EnvelopeError::Io(e.to_string()))?;
        if let Some((_, hash)) = &mut self.signer {
            hash.update(frame);
        }
        if !is_final {
            self.seq = next_seq(self.seq).ok_or(EnvelopeError::Malformed("too many frames"))?;
        }
        Ok(())
    }

    /// Seals the pending plaintext in place as frame `seq`, final or not, and sends it.
    fn seal(&mut self, is_final: bool) -> Result<(), EnvelopeError> {
        let len = self.pending;
        let iv = frame_iv(self.seq);
        let aad = frame_aad(&self.message_id, is_final, self.seq, len as u64);
        let body = self
            .buf
            .upto(HEAD + len)
            .get_mut(HEAD..)
            .unwrap_or_default();
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), body)
            .map_err(|_| EnvelopeError::Crypto)?;
        // The body holds ciphertext now, whatever happens to the write.
        self.pending = 0;
        self.send_frame(is_final, len, &iv, tag.as_ref())
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
        let body = self
            .buf
            .upto(HEAD + len)
            .get_mut(HEAD..)
            .unwrap_or_default();
        let mut tag = [0u8; TAG];
        self.key
            .seal_out_of_place_scatter(
                Nonce::assume_unique_for_key(iv),
                Aad::from(aad),
                chunk,
                body,
                &[],
                &mut tag,
            )
            .map_err(|_| EnvelopeError::Crypto)?;
        self.send_frame(false, len, &iv, &tag)
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
            let mut footer = Vec::with_capacity(2 + sig.len());
            footer.extend_from_slice(&n.to_be_bytes());
            footer.extend_from_slice(&sig);
            self.out
                .write_all(&footer)
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
            let step = if self.pending == 0 && data.len() > self.frame {
                let (chunk, rest) = data.split_at(self.frame);
                data = rest;
                self.seal_direct(chunk)
            } else if self.pending == self.frame {
                self.seal(false)
            } else {
                let n = (self.frame - self.pending).min(data.len());
                let (now, rest) = data.split_at(n);
                let at = HEAD + self.pending;
                self.pending += n;
                data = rest;
                if let Some(dst) = self.buf.upto(at + n).get_mut(at..) {
                    dst.copy_from_slice(now);
                }
                Ok(())
            };
            if let Err(e) = step {
                self.broken = true;
                return Err(e.into());
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
