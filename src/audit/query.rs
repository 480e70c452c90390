//! Reading a trail back for `p11kms audit tail` and `audit query`: its lines in order,
//! and the filters (principal, key, operation, decision, time) that pick records.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Which records to show. Every field set must match; an empty filter matches all.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// The caller's ARN (`userIdentity.arn`), or `p11kms` for the daemon's own work.
    pub principal: Option<String>,
    /// A key id, key ARN, alias name or alias ARN: a resource of the record, or the
    /// KeyId as the caller gave it.
    pub key_id: Option<String>,
    /// The operation (`eventName`), e.g. `Decrypt`.
    pub operation: Option<String>,
    /// `Allow`, `ExplicitDeny`, `ImplicitDeny`, or `Deny` for either denial.
    pub decision: Option<String>,
    /// Records at or after this time.
    pub start_time: Option<OffsetDateTime>,
    /// Records at or before this time.
    pub end_time: Option<OffsetDateTime>,
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

impl Filter {
    /// True when the record passes every filter that is set.
    pub fn matches(&self, r: &Value) -> bool {
        if let Some(p) = &self.principal {
            let who = text(r, &["userIdentity", "arn"])
                .or_else(|| text(r, &["userIdentity", "invokedBy"]));
            if who != Some(p.as_str()) {
                return false;
            }
        }
        if let Some(k) = &self.key_id {
            if !names_key(r, k) {
                return false;
            }
        }
        if let Some(op) = &self.operation {
            if text(r, &["eventName"]) != Some(op.as_str()) {
                return false;
            }
        }
        if let Some(d) = &self.decision {
            let got = text(r, &["p11kms", "decision"]).unwrap_or_default();
            let hit = if d == "Deny" {
                got.ends_with("Deny")
            } else {
                got == d
            };
            if !hit {
                return false;
            }
        }
        if self.start_time.is_some() || self.end_time.is_some() {
            let Some(t) =
                text(r, &["eventTime"]).and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            else {
                return false;
            };
            if self.start_time.is_some_and(|s| t < s) || self.end_time.is_some_and(|e| t > e) {
                return false;
            }
        }
        true
    }
}

/// True when the record names key `k` (id, ARN, alias name or alias ARN) among its
/// resources, or as the KeyId its caller gave.
fn names_key(r: &Value, k: &str) -> bool {
    if text(r, &["requestParameters", "keyId"]) == Some(k) {
        return true;
    }
    let suffix = if k.starts_with("arn:") {
        None
    } else if k.starts_with("alias/") {
        Some(format!(":{k}"))
    } else {
        Some(format!(":key/{k}"))
    };
    r.get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|res| text(res, &["ARN"]))
        .any(|arn| match &suffix {
            None => arn == k,
            Some(s) => arn.ends_with(s.as_str()),
        })
}

/// Calls `each` with every whole line of `files`, in order, and its parsed record. A
/// line that is not JSON stops the walk with an error naming it.
pub fn read_trail(files: &[PathBuf], mut each: impl FnMut(&[u8], &Value)) -> Result<(), io::Error> {
    for path in files {
        read_file(path, &mut each)?;
    }
    Ok(())
}

fn read_file(path: &Path, each: &mut impl FnMut(&[u8], &Value)) -> io::Result<()> {
    let reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    for (n, line) in reader.split(b'\n').enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_slice(&line).map_err(|e| {
            io::Error::other(format!("{}:{}: not a record: {e}", path.display(), n + 1))
        })?;
        each(&line, &v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(t: &str) -> Option<OffsetDateTime> {
        Some(OffsetDateTime::parse(t, &Rfc3339).unwrap())
    }

    #[test]
    fn each_filter_picks_exactly_its_records() {
        let key = "arn:aws:kms:us-east-1:111122223333:key/0c9e4a2f-1111-2222-3333-444455556666";
        let alias = "arn:aws:kms:us-east-1:111122223333:alias/app";
        let rec = |name: &str, who: &str, decision: &str, time: &str, res: &[&str]| {
            json!({"eventName": name, "eventTime": time,
                   "userIdentity": {"arn": who}, "p11kms": {"decision": decision},
                   "requestParameters": {"keyId": "alias/app"},
                   "resources": res.iter().map(|a| json!({"ARN": a})).collect::<Vec<_>>()})
        };
        let a = rec(
            "Encrypt",
            "arn:aws:iam::1:role/A",
            "Allow",
            "2026-01-01T00:00:00Z",
            &[key, alias],
        );
        let b = rec(
            "Decrypt",
            "arn:aws:iam::1:role/B",
            "ImplicitDeny",
            "2026-01-02T00:00:00Z",
            &[],
        );
        let service = json!({"eventName": "RotateKey", "eventTime": "2026-01-03T00:00:00Z",
                             "userIdentity": {"type": "AWSService", "invokedBy": "p11kms"},
                             "resources": [{"ARN": key}]});
        let all = [&a, &b, &service];
        let pick = |f: Filter| -> Vec<usize> {
            all.iter()
                .enumerate()
                .filter(|(_, r)| f.matches(r))
                .map(|(i, _)| i)
                .collect()
        };
        assert_eq!(pick(Filter::default()), [0, 1, 2]);
        let f = |edit: fn(&mut Filter)| {
            let mut f = Filter::default();
            edit(&mut f);
            f
        };
        assert_eq!(
            pick(f(|f| f.principal = Some("arn:aws:iam::1:role/B".into()))),
            [1]
        );
        assert_eq!(pick(f(|f| f.principal = Some("p11kms".into()))), [2]);
        assert_eq!(
            pick(f(
                |f| f.key_id = Some("0c9e4a2f-1111-2222-3333-444455556666".into())
            )),
            [0, 2]
        );
        assert_eq!(
            pick(f(|f| f.key_id = Some(
                "arn:aws:kms:us-east-1:111122223333:key/0c9e4a2f-1111-2222-3333-444455556666"
                    .into()
            ))),
            [0, 2]
        );
        // The KeyId as given (b's alias did not resolve, so it has no resource).
        assert_eq!(pick(f(|f| f.key_id = Some("alias/app".into()))), [0, 1]);
        assert_eq!(
            pick(f(|f| f.key_id = Some("2222-3333-444455556666".into()))),
            Vec::<usize>::new()
        );
        assert_eq!(pick(f(|f| f.operation = Some("Decrypt".into()))), [1]);
        assert_eq!(pick(f(|f| f.decision = Some("Deny".into()))), [1]);
        assert_eq!(pick(f(|f| f.decision = Some("Allow".into()))), [0]);
        let window = Filter {
            start_time: at("2026-01-02T00:00:00Z"),
            end_time: at("2026-01-02T23:59:59Z"),
            ..Filter::default()
        };
        assert_eq!(pick(window), [1], "both ends are inclusive");
    }
}
