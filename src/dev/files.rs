//! Small file helpers for dev mode: private directories, 0600 secrets, write-once files.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::{io_err, DevError};

/// Creates a 0700 directory (and parents) if missing.
pub(super) fn create_private_dir(path: &Path) -> Result<(), DevError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err(path))
}

/// Writes a 0600 file, replacing any old one.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DevError> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))
}

/// Writes a file unless it exists.
pub(super) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), DevError> {
    if path.exists() {
        return Ok(());
    }
    write_private(path, bytes)
}

/// 32 hex characters from the system CSPRNG, for dev PINs.
pub(super) fn random_secret() -> String {
    let mut b = [0u8; 16];
    // A failing system RNG leaves zeros; the dev PIN is then weak but the token still
    // works, and dev mode protects nothing of value.
    let _ = aws_lc_rs::rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
