//! The audit file writer: one thread that takes records from a channel, appends a batch
//! of them, makes the batch durable with one fsync, and only then acknowledges each
//! record. Records are hash-chained: each line carries `previousHash`, the SHA-256 of the
//! line before it (across file rotations and restarts), so that an edited, removed,
//! inserted or reordered line breaks the chain.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::checkpoint::{self, CheckpointSettings, CheckpointSigner, Checkpointer, Reason};
use crate::metrics::Metrics;

/// How durable a record is when its call answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync once per batch, before any call of the batch answers (the default).
    Batch,
    /// No fsync: a crash can lose the last records. For benchmarks only.
    None,
}

/// Where and how the trail is written.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// The directory of the trail's files.
    pub dir: PathBuf,
    /// Durability per batch.
    pub sync: SyncMode,
    /// A file is closed and the next one begun once it is this large.
    pub max_file_bytes: u64,
    /// When checkpoints are signed, and where their public key goes.
    pub checkpoint: CheckpointSettings,
}

/// Why a record could not be written. The caller's request then fails closed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuditError {
    /// Writing, syncing or opening failed.
    #[error("the audit trail cannot be written: {0}")]
    Io(#[source] Arc<io::Error>),
    /// The file being written was removed or replaced behind the daemon's back.
    #[error("the audit file {0} was removed or replaced")]
    Replaced(PathBuf),
    /// The writer thread is gone.
    #[error("the audit writer has stopped")]
    Stopped,
    /// The last batch failed; calls are refused until a record goes through again.
    #[error("the audit trail failed its last write")]
    Unavailable,
    /// A failed write could not be undone, so the file holds bytes outside the chain.
    #[error("the audit file holds a partly written batch that could not be removed")]
    Poisoned,
}

impl From<io::Error> for AuditError {
    fn from(e: io::Error) -> Self {
        Self::Io(Arc::new(e))
    }
}

/// The most records one batch takes; more wait for the next.
pub(super) const MAX_BATCH: usize = 4096;

/// Files are named `p11kms-audit-NNNNNN.jsonl`; the highest number is the current one.
const PREFIX: &str = "p11kms-audit-";
const SUFFIX: &str = ".jsonl";
/// Held (flock) by the writer for its whole life: one daemon per trail, and a verifier
/// can tell a trail still being written from one that was cut.
pub(super) const LOCK_FILE: &str = "p11kms-audit.lock";

