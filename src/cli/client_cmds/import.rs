//! Bring your own key: get-parameters-for-import, import-key-material and
//! delete-imported-key-material, with the AWS CLI's option names. The wrapping key and
//! the import token can be written to files as raw bytes, ready for OpenSSL.

use std::path::PathBuf;

use base64::Engine as _;
use clap::Args;
use serde_json::json;

use p11kms::client::KmsClient;
use p11kms::proto;

use super::asymmetric::bytes_arg;
use super::{date, print_json, reply, CliResult};
use crate::cli::io::{write_output, B64};

#[derive(Args, Debug)]
pub(crate) struct ParametersArgs {
    /// Key id or key ARN of a key made with --origin EXTERNAL.
    #[arg(long)]
    key_id: String,
    /// RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1 or
    /// RSA_AES_KEY_WRAP_SHA_256 (as far as the HSM can unwrap with it).
    #[arg(long)]
    wrapping_algorithm: String,
    /// RSA_2048, RSA_3072 or RSA_4096.
    #[arg(long)]
    wrapping_key_spec: String,
    /// Also write the wrapping public key (DER SubjectPublicKeyInfo) to FILE.
    #[arg(long, value_name = "FILE")]
    public_key_out: Option<PathBuf>,
    /// Also write the import token to FILE.
    #[arg(long, value_name = "FILE")]
    import_token_out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// Key id or key ARN.
    #[arg(long)]
    key_id: String,
    /// The import token: `fileb://FILE` with its bytes, or base64.
    #[arg(long)]
    import_token: String,
    /// The wrapped material: `fileb://FILE` with its bytes, or base64.
    #[arg(long)]
    encrypted_key_material: String,
    /// KEY_MATERIAL_EXPIRES (the default; needs --valid-to) or
    /// KEY_MATERIAL_DOES_NOT_EXPIRE.
    #[arg(long, default_value = "")]
    expiration_model: String,
    /// When the material expires: RFC 3339 (2027-01-01T00:00:00Z) or seconds since the
    /// epoch.
    #[arg(long, value_parser = parse_time)]
    valid_to: Option<prost_types::Timestamp>,
}

#[derive(Args, Debug)]
pub(crate) struct DeleteArgs {
    /// Key id or key ARN.
    #[arg(long)]
    key_id: String,
}

/// RFC 3339 or seconds since the epoch, as the AWS CLI takes timestamps.
fn parse_time(s: &str) -> Result<prost_types::Timestamp, String> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(prost_types::Timestamp {
            seconds: secs,
            nanos: 0,
        });
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time nor seconds since the epoch: {e}"))?;
    Ok(prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    })
}

pub(super) async fn get_parameters(c: &mut KmsClient, a: ParametersArgs) -> CliResult {
    let r = reply(
        c.get_parameters_for_import(proto::GetParametersForImportRequest {
            key_id: a.key_id,
            wrapping_algorithm: a.wrapping_algorithm,
            wrapping_key_spec: a.wrapping_key_spec,
        })
        .await,
    )?;
    if let Some(path) = a.public_key_out {
        write_output(&path, &r.public_key)?;
    }
    if let Some(path) = a.import_token_out {
        write_output(&path, &r.import_token)?;
    }
    print_json(&json!({
        "KeyId": r.key_id,
        "ImportToken": B64.encode(&r.import_token),
        "PublicKey": B64.encode(&r.public_key),
        "ParametersValidTo": date(r.parameters_valid_to),
    }))
}

pub(super) async fn import(c: &mut KmsClient, a: ImportArgs) -> CliResult {
    let r = reply(
        c.import_key_material(proto::ImportKeyMaterialRequest {
            key_id: a.key_id,
            import_token: bytes_arg(&a.import_token)?,
            encrypted_key_material: bytes_arg(&a.encrypted_key_material)?,
            valid_to: a.valid_to,
            expiration_model: a.expiration_model,
        })
        .await,
    )?;
    print_json(&json!({ "KeyId": r.key_id }))
}

pub(super) async fn delete(c: &mut KmsClient, a: DeleteArgs) -> CliResult {
    let r = reply(
        c.delete_imported_key_material(proto::DeleteImportedKeyMaterialRequest {
            key_id: a.key_id,
        })
        .await,
    )?;
    print_json(&json!({ "KeyId": r.key_id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_epoch_seconds() {
        assert_eq!(parse_time("1800000000").unwrap().seconds, 1_800_000_000);
        assert_eq!(
            parse_time("2027-01-15T10:00:00Z").unwrap().seconds,
            1_800_007_200
        );
        assert!(parse_time("next tuesday").is_err());
    }
}
