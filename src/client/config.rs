//! Encrypted configuration, the "config server" pattern: a DBA encrypts each service's
//! secret (kms:Encrypt only) into a placeholder that carries the encryption context; at
//! start-up each service renders its file, and its policy lets it decrypt only the
//! placeholders whose context names it.
//!
//! Placeholder: `{p11kms}1.<base64url(context JSON)>.<base64url(ciphertext blob)>`.
//! The context is not secret (AWS logs it in the clear too); carrying it makes a
//! placeholder self-describing, and the ciphertext is bound to it.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::KmsClient;
use crate::proto;

/// What every placeholder starts with.
pub const PREFIX: &str = "{p11kms}";
const VERSION: &str = "1";

/// Why a file could not be rendered or a value encrypted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A `{p11kms}` token that is not a well-formed placeholder.
    #[error("malformed placeholder at byte {0}")]
    Malformed(usize),
    /// The daemon refused (the AWS error name leads the message).
    #[error("{0}")]
    Call(String),
    /// The secret cannot be written safely in this format.
    #[error("a secret cannot be written into a {0} file safely (it contains a line break or NUL)")]
    Unrepresentable(&'static str),
}

fn call_failed(st: &tonic::Status) -> ConfigError {
    ConfigError::Call(super::describe_status(st))
}

/// The file formats that get value escaping; anything else is replaced as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// YAML: a placeholder becomes a double-quoted scalar.
    Yaml,
    /// Java .properties: backslash escapes.
    Properties,
    /// .env: a double-quoted value.
    Env,
    /// No escaping.
    Raw,
}

impl Format {
    /// Chooses by file name: .yaml/.yml, .properties, .env (or a name starting with .env).
    pub fn from_path(path: &std::path::Path) -> Self {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "yaml" | "yml" => Self::Yaml,
            "properties" => Self::Properties,
            "env" => Self::Env,
            _ if name.starts_with(".env") => Self::Env,
            _ => Self::Raw,
        }
    }

    /// `v` escaped for this format, built in wiped memory only.
    fn escape(self, v: &str) -> Result<Zeroizing<String>, ConfigError> {
        let mut out = Zeroizing::new(String::with_capacity(v.len() * 2 + 2));
        let quoted = matches!(self, Self::Yaml | Self::Env);
        if self == Self::Env && v.contains(['\n', '\r', '\0']) {
            return Err(ConfigError::Unrepresentable(".env"));
        }
        if quoted {
            push_wiped(&mut out, "\"");
        }
        let mut tmp = [0u8; 4];
        for (i, c) in v.chars().enumerate() {
            let escaped: Option<&str> = match (self, c) {
                (Self::Raw, _) => None,
                (Self::Yaml | Self::Properties | Self::Env, '\\') => Some("\\\\"),
                (Self::Yaml | Self::Env, '"') => Some("\\\""),
                (Self::Env, '$') => Some("\\$"),
                (Self::Yaml | Self::Properties, '\n') => Some("\\n"),
                (Self::Yaml | Self::Properties, '\r') => Some("\\r"),
                (Self::Yaml | Self::Properties, '\t') => Some("\\t"),
                (Self::Properties, ' ') if i == 0 => Some("\\ "),
                (Self::Yaml, c) if c.is_control() => {
                    let code = Zeroizing::new(format!("\\u{:04x}", u32::from(c)));
                    push_wiped(&mut out, &code);
                    continue;
                }
                _ => None,
            };
            push_wiped(&mut out, escaped.unwrap_or_else(|| c.encode_utf8(&mut tmp)));
        }
        if quoted {
            push_wiped(&mut out, "\"");
        }
        zeroize::Zeroize::zeroize(&mut tmp);
        Ok(out)
    }
}

/// Appends `s` to a secret string; when it must grow, the old buffer is wiped rather
/// than left behind by a reallocation.
fn push_wiped(out: &mut Zeroizing<String>, s: &str) {
    if out.capacity() - out.len() < s.len() {
        let mut bigger = Zeroizing::new(String::with_capacity((out.len() + s.len()) * 2));
        bigger.push_str(out);
        *out = bigger;
    }
    out.push_str(s);
}

/// Builds a placeholder from a blob and its context.
pub fn placeholder(blob: &[u8], context: &BTreeMap<String, String>) -> String {
    // A BTreeMap serialises in key order, so equal contexts give equal text.
    let ctx = serde_json::to_vec(context).unwrap_or_default();
    format!(
        "{PREFIX}{VERSION}.{}.{}",
        URL_SAFE_NO_PAD.encode(ctx),
        URL_SAFE_NO_PAD.encode(blob)
    )
}

/// Splits a placeholder body (after the prefix) into context and blob.
fn parse_body(body: &str) -> Option<(BTreeMap<String, String>, Vec<u8>)> {
    let mut parts = body.splitn(3, '.');
    if parts.next()? != VERSION {
        return None;
    }
    let ctx: BTreeMap<String, String> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
    let blob = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    Some((ctx, blob))
}

fn is_body_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// The placeholders of a text as (start, end) byte ranges.
fn find_all(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text.get(from..).and_then(|t| t.find(PREFIX)) {
        let start = from + i;
        let body_start = start + PREFIX.len();
        let len = text
            .get(body_start..)
            .map(|b| b.find(|c: char| !is_body_char(c)).unwrap_or(b.len()))
            .unwrap_or(0);
        out.push((start, body_start + len));
        from = body_start + len;
    }
    out
}