/// A record on its way to the file.
pub(super) struct Job {
    /// The record as a JSON object, without `previousHash`.
    pub(super) record: Vec<u8>,
    /// Where its caller waits; None when nobody does (a cancelled call, or the leader's
    /// own record, whose result the leader keeps).
    pub(super) done: Option<oneshot::Sender<Result<(), AuditError>>>,
    /// The record of the caller who writes it (the leader), which learns its result
    /// from the batch it is in rather than from `done`.
    pub(super) leader: bool,
    /// Its place in the bounded queue, given back once it is written.
    pub(super) _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The trail's files in order.
pub fn trail_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name
                .strip_prefix(PREFIX)?
                .strip_suffix(SUFFIX)?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

fn file_name(n: u64) -> String {
    format!("{PREFIX}{n:06}{SUFFIX}")
}

/// The SHA-256 of one line (without its newline), hex.
pub fn line_hash(line: &[u8]) -> String {
    crate::domain::sha256_hex(line)
}

/// Appends one chained line to `buf`: `previousHash` first, then the record's own
/// fields, so that the writer never re-serializes a record. Returns the line's hash.
fn chain_line(buf: &mut Vec<u8>, previous: &str, record: &[u8]) -> String {
    let start = buf.len();
    buf.extend_from_slice(br#"{"previousHash":""#);
    buf.extend_from_slice(previous.as_bytes());
    buf.push(b'"');
    // The record is a JSON object: `{}` or `{"field":…}`.
    match record.strip_prefix(b"{") {
        Some(rest) if rest != b"}" => {
            buf.push(b',');
            buf.extend_from_slice(rest);
        }
        _ => buf.push(b'}'),
    }
    let hash = line_hash(buf.get(start..).unwrap_or_default());
    buf.push(b'\n');
    hash
}

/// The hash of the last line of the trail in `dir`, and the number of the last file.
fn chain_head(dir: &Path) -> io::Result<(String, u64)> {
    let files = trail_files(dir)?;
    for path in files.iter().rev() {
        // Only regular files hold records (a device standing in for one is read as empty).
        if !fs::metadata(path)?.is_file() {
            continue;
        }
        let mut last = None;
        for line in BufReader::new(File::open(path)?).split(b'\n') {
            let line = line?;
            if !line.is_empty() {
                last = Some(line);
            }
        }
        if let Some(l) = last {
            let n = number(path);
            return Ok((line_hash(&l), n));
        }
    }
    let n = files.last().map_or(1, |p| number(p));
    Ok((String::new(), n))
}

fn number(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.parse().ok())
        .unwrap_or(1)
}

/// Cuts a torn last line (a crash in the middle of a write, never acknowledged) off the
/// newest file, so that the chain continues from the last whole record.
fn repair_tail(dir: &Path) -> io::Result<()> {
    let Some(path) = trail_files(dir)?.pop() else {
        return Ok(());
    };
    if !fs::metadata(&path)?.is_file() {
        return Ok(());
    }
    let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // A record is far smaller than this; look for the last newline in the tail.
    let tail_len = len.min(1 << 20);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::with_capacity(usize::try_from(tail_len).unwrap_or(0));
    io::Read::read_to_end(&mut file, &mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => len - tail_len + i as u64 + 1,
        None if tail_len == len => 0,
        None => {
            return Err(io::Error::other(
                "the last line of the audit trail is over 1 MiB",
            ))
        }
    };
    tracing::warn!(file = %path.display(), cut = len - keep, "the audit trail ended in a torn record (a crash mid-write); it was never acknowledged and is removed");
    file.set_len(keep)?;
    file.sync_all()
}

/// Takes the trail's lock, or says which directory another daemon is writing.
fn lock_trail(dir: &Path) -> io::Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(io::Error::other(format!(
            "another process (a p11kms daemon?) is writing the audit trail in {}",
            dir.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// True when a daemon holds the trail's lock in `dir`: it is writing the trail now, so
/// records after its last checkpoint are expected.
pub fn trail_is_being_written(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(fs::TryLockError::WouldBlock))
}

/// A file's device and inode.
fn identity(m: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Makes a directory entry durable: a file's name survives a power loss only once its
/// directory is synced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The open end of the trail.
pub(super) struct Writer {
    settings: AuditSettings,
    number: u64,
    path: PathBuf,
    file: File,
    len: u64,
    head: String,
    healthy: Arc<AtomicBool>,
    poisoned: bool,
    /// Device and inode of the open file, to tell when its path names another.
    identity: (u64, u64),
    metrics: Metrics,
    checkpoints: Checkpointer,
    _lock: File,
}

impl Writer {
    /// Opens the trail in `settings.dir` (made if missing) and continues its chain.
    pub(super) fn open(
        settings: AuditSettings,
        healthy: Arc<AtomicBool>,
        metrics: Metrics,
        signer: Box<dyn CheckpointSigner>,
    ) -> io::Result<Self> {
        fs::create_dir_all(&settings.dir)?;
        let lock = lock_trail(&settings.dir)?;
        repair_tail(&settings.dir)?;
        let (head, number) = chain_head(&settings.dir)?;
        let path = settings.dir.join(file_name(number));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if settings.sync == SyncMode::Batch {
            sync_dir(&settings.dir)?;
            if let Some(parent) = settings.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let meta = file.metadata()?;
        let (len, opened) = (meta.len(), identity(&meta));
        let state = checkpoint::scan(&trail_files(&settings.dir)?)?;
        let checkpoints =
            Checkpointer::new(signer, &settings.checkpoint, state).map_err(io::Error::other)?;
        Ok(Self {
            settings,
            number,
            path,
            file,
            len,
            head,
            healthy,
            poisoned: false,
            identity: opened,
            metrics,
            checkpoints,
            _lock: lock,
        })
    }

    /// Signs, late, the records a crash left after the last checkpoint.
    pub(super) fn recover(&mut self) {
        if self.checkpoints.needs_recovery() {
            tracing::warn!("the audit trail does not end in the final checkpoint of a clean stop (a crash, or the trail was cut while the daemon was stopped); its last records are signed now, late, by a recovery checkpoint");
            self.checkpoint(Reason::Recovery);
        }
    }

    /// Writes one batch and makes it durable. A checkpoint that falls due is written
    /// by the caller after the batch's calls are answered ([`Self::checkpoint_if_due`]).
    pub(super) fn write_batch(&mut self, batch: &[Job]) -> Result<(), AuditError> {
        self.metrics.audit_batch(batch.len());
        let result = self.append(batch);
        self.metrics.audit_written(batch.len(), result.is_ok());
        self.healthy.store(result.is_ok(), Ordering::Release);
        match &result {
            Ok(()) => {
                self.checkpoints.appended(batch.len() as u64);
            }
            Err(e) => {
                tracing::error!(error = %e, "audit records could not be written; requests fail until they can");
            }
        }
        result
    }

    /// Writes a checkpoint if one is due (records counted, or the interval passed).
    pub(super) fn checkpoint_if_due(&mut self) {
        if let Some(reason) = self.checkpoints.due() {
            self.checkpoint(reason);
        }
    }

    /// When the next interval checkpoint falls due, if records wait for one.
    pub(super) fn deadline(&self) -> Option<std::time::Instant> {
        self.checkpoints.deadline()
    }

    /// The trail ends here, signed: the daemon is stopping.
    pub(super) fn finish(&mut self) {
        // A trail that already ends in a final checkpoint (nothing recorded since the
        // last clean stop, or an empty one) needs no other.
        if self.checkpoints.needs_recovery() {
            self.checkpoint(Reason::Shutdown);
        }
    }

    /// Signs the chain head and appends the checkpoint line. A failure is logged and
    /// retried later: calls go on, but the operator must look.
    fn checkpoint(&mut self, reason: Reason) {
        let started = std::time::Instant::now();
        let written = self
            .checkpoints
            .line(&self.head, reason)
            .map_err(|e| e.to_string())
            .and_then(|line| self.append_line(&line).map_err(|e| e.to_string()));
        match written {
            Ok(()) => {
                self.checkpoints.written(reason);
                tracing::debug!(
                    reason = reason.as_str(),
                    micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    "audit checkpoint signed and written"
                );
            }
            Err(error) => {
                tracing::error!(%error, reason = reason.as_str(), "the audit checkpoint could not be written; the trail's last records stay unsigned until one is");
                self.checkpoints.failed();
            }
        }
    }

    /// Appends one line (a checkpoint) and makes it durable, like a batch of one.
    fn append_line(&mut self, line: &[u8]) -> Result<(), AuditError> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        self.write_durably(&buf, line_hash(line))
    }

    /// Writes a batch and makes it durable.
    fn append(&mut self, batch: &[Job]) -> Result<(), AuditError> {
        let mut buf = Vec::with_capacity(batch.len() * 1024);
        let mut head = self.head.clone();
        for job in batch {
            head = chain_line(&mut buf, &head, &job.record);
        }
        self.write_durably(&buf, head)
    }

    /// Appends `lines` (whole, chained lines ending in `new_head`'s line) and makes them
    /// durable; on failure the file is cut back to where they began, so that the chain
    /// never holds half a batch.
    fn write_durably(&mut self, lines: &[u8], new_head: String) -> Result<(), AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned);
        }
        self.check_file()?;
        if self.len >= self.settings.max_file_bytes && self.len > 0 {
            self.rotate()?;
        }
        let written = self
            .file
            .write_all(lines)
            .and_then(|()| match self.settings.sync {
                SyncMode::Batch => {
                    crate::failpoint::hit("audit.after_write");
                    let started = std::time::Instant::now();
                    let synced = self.file.sync_data();
                    self.metrics.audit_fsync(started.elapsed());
                    synced
                }
                SyncMode::None => Ok(()),
            });
        if let Err(e) = written {
            // Undo the partial write; if that fails too, the file holds bytes outside
            // the chain, and nothing more may be appended to it.
            if self.file.set_len(self.len).is_err() {
                self.poisoned = true;
            }
            let _ = self.file.seek(SeekFrom::End(0));
            return Err(e.into());
        }
        self.len += lines.len() as u64;
        self.head = new_head;
        crate::failpoint::hit("audit.after_sync");
        Ok(())
    }

    /// The path must still name the file being written: a removed or replaced trail
    /// is a fault to surface, not a place to keep writing unseen.
    /// One stat per batch: the open file's identity is taken once, at open and rotation.
    fn check_file(&self) -> Result<(), AuditError> {
        let on_disk =
            fs::metadata(&self.path).map_err(|_| AuditError::Replaced(self.path.clone()))?;
        if identity(&on_disk) != self.identity {
            return Err(AuditError::Replaced(self.path.clone()));
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let number = self.number + 1;
        let path = self.settings.dir.join(file_name(number));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        // The new file's name must be durable before records in it are acknowledged.
        if self.settings.sync == SyncMode::Batch {
            sync_dir(&self.settings.dir)?;
        }
        self.number = number;
        self.path = path;
        self.identity = identity(&file.metadata()?);
        self.file = file;
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chained_line_is_the_record_with_the_link_first_and_hashes_as_written() {
        for record in [&b"{}"[..], br#"{"eventName":"Encrypt","n":[1,{"a":"}"}]}"#] {
            let mut buf = b"earlier\n".to_vec();
            let hash = chain_line(&mut buf, "ab12", record);
            let line = buf.strip_prefix(b"earlier\n").unwrap();
            let line = line.strip_suffix(b"\n").unwrap();
            assert_eq!(hash, line_hash(line));
            let mut parsed: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(line).unwrap();
            assert_eq!(parsed.remove("previousHash").unwrap(), "ab12");
            let original: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(record).unwrap();
            assert_eq!(parsed, original);
            assert!(line.starts_with(br#"{"previousHash":"ab12""#));
        }
    }

    #[test]
    fn line_hash_is_lowercase_hex_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            line_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
