//! The asymmetric and HMAC calls: sign, verify, get-public-key, generate-mac,
//! verify-mac and derive-shared-secret, with the AWS CLI's option names. Messages are
//! read from a file or stdin (`--in`); binary results print as base64 in JSON, as the
//! AWS CLI prints them.

use std::path::PathBuf;

use base64::Engine as _;
use clap::Args;
use serde_json::json;

use p11kms::client::KmsClient;
use p11kms::proto;

use super::{print_json, reply, CliResult};
use crate::cli::io::{decode_b64, read_input, write_output, B64};

#[derive(Args, Debug)]
pub(crate) struct SignArgs {
    /// Key id, key ARN, alias name or alias ARN.
    #[arg(long)]
    key_id: String,
    /// Message file (or its digest with --message-type DIGEST), or - for stdin. The AWS
    /// CLI's `--message fileb://FILE` works too.
    #[arg(long = "in", visible_alias = "message", default_value = "-", value_parser = file_arg)]
    input: PathBuf,
    /// RAW (default) or DIGEST.
    #[arg(long, default_value = "RAW")]
    message_type: String,
    /// One of the key's signing algorithms, e.g. ECDSA_SHA_256 or RSASSA_PSS_SHA_256.
    #[arg(long)]
    signing_algorithm: String,
}

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    sign: SignArgs,
    /// The signature: base64 (as `p11kms sign` prints it), or `fileb://FILE` with the
    /// raw bytes, as the AWS CLI takes it.
    #[arg(long)]
    signature: String,
}

