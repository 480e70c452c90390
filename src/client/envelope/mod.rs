//! Envelope encryption in the AWS Encryption SDK message format, version 2, with the
//! key-committing suites (commitment policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT). Bulk data
//! is encrypted here, with a data key from a keyring; only the data key ever meets
//! p11kms.
//!
//! Two steps, so that the I/O can be plain `Read`/`Write` while the keyring talks to the
//! daemon asynchronously: get materials from a [`MaterialsManager`] (every keyring is
//! one; [`CachingMaterialsManager`] wraps one), then stream through an [`Encryptor`] or
//! a [`Decryptor`]. [`encrypt`]/[`decrypt`] do both for a message in memory, and
//! [`encrypt_stream`]/[`decrypt_stream`] for async readers and writers. Memory is one
//! frame, whatever the message size.

mod body;
mod caching;
mod decrypt;
mod encrypt;
mod error;
mod frame_buf;
mod header;
mod keyring;
mod materials;
mod signature;
mod suite;

pub use caching::CachingMaterialsManager;
pub use decrypt::{Decryptor, MessageHeader};
pub use encrypt::{encrypt_to_vec, Encryptor};
pub use error::EnvelopeError;
pub use header::Header;
pub use keyring::{Keyring, KmsKeyring, MultiKeyring, RawAesKeyring, KMS_PROVIDER_ID};
pub use materials::{
    BoxFuture, DecryptionMaterials, DecryptionRequest, EncryptionMaterials, EncryptionRequest,
    MaterialsManager,
};
pub use signature::PUBLIC_KEY_FIELD;
pub use suite::Suite;

use std::collections::BTreeMap;
use std::io::{Read, Write};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::SyncIoBridge;

use crate::domain::Plaintext;

/// The frame length used when none is given.
pub const DEFAULT_FRAME_LENGTH: u32 = 4096;
/// Encrypted data keys accepted on decrypt by default: a message with more is refused
/// before any keyring is asked (it could make a client try keys without end).
pub const MAX_EDKS: usize = 10;

/// An encrypted data key as the message header carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EncryptedDataKey {
    /// Who can decrypt it (e.g. "p11kms", or a raw keyring's namespace).
    pub provider_id: String,
    /// Provider-specific (e.g. the key ARN, or a key name and IV).
    pub provider_info: Vec<u8>,
    /// The wrapped data key.
    pub ciphertext: Vec<u8>,
}

/// How to encrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptOptions {
    /// The algorithm suite.
    pub suite: Suite,
    /// Plaintext bytes per frame.
    pub frame_length: u32,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        Self {
            suite: Suite::default(),
            frame_length: DEFAULT_FRAME_LENGTH,
        }
    }
}

/// What a decrypting caller insists on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecryptOptions {
    /// Encrypted data keys accepted at most.
    pub max_edks: usize,
    /// Pairs the message's context must contain (it may contain more).
    pub expected_context: BTreeMap<String, String>,
    /// The longest non-framed body accepted (such a body is held in memory whole until
    /// its tag checks; p11kms never writes one, other SDKs can).
    pub max_unframed_length: u64,
}

impl Default for DecryptOptions {
    fn default() -> Self {
        Self {
            max_edks: MAX_EDKS,
            expected_context: BTreeMap::new(),
            max_unframed_length: 64 << 20,
        }
    }
}

/// Encrypts `plaintext` into a complete message.
pub async fn encrypt(
    plaintext: &[u8],
    manager: &dyn MaterialsManager,
    context: &BTreeMap<String, String>,
    options: &EncryptOptions,
) -> Result<Vec<u8>, EnvelopeError> {
    let materials = manager
        .encryption_materials(EncryptionRequest {
            context,
            suite: options.suite,
            plaintext_length: Some(plaintext.len() as u64),
        })
        .await?;
    let mut out = Vec::new();
    encrypt_to_vec(materials, plaintext, options.frame_length, &mut out)?;
    Ok(out)
}

/// Decrypts a complete message; returns the plaintext and the encryption context. All
/// or nothing: no plaintext comes back from a message with any damaged part.
pub async fn decrypt(
    message: &[u8],
    manager: &dyn MaterialsManager,
    options: &DecryptOptions,
) -> Result<(Plaintext, BTreeMap<String, String>), EnvelopeError> {
    let head = MessageHeader::read(message, options)?;
    let materials = manager.decryption_materials(head.request()).await?;
    let mut dec = head.into_decryptor(materials)?;
    // The plaintext is never longer than the message: one allocation, so no
    // reallocation leaves a copy behind.
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(message.len()));
    dec.read_to_end(&mut out)
        .map_err(EnvelopeError::from_read)?;
    let context = dec.context().clone();
    Ok((Plaintext::new(std::mem::take(&mut *out)), context))
}

