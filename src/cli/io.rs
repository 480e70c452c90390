//! Reading inputs and writing outputs for client commands: files or stdin/stdout,
//! base64 or raw.

use std::io::{Read, Write};
use std::path::Path;

use base64::Engine as _;
use zeroize::Zeroizing;

pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Reads all of a file, or stdin for `-`.
pub(crate) fn read_input(path: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut buf)?;
    } else {
        std::fs::File::open(path)?.read_to_end(&mut buf)?;
    }
    Ok(buf)
}

/// Writes to a file, or stdout for `-`.
pub(crate) fn write_output(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    } else {
        std::fs::write(path, bytes)
    }
}

/// Prints `text` and a newline on stdout. Used instead of `println!`, which panics when
/// the reader of stdout has gone away (`p11kms key list | head -1`): this returns the
/// `BrokenPipe` error instead, and `main` turns it into a quiet exit.
pub(crate) fn print_line(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The exit status of a client command whose stdout reader went away: 128 + SIGPIPE,
/// what a shell reports for a tool that the signal ended (`yes | head -1` under
/// `pipefail`). Rust ignores SIGPIPE, so the write fails with `EPIPE` instead and the
/// command exits with this status by itself.
pub(crate) const BROKEN_PIPE_STATUS: u8 = 141;

/// Whether `e`, or any error in its chain of sources, is a write to a pipe nobody reads.
pub(crate) fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        // serde_json keeps the writer's error inside its own and exposes only the kind.
        if let Some(json) = err.downcast_ref::<serde_json::Error>() {
            if json.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// A writer that remembers whether a write or flush met a closed pipe. For writers
/// whose errors reach the caller only as text (the envelope encryptor keeps the
/// message, not the `io::Error`), so that a closed stdout is still recognised.
pub(crate) struct PipeWatch<W> {
    inner: W,
    broken: bool,
}

impl<W: Write> PipeWatch<W> {
    /// Watches `inner`.
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            broken: false,
        }
    }

    /// Whether a write or flush has failed with `BrokenPipe`.
    pub(crate) fn broken(&self) -> bool {
        self.broken
    }

    fn watch<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r {
            self.broken |= e.kind() == std::io::ErrorKind::BrokenPipe;
        }
        r
    }
}

impl<W: Write> Write for PipeWatch<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.watch(r)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.watch(r)
    }
}

/// Decodes base64 text, ignoring surrounding white space.
pub(crate) fn decode_b64(text: &[u8]) -> Result<Vec<u8>, String> {
    let trimmed: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    B64.decode(trimmed)
        .map_err(|e| format!("the input is not base64 ({e}); pass --raw-input for binary"))
}

/// Parses `--context k=v` pairs.
pub(crate) fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "write the context as KEY=VALUE".to_owned())
}

/// Writes a 0600 file through a temp file in the same directory and a rename, so a
/// reader never sees a partial file; refuses to replace one unless `force`.
pub(crate) fn write_private_atomically(
    path: &Path,
    bytes: &[u8],
    force: bool,
) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path, force)?;
    f.file().write_all(bytes)?;
    f.commit()
}

/// A 0600 file written under a temporary name beside its destination and put in place
/// only by `commit`; dropped uncommitted, it is removed. So a failed write never leaves a
/// partial file where the destination should be.
pub(crate) struct AtomicFile {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    file: std::fs::File,
    force: bool,
}

impl AtomicFile {
    /// Starts writing `path`; refuses an existing file unless `force`.
    pub(crate) fn create(path: &Path, force: bool) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        if path.exists() && !force {
            return Err(exists(path));
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
        let tmp = dir.join(format!(".{name}.p11kms-tmp-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        Ok(Self {
            path: path.to_owned(),
            tmp,
            file,
            force,
        })
    }

    /// The file being written.
    pub(crate) fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }

    /// Syncs and moves the file into place. Without `force`, a file that appeared at the
    /// destination meanwhile is not replaced (a hard link cannot overwrite).
    pub(crate) fn commit(self) -> std::io::Result<()> {
        self.file.sync_all()?;
        if self.force {
            std::fs::rename(&self.tmp, &self.path)
        } else {
            match std::fs::hard_link(&self.tmp, &self.path) {
                Ok(()) => std::fs::remove_file(&self.tmp),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists(&self.path)),
                // File systems without hard links: check, then rename.
                Err(_) if !self.path.exists() => std::fs::rename(&self.tmp, &self.path),
                Err(_) => Err(exists(&self.path)),
            }
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // After a successful commit the temp name no longer exists; this is a no-op then.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

fn exists(path: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{} exists; pass --force to replace it", path.display()),
    )
}
