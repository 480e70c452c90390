//! Starting and stopping real daemons, and connecting to them as any principal.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use p11kms::client::{connect, error_name, Identity, KmsClient};
use p11kms::proto;
use p11kms::DevDir;
use rustls_pki_types::pem::PemObject as _;
use tempfile::TempDir;

use crate::p11shim::{Control, Shim};

pub const ACCOUNT: &str = "111122223333";
pub const OTHER_ACCOUNT: &str = "444455556666";

static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A dev data directory in a temp dir: a daemon's token, certs and database. Outlives
/// daemon restarts.
pub struct TestDir {
    tmp: TempDir,
    /// Set by `use_shim`: every daemon on this directory reaches its token through it.
    shim: OnceLock<Shim>,
}

/// The PKCS#11 token this run's daemons use, chosen by `P11KMS_TEST_TOKEN`:
/// `softhsm2` (the default) or `kryoptic`. Chosen by configuration alone: a kryoptic
/// test directory's `[hsm]` names kryoptic's module and, in `env`, its `KRYOPTIC_CONF`;
/// dev mode then initialises that token as it does SoftHSM2's, with C_InitToken and
/// C_InitPIN. `scripts/test.sh` runs a core set of tests a second time on kryoptic.
#[derive(Debug, PartialEq, Eq)]
pub enum TestToken {
    SoftHsm2,
    /// kryoptic's module: `P11KMS_KRYOPTIC_MODULE`, else where kryoptic/build.sh puts it.
    Kryoptic(PathBuf),
}

impl TestToken {
    /// How this token answers C_Decrypt of a damaged AES-GCM tag, as the daemon logs it.
    pub fn bad_tag_answer(&self) -> &'static str {
        match self {
            Self::SoftHsm2 => "CKR_GENERAL_ERROR",
            Self::Kryoptic(_) => "CKR_ENCRYPTED_DATA_INVALID",
        }
    }
}

pub fn test_token() -> &'static TestToken {
    static TOKEN: OnceLock<TestToken> = OnceLock::new();
    TOKEN.get_or_init(|| {
        match std::env::var("P11KMS_TEST_TOKEN").as_deref() {
            Err(_) | Ok("" | "softhsm2") => TestToken::SoftHsm2,
            Ok("kryoptic") => {
                let module = std::env::var_os("P11KMS_KRYOPTIC_MODULE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        // CARGO_TARGET_TMPDIR is <target>/tmp; build.sh builds into
                        // <target>/kryoptic.
                        Path::new(env!("CARGO_TARGET_TMPDIR"))
                            .parent()
                            .unwrap()
                            .join("kryoptic/release/libkryoptic_pkcs11.so")
                    });
                assert!(
                    module.exists(),
                    "P11KMS_TEST_TOKEN=kryoptic, but there is no kryoptic module at {}: run kryoptic/build.sh, or set P11KMS_KRYOPTIC_MODULE",
                    module.display()
                );
                TestToken::Kryoptic(module)
            }
            Ok(other) => panic!("P11KMS_TEST_TOKEN={other}: give softhsm2 or kryoptic"),
        }
    })
}

impl TestDir {
    /// A fresh directory for a daemon on this run's token (`test_token`).
    pub fn new() -> Self {
        let dir = Self {
            tmp: tempfile::tempdir().unwrap(),
            shim: OnceLock::new(),
        };
        if let TestToken::Kryoptic(module) = test_token() {
            dir.use_kryoptic(module);
        }
        dir
    }

    /// Points this directory's `[hsm]` at kryoptic: its module, and in `env` a
    /// `KRYOPTIC_CONF` naming a configuration with one slot whose SQLite store is in
    /// the dev token directory (empty until the first daemon initialises the token).
    fn use_kryoptic(&self, module: &Path) {
        self.prepare();
        let conf = self.path().join("kryoptic.conf");
        let store = self.dev().tokens_dir().join("kryoptic.sql");
        fs::write(
            &conf,
            format!(
                "[[slots]]\nslot = 1\ndbtype = \"sqlite\"\ndbargs = {}\n",
                toml::Value::String(store.display().to_string())
            ),
        )
        .unwrap();
        self.edit_config(|t| {
            let hsm = t["hsm"].as_table_mut().unwrap();
            hsm.insert("module".into(), module.display().to_string().into());
            let mut env = toml::Table::new();
            env.insert("KRYOPTIC_CONF".into(), conf.display().to_string().into());
            hsm.insert("env".into(), env.into());
        });
    }

