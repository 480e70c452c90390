//! Signed checkpoints: now and then the writer appends a line that signs the chain head
//! with an ECDSA P-256 key kept in the HSM. The hash chain alone is unkeyed (whoever can
//! rewrite the files can recompute it); a checkpoint's signature commits to every line
//! before it, and the final checkpoint of a clean stop marks where the trail ends.
//!
//! What is signed is the UTF-8 text below, fields in this order, one per line, no final
//! newline (`format` names this layout; no value can hold a newline):
//!
//! ```text
//! p11kms-audit-checkpoint/1
//! sequence=<this checkpoint's number, from 1, across the whole trail>
//! records=<lines in the trail before this one, checkpoints included>
//! head=<SHA-256 hex of the line before this one>
//! time=<eventTime of the checkpoint line>
//! reason=<records | interval | shutdown | recovery>
//! ```
//!
//! The signature is ECDSA P-256 over SHA-256 of that text, DER-encoded (as AWS KMS's
//! Sign returns ECDSA signatures), base64 in the line.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use super::writer::line_hash;

/// `eventType` of a checkpoint line (CloudTrail's style: `AwsApiCall`, `AwsServiceEvent`).
pub(crate) const CHECKPOINT_EVENT_TYPE: &str = "P11kmsCheckpoint";
/// `eventName` of a checkpoint line.
pub(super) const CHECKPOINT_EVENT_NAME: &str = "Checkpoint";
/// The public key's file name in the audit directory, unless configured otherwise.
pub const PUBLIC_KEY_FILE: &str = "audit-checkpoint.pub.pem";
/// The layout of the signed text (see the module documentation).
pub(crate) const FORMAT: &str = "p11kms-audit-checkpoint/1";
/// `signatureAlgorithm`, in AWS KMS's spelling.
const ALGORITHM: &str = "ECDSA_SHA_256";

/// SubjectPublicKeyInfo DER of a P-256 key, up to the point: SEQUENCE { SEQUENCE {
/// id-ecPublicKey, prime256v1 }, BIT STRING (65 bytes) }.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A boxed error from a signer, whatever its layer.
pub(crate) type SignError = Box<dyn std::error::Error + Send + Sync>;

/// Signs checkpoints. The daemon implements it with a key in the HSM; the writer thread
/// owns it and calls it synchronously, never on the request path.
pub trait CheckpointSigner: Send {
    /// The public key as an uncompressed P-256 point (65 bytes).
    fn public_point(&self) -> Vec<u8>;
    /// ECDSA P-256 with SHA-256 over `message`; the raw signature r || s (64 bytes).
    fn sign(&mut self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// When checkpoints are written, and where the public key goes.
#[derive(Clone, Debug)]
pub struct CheckpointSettings {
    /// A checkpoint after this many records at most.
    pub every_records: u64,
    /// A checkpoint at most this long after the first record it covers.
    pub every: Duration,
    /// The PEM file of the public key, written at start, checked if it exists.
    pub public_key_file: PathBuf,
}

/// Why a checkpoint was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reason {
    /// `every_records` records since the last one.
    Records,
    /// `every` since the first record it covers.
    Interval,
    /// The final checkpoint of a clean stop: the trail ends here.
    Shutdown,
    /// At start, after a stop that left records unsigned (a crash, or a cut trail).
    Recovery,
}

impl Reason {
    /// The word in the signed text and the line.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Records => "records",
            Self::Interval => "interval",
            Self::Shutdown => "shutdown",
            Self::Recovery => "recovery",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Records,
            Self::Interval,
            Self::Shutdown,
            Self::Recovery,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// Why the checkpoint key or a checkpoint could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The public key file.
    #[error("cannot use the checkpoint public key file {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Not a PEM P-256 public key.
    #[error("{} is not a PEM P-256 public key (SubjectPublicKeyInfo)", .0.display())]
    NotAKey(PathBuf),
    /// The file names another key than the token's.
    #[error("{} holds a different public key than the token's checkpoint key: keep it to verify the trail it signed, move it away, and start again", .0.display())]
    OtherKey(PathBuf),
    /// The signer failed.
    #[error("the checkpoint could not be signed")]
    Sign(#[source] SignError),
    /// The signer returned something that is not r || s.
    #[error("the signer returned a malformed signature")]
    BadSignature,
}

/// A checkpoint public key (P-256).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointPublicKey {
    point: Vec<u8>,
}

impl CheckpointPublicKey {
    /// From an uncompressed point.
    pub fn from_point(point: &[u8]) -> Option<Self> {
        (point.len() == 65 && point.first() == Some(&0x04)).then(|| Self {
            point: point.to_vec(),
        })
    }