/// Encrypts one value for a placeholder (needs kms:Encrypt only).
pub async fn encrypt_value(
    client: &mut KmsClient,
    key_id: &str,
    value: &[u8],
    context: &BTreeMap<String, String>,
) -> Result<String, ConfigError> {
    let mut req = proto::EncryptRequest::default();
    req.key_id = key_id.to_owned();
    req.plaintext = value.to_vec();
    req.encryption_context = context.clone().into_iter().collect();
    let r = client
        .encrypt(req)
        .await
        .map_err(|e| call_failed(&e))?
        .into_inner();
    Ok(placeholder(&r.ciphertext_blob, context))
}

/// Replaces every placeholder of `text` with its decrypted value, escaped for `format`.
/// Fails as a whole: a file is rendered completely or not at all.
pub async fn render(
    client: &mut KmsClient,
    text: &str,
    format: Format,
) -> Result<Zeroizing<String>, ConfigError> {
    let mut out = Zeroizing::new(String::with_capacity(text.len()));
    let mut last = 0;
    for (start, end) in find_all(text) {
        let body = text.get(start + PREFIX.len()..end).unwrap_or("");
        let (ctx, blob) = parse_body(body).ok_or(ConfigError::Malformed(start))?;
        let req = proto::DecryptRequest {
            ciphertext_blob: blob,
            encryption_context: ctx.into_iter().collect(),
            ..Default::default()
        };
        let mut resp = client
            .decrypt(req)
            .await
            .map_err(|e| call_failed(&e))?
            .into_inner();
        let value = Zeroizing::new(
            String::from_utf8(std::mem::take(&mut resp.plaintext)).map_err(|e| {
                let mut b = e.into_bytes();
                zeroize::Zeroize::zeroize(&mut b);
                ConfigError::Unrepresentable("text")
            })?,
        );
        // Inside double quotes already: escape the content but add no quotes of its own.
        let quoted = start > 0 && text.as_bytes().get(start - 1) == Some(&b'"');
        let escaped = format.escape(&value)?;
        let inner = match (quoted, format) {
            (true, Format::Yaml | Format::Env) => escaped
                .get(1..escaped.len().saturating_sub(1))
                .unwrap_or(""),
            _ => escaped.as_str(),
        };
        push_wiped(&mut out, text.get(last..start).unwrap_or(""));
        push_wiped(&mut out, inner);
        last = end;
    }
    push_wiped(&mut out, text.get(last..).unwrap_or(""));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn placeholders_round_trip_and_are_found_in_text() {
        let ctx: BTreeMap<String, String> = [("service".to_string(), "A".to_string())]
            .into_iter()
            .collect();
        let p = placeholder(&[1, 2, 3, 250], &ctx);
        assert!(p.starts_with("{p11kms}1."));
        let (c, b) = parse_body(&p[PREFIX.len()..]).unwrap();
        assert_eq!((c, b), (ctx, vec![1, 2, 3, 250]));
        let text = format!("password: {p}\nother: {p}, x\n");
        let found = find_all(&text);
        assert_eq!(found.len(), 2);
        assert_eq!(&text[found[0].0..found[0].1], p);
    }

    #[test]
    fn secret_strings_grow_without_losing_content() {
        let mut out = Zeroizing::new(String::with_capacity(1));
        for part in ["ab", "cdé", &"x".repeat(100)] {
            push_wiped(&mut out, part);
        }
        assert_eq!(out.as_str(), format!("abcdé{}", "x".repeat(100)));
    }

    #[test]
    fn values_are_escaped_per_format() {
        let v = "p@ss: \"w\\rd\" #1";
        let e = |f: Format, v: &str| f.escape(v).unwrap().as_str().to_owned();
        assert_eq!(e(Format::Yaml, v), r#""p@ss: \"w\\rd\" #1""#);
        assert_eq!(e(Format::Yaml, "a\n\tb\u{1}é"), r#""a\n\tb\u0001é""#);
        assert_eq!(e(Format::Properties, " a\\b"), r"\ a\\b");
        assert_eq!(e(Format::Properties, "a b\r\n"), r"a b\r\n");
        assert_eq!(e(Format::Env, "a\"$b\\"), r#""a\"\$b\\""#);
        assert_eq!(e(Format::Raw, "a\"$\n"), "a\"$\n");
        assert!(Format::Env.escape("a\nb").is_err());
        assert_eq!(
            Format::from_path(std::path::Path::new("/x/app.yml")),
            Format::Yaml
        );
        assert_eq!(
            Format::from_path(std::path::Path::new(".env.production")),
            Format::Env
        );
        assert_eq!(
            Format::from_path(std::path::Path::new("db.properties")),
            Format::Properties
        );
    }

    proptest! {
        #[test]
        fn placeholder_parsing_never_panics(s in ".{0,300}") {
            let text = format!("x: {PREFIX}{s}");
            for (a, b) in find_all(&text) {
                let _ = parse_body(text.get(a + PREFIX.len()..b).unwrap_or(""));
            }
        }
    }
}
