//! The cryptographic calls: encrypt, decrypt, re-encrypt, generate-data-key and random.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use serde_json::json;

use p11kms::client::KmsClient;
use p11kms::proto;

use super::{ctx, print_json, reply, CliResult};
use crate::cli::io::{decode_b64, parse_pair, print_line, read_input, write_output, B64};

#[derive(Args, Debug)]
pub(crate) struct EncryptArgs {
    /// Key id or key ARN.
    #[arg(long, required_unless_present = "batch")]
    key_id: Option<String>,
    /// Encrypt many items instead: JSON lines from FILE or - (stdin), one item per line
    /// with Encrypt's members ({"KeyId":…,"Plaintext":BASE64,"EncryptionContext":{…}}),
    /// one JSON result line per item on stdout, in order. Exits 1 if any item failed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key_id", "input", "output", "raw", "context"])]
    batch: Option<PathBuf>,
    /// Plaintext file, or - for stdin.
    #[arg(long = "in", default_value = "-")]
    input: PathBuf,
    /// Where to write the blob, or - for stdout.
    #[arg(long = "out", default_value = "-")]
    output: PathBuf,
    /// Write the blob as binary instead of base64.
    #[arg(long)]
    raw: bool,
    /// Encryption context pair KEY=VALUE (repeatable).
    #[arg(long = "context", short = 'c', value_parser = parse_pair)]
    context: Vec<(String, String)>,
    /// SYMMETRIC_DEFAULT (default), or RSAES_OAEP_SHA_1 / RSAES_OAEP_SHA_256 for an RSA
    /// ENCRYPT_DECRYPT key.
    #[arg(long, default_value = "")]
    encryption_algorithm: String,
}

#[derive(Args, Debug)]
pub(crate) struct DecryptArgs {
    /// Decrypt many items instead: JSON lines from FILE or - (stdin), one item per line
    /// with Decrypt's members ({"CiphertextBlob":BASE64,"EncryptionContext":{…}}), one
    /// JSON result line per item on stdout, in order. Exits 1 if any item failed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["input", "output", "raw_input", "base64", "key_id", "context"])]
    batch: Option<PathBuf>,
    /// Blob file (base64 unless --raw-input), or - for stdin.
    #[arg(long = "in", default_value = "-")]
    input: PathBuf,
    /// Where to write the plaintext, or - for stdout.
    #[arg(long = "out", default_value = "-")]
    output: PathBuf,
    /// The input blob is binary.
    #[arg(long)]
    raw_input: bool,
    /// Write the plaintext as base64.
    #[arg(long)]
    base64: bool,
    /// The key that must have encrypted the blob (optional; required with an RSA key).
    #[arg(long, default_value = "")]
    key_id: String,
    /// Encryption context pair KEY=VALUE (repeatable).
    #[arg(long = "context", short = 'c', value_parser = parse_pair)]
    context: Vec<(String, String)>,
    /// SYMMETRIC_DEFAULT (default), or RSAES_OAEP_SHA_1 / RSAES_OAEP_SHA_256 for an RSA
    /// ENCRYPT_DECRYPT key.
    #[arg(long, default_value = "")]
    encryption_algorithm: String,
}

