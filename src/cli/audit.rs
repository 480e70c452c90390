//! `p11kms audit verify|tail|query`: reading a trail offline, without the daemon.
//! Without FILES, each works on the dev daemon's trail (`audit/` in the dev directory).

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use p11kms::{
    check_trail_end, read_trail, trail_files, trail_is_being_written, verify_trail,
    CheckpointPublicKey, TrailFilter, CHECKPOINT_PUBLIC_KEY_FILE,
};

#[derive(Subcommand, Debug)]
pub(crate) enum AuditCmd {
    /// Check a trail: the hash chain, each checkpoint's signature and coverage, and that
    /// it ends in the final checkpoint of a clean stop (records after the last
    /// checkpoint pass only while a daemon is writing the trail). Names the first bad
    /// record. Without FILES, the dev daemon's trail and its checkpoint key.
    Verify {
        /// The checkpoint public key (PEM). Default for the dev trail: its
        /// audit-checkpoint.pub.pem; for other trails signatures are not checked
        /// without it.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Trail files in order (a directory stands for its trail files).
        files: Vec<PathBuf>,
    },
    /// Print the last records (JSON lines), optionally those matching filters, and with
    /// --follow the new ones as they are written.
    Tail {
        /// How many records.
        #[arg(short = 'n', long = "lines", default_value_t = 10)]
        lines: usize,
        /// Keep printing records as they are written (across file rotations).
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        filter: FilterArgs,
        /// Trail files in order (a directory stands for its trail files).
        files: Vec<PathBuf>,
    },
    /// Print every record (JSON lines) that matches all the filters given.
    Query {
        #[command(flatten)]
        filter: FilterArgs,
        /// Trail files in order (a directory stands for its trail files).
        files: Vec<PathBuf>,
    },
}

/// Record filters, named like the AWS CLI's options.
#[derive(Args, Debug)]
pub(crate) struct FilterArgs {
    /// The caller's principal ARN (`p11kms` for the daemon's own work).
    #[arg(long)]
    principal: Option<String>,
    /// A key id, key ARN, alias name or alias ARN.
    #[arg(long)]
    key_id: Option<String>,
    /// The operation (eventName), e.g. Decrypt.
    #[arg(long)]
    operation: Option<String>,
    /// Allow, ExplicitDeny, ImplicitDeny, or Deny for either denial.
    #[arg(long)]
    decision: Option<String>,
    /// Records at or after this time (RFC 3339, e.g. 2026-05-01T00:00:00Z).
    #[arg(long, value_parser = parse_time)]
    start_time: Option<OffsetDateTime>,
    /// Records at or before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    end_time: Option<OffsetDateTime>,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("{e}; write an RFC 3339 time such as 2026-05-01T12:00:00Z"))
}

