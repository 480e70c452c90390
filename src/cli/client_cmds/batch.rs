//! `encrypt --batch` and `decrypt --batch`: JSON lines in, one item per line with the
//! AWS JSON member names (binary as base64); one JSON result line out per item, in
//! order: the call's answer, or `{"ErrorCode": …, "ErrorMessage": …}`. Items go to the
//! daemon in BatchEncrypt or BatchDecrypt calls of at most 1000 items and
//! [`CALL_BYTES`] each, so any number of lines can be streamed through.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use base64::Engine as _;
use prost::Message as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use p11kms::client::{KmsClient, MAX_BATCH_ITEMS, MAX_MESSAGE_BYTES};
use p11kms::proto::{self, batch_decrypt_result, batch_encrypt_result};

use super::{reply, CliResult};
use crate::cli::io::B64;

/// The most bytes of items sent in one call: three quarters of the daemon's message
/// limit, so that the answer (each blob a little longer than its plaintext, with the
/// key ARN) fits in the client's limit too.
const CALL_BYTES: usize = MAX_MESSAGE_BYTES / 4 * 3;

/// One line of `encrypt --batch`: Encrypt's members.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct EncryptLine {
    #[serde(default)]
    key_id: String,
    #[serde(default, deserialize_with = "secret_base64")]
    plaintext: Zeroizing<Vec<u8>>,
    #[serde(default)]
    encryption_context: HashMap<String, String>,
    #[serde(default)]
    grant_tokens: Vec<String>,
    #[serde(default)]
    encryption_algorithm: String,
}

/// One line of `decrypt --batch`: Decrypt's members.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DecryptLine {
    #[serde(default, deserialize_with = "base64")]
    ciphertext_blob: Vec<u8>,
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    encryption_context: HashMap<String, String>,
    #[serde(default)]
    grant_tokens: Vec<String>,
    #[serde(default)]
    encryption_algorithm: String,
}

fn base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    B64.decode(text.as_bytes())
        .map_err(|_| serde::de::Error::custom("a blob member is not valid base64"))
}

/// A plaintext, decoded without leaving an unwiped copy of it or of its base64.
fn secret_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
    let text = Zeroizing::new(String::deserialize(d)?);
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 + 3));
    B64.decode_vec(text.as_bytes(), &mut out)
        .map_err(|_| serde::de::Error::custom("a blob member is not valid base64"))?;
    Ok(out)
}

impl From<EncryptLine> for proto::EncryptRequest {
    fn from(mut l: EncryptLine) -> Self {
        proto::EncryptRequest {
            key_id: l.key_id,
            // Moved, not copied: the request wipes it when dropped.
            plaintext: std::mem::take(&mut *l.plaintext),
            encryption_context: l.encryption_context,
            grant_tokens: l.grant_tokens,
            encryption_algorithm: l.encryption_algorithm,
        }
    }
}

impl From<DecryptLine> for proto::DecryptRequest {
    fn from(l: DecryptLine) -> Self {
        proto::DecryptRequest {
            ciphertext_blob: l.ciphertext_blob,
            encryption_context: l.encryption_context,
            grant_tokens: l.grant_tokens,
            key_id: l.key_id,
            encryption_algorithm: l.encryption_algorithm,
        }
    }
}

/// A result line that is an error.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorLine<'a> {
    error_code: &'a str,
    error_message: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptedLine<'a> {
    ciphertext_blob: &'a str,
    key_id: &'a str,
    encryption_algorithm: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptedLine<'a> {
    plaintext: &'a str,
    key_id: &'a str,
    encryption_algorithm: &'a str,
}

/// What one batch operation needs: its line and request types, its call, and how its
/// answers are printed.
trait BatchOp {
    /// One input line.
    type Line: DeserializeOwned;
    /// One item of the call.
    type Item: prost::Message + From<Self::Line>;
    /// One result of the call.
    type Result;
    /// The operation's name, for messages.
    const NAME: &'static str;

    /// Makes the call.
    async fn call(
        c: &mut KmsClient,
        items: Vec<Self::Item>,
    ) -> Result<Vec<Self::Result>, Box<dyn std::error::Error>>;

    /// Prints one result as a JSON line; false when it is an error.
    fn print(out: &mut dyn Write, r: Self::Result) -> std::io::Result<bool>;
}

