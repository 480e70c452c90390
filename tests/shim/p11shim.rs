//! The PKCS#11 shim (`tests/shim/p11shim.c`) for integration tests and benchmarks: builds
//! it with the system C compiler and says how to start a daemon behind it. The shim
//! forwards every call to the real module (SoftHSM2), adding a delay to cryptographic
//! calls and the failures and holds a control file asks for; docs/testing.md has the
//! format.
//!
//! Include it with `#[path = "../tests/shim/p11shim.rs"] mod p11shim;` (from a bench) or
//! `#[path = "../shim/p11shim.rs"] mod p11shim;` (from `tests/it`). Then:
//!
//! ```ignore
//! let shim = p11shim::Shim::new()?.delay_us(2000).control_file(dir.join("p11shim.control"));
//! shim.install(&dev.config_path())?;   // [hsm] module = the shim
//! shim.apply(&mut command);            // P11SHIM_* for the daemon's process
//! shim.control().unwrap().set("fail C_Encrypt CKR_DEVICE_ERROR\n")?;
//! ```
//!
//! Errors are strings naming what failed, for `unwrap` in tests and `?` in benches.

// Each includer uses a part of this module (a bench needs no control file).
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The real module the shim forwards to.
pub(crate) const TARGET_VAR: &str = "P11SHIM_TARGET";
/// Microseconds of delay per cryptographic call.
pub(crate) const DELAY_VAR: &str = "P11SHIM_DELAY_US";
/// The control file.
pub(crate) const CONTROL_VAR: &str = "P11SHIM_CONTROL";

/// The shim's C source.
pub(crate) const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/shim/p11shim.c");

/// Flags for both the library and the header check: warnings are errors, so that a
/// mistake in the shim fails the test that builds it rather than a daemon at run time.
const CFLAGS: &[&str] = &["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror"];

/// The shim's shared library, built at most once per process: the first call compiles
/// it unless a library at least as new as the source is already there.
pub(crate) fn library() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

/// The C compiler: `$CC`, else `cc`.
fn compiler() -> String {
    std::env::var("CC")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "cc".into())
}

fn build() -> Result<PathBuf, String> {
    // Cargo's directory for integration tests' and benches' own files, in target/.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("p11shim");
    let lib = dir.join("libp11shim.so");
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let source_time = modified(Path::new(SOURCE)).ok_or(format!("cannot read {SOURCE}"))?;
    if modified(&lib).is_some_and(|t| t >= source_time) {
        return Ok(lib);
    }
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Test processes (nextest runs one per test) may build at the same time: each
    // compiles to a file of its own and renames it into place, which is atomic, and a
    // daemon that has the old library mapped keeps its copy.
    let tmp = dir.join(format!("libp11shim.so.{}.tmp", std::process::id()));
    let out = Command::new(compiler())
        .args(CFLAGS)
        .args(["-fPIC", "-shared", "-fvisibility=hidden", "-o"])
        .arg(&tmp)
        .arg(SOURCE)
        .args(["-ldl", "-lpthread"])
        .output()
        .map_err(|e| format!("cannot run the C compiler {}: {e}", compiler()))?;
    if !out.status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(format!(
            "{SOURCE} did not compile:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    fs::rename(&tmp, &lib).map_err(|e| format!("cannot move the shim into place: {e}"))?;
    Ok(lib)
}

/// Compiles the shim's `source` (normally [`SOURCE`]) against the standard `pkcs11.h` in
/// `include_dir`, syntax only: its static assertions compare the function list's order
/// and signatures, and the return values it knows, with the header's.
pub(crate) fn check_against_header(source: &Path, include_dir: &Path) -> Result<(), String> {
    let out = Command::new(compiler())
        .args(CFLAGS)
        .args(["-fsyntax-only", "-DP11SHIM_CHECK_HEADER", "-I"])
        .arg(include_dir)
        .arg(source)
        .output()
        .map_err(|e| format!("cannot run the C compiler {}: {e}", compiler()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// How a daemon's process loads the shim: which module it forwards to, the delay and
/// the control file.
#[derive(Clone, Debug)]
pub(crate) struct Shim {
    library: PathBuf,
    target: PathBuf,
    delay_us: u64,
    control: Option<PathBuf>,
}

impl Shim {
    /// The shim in front of SoftHSM2 (`p11kms::softhsm_module()`), with no delay and no
    /// control file. Builds the library if needed.
    pub(crate) fn new() -> Result<Self, String> {
        let target = p11kms::softhsm_module().map_err(|e| e.to_string())?;
        Ok(Self {
            library: library()?,
            target,
            delay_us: 0,
            control: None,
        })
    }

    /// Forward to another module than SoftHSM2.
    pub(crate) fn target(mut self, module: impl Into<PathBuf>) -> Self {
        self.target = module.into();
        self
    }

    /// Microseconds added to each cryptographic or object-making call (P11SHIM_DELAY_US).
    pub(crate) fn delay_us(mut self, us: u64) -> Self {
        self.delay_us = us;
        self
    }

    /// The control file the shim watches (it need not exist yet: absent means no rules).
    pub(crate) fn control_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.control = Some(path.into());
        self
    }

    /// The library: what `[hsm] module` names.
    pub(crate) fn library(&self) -> &Path {
        &self.library
    }

    /// The control file's handle, when there is one.
    pub(crate) fn control(&self) -> Option<Control> {
        self.control.clone().map(Control::new)
    }

    /// The environment variables the daemon's process needs.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (TARGET_VAR, self.target.display().to_string()),
            (DELAY_VAR, self.delay_us.to_string()),
        ];
        if let Some(c) = &self.control {
            env.push((CONTROL_VAR, c.display().to_string()));
        }
        env
    }

    /// Sets those variables on a command (and clears a control file it should not
    /// inherit from the caller's environment).
    pub(crate) fn apply(&self, cmd: &mut Command) {
        cmd.env_remove(CONTROL_VAR);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
    }

    /// Points the `[hsm] module` of a p11kms.toml at the shim (comments are lost: the
    /// file is rewritten from its TOML).
    pub(crate) fn install(&self, config: &Path) -> Result<(), String> {
        let text = fs::read_to_string(config)
            .map_err(|e| format!("cannot read {}: {e}", config.display()))?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let hsm = table
            .get_mut("hsm")
            .and_then(|h| h.as_table_mut())
            .ok_or(format!("{} has no [hsm] table", config.display()))?;
        hsm.insert(
            "module".into(),
            toml::Value::String(self.library.display().to_string()),
        );
        let text = toml::to_string(&table).map_err(|e| e.to_string())?;
        fs::write(config, text).map_err(|e| format!("cannot write {}: {e}", config.display()))
    }
}

/// The shim's control file, which a test rewrites while the daemon runs.
#[derive(Clone, Debug)]
pub(crate) struct Control {
    path: PathBuf,
}

impl Control {
    /// The file at `path` (not created until `set`).
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the rules. The new text goes to a fresh file renamed over the old one:
    /// the shim never reads half a file, and the new inode shows it a change even
    /// within the file system's timestamp granularity.
    pub(crate) fn set(&self, rules: &str) -> Result<(), String> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let tmp = self.path.with_extension(format!(
            "tmp.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        fs::write(&tmp, rules).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        fs::rename(&tmp, &self.path)
            .map_err(|e| format!("cannot replace {}: {e}", self.path.display()))
    }

    /// No rules: every call goes through (with the delay of P11SHIM_DELAY_US only).
    pub(crate) fn clear(&self) -> Result<(), String> {
        self.set("")
    }
}