#[derive(Args, Debug)]
pub(crate) struct DataKeyArgs {
    /// Key id or key ARN.
    #[arg(long)]
    key_id: String,
    /// AES_256 or AES_128 (default AES_256 unless --number-of-bytes).
    #[arg(long, conflicts_with = "number_of_bytes")]
    key_spec: Option<String>,
    /// Data key length in bytes (1..1024).
    #[arg(long)]
    number_of_bytes: Option<i32>,
    /// Return only the encrypted data key.
    #[arg(long)]
    without_plaintext: bool,
    /// Encryption context pair KEY=VALUE (repeatable).
    #[arg(long = "context", short = 'c', value_parser = parse_pair)]
    context: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub(crate) struct ReEncryptArgs {
    /// Blob file (base64 unless --raw-input), or - for stdin.
    #[arg(long = "in", default_value = "-")]
    input: PathBuf,
    /// The input blob is binary.
    #[arg(long)]
    raw_input: bool,
    /// Destination key id or ARN.
    #[arg(long)]
    destination_key_id: String,
    /// Source context pair KEY=VALUE (repeatable).
    #[arg(long = "source-context", value_parser = parse_pair)]
    source_context: Vec<(String, String)>,
    /// Destination context pair KEY=VALUE (repeatable).
    #[arg(long = "destination-context", value_parser = parse_pair)]
    destination_context: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub(crate) struct RandomArgs {
    /// How many bytes (1..1024).
    #[arg(long, default_value_t = 32)]
    number_of_bytes: i32,
    /// Print hex instead of base64.
    #[arg(long)]
    hex: bool,
}

fn read_blob(path: &Path, raw: bool) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let bytes = read_input(path)?;
    Ok(if raw {
        bytes.to_vec()
    } else {
        decode_b64(&bytes)?
    })
}

pub(super) async fn encrypt(c: &mut KmsClient, a: EncryptArgs) -> CliResult {
    if let Some(path) = &a.batch {
        return super::batch::encrypt(c, path).await;
    }
    let plaintext = read_input(&a.input)?;
    let req = proto::EncryptRequest {
        key_id: a.key_id.unwrap_or_default(),
        plaintext: plaintext.to_vec(),
        encryption_context: ctx(a.context),
        grant_tokens: vec![],
        encryption_algorithm: a.encryption_algorithm,
    };
    let r = reply(c.encrypt(req).await)?;
    if a.raw {
        write_output(&a.output, &r.ciphertext_blob)?;
    } else {
        let text = format!("{}\n", B64.encode(&r.ciphertext_blob));
        write_output(&a.output, text.as_bytes())?;
    }
    Ok(())
}

pub(super) async fn decrypt(c: &mut KmsClient, a: DecryptArgs) -> CliResult {
    if let Some(path) = &a.batch {
        return super::batch::decrypt(c, path).await;
    }
    let blob = read_blob(&a.input, a.raw_input)?;
    let req = proto::DecryptRequest {
        ciphertext_blob: blob,
        encryption_context: ctx(a.context),
        key_id: a.key_id,
        encryption_algorithm: a.encryption_algorithm,
        ..Default::default()
    };
    let r = reply(c.decrypt(req).await)?;
    if a.base64 {
        let text = zeroize::Zeroizing::new(format!("{}\n", B64.encode(&r.plaintext)));
        write_output(&a.output, text.as_bytes())?;
    } else {
        write_output(&a.output, &r.plaintext)?;
    }
    Ok(())
}

pub(super) async fn generate_data_key(c: &mut KmsClient, a: DataKeyArgs) -> CliResult {
    // AWS takes a key spec or a length; with neither, AES_256.
    let key_spec = match (&a.key_spec, a.number_of_bytes) {
        (Some(s), _) => s.clone(),
        (None, Some(_)) => String::new(),
        (None, None) => "AES_256".into(),
    };
    let req = proto::GenerateDataKeyRequest {
        key_id: a.key_id,
        encryption_context: ctx(a.context),
        number_of_bytes: a.number_of_bytes,
        key_spec,
        grant_tokens: vec![],
    };
    if a.without_plaintext {
        let r = reply(
            c.generate_data_key_without_plaintext(without_plaintext(req))
                .await,
        )?;
        return print_json(&json!({
            "CiphertextBlob": B64.encode(&r.ciphertext_blob),
            "KeyId": r.key_id,
        }));
    }
    let r = reply(c.generate_data_key(req).await)?;
    // The user asked for the data key on stdout; that is the point.
    print_json(&json!({
        "CiphertextBlob": B64.encode(&r.ciphertext_blob),
        "Plaintext": B64.encode(&r.plaintext),
        "KeyId": r.key_id,
    }))
}

/// The same request for the call that returns only the encrypted data key: the two
/// messages have the same fields.
fn without_plaintext(
    r: proto::GenerateDataKeyRequest,
) -> proto::GenerateDataKeyWithoutPlaintextRequest {
    proto::GenerateDataKeyWithoutPlaintextRequest {
        key_id: r.key_id,
        encryption_context: r.encryption_context,
        number_of_bytes: r.number_of_bytes,
        key_spec: r.key_spec,
        grant_tokens: r.grant_tokens,
    }
}

pub(super) async fn re_encrypt(c: &mut KmsClient, a: ReEncryptArgs) -> CliResult {
    let blob = read_blob(&a.input, a.raw_input)?;
    let req = proto::ReEncryptRequest {
        ciphertext_blob: blob,
        source_encryption_context: ctx(a.source_context),
        destination_key_id: a.destination_key_id,
        destination_encryption_context: ctx(a.destination_context),
        ..Default::default()
    };
    let r = reply(c.re_encrypt(req).await)?;
    print_json(&json!({
        "CiphertextBlob": B64.encode(&r.ciphertext_blob),
        "SourceKeyId": r.source_key_id,
        "KeyId": r.key_id,
    }))
}

pub(super) async fn random(c: &mut KmsClient, a: RandomArgs) -> CliResult {
    let req = proto::GenerateRandomRequest {
        number_of_bytes: Some(a.number_of_bytes),
    };
    let r = reply(c.generate_random(req).await)?;
    if a.hex {
        let hex: String = r.plaintext.iter().map(|b| format!("{b:02x}")).collect();
        print_line(&hex)?;
    } else {
        print_line(&B64.encode(&r.plaintext))?;
    }
    Ok(())
}
