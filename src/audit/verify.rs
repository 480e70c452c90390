//! `p11kms audit verify`: checks a trail offline. Each line must name, in
//! `previousHash`, the SHA-256 of the line before it (the first line of a trail names
//! ""), so an edited, removed, inserted or reordered line is found, and named. Each
//! checkpoint must follow the one before it, cover exactly the lines before it and sign
//! the chain head with the given key; a trail must end in the final checkpoint of a
//! clean stop unless a daemon is still writing it ([`check_end`]).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::checkpoint::{self, CheckpointPublicKey, Reason};
use super::writer::line_hash;

/// What a verified trail holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    /// Lines checked, checkpoints included.
    pub lines: u64,
    /// Of those, the checkpoints.
    pub checkpoints: u64,
    /// Files read.
    pub files: usize,
    /// The hash of the last line (the chain head).
    pub head: String,
    /// True when each checkpoint's signature was checked against a public key.
    pub signatures_checked: bool,
    /// The last checkpoint's position in the trail (from 1), if any.
    pub last_checkpoint: Option<u64>,
    /// Lines after the last checkpoint, which no signature covers.
    pub unsigned_tail: u64,
    /// True when the last line is the final checkpoint of a clean stop.
    pub closed: bool,
    /// Checkpoints written at a start after an unclean stop.
    pub recoveries: Vec<Recovery>,
}

impl Verified {
    /// Lines that are records of calls and events, not checkpoints.
    pub fn records(&self) -> u64 {
        self.lines - self.checkpoints
    }
}

/// A checkpoint written at a start after a stop that left lines unsigned (a crash, or
/// a trail cut while no daemon ran): those lines were signed late.
#[derive(Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Its position in the trail, from 1.
    pub record: u64,
    /// Lines between the checkpoint before it and it.
    pub signed_late: u64,
}

/// Where and why the chain breaks.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A record is not what the chain says it must be.
    #[error("{}:{line}: record {record} {why}", path.display())]
    Broken {
        /// The file.
        path: PathBuf,
        /// Its line number, from 1.
        line: u64,
        /// Its position in the whole trail, from 1.
        record: u64,
        /// What is wrong.
        why: String,
    },
    /// The trail ends in lines that no checkpoint signs, and no daemon is writing it.
    #[error("the trail does not end in the final checkpoint of a clean stop: {unsigned} records after {} are not signed; the daemon crashed, or the trail was cut (records removed from its end)", match .last_checkpoint { Some(n) => format!("the checkpoint at record {n}"), None => "the start of the trail".to_owned() })]
    Unsigned {
        /// Lines after the last checkpoint.
        unsigned: u64,
        /// The last checkpoint's position, if any.
        last_checkpoint: Option<u64>,
    },
}

#[derive(Deserialize)]
struct Link<'a> {
    #[serde(rename = "previousHash", borrow)]
    previous_hash: std::borrow::Cow<'a, str>,
    // Top-level only: an encryption context holding the same words is nested.
    #[serde(rename = "eventType", borrow, default)]
    event_type: Option<std::borrow::Cow<'a, str>>,
}

/// Where the walk through the trail stands.
struct Walk<'k> {
    key: Option<&'k CheckpointPublicKey>,
    head: String,
    lines: u64,
    checkpoints: u64,
    sequence: u64,
    last_checkpoint: Option<u64>,
    closed: bool,
    recoveries: Vec<Recovery>,
}

/// Verifies the chain and the checkpoints through `files`, in order; with `key`, each
/// checkpoint's signature too. Does not judge the trail's end: see [`check_end`].
pub fn verify(
    files: &[PathBuf],
    key: Option<&CheckpointPublicKey>,
) -> Result<Verified, VerifyError> {
    let mut w = Walk {
        key,
        head: String::new(),
        lines: 0,
        checkpoints: 0,
        sequence: 0,
        last_checkpoint: None,
        closed: false,
        recoveries: Vec::new(),
    };
    for path in files {
        verify_file(path, &mut w)?;
    }
    Ok(Verified {
        unsigned_tail: w.lines - w.last_checkpoint.unwrap_or(0),
        lines: w.lines,
        checkpoints: w.checkpoints,
        files: files.len(),
        head: w.head,
        signatures_checked: key.is_some(),
        last_checkpoint: w.last_checkpoint,
        closed: w.closed,
        recoveries: w.recoveries,
    })
}