struct Encrypt;

impl BatchOp for Encrypt {
    type Line = EncryptLine;
    type Item = proto::EncryptRequest;
    type Result = proto::BatchEncryptResult;
    const NAME: &'static str = "BatchEncrypt";

    async fn call(
        c: &mut KmsClient,
        items: Vec<Self::Item>,
    ) -> Result<Vec<Self::Result>, Box<dyn std::error::Error>> {
        let r = reply(c.batch_encrypt(proto::BatchEncryptRequest { items }).await)?;
        Ok(r.results)
    }

    fn print(out: &mut dyn Write, r: Self::Result) -> std::io::Result<bool> {
        match r.outcome {
            Some(batch_encrypt_result::Outcome::Response(e)) => {
                let blob = B64.encode(&e.ciphertext_blob);
                let line = EncryptedLine {
                    ciphertext_blob: &blob,
                    key_id: &e.key_id,
                    encryption_algorithm: &e.encryption_algorithm,
                };
                write_line(out, &line).map(|()| true)
            }
            Some(batch_encrypt_result::Outcome::Error(e)) => print_error(out, &e),
            None => print_missing(out),
        }
    }
}

struct Decrypt;

impl BatchOp for Decrypt {
    type Line = DecryptLine;
    type Item = proto::DecryptRequest;
    type Result = proto::BatchDecryptResult;
    const NAME: &'static str = "BatchDecrypt";

    async fn call(
        c: &mut KmsClient,
        items: Vec<Self::Item>,
    ) -> Result<Vec<Self::Result>, Box<dyn std::error::Error>> {
        let r = reply(c.batch_decrypt(proto::BatchDecryptRequest { items }).await)?;
        Ok(r.results)
    }

    fn print(out: &mut dyn Write, r: Self::Result) -> std::io::Result<bool> {
        match r.outcome {
            Some(batch_decrypt_result::Outcome::Response(d)) => {
                // The user asked for the plaintexts on stdout; that is the point.
                let text = Zeroizing::new(B64.encode(&d.plaintext));
                let line = DecryptedLine {
                    plaintext: &text,
                    key_id: &d.key_id,
                    encryption_algorithm: &d.encryption_algorithm,
                };
                write_line(out, &line).map(|()| true)
            }
            Some(batch_decrypt_result::Outcome::Error(e)) => print_error(out, &e),
            None => print_missing(out),
        }
    }
}

fn write_line(out: &mut dyn Write, v: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")
}

fn print_error(out: &mut dyn Write, e: &proto::BatchItemError) -> std::io::Result<bool> {
    let line = ErrorLine {
        error_code: &e.error_code,
        error_message: &e.error_message,
    };
    write_line(out, &line).map(|()| false)
}

/// A result with neither answer nor error: a daemon speaking another version.
fn print_missing(out: &mut dyn Write) -> std::io::Result<bool> {
    let line = ErrorLine {
        error_code: "KMSInternalException",
        error_message: "the daemon sent a result with neither an answer nor an error",
    };
    write_line(out, &line).map(|()| false)
}

/// `p11kms encrypt --batch FILE|-`.
pub(super) async fn encrypt(c: &mut KmsClient, path: &Path) -> CliResult {
    run::<Encrypt>(c, path).await
}

/// `p11kms decrypt --batch FILE|-`.
pub(super) async fn decrypt(c: &mut KmsClient, path: &Path) -> CliResult {
    run::<Decrypt>(c, path).await
}

/// A line, as it will be answered: an item of the next call, or its own local error.
enum Slot {
    Item,
    /// The line could not be read as an item: a SerializationException of our own,
    /// saying where, never what.
    Unreadable(String),
}

/// The lines read but not yet answered, and the items among them.
struct Pending<T> {
    slots: Vec<Slot>,
    items: Vec<T>,
    bytes: usize,
}

impl<T> Pending<T> {
    fn new() -> Self {
        Self {
            slots: Vec::new(),
            items: Vec::new(),
            bytes: 0,
        }
    }
}

/// Answers so far: how many results were printed and how many of them were errors.
#[derive(Default)]
struct Tally {
    printed: usize,
    failed: usize,
}

