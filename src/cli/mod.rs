//! The command line: `p11kms serve` runs the daemon; every other command is a client.

mod client_cmds;
mod io;
mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// p11kms: AWS-KMS-style key management with master keys in a PKCS#11 HSM.
#[derive(Parser, Debug)]
#[command(name = "p11kms", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How a client command reaches the daemon.
#[derive(Args, Debug, Clone)]
pub(crate) struct Conn {
    /// Daemon address. Default: the running dev daemon, else https://127.0.0.1:7878.
    #[arg(long, env = "P11KMS_ENDPOINT", global = true)]
    pub(crate) endpoint: Option<String>,
    /// Identity directory (cert.pem, key.pem, ca.pem). Default: the dev admin identity.
    #[arg(long, env = "P11KMS_IDENTITY", global = true)]
    pub(crate) identity: Option<PathBuf>,
    /// Dev data directory. Default: $P11KMS_DEV_DIR or ~/.p11kms/dev.
    #[arg(long, global = true)]
    pub(crate) data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the daemon.
    Serve(serve::ServeArgs),
    /// Dev-mode helpers.
    #[command(subcommand)]
    Dev(DevCmd),
    /// Create, describe and list KMS keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Encrypt up to 4096 bytes under a KMS key (prints the blob in base64).
    Encrypt(client_cmds::EncryptArgs),
    /// Decrypt a blob (reads base64 unless --raw-input; writes the plaintext).
    Decrypt(client_cmds::DecryptArgs),
    /// Get a data key: plaintext and encrypted copy, as JSON.
    GenerateDataKey(client_cmds::DataKeyArgs),
    /// Move a blob to another key or context without exposing its plaintext.
    ReEncrypt(client_cmds::ReEncryptArgs),
    /// Random bytes from the HSM.
    Random(client_cmds::RandomArgs),
    /// Offline policy tools.
    #[command(subcommand)]
    Policy(PolicyCmd),
}

#[derive(Subcommand, Debug)]
pub(crate) enum PolicyCmd {
    /// Evaluate one authorization case (the format of the shared policy vectors:
    /// key_policy, identity_policies, grants, request) and print the decision as JSON.
    Eval {
        /// Case file, or - for stdin.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum DevCmd {
    /// Mint a client certificate for any principal from the dev CA.
    IssueCert {
        /// Principal ARN, e.g. arn:aws:iam::111122223333:role/App.
        #[arg(long)]
        principal: String,
        /// Output directory (cert.pem, key.pem, ca.pem).
        #[arg(long)]
        out: PathBuf,
        /// Dev data directory. Default: $P11KMS_DEV_DIR or ~/.p11kms/dev.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// List the secret-key objects in the dev token, read directly over PKCS#11, as JSON
    /// (label, CKA_ID and the security attributes). Works while the daemon runs.
    TokenObjects {
        /// Dev data directory. Default: $P11KMS_DEV_DIR or ~/.p11kms/dev.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum KeyCmd {
    /// Create a symmetric encryption key.
    Create {
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a key's metadata.
    Describe {
        /// Key id or key ARN.
        #[arg(long)]
        key_id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the keys of your account.
    List {
        /// Page size (1..1000).
        #[arg(long)]
        limit: Option<i32>,
        /// NextMarker of a previous page.
        #[arg(long, default_value = "")]
        marker: String,
        /// Follow NextMarker until the last page.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs a parsed command line.
pub(crate) fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Dev(DevCmd::IssueCert {
            principal,
            out,
            data_dir,
        }) => {
            let dir =
                p11kms::dev::DevDir::at(data_dir.unwrap_or_else(p11kms::dev::DevDir::default_root));
            dir.ca()?.issue_client(Some(&principal), &out)?;
            println!(
                "wrote {}/{{cert,key,ca}}.pem for {principal}",
                out.display()
            );
            println!(
                "use it with: p11kms --identity {} …  (or P11KMS_IDENTITY)",
                out.display()
            );
            Ok(())
        }
        Command::Dev(DevCmd::TokenObjects { data_dir }) => {
            let dir =
                p11kms::dev::DevDir::at(data_dir.unwrap_or_else(p11kms::dev::DevDir::default_root));
            // Single-threaded here: nothing else reads the environment yet.
            std::env::set_var("SOFTHSM2_CONF", dir.softhsm_conf());
            let objects = dir.token_objects()?;
            println!("{}", serde_json::to_string_pretty(&objects)?);
            Ok(())
        }
        Command::Policy(PolicyCmd::Eval { file }) => {
            let text = io::read_input(&file)?;
            let case: p11kms::authz::case::EvalCase = serde_json::from_slice(&text)?;
            let decision = p11kms::authz::case::eval_case(&case)
                .map_err(|e| format!("MalformedPolicyDocumentException: {e}"))?;
            println!("{}", serde_json::to_string_pretty(&decision)?);
            Ok(())
        }
        other => client_cmds::run(other),
    }
}