    /// From PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo).
    pub fn from_pem(pem: &[u8]) -> Option<Self> {
        let der = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem).ok()?;
        let point = der.as_ref().strip_prefix(SPKI_P256_PREFIX.as_slice())?;
        Self::from_point(point)
    }

    /// Reads a PEM file.
    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        let pem = fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&pem).ok_or_else(|| CheckpointError::NotAKey(path.to_owned()))
    }

    fn spki(&self) -> Vec<u8> {
        let mut der = SPKI_P256_PREFIX.to_vec();
        der.extend_from_slice(&self.point);
        der
    }

    /// PEM SubjectPublicKeyInfo, as OpenSSL writes it.
    pub fn to_pem(&self) -> String {
        crate::domain::public_key_pem(&self.spki())
    }

    /// `sha256:` and the hex SHA-256 of the SubjectPublicKeyInfo DER (what
    /// `openssl pkey -pubin -outform DER | sha256sum` prints).
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", line_hash(&self.spki()))
    }

    /// True when `der` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], der: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, der)
            .is_ok()
    }
}

/// Writes the public key file, or checks that an existing one names the same key.
pub(super) fn install_public_key(
    path: &Path,
    key: &CheckpointPublicKey,
) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    };
    match fs::read(path) {
        Ok(pem) => match CheckpointPublicKey::from_pem(&pem) {
            Some(k) if k == *key => Ok(()),
            Some(_) => Err(CheckpointError::OtherKey(path.to_owned())),
            None => Err(CheckpointError::NotAKey(path.to_owned())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(io)?;
            }
            // Through a temporary file and a rename, so a reader never sees half a key.
            let tmp = path.with_extension("pem.tmp");
            fs::write(&tmp, key.to_pem()).map_err(io)?;
            fs::rename(&tmp, path).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

/// The text a checkpoint signs (see the module documentation).
pub(super) fn signed_text(
    sequence: u64,
    records: u64,
    head: &str,
    time: &str,
    reason: Reason,
) -> String {
    format!(
        "{FORMAT}\nsequence={sequence}\nrecords={records}\nhead={head}\ntime={time}\nreason={}",
        reason.as_str()
    )
}

/// DER `ECDSA-Sig-Value` from r || s.
fn der_signature(rs: &[u8]) -> Option<Vec<u8>> {
    if rs.len() != 64 {
        return None;
    }
    let (r, s) = rs.split_at(32);
    let int = |x: &[u8]| {
        let first = x.iter().position(|b| *b != 0).unwrap_or(x.len() - 1);
        let x = x.get(first..).unwrap_or_default();
        let mut out = vec![0x02];
        // A set top bit would read as negative: INTEGER needs a leading zero then.
        let pad = x.first().is_some_and(|b| b & 0x80 != 0);
        out.push(u8::try_from(x.len() + usize::from(pad)).unwrap_or(0));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(x);
        out
    };
    let (r, s) = (int(r), int(s));
    let mut der = vec![0x30, u8::try_from(r.len() + s.len()).ok()?];
    der.extend(r);
    der.extend(s);
    Some(der)
}

/// What the writer knows of the trail's checkpoints when it opens it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TrailState {
    /// Lines in the trail.
    pub(super) lines: u64,
    /// The last checkpoint's sequence number (0: none).
    pub(super) sequence: u64,
    /// Lines after the last checkpoint.
    pub(super) unsigned: u64,
    /// True when the last line is the final checkpoint of a clean stop.
    pub(super) closed: bool,
}

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "eventType", borrow, default)]
    event_type: Option<std::borrow::Cow<'a, str>>,
}

/// The checkpoint part of a checkpoint line.
#[derive(Deserialize)]
pub(super) struct Body {
    pub(super) format: String,
    pub(super) sequence: u64,
    pub(super) records: u64,
    pub(super) head: String,
    pub(super) reason: String,
    #[serde(rename = "keyFingerprint")]
    pub(super) key_fingerprint: String,
    #[serde(rename = "signatureAlgorithm")]
    pub(super) signature_algorithm: String,
    pub(super) signature: String,
}

/// A checkpoint line.
#[derive(Deserialize)]
pub(super) struct Line {
    #[serde(rename = "eventTime")]
    pub(super) event_time: String,
    pub(super) checkpoint: Body,
}