#[derive(Args, Debug)]
pub(crate) struct PublicKeyArgs {
    /// Key id, key ARN, alias name or alias ARN.
    #[arg(long)]
    key_id: String,
    /// Write the public key to FILE as PEM (SubjectPublicKeyInfo) instead of printing
    /// JSON with it in base64 DER.
    #[arg(long, value_name = "FILE")]
    pem_out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct MacArgs {
    /// Key id, key ARN, alias name or alias ARN.
    #[arg(long)]
    key_id: String,
    /// Message file, or - for stdin. The AWS CLI's `--message fileb://FILE` works too.
    #[arg(long = "in", visible_alias = "message", default_value = "-", value_parser = file_arg)]
    input: PathBuf,
    /// The key's MAC algorithm, e.g. HMAC_SHA_256.
    #[arg(long)]
    mac_algorithm: String,
}

#[derive(Args, Debug)]
pub(crate) struct VerifyMacArgs {
    #[command(flatten)]
    mac: MacArgs,
    /// The MAC: base64 (as `p11kms generate-mac` prints it), or `fileb://FILE` with the
    /// raw bytes, as the AWS CLI takes it.
    #[arg(long = "mac")]
    mac_b64: String,
}

#[derive(Args, Debug)]
pub(crate) struct DataKeyPairArgs {
    /// The symmetric encryption key that encrypts the private key.
    #[arg(long)]
    key_id: String,
    /// RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521 or
    /// ECC_SECG_P256K1.
    #[arg(long)]
    key_pair_spec: String,
    /// Encryption context pair KEY=VALUE (repeatable), bound to the encrypted private key.
    #[arg(long = "context", short = 'c', value_parser = crate::cli::io::parse_pair)]
    context: Vec<(String, String)>,
    /// Return only the encrypted private key (and the public key).
    #[arg(long)]
    without_plaintext: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DeriveArgs {
    /// Key id, key ARN, alias name or alias ARN of a KEY_AGREEMENT key.
    #[arg(long)]
    key_id: String,
    /// ECDH.
    #[arg(long, default_value = "ECDH")]
    key_agreement_algorithm: String,
    /// The peer's public key: a PEM or DER SubjectPublicKeyInfo file (`fileb://FILE`
    /// too, as the AWS CLI takes it).
    #[arg(long, value_parser = file_arg)]
    public_key: PathBuf,
}

pub(super) async fn sign(c: &mut KmsClient, a: SignArgs) -> CliResult {
    let message = read_input(&a.input)?.to_vec();
    let r = reply(
        c.sign(proto::SignRequest {
            key_id: a.key_id,
            message,
            message_type: a.message_type,
            grant_tokens: vec![],
            signing_algorithm: a.signing_algorithm,
        })
        .await,
    )?;
    print_json(&json!({
        "KeyId": r.key_id,
        "Signature": B64.encode(&r.signature),
        "SigningAlgorithm": r.signing_algorithm,
    }))
}

pub(super) async fn verify(c: &mut KmsClient, a: VerifyArgs) -> CliResult {
    let message = read_input(&a.sign.input)?.to_vec();
    let r = reply(
        c.verify(proto::VerifyRequest {
            key_id: a.sign.key_id,
            message,
            message_type: a.sign.message_type,
            signature: bytes_arg(&a.signature)?,
            signing_algorithm: a.sign.signing_algorithm,
            grant_tokens: vec![],
        })
        .await,
    )?;
    print_json(&json!({
        "KeyId": r.key_id,
        "SignatureValid": r.signature_valid,
        "SigningAlgorithm": r.signing_algorithm,
    }))
}

pub(super) async fn get_public_key(c: &mut KmsClient, a: PublicKeyArgs) -> CliResult {
    let r = reply(
        c.get_public_key(proto::GetPublicKeyRequest {
            key_id: a.key_id,
            grant_tokens: vec![],
        })
        .await,
    )?;
    if let Some(path) = a.pem_out {
        let pem = p11kms::public_key_pem(&r.public_key);
        return write_output(&path, pem.as_bytes()).map_err(Into::into);
    }
    let mut out = json!({
        "KeyId": r.key_id,
        "PublicKey": B64.encode(&r.public_key),
        "CustomerMasterKeySpec": r.key_spec,
        "KeySpec": r.key_spec,
        "KeyUsage": r.key_usage,
    });
    for (name, list) in [
        ("EncryptionAlgorithms", r.encryption_algorithms),
        ("SigningAlgorithms", r.signing_algorithms),
        ("KeyAgreementAlgorithms", r.key_agreement_algorithms),
    ] {
        if let (false, Some(obj)) = (list.is_empty(), out.as_object_mut()) {
            obj.insert(name.into(), json!(list));
        }
    }
    print_json(&out)
}

pub(super) async fn generate_mac(c: &mut KmsClient, a: MacArgs) -> CliResult {
    let message = read_input(&a.input)?.to_vec();
    let r = reply(
        c.generate_mac(proto::GenerateMacRequest {
            message,
            key_id: a.key_id,
            mac_algorithm: a.mac_algorithm,
            grant_tokens: vec![],
        })
        .await,
    )?;
    print_json(&json!({
        "Mac": B64.encode(&r.mac),
        "MacAlgorithm": r.mac_algorithm,
        "KeyId": r.key_id,
    }))
}

pub(super) async fn verify_mac(c: &mut KmsClient, a: VerifyMacArgs) -> CliResult {
    let message = read_input(&a.mac.input)?.to_vec();
    let r = reply(
        c.verify_mac(proto::VerifyMacRequest {
            message,
            key_id: a.mac.key_id,
            mac_algorithm: a.mac.mac_algorithm,
            mac: bytes_arg(&a.mac_b64)?,
            grant_tokens: vec![],
        })
        .await,
    )?;
    print_json(&json!({
        "KeyId": r.key_id,
        "MacValid": r.mac_valid,
        "MacAlgorithm": r.mac_algorithm,
    }))
}

pub(super) async fn derive_shared_secret(c: &mut KmsClient, a: DeriveArgs) -> CliResult {
    let public_key = spki(&read_input(&a.public_key)?)?;
    let r = reply(
        c.derive_shared_secret(proto::DeriveSharedSecretRequest {
            key_id: a.key_id,
            key_agreement_algorithm: a.key_agreement_algorithm,
            public_key,
            grant_tokens: vec![],
        })
        .await,
    )?;
    let secret = zeroize::Zeroizing::new(B64.encode(&r.shared_secret));
    print_json(&json!({
        "KeyId": r.key_id,
        "SharedSecret": secret.as_str(),
        "KeyAgreementAlgorithm": r.key_agreement_algorithm,
        "KeyOrigin": r.key_origin,
    }))
}

pub(super) async fn generate_data_key_pair(c: &mut KmsClient, a: DataKeyPairArgs) -> CliResult {
    let encryption_context = a.context.into_iter().collect();
    if a.without_plaintext {
        let r = reply(
            c.generate_data_key_pair_without_plaintext(
                proto::GenerateDataKeyPairWithoutPlaintextRequest {
                    key_id: a.key_id,
                    encryption_context,
                    key_pair_spec: a.key_pair_spec,
                    grant_tokens: vec![],
                },
            )
            .await,
        )?;
        return print_json(&json!({
            "PrivateKeyCiphertextBlob": B64.encode(&r.private_key_ciphertext_blob),
            "PublicKey": B64.encode(&r.public_key),
            "KeyId": r.key_id,
            "KeyPairSpec": r.key_pair_spec,
        }));
    }
    let r = reply(
        c.generate_data_key_pair(proto::GenerateDataKeyPairRequest {
            key_id: a.key_id,
            encryption_context,
            key_pair_spec: a.key_pair_spec,
            grant_tokens: vec![],
        })
        .await,
    )?;
    // The user asked for the private key on stdout; that is the point.
    let private = zeroize::Zeroizing::new(B64.encode(&r.private_key_plaintext));
    print_json(&json!({
        "PrivateKeyCiphertextBlob": B64.encode(&r.private_key_ciphertext_blob),
        "PrivateKeyPlaintext": private.as_str(),
        "PublicKey": B64.encode(&r.public_key),
        "KeyId": r.key_id,
        "KeyPairSpec": r.key_pair_spec,
    }))
}

/// A public key file as DER: PEM (`BEGIN PUBLIC KEY`) is decoded, anything else is
/// taken as DER already.
fn spki(bytes: &[u8]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    use rustls_pki_types::pem::PemObject as _;
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Ok(bytes.to_vec());
    }
    let der = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(bytes)
        .map_err(|e| format!("the PEM public key does not read: {e}"))?;
    Ok(der.as_ref().to_vec())
}

/// A file argument, the AWS CLI's `fileb://` and `file://` prefixes taken off.
pub(super) fn file_arg(s: &str) -> Result<PathBuf, String> {
    let path = s
        .strip_prefix("fileb://")
        .or_else(|| s.strip_prefix("file://"))
        .unwrap_or(s);
    Ok(PathBuf::from(path))
}

/// A binary argument: `fileb://FILE` (the file's bytes, as the AWS CLI reads them) or
/// base64 text.
pub(super) fn bytes_arg(s: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    match s.strip_prefix("fileb://") {
        Some(path) => Ok(read_input(std::path::Path::new(path))?.to_vec()),
        None => Ok(decode_b64(s.as_bytes())?),
    }
}
