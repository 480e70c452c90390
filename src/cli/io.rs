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