/// True when `line` is a checkpoint (its top-level eventType says so; an encryption
/// context that holds the same words is nested, so it does not count).
pub(super) fn is_checkpoint(line: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"P11kmsCheckpoint\"";
    line.windows(NEEDLE.len()).any(|w| w == NEEDLE)
        && serde_json::from_slice::<Kind<'_>>(line)
            .ok()
            .and_then(|k| k.event_type)
            .is_some_and(|t| t == CHECKPOINT_EVENT_TYPE)
}

/// Reads the trail back from its newest file until the last checkpoint.
pub(super) fn scan(files: &[PathBuf]) -> io::Result<TrailState> {
    let mut after = 0u64;
    for path in files.iter().rev() {
        if !fs::metadata(path)?.is_file() {
            continue;
        }
        let text = fs::read(path)?;
        let lines: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        for (i, line) in lines.iter().enumerate().rev() {
            if !is_checkpoint(line) {
                continue;
            }
            let unsigned = after + (lines.len() - 1 - i) as u64;
            let c: Line = serde_json::from_slice(line).map_err(|e| {
                io::Error::other(format!(
                    "the last checkpoint in {} cannot be read ({e}); run `p11kms audit verify` on the trail",
                    path.display()
                ))
            })?;
            return Ok(TrailState {
                lines: c.checkpoint.records + 1 + unsigned,
                sequence: c.checkpoint.sequence,
                unsigned,
                closed: unsigned == 0 && c.checkpoint.reason == Reason::Shutdown.as_str(),
            });
        }
        after += lines.len() as u64;
    }
    Ok(TrailState {
        lines: after,
        sequence: 0,
        unsigned: after,
        closed: after == 0,
    })
}

/// The writer's checkpoint bookkeeping and its signer.
pub(super) struct Checkpointer {
    signer: Box<dyn CheckpointSigner>,
    key: CheckpointPublicKey,
    every_records: u64,
    every: Duration,
    state: TrailState,
    /// When the oldest unsigned record was written (in this run).
    first_unsigned: Option<Instant>,
    /// After a failure, no new attempt before this.
    not_before: Option<Instant>,
}

impl Checkpointer {
    /// Writes or checks the public key file and takes over the trail's state.
    pub(super) fn new(
        signer: Box<dyn CheckpointSigner>,
        settings: &CheckpointSettings,
        state: TrailState,
    ) -> Result<Self, CheckpointError> {
        let key = CheckpointPublicKey::from_point(&signer.public_point()).ok_or_else(|| {
            CheckpointError::Sign(
                "the signer's public key is not an uncompressed P-256 point".into(),
            )
        })?;
        install_public_key(&settings.public_key_file, &key)?;
        Ok(Self {
            signer,
            key,
            every_records: settings.every_records.max(1),
            every: settings.every,
            first_unsigned: (state.unsigned > 0).then(Instant::now),
            state,
            not_before: None,
        })
    }

    /// True when the trail did not end in the final checkpoint of a clean stop.
    pub(super) fn needs_recovery(&self) -> bool {
        !self.state.closed
    }

    /// Counts lines that are now durable.
    pub(super) fn appended(&mut self, n: u64) {
        if n > 0 && self.state.unsigned == 0 {
            self.first_unsigned = Some(Instant::now());
        }
        self.state.lines += n;
        self.state.unsigned += n;
        self.state.closed = false;
    }

    /// Why a checkpoint is due now, if one is.
    pub(super) fn due(&self) -> Option<Reason> {
        let now = Instant::now();
        if self.state.unsigned == 0 || self.not_before.is_some_and(|t| now < t) {
            return None;
        }
        if self.state.unsigned >= self.every_records {
            return Some(Reason::Records);
        }
        self.first_unsigned
            .filter(|t| now.duration_since(*t) >= self.every)
            .map(|_| Reason::Interval)
    }

    /// When the next interval checkpoint falls due (none while nothing is unsigned).
    pub(super) fn deadline(&self) -> Option<Instant> {
        let at = self.first_unsigned.filter(|_| self.state.unsigned > 0)? + self.every;
        Some(self.not_before.map_or(at, |t| t.max(at)))
    }