    /// Puts the PKCS#11 shim (tests/shim) between this directory's daemons and the token,
    /// with `delay_us` added to each cryptographic call: prepares the dev files and
    /// points `[hsm] module` at the shim. Every daemon `Daemon::start*` starts on this
    /// directory from now on (and `token_objects`) loads it. Returns the control file,
    /// absent until the test writes rules into it.
    pub fn use_shim(&self, delay_us: u64) -> Control {
        self.prepare();
        let mut shim = Shim::new().unwrap();
        if let TestToken::Kryoptic(module) = test_token() {
            shim = shim.target(module);
        }
        let shim = shim
            .delay_us(delay_us)
            .control_file(self.path().join("p11shim.control"));
        shim.install(&self.dev().config_path()).unwrap();
        let control = shim.control().unwrap();
        assert!(self.shim.set(shim).is_ok(), "use_shim called twice");
        control
    }

    /// The environment a process working on this directory's token needs.
    fn token_env(&self, cmd: &mut Command) {
        if let Some(shim) = self.shim.get() {
            shim.apply(cmd);
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn dev(&self) -> DevDir {
        DevDir::at(self.path())
    }

    /// Creates the dev files now (without a daemon), so that a test can edit the
    /// configuration before the first start.
    pub fn prepare(&self) -> &Self {
        self.dev().prepare().unwrap();
        self
    }

    /// Appends TOML to the generated configuration.
    pub fn append_config(&self, toml: &str) {
        let path = self.dev().config_path();
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(toml);
        fs::write(path, text).unwrap();
    }

    /// Edits the generated configuration as TOML, for fields that belong in a table the
    /// file already has (appending a second `[tls]` would be a duplicate table).
    pub fn edit_config(&self, edit: impl FnOnce(&mut toml::Table)) {
        let path = self.dev().config_path();
        let mut table: toml::Table = fs::read_to_string(&path).unwrap().parse().unwrap();
        edit(&mut table);
        fs::write(path, toml::to_string(&table).unwrap()).unwrap();
    }

    /// The token's secret-key objects, read directly over PKCS#11 by `p11kms dev
    /// token-objects` (a separate process, so it has its own SOFTHSM2_CONF).
    pub fn token_objects(&self) -> Vec<serde_json::Value> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11kms"));
        cmd.arg("--data-dir")
            .arg(self.path())
            .args(["dev", "token-objects"]);
        self.token_env(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for TestDir {
    /// Every trail a test leaves is searched for secrets, so that the whole suite's
    /// records are (see `secrets_scan`).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            crate::secrets_scan::scan(self.path());
        }
    }
}

/// A running daemon process.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    log: PathBuf,
    metrics_url: Option<String>,
    aws_api_url: Option<String>,
    xks_url: Option<String>,
}

/// What a daemon printed before its ready line.
struct Ready {
    addr: SocketAddr,
    metrics: Option<String>,
    aws_api: Option<String>,
    xks: Option<String>,
}

/// Waits for the ready line on stdout, or returns what the daemon said on stderr. The
/// metrics and AWS API lines, when there are any, come before it.
fn wait_ready(child: &mut Child, log: &Path) -> Result<Ready, String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut metrics, mut aws_api, mut xks) = (None, None, None);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("p11kms metrics on ") {
                metrics = Some(url.trim().to_owned());
            }
            if let Some(url) = line.strip_prefix("p11kms AWS API on ") {
                aws_api = Some(url.trim().to_owned());
            }
            if let Some(url) = line.strip_prefix("p11kms XKS proxy on ") {
                xks = Some(url.trim().to_owned());
            }
            if let Some(addr) = line.strip_prefix("p11kms listening on ") {
                let _ = tx.send((
                    addr.trim().to_owned(),
                    metrics.take(),
                    aws_api.take(),
                    xks.take(),
                ));
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok((addr, metrics, aws_api, xks)) => Ok(Ready {
            addr: addr.parse().unwrap(),
            metrics,
            aws_api,
            xks,
        }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(fs::read_to_string(log).unwrap_or_default())
        }
    }
}