/// A trail must end in the final checkpoint of a clean stop, unless a daemon is writing
/// it now (`live`): then the records after its last checkpoint are not signed yet.
/// Records cut from the end of a trail, with the checkpoints that covered them, are
/// found here.
pub fn check_end(v: &Verified, live: bool) -> Result<(), VerifyError> {
    if v.closed || live || v.lines == 0 {
        return Ok(());
    }
    Err(VerifyError::Unsigned {
        unsigned: v.unsigned_tail,
        last_checkpoint: v.last_checkpoint,
    })
}

fn verify_file(path: &Path, w: &mut Walk<'_>) -> Result<(), VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    };
    let reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
    for (n, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(io)?;
        let broken = |why: String| VerifyError::Broken {
            path: path.to_owned(),
            line: n as u64 + 1,
            record: w.lines + 1,
            why,
        };
        if line.is_empty() {
            return Err(broken("is an empty line".into()));
        }
        let link: Link<'_> =
            serde_json::from_slice(&line).map_err(|e| broken(format!("is not a record: {e}")))?;
        if link.previous_hash != w.head {
            return Err(broken(
                "does not follow the record before it: a record was edited, removed, inserted or reordered here".into(),
            ));
        }
        if link.event_type.as_deref() == Some(checkpoint::CHECKPOINT_EVENT_TYPE) {
            let covered_from = w.last_checkpoint.map_or(1, |c| c + 1);
            let (sequence, reason) =
                checkpoint::check(&line, w.lines, w.sequence, &w.head, w.key).map_err(|why| {
                    broken(if covered_from <= w.lines {
                        format!("{why} (records {covered_from} to {}, which it signs, cannot be trusted)", w.lines)
                    } else {
                        why
                    })
                })?;
            if reason == Reason::Recovery {
                w.recoveries.push(Recovery {
                    record: w.lines + 1,
                    signed_late: w.lines + 1 - covered_from,
                });
            }
            w.sequence = sequence;
            w.checkpoints += 1;
            w.last_checkpoint = Some(w.lines + 1);
            w.closed = reason == Reason::Shutdown;
        } else {
            w.closed = false;
        }
        w.head = line_hash(&line);
        w.lines += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(lines: &[&str]) -> Vec<String> {
        let mut head = String::new();
        lines
            .iter()
            .map(|body| {
                let line = format!(r#"{{"eventName":"{body}","previousHash":"{head}"}}"#);
                head = line_hash(line.as_bytes());
                line
            })
            .collect()
    }

    fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
        let p = dir.join(name);
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn an_intact_chain_verifies_and_each_tampering_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let good = chain(&["A", "B", "C", "D"]);
        let (first, second) = good.split_at(2);
        let files = [
            write(tmp.path(), "1.jsonl", first),
            write(tmp.path(), "2.jsonl", second),
        ];
        let v = verify(&files, None).unwrap();
        assert_eq!((v.lines, v.files), (4, 2));

        let broken_at =
            |lines: Vec<String>| match verify(&[write(tmp.path(), "t.jsonl", &lines)], None) {
                Err(VerifyError::Broken { record, .. }) => record,
                other => panic!("{other:?}"),
            };
        let mut edited = good.clone();
        edited[1] = edited[1].replace("\"B\"", "\"X\"");
        assert_eq!(
            broken_at(edited),
            3,
            "the record after the edited one no longer follows"
        );
        let mut removed = good.clone();
        removed.remove(1);
        assert_eq!(broken_at(removed), 2);
        let mut reordered = good.clone();
        reordered.swap(1, 2);
        assert_eq!(broken_at(reordered), 2);
        let mut inserted = good.clone();
        inserted.insert(2, good[0].clone());
        assert_eq!(broken_at(inserted), 3);
        let mut garbage = good;
        garbage[3] = "not json".into();
        assert_eq!(broken_at(garbage), 4);
    }
}