async fn run<O: BatchOp>(c: &mut KmsClient, path: &Path) -> CliResult {
    let input: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?)
    };
    let mut input = BufReader::new(input);
    let mut pending = Pending::<O::Item>::new();
    let mut tally = Tally::default();
    let mut number = 0usize;
    loop {
        // Lines carry plaintexts (encrypt): the buffer is wiped when dropped.
        let mut line = Zeroizing::new(Vec::new());
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        number += 1;
        // Blank lines (a trailing newline, a separator) are no items.
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<O::Line>(&line) {
            Ok(l) => {
                let item = O::Item::from(l);
                let size = item.encoded_len();
                // A full call goes first; a single item larger than a call goes alone.
                let full = pending.items.len() == MAX_BATCH_ITEMS
                    || (!pending.items.is_empty() && pending.bytes + size > CALL_BYTES);
                if full {
                    flush::<O>(c, &mut pending, &mut tally).await?;
                }
                pending.bytes += size;
                pending.items.push(item);
                pending.slots.push(Slot::Item);
            }
            Err(e) => pending.slots.push(Slot::Unreadable(unreadable(number, &e))),
        }
    }
    flush::<O>(c, &mut pending, &mut tally).await?;
    if tally.failed > 0 {
        return Err(format!(
            "{} of {} items failed (see their results)",
            tally.failed, tally.printed
        )
        .into());
    }
    Ok(())
}

/// Where a line went wrong, in serde_json's terms but without its quotes of the input.
fn unreadable(number: usize, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Data => "a member is unknown, or has the wrong type or an invalid value",
        Category::Syntax | Category::Eof | Category::Io => "the line is not a JSON object",
    };
    format!("line {number}: {what} (column {})", e.column())
}

/// Sends the pending items (if any) in one call and prints every pending line's result,
/// in order.
async fn flush<O: BatchOp>(
    c: &mut KmsClient,
    pending: &mut Pending<O::Item>,
    tally: &mut Tally,
) -> CliResult {
    let slots = std::mem::take(&mut pending.slots);
    let items = std::mem::take(&mut pending.items);
    pending.bytes = 0;
    let sent = items.len();
    let mut results = if items.is_empty() {
        Vec::new()
    } else {
        O::call(c, items).await.map_err(|e| {
            format!(
                "{} failed after {} results were printed: {e}",
                O::NAME,
                tally.printed
            )
        })?
    }
    .into_iter();
    if results.len() != sent {
        return Err(format!(
            "{} answered {} results for {sent} items",
            O::NAME,
            results.len()
        )
        .into());
    }
    let mut out = std::io::stdout().lock();
    for slot in slots {
        let ok = match slot {
            Slot::Item => match results.next() {
                Some(r) => O::print(&mut out, r)?,
                None => print_missing(&mut out)?,
            },
            Slot::Unreadable(message) => {
                let line = ErrorLine {
                    error_code: "SerializationException",
                    error_message: &message,
                };
                write_line(&mut out, &line)?;
                false
            }
        };
        tally.printed += 1;
        if !ok {
            tally.failed += 1;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_take_the_json_protocols_member_names() {
        let l: EncryptLine = serde_json::from_str(
            r#"{"KeyId":"alias/a","Plaintext":"aGk=","EncryptionContext":{"k":"v"},"GrantTokens":["t"],"EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}"#,
        )
        .unwrap();
        let r = proto::EncryptRequest::from(l);
        assert_eq!(r.plaintext, b"hi");
        assert_eq!(r.key_id, "alias/a");
        assert_eq!(r.grant_tokens, vec!["t".to_owned()]);
        let l: DecryptLine = serde_json::from_str(r#"{"CiphertextBlob":"AQID"}"#).unwrap();
        assert_eq!(
            proto::DecryptRequest::from(l).ciphertext_blob,
            vec![1, 2, 3]
        );
    }

    #[test]
    fn an_unreadable_line_is_named_by_number_without_its_content() {
        for bad in [
            r#"{"KeyId":"k","Plaintext":"not base64!SECRET"}"#,
            r#"{"Keyid":"k"}"#,
            r#"{"KeyId":"k","Plaintext":"SECRET"#,
            "SECRET",
        ] {
            let e = serde_json::from_str::<EncryptLine>(bad).err().unwrap();
            let m = unreadable(7, &e);
            assert!(m.starts_with("line 7: "), "{m}");
            assert!(!m.contains("SECRET"), "{m}");
        }
    }
}
