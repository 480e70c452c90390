//! Client commands: connect as an identity, make one call, print the AWS-CLI-like result.
//!
//! One module per command group; this one holds what they share and the dispatcher.

mod aliases;
pub(crate) mod asymmetric;
mod batch;
mod config;
pub(crate) mod credentials;
pub(crate) mod crypto;
mod grants;
pub(crate) mod import;
mod keys;
mod policies;
mod tags;

use std::collections::HashMap;

use serde_json::{json, Value};

use p11kms::client::KmsClient;
use p11kms::proto;

use super::io::print_line;
use super::{Command, Conn};

type CliResult = Result<(), Box<dyn std::error::Error>>;

/// What a command that `cli::run` handles itself gets if it reaches the dispatcher.
const NOT_A_CLIENT_COMMAND: &str = "not a client command";

/// Finds endpoint and identity: flags and env first, then the dev directory.
pub(crate) async fn client(conn: &Conn) -> Result<KmsClient, Box<dyn std::error::Error>> {
    Ok(p11kms::client::connect_default(
        conn.endpoint.as_deref(),
        conn.identity.as_deref(),
        conn.data_dir.as_deref(),
    )
    .await?)
}

fn ctx(pairs: Vec<(String, String)>) -> HashMap<String, String> {
    pairs.into_iter().collect()
}

/// A timestamp as the AWS CLI prints it (RFC 3339), or null.
fn date(t: Option<prost_types::Timestamp>) -> Option<String> {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

/// KEY=VALUE pairs from the command line as tags (key tags and principal tags alike).
fn tags_from_pairs(pairs: Vec<(String, String)>) -> Vec<proto::Tag> {
    pairs
        .into_iter()
        .map(|(tag_key, tag_value)| proto::Tag { tag_key, tag_value })
        .collect()
}

fn tags_json(tags: Vec<proto::Tag>) -> Vec<Value> {
    tags.into_iter()
        .map(|t| json!({ "TagKey": t.tag_key, "TagValue": t.tag_value }))
        .collect()
}

fn print_json(v: &Value) -> CliResult {
    print_line(&serde_json::to_string_pretty(v)?)?;
    Ok(())
}

/// Prints the last page a listing fetched, under `name`; NextMarker only when there is
/// more, as the AWS CLI does.
fn print_page(name: &str, items: Vec<Value>, truncated: bool, next_marker: String) -> CliResult {
    let out = if truncated {
        json!({ name: items, "Truncated": true, "NextMarker": next_marker })
    } else {
        json!({ name: items, "Truncated": false })
    };
    print_json(&out)
}

/// A failed call, shown as AWS CLI users expect: the error name, then the message.
#[derive(Debug)]
struct CallFailed(tonic::Status);

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&p11kms::client::describe_status(&self.0))
    }
}

impl std::error::Error for CallFailed {}

/// The reply of a call, or its failure as the CLI shows it.
fn reply<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, Box<dyn std::error::Error>> {
    r.map(tonic::Response::into_inner)
        .map_err(|s| Box::new(CallFailed(s)).into())
}

/// For the calls whose reply has nothing to print.
fn done<T>(r: Result<tonic::Response<T>, tonic::Status>) -> CliResult {
    reply(r).map(drop)
}

/// Runs one client command on a single-threaded runtime: the CLI makes one call at a time.
pub(crate) fn run(conn: &Conn, cmd: Command) -> CliResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Connect first, whatever the command: a connection error comes before any other.
        let c = &mut client(conn).await?;
        match cmd {
            Command::Key(k) => keys::run(c, k).await,
            Command::Tag(t) => tags::run(c, t).await,
            Command::Alias(a) => aliases::run(c, a).await,
            Command::Encrypt(a) => crypto::encrypt(c, a).await,
            Command::Decrypt(a) => crypto::decrypt(c, a).await,
            Command::GenerateDataKey(a) => crypto::generate_data_key(c, a).await,
            Command::ReEncrypt(a) => crypto::re_encrypt(c, a).await,
            Command::Random(a) => crypto::random(c, a).await,
            Command::Sign(a) => asymmetric::sign(c, a).await,
            Command::Verify(a) => asymmetric::verify(c, a).await,
            Command::GetPublicKey(a) => asymmetric::get_public_key(c, a).await,
            Command::GenerateMac(a) => asymmetric::generate_mac(c, a).await,
            Command::VerifyMac(a) => asymmetric::verify_mac(c, a).await,
            Command::DeriveSharedSecret(a) => asymmetric::derive_shared_secret(c, a).await,
            Command::GenerateDataKeyPair(a) => asymmetric::generate_data_key_pair(c, a).await,
            Command::GetParametersForImport(a) => import::get_parameters(c, a).await,
            Command::ImportKeyMaterial(a) => import::import(c, a).await,
            Command::DeleteImportedKeyMaterial(a) => import::delete(c, a).await,
            Command::Policy(p) => policies::policy(c, p).await,
            Command::Principal(p) => policies::principal(c, p).await,
            Command::Grant(g) => grants::run(c, g).await,
            Command::Config(cfg) => config::run(c, cfg).await,
            Command::Credentials(k) => credentials::run(c, k).await,
            Command::Serve(_)
            | Command::Dev(_)
            | Command::Audit(_)
            | Command::Store(_)
            | Command::EncryptFile(_)
            | Command::DecryptFile(_) => Err(NOT_A_CLIENT_COMMAND.into()),
        }
    })
}