/// Encrypts everything `reader` yields into one message on `writer`, with one frame in
/// memory; the blocking crypto and I/O run on tokio's blocking pool. Returns the writer.
pub async fn encrypt_stream<R, W>(
    reader: R,
    writer: W,
    manager: &dyn MaterialsManager,
    context: &BTreeMap<String, String>,
    options: &EncryptOptions,
) -> Result<W, EnvelopeError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let materials = manager
        .encryption_materials(EncryptionRequest {
            context,
            suite: options.suite,
            plaintext_length: None,
        })
        .await?;
    let mut reader = SyncIoBridge::new(reader);
    // Ciphertext: buffered, so that small frames (4 KiB by default) cross the bridge
    // to the async writer 64 KiB at a time; a frame as large as the buffer passes
    // straight through it.
    let writer = std::io::BufWriter::with_capacity(1 << 16, SyncIoBridge::new(writer));
    let frame = options.frame_length;
    let writer = blocking(move || {
        let mut enc = Encryptor::new(writer, materials, frame)?;
        copy_wiped(&mut reader, &mut enc, encrypt_chunk(frame))
            .map_err(EnvelopeError::from_read)?;
        enc.finish()
    })
    .await?;
    let bridge = writer
        .into_inner()
        .map_err(|e| EnvelopeError::Io(e.error().to_string()))?;
    Ok(bridge.into_inner())
}

/// Decrypts the message `reader` yields onto `writer`, frame by frame (see
/// [`Decryptor`] for what reaches the writer before a failure). Returns the writer and
/// the message's context.
pub async fn decrypt_stream<R, W>(
    reader: R,
    writer: W,
    manager: &dyn MaterialsManager,
    options: &DecryptOptions,
) -> Result<(W, BTreeMap<String, String>), EnvelopeError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // A buffer that holds several frames lets most frames decrypt without a copy.
    let reader = std::io::BufReader::with_capacity(1 << 20, SyncIoBridge::new(reader));
    let opts = options.clone();
    let head = blocking(move || MessageHeader::read(reader, &opts)).await?;
    let materials = manager.decryption_materials(head.request()).await?;
    let frame = head.header().frame_length;
    let mut writer = SyncIoBridge::new(writer);
    let (writer, context) = blocking(move || {
        let mut dec = head.into_decryptor(materials)?;
        copy_wiped(&mut dec, &mut writer, decrypt_chunk(frame))
            .map_err(EnvelopeError::from_read)?;
        writer
            .flush()
            .map_err(|e| EnvelopeError::Io(e.to_string()))?;
        let context = dec.context().clone();
        Ok((writer, context))
    })
    .await?;
    Ok((writer.into_inner(), context))
}

/// Copies `from` into `to` through one buffer of `chunk` bytes that is wiped when done
/// (std::io::copy's buffer is not). Returns the bytes copied.
pub fn copy_wiped(from: &mut dyn Read, to: &mut dyn Write, chunk: usize) -> std::io::Result<u64> {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; chunk.max(1)]);
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(buf.get(..n).unwrap_or_default())?;
        total += n as u64;
    }
}

/// Plaintext per read when encrypting a stream: several frames, so that the Encryptor
/// seals most of them straight from the read buffer (a write longer than a frame).
pub fn encrypt_chunk(frame_length: u32) -> usize {
    (frame_length as usize)
        .saturating_mul(16)
        .clamp(1 << 20, 64 << 20)
}

/// Read size when decrypting a stream: a frame, so that the Decryptor decrypts each
/// regular frame straight into the read buffer (bounded for a hostile frame length).
pub fn decrypt_chunk(frame_length: u32) -> usize {
    (frame_length as usize).clamp(1 << 16, 16 << 20)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EnvelopeError> + Send + 'static,
) -> Result<T, EnvelopeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| EnvelopeError::Io("the stream task stopped".into()))?
}

/// The ESDK serialization of an encryption context: the canonical pair encoding
/// (`domain::context::encode_pairs`), except that an empty context is empty, and the
/// whole must fit the header's u16 length.
pub(crate) fn serialize_context(ctx: &BTreeMap<String, String>) -> Result<Vec<u8>, EnvelopeError> {
    if ctx.is_empty() {
        return Ok(Vec::new());
    }
    crate::domain::encode_pairs(ctx)
        .filter(|b| b.len() <= usize::from(u16::MAX))
        .ok_or(EnvelopeError::ContextTooLarge)
}

#[cfg(test)]
mod tests;
