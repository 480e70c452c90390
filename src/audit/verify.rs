//! `p11kms audit verify`: checks the hash chain of a trail offline. Each line must name,
//! in `previousHash`, the SHA-256 of the line before it (the first line of a trail names
//! ""), so an edited, removed, inserted or reordered line is found, and named.
//! Signed checkpoints (which also catch a truncated tail) are still to come.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::writer::line_hash;

/// What a verified trail holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Files read.
    pub files: usize,
    /// The hash of the last line (the chain head).
    pub head: String,
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
}

#[derive(Deserialize)]
struct Link {
    #[serde(rename = "previousHash")]
    previous_hash: String,
}

/// Verifies the chain through `files`, in order.
pub fn verify(files: &[PathBuf]) -> Result<Verified, VerifyError> {
    let mut head = String::new();
    let mut records = 0u64;
    for path in files {
        verify_file(path, &mut head, &mut records)?;
    }
    Ok(Verified {
        records,
        files: files.len(),
        head,
    })
}

fn verify_file(path: &Path, head: &mut String, records: &mut u64) -> Result<(), VerifyError> {
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
            record: *records + 1,
            why,
        };
        if line.is_empty() {
            return Err(broken("is an empty line".into()));
        }
        let link: Link =
            serde_json::from_slice(&line).map_err(|e| broken(format!("is not a record: {e}")))?;
        if link.previous_hash != *head {
            return Err(broken(
                "does not follow the record before it: a record was edited, removed, inserted or reordered here".into(),
            ));
        }
        *head = line_hash(&line);
        *records += 1;
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
        let v = verify(&files).unwrap();
        assert_eq!((v.records, v.files), (4, 2));

        let broken_at = |lines: Vec<String>| match verify(&[write(tmp.path(), "t.jsonl", &lines)]) {
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
