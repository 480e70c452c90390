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
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() && !force {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists; pass --force to replace it", path.display()),
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.p11kms-tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