    /// The signed checkpoint line (without its newline) that follows `head`.
    pub(super) fn line(&mut self, head: &str, reason: Reason) -> Result<Vec<u8>, CheckpointError> {
        let now = time::OffsetDateTime::now_utc();
        let time = now
            .replace_nanosecond(0)
            .unwrap_or(now)
            .format(&Rfc3339)
            .unwrap_or_default();
        let sequence = self.state.sequence + 1;
        let text = signed_text(sequence, self.state.lines, head, &time, reason);
        let rs = self
            .signer
            .sign(text.as_bytes())
            .map_err(CheckpointError::Sign)?;
        let der = der_signature(&rs).ok_or(CheckpointError::BadSignature)?;
        // A signer that signed with another key would make every checkpoint fail
        // verification; better to notice here.
        if !self.key.verifies(text.as_bytes(), &der) {
            return Err(CheckpointError::BadSignature);
        }
        let record = json!({
            "eventVersion": "1.08",
            "eventTime": time,
            "eventSource": "p11kms",
            "eventName": CHECKPOINT_EVENT_NAME,
            "eventType": CHECKPOINT_EVENT_TYPE,
            "checkpoint": {
                "format": FORMAT,
                "sequence": sequence,
                "records": self.state.lines,
                "head": head,
                "reason": reason.as_str(),
                "keyFingerprint": self.key.fingerprint(),
                "signatureAlgorithm": ALGORITHM,
                "signature": base64::engine::general_purpose::STANDARD.encode(der),
            },
            "previousHash": head,
        });
        serde_json::to_vec(&record).map_err(|e| CheckpointError::Sign(Box::new(e)))
    }

    /// The checkpoint line is durable.
    pub(super) fn written(&mut self, reason: Reason) {
        self.state.sequence += 1;
        self.state.lines += 1;
        self.state.unsigned = 0;
        self.state.closed = reason == Reason::Shutdown;
        self.first_unsigned = None;
        self.not_before = None;
    }

    /// The checkpoint failed: try again a little later, not after every batch.
    pub(super) fn failed(&mut self) {
        self.not_before = Some(Instant::now() + Duration::from_secs(5).min(self.every));
    }
}

/// What a verifier finds wrong with one checkpoint line, given the line number before
/// it (`records`), the previous checkpoint's sequence, the hash of the line before it,
/// and the key to check against (none: signatures are not checked).
pub(super) fn check(
    line: &[u8],
    records: u64,
    previous_sequence: u64,
    head: &str,
    key: Option<&CheckpointPublicKey>,
) -> Result<(u64, Reason), String> {
    let c: Line = serde_json::from_slice(line)
        .map_err(|e| format!("is a checkpoint without its fields: {e}"))?;
    let b = &c.checkpoint;
    if b.format != FORMAT || b.signature_algorithm != ALGORITHM {
        return Err(format!(
            "is a checkpoint of an unknown format ({}, {})",
            b.format, b.signature_algorithm
        ));
    }
    let reason = Reason::parse(&b.reason)
        .ok_or_else(|| format!("is a checkpoint with an unknown reason {:?}", b.reason))?;
    if b.sequence != previous_sequence + 1 {
        return Err(if b.sequence > previous_sequence + 1 {
            format!(
                "is checkpoint {} but checkpoint {} came last: a checkpoint was removed",
                b.sequence, previous_sequence
            )
        } else {
            format!(
                "is checkpoint {} but checkpoint {} came last: a checkpoint was copied or reordered",
                b.sequence, previous_sequence
            )
        });
    }
    if b.records != records {
        return Err(format!(
            "is a checkpoint that covers {} lines, but {records} come before it: lines were removed or inserted",
            b.records
        ));
    }
    if b.head != head {
        return Err("is a checkpoint of another chain head than the line before it".into());
    }
    if c.event_time.contains('\n') {
        return Err("is a checkpoint with a malformed time".into());
    }
    if let Some(key) = key {
        if b.key_fingerprint != key.fingerprint() {
            return Err(format!(
                "is a checkpoint signed by key {}, not by the given key {}",
                b.key_fingerprint,
                key.fingerprint()
            ));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(&b.signature)
            .map_err(|_| "is a checkpoint whose signature is not base64".to_owned())?;
        let text = signed_text(b.sequence, b.records, &b.head, &c.event_time, reason);
        if !key.verifies(text.as_bytes(), &der) {
            return Err("is a checkpoint whose signature does not verify: it, or the lines it covers, were altered, or it was forged".into());
        }
    }
    Ok((b.sequence, reason))
}

/// For tests and tools: a checkpoint line's signed text and DER signature, so that an
/// independent implementation (OpenSSL) can check it.
pub fn signed_parts(line: &[u8]) -> Option<(String, Vec<u8>)> {
    let c: Line = serde_json::from_slice(line).ok()?;
    let b = &c.checkpoint;
    let text = signed_text(
        b.sequence,
        b.records,
        &b.head,
        &c.event_time,
        Reason::parse(&b.reason)?,
    );
    let der = base64::engine::general_purpose::STANDARD
        .decode(&b.signature)
        .ok()?;
    Some((text, der))
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
pub(super) mod tests;