impl Daemon {
    /// `p11kms serve --dev` on a free port.
    pub fn start(dir: &TestDir) -> Self {
        Self::start_with(dir, &[])
    }

    /// Same, with extra environment variables.
    pub fn start_with(dir: &TestDir, env: &[(&str, &str)]) -> Self {
        Self::start_listening(dir, "127.0.0.1:0", env)
    }

    /// `p11kms serve --dev` on `listen` (e.g. `[::]:0`). The client still connects to
    /// 127.0.0.1 on the bound port.
    pub fn start_listening(dir: &TestDir, listen: &str, env: &[(&str, &str)]) -> Self {
        Self::start_args(dir, listen, &[], env)
    }

    /// `p11kms serve --dev` on `listen`, with more `args` for `serve`.
    pub fn start_args(dir: &TestDir, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::try_start_args(dir, listen, args, env)
            .unwrap_or_else(|log| panic!("daemon did not start:\n{log}"))
    }

    /// `p11kms serve --dev` on a free port; Err holds the daemon's stderr when it did
    /// not start.
    pub fn try_start(dir: &TestDir) -> Result<Self, String> {
        Self::try_start_args(dir, "127.0.0.1:0", &[], &[])
    }

    fn try_start_args(
        dir: &TestDir,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11kms"));
        // The dev external key store's key would be one more key and two more records
        // in every test; tests/it/xks.rs turns it back on where it is the subject.
        cmd.env("P11KMS_DEV_XKS", "off");
        cmd.args(["serve", "--dev", "--listen", listen])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--aws-api-listen", "127.0.0.1:0"])
            .args(["--xks-listen", "127.0.0.1:0"])
            .args(args)
            .arg("--data-dir")
            .arg(dir.path());
        dir.token_env(&mut cmd);
        Self::spawn(cmd, dir.path(), env)
    }

    /// `p11kms serve --config FILE`; Err holds the daemon's stderr.
    pub fn start_config(config: &Path, dir: &Path, env: &[(&str, &str)]) -> Result<Self, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11kms"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        // Dev configurations name a fixed metrics port; tests run side by side.
        if fs::read_to_string(config)
            .unwrap_or_default()
            .contains("[metrics]")
        {
            cmd.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        // Likewise the AWS JSON port and the external key stores' own.
        let text = fs::read_to_string(config).unwrap_or_default();
        if text.contains("[aws_api]") {
            cmd.args(["--aws-api-listen", "127.0.0.1:0"]);
        }
        if text
            .lines()
            .any(|l| l.starts_with("listen") && l.contains(":7881"))
        {
            cmd.args(["--xks-listen", "127.0.0.1:0"]);
        }
        cmd.arg("--config").arg(config);
        Self::spawn(cmd, dir, env)
    }