impl FilterArgs {
    fn filter(self) -> TrailFilter {
        TrailFilter {
            principal: self.principal,
            key_id: self.key_id,
            operation: self.operation,
            decision: self.decision,
            start_time: self.start_time,
            end_time: self.end_time,
        }
    }
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

/// A trail named on the command line: its files and the directory they are in.
struct Trail {
    files: Vec<PathBuf>,
    dir: Option<PathBuf>,
    dev: bool,
}

fn trail(given: Vec<PathBuf>, dev_root: &Path) -> Result<Trail, Box<dyn std::error::Error>> {
    let dev = given.is_empty();
    let given = if dev {
        vec![p11kms::DevDir::at(dev_root).root().join("audit")]
    } else {
        given
    };
    let mut files = Vec::new();
    let mut dir = None;
    for f in given {
        if f.is_dir() {
            files.extend(trail_files(&f)?);
            dir = Some(f);
        } else {
            dir = f.parent().map(Path::to_path_buf);
            files.push(f);
        }
    }
    if files.is_empty() {
        return Err("no audit trail files found".into());
    }
    Ok(Trail { files, dir, dev })
}

/// Runs one `p11kms audit` command; `dev_root` is the dev directory.
pub(crate) fn run(cmd: AuditCmd, dev_root: &Path) -> CliResult {
    match cmd {
        AuditCmd::Verify { public_key, files } => verify(public_key, files, dev_root),
        AuditCmd::Query { filter, files } => {
            let trail = trail(files, dev_root)?;
            let filter = filter.filter();
            let mut out = std::io::stdout().lock();
            let mut failed = None;
            read_trail(&trail.files, |line, record| {
                if failed.is_none() && filter.matches(record) {
                    failed = print(&mut out, line).err();
                }
            })?;
            failed.map_or(Ok(()), |e| Err(e.into()))
        }
        AuditCmd::Tail {
            lines,
            follow,
            filter,
            files,
        } => tail(trail(files, dev_root)?, lines, follow, &filter.filter()),
    }
}

fn print(out: &mut impl Write, line: &[u8]) -> std::io::Result<()> {
    out.write_all(line)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn verify(public_key: Option<PathBuf>, files: Vec<PathBuf>, dev_root: &Path) -> CliResult {
    let trail = trail(files, dev_root)?;
    let key_file = public_key.or_else(|| {
        trail
            .dev
            .then(|| {
                trail
                    .dir
                    .as_ref()
                    .map(|d| d.join(CHECKPOINT_PUBLIC_KEY_FILE))
            })
            .flatten()
    });
    let key = key_file
        .as_deref()
        .map(CheckpointPublicKey::read)
        .transpose()?;
    let v = verify_trail(&trail.files, key.as_ref())?;
    let live = trail.dir.as_deref().is_some_and(trail_is_being_written);
    check_trail_end(&v, live)?;
    let mut err = std::io::stderr().lock();
    for r in &v.recoveries {
        writeln!(err, "warning: the checkpoint at record {} was written at a start after an unclean stop (a crash, or a trail cut while no daemon ran): the {} records before it were signed late", r.record, r.signed_late)?;
    }
    if key.is_none() && v.checkpoints > 0 {
        writeln!(
            err,
            "warning: checkpoint signatures were not checked; give --public-key"
        )?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "verified {} records and {} checkpoints in {} file(s); the chain is intact (head {})",
        v.records(),
        v.checkpoints,
        v.files,
        v.head
    )?;
    if let Some(k) = key.as_ref().filter(|_| v.checkpoints > 0) {
        writeln!(
            out,
            "every checkpoint is signed by {} ({})",
            k.fingerprint(),
            key_file.as_deref().unwrap_or(Path::new("")).display()
        )?;
    }
    if v.closed {
        writeln!(
            out,
            "the trail ends in the final checkpoint of a clean stop"
        )?;
    } else if live {
        writeln!(out, "a daemon is writing this trail: the {} records after its last checkpoint are not signed yet", v.unsigned_tail)?;
    }
    Ok(())
}

/// The last `n` matching records, then (with `follow`) new ones as they come.
fn tail(trail: Trail, n: usize, follow: bool, filter: &TrailFilter) -> CliResult {
    let mut out = std::io::stdout().lock();
    // Newest file first, until n records match: an old, large trail is not read whole.
    let mut last: VecDeque<Vec<u8>> = VecDeque::with_capacity(n);
    for file in trail.files.iter().rev() {
        let mut matched = Vec::new();
        read_trail(std::slice::from_ref(file), |line, record| {
            if filter.matches(record) {
                matched.push(line.to_vec());
            }
        })?;
        for line in matched.into_iter().rev() {
            if last.len() >= n {
                break;
            }
            last.push_front(line);
        }
        if last.len() >= n {
            break;
        }
    }
    for line in &last {
        print(&mut out, line)?;
    }
    if !follow {
        return Ok(());
    }
    let Some(mut path) = trail.files.last().cloned() else {
        return Ok(());
    };
    let mut offset = std::fs::metadata(&path)?.len();
    let mut partial: Vec<u8> = Vec::new();
    loop {
        // Listed before the read: once a newer file exists, the writer has finished with
        // this one, so reading it to its end leaves nothing behind.
        let newer = match &trail.dir {
            Some(dir) => trail_files(dir)?
                .into_iter()
                .find(|f| f.file_name() > path.file_name()),
            None => None,
        };
        let mut file = std::fs::File::open(&path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        offset += buf.len() as u64;
        partial.extend_from_slice(&buf);
        // Only whole lines: the writer may be in the middle of one.
        if let Some(end) = partial.iter().rposition(|b| *b == b'\n') {
            let rest = partial.split_off(end + 1);
            for line in partial.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let record: serde_json::Value = serde_json::from_slice(line)?;
                if filter.matches(&record) {
                    print(&mut out, line)?;
                }
            }
            partial = rest;
        }
        match newer {
            Some(f) => {
                path = f;
                offset = 0;
                partial.clear();
            }
            None if buf.is_empty() => std::thread::sleep(Duration::from_millis(200)),
            None => {}
        }
    }
}
