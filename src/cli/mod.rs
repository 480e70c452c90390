//! The command line: `p11kms serve` runs the daemon; every other command is a client.

mod audit;
mod client_cmds;
mod files;
pub(crate) mod io;
mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use audit::AuditCmd;

/// p11kms: AWS-KMS-style key management with master keys in a PKCS#11 HSM.
#[derive(Parser, Debug)]
#[command(name = "p11kms", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) conn: Conn,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How a client command reaches the daemon.
#[derive(Args, Debug, Clone)]
pub(crate) struct Conn {
    /// Daemon address, or several separated by commas (replicas: a call that gets no
    /// answer goes to the next when that is safe). Default: the running dev daemon,
    /// else https://127.0.0.1:7878.
    #[arg(long, env = "P11KMS_ENDPOINT", global = true)]
    pub(crate) endpoint: Option<String>,
    /// Identity directory (cert.pem, key.pem, ca.pem). Default: the dev admin identity.
    #[arg(long, env = "P11KMS_IDENTITY", global = true)]
    pub(crate) identity: Option<PathBuf>,
    /// Dev data directory. Default: ~/.p11kms/dev.
    #[arg(long, env = "P11KMS_DEV_DIR", global = true)]
    pub(crate) data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the daemon.
    Serve(serve::ServeArgs),
    /// Dev-mode helpers.
    #[command(subcommand)]
    Dev(DevCmd),
    /// The audit trail, read offline: verify its chain and checkpoints, tail it, query it.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The metadata store, offline: move a SQLite store into PostgreSQL.
    #[command(subcommand)]
    Store(StoreCmd),
    /// Create, describe and list KMS keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Encrypt up to 4096 bytes under a KMS key (prints the blob in base64); with
    /// --batch, many items given as JSON lines.
    Encrypt(client_cmds::crypto::EncryptArgs),
    /// Decrypt a blob (reads base64 unless --raw-input; writes the plaintext); with
    /// --batch, many items given as JSON lines.
    Decrypt(client_cmds::crypto::DecryptArgs),
    /// Get a data key: plaintext and encrypted copy, as JSON.
    GenerateDataKey(client_cmds::crypto::DataKeyArgs),
    /// Move a blob to another key or context without exposing its plaintext.
    ReEncrypt(client_cmds::crypto::ReEncryptArgs),
    /// Random bytes from the HSM.
    Random(client_cmds::crypto::RandomArgs),
    /// Sign a message (or its digest) with an asymmetric SIGN_VERIFY key.
    Sign(client_cmds::asymmetric::SignArgs),
    /// Verify a signature with an asymmetric SIGN_VERIFY key, in the HSM.
    Verify(client_cmds::asymmetric::VerifyArgs),
    /// The public key of an asymmetric key (DER SubjectPublicKeyInfo, or PEM).
    GetPublicKey(client_cmds::asymmetric::PublicKeyArgs),
    /// An HMAC of a message with an HMAC key.
    GenerateMac(client_cmds::asymmetric::MacArgs),
    /// Check an HMAC with an HMAC key, in the HSM.
    VerifyMac(client_cmds::asymmetric::VerifyMacArgs),
    /// ECDH between a KEY_AGREEMENT key and a peer's public key.
    DeriveSharedSecret(client_cmds::asymmetric::DeriveArgs),
    /// An RSA or ECC key pair for use outside p11kms, its private key encrypted under a
    /// symmetric key (and in plaintext unless --without-plaintext), as JSON.
    GenerateDataKeyPair(client_cmds::asymmetric::DataKeyPairArgs),
    /// A wrapping public key and import token for importing material into an EXTERNAL
    /// key (valid 24 hours).
    GetParametersForImport(client_cmds::import::ParametersArgs),
    /// Import key material wrapped for the wrapping key of an import token; the key
    /// becomes Enabled.
    ImportKeyMaterial(client_cmds::import::ImportArgs),
    /// Destroy a key's imported material at once; the key returns to PendingImport.
    DeleteImportedKeyMaterial(client_cmds::import::DeleteArgs),
    /// Identity policies, and offline policy evaluation.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Tags on roles and users (aws:PrincipalTag/<key> in policies).
    #[command(subcommand)]
    Principal(PrincipalCmd),
    /// Grants: delegate a key's use without changing its policy.
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Encrypted configuration files: placeholders that services decrypt at start-up.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Aliases: names for keys, usable wherever a key id is.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Key tags (aws:ResourceTag/<key> in policies).
    #[command(subcommand)]
    Tag(TagCmd),
    /// Access keys (SigV4 credentials) for the AWS JSON listener.
    #[command(subcommand)]
    Credentials(CredentialsCmd),
    /// Envelope-encrypt a file or stream (AWS Encryption SDK message format); only the
    /// data key meets the daemon.
    EncryptFile(files::EncryptFileArgs),
    /// Decrypt an AWS Encryption SDK message made with p11kms keys.
    DecryptFile(files::DecryptFileArgs),
}

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCmd {
    /// Encrypt a value (stdin or --in) and print its {p11kms} placeholder. Needs only
    /// kms:Encrypt.
    EncryptValue {
        /// Key id or key ARN.
        #[arg(long)]
        key_id: String,
        /// Encryption context pair KEY=VALUE (repeatable), e.g. service=billing.
        #[arg(long = "context", short = 'c', value_parser = io::parse_pair)]
        context: Vec<(String, String)>,
        /// Value file, or - for stdin (a trailing newline is dropped).
        #[arg(long = "in", default_value = "-")]
        input: PathBuf,
    },
    /// Replace every placeholder of a YAML, .properties or .env file with its value.
    Render {
        /// The file with placeholders.
        file: PathBuf,
        /// Write here (mode 0600, through a temp file and a rename) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing --out file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum GrantCmd {
    /// Create a grant; prints GrantId and GrantToken.
    Create {
        /// Key id or key ARN.
        #[arg(long)]
        key_id: String,
        /// Who may use the grant.
        #[arg(long)]
        grantee: String,
        /// Operations, comma-separated (Decrypt,Encrypt,GenerateDataKey,...).
        #[arg(long, value_delimiter = ',', required = true)]
        operations: Vec<String>,
        /// Who may retire it.
        #[arg(long)]
        retiring: Option<String>,
        /// EncryptionContextSubset pair KEY=VALUE (repeatable).
        #[arg(long = "subset", value_parser = io::parse_pair)]
        subset: Vec<(String, String)>,
        /// EncryptionContextEquals pair KEY=VALUE (repeatable).
        #[arg(long = "equals", value_parser = io::parse_pair)]
        equals: Vec<(String, String)>,
        /// Name, for idempotent retries.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List a key's grants.
    List {
        /// Key id or key ARN.
        #[arg(long)]
        key_id: String,
    },
    /// List the grants a principal may retire.
    ListRetirable {
        /// Retiring principal ARN.
        #[arg(long)]
        retiring: String,
    },
    /// Retire a grant, by token or by key and grant id.
    Retire {
        /// The grant token.
        #[arg(long, conflicts_with_all = ["key_id", "grant_id"])]
        token: Option<String>,
        /// Key id or key ARN.
        #[arg(long, requires = "grant_id")]
        key_id: Option<String>,
        /// Grant id.
        #[arg(long, requires = "key_id")]
        grant_id: Option<String>,
    },
    /// Revoke a grant (needs kms:RevokeGrant).
    Revoke {
        /// Key id or key ARN.
        #[arg(long)]
        key_id: String,
        /// Grant id.
        #[arg(long)]
        grant_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum PrincipalCmd {
    /// Add or replace tags.
    Tag {
        /// Role or user ARN.
        #[arg(long)]
        principal: String,
        /// KEY=VALUE (repeatable).
        #[arg(long = "tag", required = true, value_parser = io::parse_pair)]
        tags: Vec<(String, String)>,
    },
    /// Remove tags.
    Untag {
        /// Role or user ARN.
        #[arg(long)]
        principal: String,
        /// Tag key (repeatable).
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
    /// List tags.
    Tags {
        /// Role or user ARN.
        #[arg(long)]
        principal: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum PolicyCmd {
    /// Attach (or replace) a named identity policy on a role or user of your account.
    Put {
        /// Role or user ARN.
        #[arg(long)]
        principal: String,
        /// Policy name.
        #[arg(long)]
        name: String,
        /// Policy file (JSON), or - for stdin.
        #[arg(long)]
        file: PathBuf,
    },
    /// Print a named identity policy.
    Get {
        /// Role or user ARN.
        #[arg(long)]
        principal: String,
        /// Policy name.
        #[arg(long)]
        name: String,
    },
    /// List a principal's identity policies.
    List {
        /// Role or user ARN.
        #[arg(long)]
        principal: String,
    },
    /// Delete a named identity policy.
    Delete {
        /// Role or user ARN.
        #[arg(long)]
        principal: String,
        /// Policy name.
        #[arg(long)]
        name: String,
    },
    /// Evaluate one authorization case (the format of the shared policy vectors:
    /// key_policy, identity_policies, grants, request) and print the decision as JSON.
    Eval {
        /// Case file, or - for stdin.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum StoreCmd {
    /// Copy every key, version, policy, grant, alias, tag, rotation schedule, deletion
    /// schedule and access key of a stopped single-node SQLite store into an empty
    /// PostgreSQL database, then check that both sides hold the same rows.
    Copy {
        /// The source: sqlite:PATH.
        #[arg(long)]
        from: String,
        /// The target: postgres:URL (postgresql://user@host:port/dbname, no password).
        #[arg(long)]
        to: String,
        /// A file holding the PostgreSQL password (never on the command line).
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
        /// TLS to PostgreSQL: the CA (PEM) the server's certificate is checked against.
        #[arg(long)]
        tls_ca_file: Option<std::path::PathBuf>,
        /// TLS to PostgreSQL: a client certificate chain (PEM), with --tls-key-file.
        #[arg(long)]
        tls_cert_file: Option<std::path::PathBuf>,
        /// TLS to PostgreSQL: the client certificate's private key (PEM).
        #[arg(long)]
        tls_key_file: Option<std::path::PathBuf>,
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
    },
    /// Mint an access key for any principal of any account straight into the dev token
    /// and store (works while the daemon runs); prints it as `credentials create` does.
    IssueCredentials {
        /// Principal ARN, e.g. arn:aws:iam::111122223333:user/Alice.
        #[arg(long)]
        principal: String,
    },
    /// List the key objects (secret and private keys) in the dev token, read directly over PKCS#11, as JSON
    /// (label, CKA_ID and the security attributes). Works while the daemon runs.
    TokenObjects,
}

#[derive(Subcommand, Debug)]
pub(crate) enum CredentialsCmd {
    /// Create an access key for a principal; prints it as `aws iam create-access-key`
    /// does (the only time the secret is shown). At most two per principal.
    Create {
        /// Principal ARN, e.g. arn:aws:iam::111122223333:user/Alice.
        #[arg(long)]
        principal: String,
    },
    /// List a principal's access keys (yours without --principal), without secrets.
    List {
        /// Principal ARN.
        #[arg(long)]
        principal: Option<String>,
    },
    /// Delete an access key; it stops working at once.
    Delete {
        /// The access key id (AKIA…).
        #[arg(long)]
        access_key_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum TagCmd {
    /// Add or replace tags on a key.
    Add {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
        /// KEY=VALUE (repeatable).
        #[arg(long = "tag", required = true, value_parser = io::parse_pair)]
        tags: Vec<(String, String)>,
    },
    /// Remove tags from a key by tag key.
    Remove {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
        /// Tag key (repeatable).
        #[arg(long = "tag-key", required = true)]
        tag_keys: Vec<String>,
    },
    /// List a key's tags.
    List {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum AliasCmd {
    /// Give a key a name (alias/…).
    Create {
        /// alias/ followed by letters, digits, /, _ and -.
        #[arg(long)]
        alias_name: String,
        /// Key id or key ARN.
        #[arg(long)]
        target_key_id: String,
    },
    /// Point an alias at another key.
    Update {
        /// The alias.
        #[arg(long)]
        alias_name: String,
        /// Key id or key ARN of the new key.
        #[arg(long)]
        target_key_id: String,
    },
    /// Delete an alias (the key stays).
    Delete {
        /// The alias.
        #[arg(long)]
        alias_name: String,
    },
    /// List the account's aliases, or one key's.
    List {
        /// Only this key's aliases (key id or key ARN).
        #[arg(long, default_value = "")]
        key_id: String,
        /// Page size (1..100).
        #[arg(long)]
        limit: Option<i32>,
        /// NextMarker of a previous page.
        #[arg(long, default_value = "")]
        marker: String,
        /// Follow NextMarker to the end.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum KeyCmd {
    /// Create a key: symmetric encryption (the default), RSA, ECC or HMAC.
    Create {
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        /// SYMMETRIC_DEFAULT (default), RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256,
        /// ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1, HMAC_224, HMAC_256, HMAC_384 or
        /// HMAC_512.
        #[arg(long, default_value = "")]
        key_spec: String,
        /// ENCRYPT_DECRYPT (default for SYMMETRIC_DEFAULT), SIGN_VERIFY,
        /// GENERATE_VERIFY_MAC or KEY_AGREEMENT, as the key spec allows.
        #[arg(long, default_value = "")]
        key_usage: String,
        /// Key policy file (JSON); default: AWS's default key policy.
        #[arg(long)]
        policy_file: Option<PathBuf>,
        /// Skip the check that the policy still lets you update it.
        #[arg(long)]
        bypass_policy_lockout_safety_check: bool,
        /// AWS_KMS (default): material made in the HSM. EXTERNAL: no material until
        /// `import-key-material` (the key starts in PendingImport).
        #[arg(long, default_value = "")]
        origin: String,
    },
    /// Enable a key.
    Enable {
        /// Key id or key ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Disable a key: it refuses cryptographic operations until enabled again.
    Disable {
        /// Key id or key ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Schedule a key's deletion: after the waiting period its material is destroyed.
    ScheduleDeletion {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
        /// Waiting period, 7..30 days (default 30).
        #[arg(long)]
        pending_window_in_days: Option<i32>,
    },
    /// Cancel a scheduled deletion; the key is left Disabled.
    CancelDeletion {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Rotate a key's material now (at most 25 times per key).
    Rotate {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Turn on automatic rotation.
    EnableRotation {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
        /// Days between rotations, 90..2560 (default 365).
        #[arg(long)]
        rotation_period_in_days: Option<i32>,
    },
    /// Turn off automatic rotation.
    DisableRotation {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Show whether automatic rotation is on, and when it is next due.
    RotationStatus {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// List a key's completed rotations.
    ListRotations {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Replace a key's description.
    UpdateDescription {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
        /// The new description (0..8192 characters).
        #[arg(long)]
        description: String,
    },
    /// Print a key's policy.
    GetPolicy {
        /// Key id or key ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Replace a key's policy.
    PutPolicy {
        /// Key id or key ARN.
        #[arg(long)]
        key_id: String,
        /// Policy file (JSON), or - for stdin.
        #[arg(long)]
        policy_file: PathBuf,
        /// Skip the check that the policy still lets you update it.
        #[arg(long)]
        bypass_policy_lockout_safety_check: bool,
    },
    /// Show a key's metadata.
    Describe {
        /// Key id or key ARN.
        #[arg(long)]
        key_id: String,
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
    },
}

/// Runs a parsed command line.
pub(crate) fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let dev_root = cli
        .conn
        .data_dir
        .clone()
        .unwrap_or_else(p11kms::DevDir::default_root);
    match cli.command {
        Command::Serve(a) => serve::run(a, cli.conn.data_dir),
        Command::Dev(DevCmd::IssueCert { principal, out }) => {
            let dir = p11kms::DevDir::at(dev_root);
            dir.ca()?.issue_client(Some(&principal), &out)?;
            io::print_line(&format!(
                "wrote {}/{{cert,key,ca}}.pem for {principal}",
                out.display()
            ))?;
            io::print_line(&format!(
                "use it with: p11kms --identity {} …  (or P11KMS_IDENTITY)",
                out.display()
            ))?;
            Ok(())
        }
        Command::Dev(DevCmd::IssueCredentials { principal }) => {
            let dir = p11kms::DevDir::at(dev_root);
            // Single-threaded here: nothing else reads the environment yet.
            std::env::set_var("SOFTHSM2_CONF", dir.softhsm_conf());
            let key = dir.issue_credentials(&principal)?;
            let out = client_cmds::credentials::issued_json(&key);
            io::print_line(&serde_json::to_string_pretty(&out)?)?;
            Ok(())
        }
        Command::Dev(DevCmd::TokenObjects) => {
            let dir = p11kms::DevDir::at(dev_root);
            // Single-threaded here: nothing else reads the environment yet.
            std::env::set_var("SOFTHSM2_CONF", dir.softhsm_conf());
            let objects = dir.token_objects()?;
            io::print_line(&serde_json::to_string_pretty(&objects)?)?;
            Ok(())
        }
        Command::Audit(cmd) => audit::run(cmd, &dev_root),
        Command::Store(StoreCmd::Copy {
            from,
            to,
            password_file,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
        }) => store_copy(
            &from,
            &to,
            p11kms::StoreSection {
                password_file,
                tls_ca_file,
                tls_cert_file,
                tls_key_file,
                ..p11kms::StoreSection::default()
            },
        ),
        Command::Policy(PolicyCmd::Eval { file }) => {
            let text = io::read_input(&file)?;
            let malformed = |e: p11kms::CaseError| format!("MalformedPolicyDocumentException: {e}");
            let text = String::from_utf8(text.to_vec())
                .map_err(|_| "MalformedPolicyDocumentException: the case is not UTF-8")?;
            let case = p11kms::parse_case(&text).map_err(malformed)?;
            let decision = p11kms::eval_case(&case).map_err(malformed)?;
            io::print_line(&serde_json::to_string_pretty(&decision)?)?;
            Ok(())
        }
        Command::EncryptFile(a) => files::encrypt_file(&cli.conn, a),
        Command::DecryptFile(a) => files::decrypt_file(&cli.conn, a),
        other => client_cmds::run(&cli.conn, other),
    }
}

/// `p11kms store copy`.
fn store_copy(
    from: &str,
    to: &str,
    options: p11kms::StoreSection,
) -> Result<(), Box<dyn std::error::Error>> {
    let from = from
        .strip_prefix("sqlite:")
        .ok_or("--from: write sqlite:PATH")?;
    let url = to
        .strip_prefix("postgres:")
        .ok_or("--to: write postgres:postgresql://user@host:port/dbname")?;
    let target = p11kms::StoreSection {
        postgres: Some(url.to_owned()),
        pool_size: Some(2),
        ..options
    };
    let store = target
        .check(|p: &std::path::Path| p.to_path_buf())
        .map_err(|e| format!("--to: {}", e.reason))?
        .connect_postgres()?;
    let report = p11kms::copy_sqlite_to_postgres(std::path::Path::new(from), &store)?;
    for (table, rows) in &report.tables {
        io::print_line(&format!("{table}: {rows} rows"))?;
    }
    io::print_line("copied; both sides hold the same rows")?;
    Ok(())
}