    fn spawn(mut cmd: Command, dir: &Path, env: &[(&str, &str)]) -> Result<Self, String> {
        let log = dir.join(format!(
            "daemon-{}.log",
            LOG_SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        cmd.env("RUST_LOG", "info")
            .env_remove("P11KMS_DEV_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let ready = wait_ready(&mut child, &log)?;
        Ok(Self {
            child,
            addr: ready.addr,
            dir: dir.to_owned(),
            log,
            metrics_url: ready.metrics,
            aws_api_url: ready.aws_api,
            xks_url: ready.xks,
        })
    }

    /// The daemon's process id, for reading /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The metrics URL the daemon printed (`http://127.0.0.1:PORT/metrics`).
    pub fn metrics_url(&self) -> &str {
        self.metrics_url
            .as_deref()
            .expect("the daemon printed no metrics line")
    }

    /// The AWS JSON listener's address the daemon printed.
    pub fn aws_api_addr(&self) -> SocketAddr {
        let url = self
            .aws_api_url
            .as_deref()
            .expect("the daemon printed no AWS API line");
        url.trim_start_matches("https://").parse().unwrap()
    }

    /// The external key stores' own listener's address the daemon printed.
    pub fn xks_addr(&self) -> SocketAddr {
        let url = self
            .xks_url
            .as_deref()
            .expect("the daemon printed no XKS proxy line");
        url.trim_start_matches("https://").parse().unwrap()
    }

    pub fn endpoint(&self) -> String {
        // A wildcard listener is reached over IPv4 loopback.
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// A client acting as the dev admin (arn:aws:iam::111122223333:root).
    pub async fn admin(&self) -> KmsClient {
        self.connect_dir(&DevDir::at(&self.dir).admin_identity())
            .await
    }

    /// A client acting as `principal`, with a certificate from the dev CA.
    pub async fn client_as(&self, principal: &str) -> KmsClient {
        self.connect_dir(&identity_for(&self.dir, Some(principal)))
            .await
    }

    pub async fn connect_dir(&self, dir: &Path) -> KmsClient {
        connect(&self.endpoint(), &Identity::from_dir(dir).unwrap())
            .await
            .unwrap()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGHUP: the daemon re-reads its TLS files.
    pub fn reload(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -HUP failed");
    }

    /// SIGTERM, without waiting.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// SIGTERM and wait: a graceful stop.
    pub fn stop(self) -> String {
        self.terminate();
        self.wait_exit()
    }

    /// Waits for the daemon to exit (after a SIGTERM) and asserts it exited cleanly.
    pub fn wait_exit(mut self) -> String {
        let status = self.exit_status("stop");
        assert!(
            status.success(),
            "daemon exited with {status}:\n{}",
            self.log()
        );
        self.log()
    }

    /// Waits for the daemon to die by itself (a crash point aborted it) and returns its
    /// log; fails the test if it exits cleanly or lives on.
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    pub fn wait_crash(mut self) -> String {
        let status = self.exit_status("crash");
        assert!(
            !status.success(),
            "the daemon exited cleanly:\n{}",
            self.log()
        );
        self.log()
    }

    /// The daemon's exit status, waited for at most 60 s: a daemon that does not
    /// `what` (stop, crash) fails the test instead of hanging it.
    fn exit_status(&mut self, what: &str) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the daemon did not {what} within 60 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash. Returns the daemon's log up to its death.
    pub fn crash(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Mints (once) an identity directory for `principal` from the dev CA of `data_dir`.
/// `None` makes a certificate that names no principal.
pub fn identity_for(data_dir: &Path, principal: Option<&str>) -> PathBuf {
    let name: String = principal
        .unwrap_or("none")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let out = data_dir.join("test-identities").join(name);
    if !out.join("cert.pem").exists() {
        DevDir::at(data_dir)
            .ca()
            .unwrap()
            .issue_client(principal, &out)
            .unwrap();
    }
    out
}

pub fn role(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role/{name}")
}

/// The request id a call's answer carries, success or failure.
pub fn request_id<T>(r: &Result<tonic::Response<T>, tonic::Status>) -> String {
    try_request_id(r).expect("every answer carries a request id")
}

/// The request id, if the daemon answered at all (a transport failure carries none).
pub fn try_request_id<T>(r: &Result<tonic::Response<T>, tonic::Status>) -> Option<String> {
    let md = match r {
        Ok(resp) => resp.metadata(),
        Err(st) => st.metadata(),
    };
    Some(md.get("x-amzn-requestid")?.to_str().ok()?.to_owned())
}

/// The key ids the caller's account lists (first page, up to 1000).
pub async fn list_key_ids(c: &mut KmsClient) -> Vec<String> {
    c.list_keys(proto::ListKeysRequest {
        limit: Some(1000),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .keys
    .into_iter()
    .map(|k| k.key_id)
    .collect()
}

/// Asserts that a call failed with the AWS error `name`.
#[track_caller]
pub fn assert_kms_error<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    name: &str,
) -> tonic::Status {
    let st = r.expect_err(&format!("expected {name}"));
    assert_eq!(error_name(&st), Some(name), "status: {st:?}");
    assert!(st.message().starts_with(name), "message: {}", st.message());
    st
}

pub async fn create_key(c: &mut KmsClient) -> proto::KeyMetadata {
    c.create_key(proto::CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
}

pub fn ctx(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn encrypt_req(
    key_id: &str,
    plaintext: &[u8],
    context: &[(&str, &str)],
) -> proto::EncryptRequest {
    crate::secrets_scan::sent_plaintext(plaintext);
    encrypt_req_unscanned(key_id, plaintext, context)
}

/// An Encrypt request like [`encrypt_req`]'s whose plaintext is not given to the secrets
/// scan: for tests that send thousands, where scanning every record for each would take
/// longer than the test (the few registered ones stand for the rest).
pub fn encrypt_req_unscanned(
    key_id: &str,
    plaintext: &[u8],
    context: &[(&str, &str)],
) -> proto::EncryptRequest {
    let mut r = proto::EncryptRequest::default();
    r.key_id = key_id.to_owned();
    r.plaintext = plaintext.to_vec();
    r.encryption_context = ctx(context);
    r
}

pub fn decrypt_req(blob: &[u8], context: &[(&str, &str)]) -> proto::DecryptRequest {
    proto::DecryptRequest {
        ciphertext_blob: blob.to_vec(),
        encryption_context: ctx(context),
        ..Default::default()
    }
}

pub async fn encrypt(
    c: &mut KmsClient,
    key_id: &str,
    plaintext: &[u8],
    context: &[(&str, &str)],
) -> Vec<u8> {
    c.encrypt(encrypt_req(key_id, plaintext, context))
        .await
        .unwrap()
        .into_inner()
        .ciphertext_blob
}

pub async fn decrypt(c: &mut KmsClient, blob: &[u8], context: &[(&str, &str)]) -> Vec<u8> {
    let mut r = c
        .decrypt(decrypt_req(blob, context))
        .await
        .unwrap()
        .into_inner();
    std::mem::take(&mut r.plaintext)
}

/// Attaches an identity policy to `principal`, as its account's root (`root` client).
pub async fn put_identity_policy(
    root: &mut KmsClient,
    principal: &str,
    name: &str,
    doc: serde_json::Value,
) {
    root.put_principal_policy(proto::PutPrincipalPolicyRequest {
        principal_arn: principal.to_owned(),
        policy_name: name.to_owned(),
        policy_document: doc.to_string(),
    })
    .await
    .unwrap_or_else(|e| panic!("put identity policy {name} on {principal}: {e:?}"));
}

/// Replaces a key's policy (the lockout check applies).
pub async fn put_key_policy(
    c: &mut KmsClient,
    key_id: &str,
    doc: String,
) -> Result<(), tonic::Status> {
    c.put_key_policy(proto::PutKeyPolicyRequest {
        key_id: key_id.into(),
        policy_name: "default".into(),
        policy: doc,
        bypass_policy_lockout_safety_check: false,
    })
    .await
    .map(|_| ())
}

/// An identity policy allowing `actions` on every key.
pub fn allow(actions: &[&str]) -> serde_json::Value {
    serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
}

pub fn root_of(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

/// DescribeKey's metadata, for a call that must succeed.
pub async fn describe(c: &mut KmsClient, key_id: &str) -> proto::KeyMetadata {
    c.describe_key(proto::DescribeKeyRequest {
        key_id: key_id.to_owned(),
        grant_tokens: vec![],
    })
    .await
    .unwrap()
    .into_inner()
    .key_metadata
    .unwrap()
}

/// Runs the `p11kms` CLI against the dev directory `dir` (which finds the daemon's
/// endpoint and admin identity), with `stdin` as its input.
pub fn run_cli(dir: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    run_cli_in(dir, Path::new("."), args, stdin)
}

/// [`run_cli`] with `cwd` as the working directory, as a user running the CLI from there
/// (relative file names in the arguments resolve against it).
pub fn run_cli_in(dir: &Path, cwd: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_p11kms"))
        .current_dir(cwd)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("P11KMS_ENDPOINT")
        .env_remove("P11KMS_IDENTITY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Polls `check` until it is true, failing after 60 s (for work the daemon does on its
/// own schedule, e.g. the lifecycle sweep).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many rotations ListKeyRotations lists for `key` (one page of up to 1,000).
pub async fn rotation_count(c: &mut KmsClient, key: &str) -> usize {
    c.list_key_rotations(proto::ListKeyRotationsRequest {
        key_id: key.to_owned(),
        limit: Some(1000),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .rotations
    .len()
}

/// The material version a ciphertext blob names (bytes 20..24 of format v1).
pub fn material_version(blob: &[u8]) -> u32 {
    u32::from_be_bytes(blob[20..24].try_into().unwrap())
}

impl TestDir {
    /// How many token objects belong to the key `key_id` (their CKA_ID starts with it).
    pub fn objects_of(&self, key_id: &str) -> usize {
        let hex = key_id.replace('-', "");
        self.token_objects()
            .iter()
            .filter(|o| o["id"].as_str().unwrap().starts_with(&hex))
            .count()
    }

    /// Prepares the directory with a 1-second lifecycle sweep on a test clock; returns
    /// the file whose number of seconds moves that clock forward.
    pub fn with_test_clock(&self) -> PathBuf {
        self.prepare();
        let offset = self.path().join("clock-offset");
        self.append_config(&format!(
            "\n[lifecycle]\nsweep_interval_secs = 1\nclock_offset_file = {:?}\n",
            offset.to_str().unwrap()
        ));
        offset
    }
}

/// The Python with the interop packages (AWS Encryption SDK, grpcio, prometheus-client):
/// P11KMS_PYTHON (scripts/test.sh sets it), else the virtualenv scripts/python-deps.sh
/// makes, else python3.
pub fn python_bin() -> String {
    let venv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/interop-venv/bin/python"
    );
    std::env::var("P11KMS_PYTHON")
        .ok()
        .or_else(|| Path::new(venv).exists().then(|| venv.to_owned()))
        .unwrap_or_else(|| "python3".into())
}

/// A TLS client for tests that speak raw HTTP to the daemon: it trusts the daemon's CA,
/// offers `alpn`, and presents the client identity in `identity` (cert.pem, key.pem),
/// or none.
pub fn client_tls(
    d: &Daemon,
    identity: Option<&std::path::Path>,
    alpn: &[u8],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(d.dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match identity {
        None => builder.with_no_client_auth(),
        Some(dir) => {
            let chain = rustls_pki_types::CertificateDer::pem_file_iter(dir.join("cert.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    cfg
}

#[path = "../support/sigv4_client.rs"]
mod sigv4_client;
/// `bytes` as lowercase hex digits (CKA_IDs as `dev token-objects` prints them, keys for
/// OpenSSL's `-K` and `hexkey:`).
pub(crate) use sigv4_client::hex;

/// The dev admin's access key, signing requests with SigV4 as an AWS SDK does
/// (`tests/support/sigv4_client.rs`, shared with the throughput bench).
pub struct Signer(sigv4_client::Signer);

impl Signer {
    pub fn from_dev_dir(dir: &Path) -> Self {
        Self(sigv4_client::Signer::from_dev_dir(dir).unwrap())
    }

    /// The headers of a signed `POST /` to `host` calling `op` with `body`, the host
    /// header first (HTTP/1.1 needs it).
    pub fn sign(&self, host: &str, op: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        let mut headers = vec![("host", host.to_owned())];
        headers.extend(self.0.sign(host, &format!("TrentService.{op}"), body));
        headers
    }

    /// The dev external key store's credential (xks-env.sh), signing as AWS KMS does.
    pub fn xks_from_dev_dir(dir: &Path) -> Self {
        Self(sigv4_client::Signer::xks_from_dev_dir(dir).unwrap())
    }

    /// The headers of an XKS `POST path` to `host` signed as AWS KMS signs it (only
    /// `host` and `x-amz-date`), the host header first.
    pub fn sign_xks(&self, host: &str, path: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        let mut headers = vec![("host", host.to_owned())];
        headers.extend(self.0.sign_xks(host, path, body));
        headers
    }
}

/// OpenSSL, run in `dir`; its stdout when it succeeds.
#[track_caller]
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// The JSON a successful CLI command printed.
#[track_caller]
pub fn json_of(o: &std::process::Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}
