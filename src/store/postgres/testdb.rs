//! A throw-away PostgreSQL cluster for tests: initdb in a temporary directory, as the
//! `postgres` user when running as root (initdb refuses root), on a free localhost
//! port, stopped and removed when dropped.

use std::path::PathBuf;
use std::process::Command;

/// A running cluster.
pub(crate) struct TestDb {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
}

/// Where the server programs are: Debian's versioned directory, else the PATH.
fn bin(name: &str) -> PathBuf {
    for v in ["17", "16", "15", "14", "13"] {
        let p = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin/{name}"));
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// `cmd` as the `postgres` user when this process is root.
fn as_owner(program: PathBuf) -> Command {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command) {
    let out = cmd
        .output()
        .expect("a PostgreSQL program (apt-get install postgresql)");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestDb {
    /// Starts a new cluster with a database `p11kms` owned by the trusted user `p11kms`.
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // The server runs as postgres: it must own the directory.
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status();
        let mut initdb = as_owner(bin("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "p11kms",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run(initdb);
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let db = Self { dir, port };
        db.resume();
        let mut create = Command::new(bin("createdb"));
        create.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "p11kms",
            "p11kms",
        ]);
        run(create);
        db
    }

    /// Starts the server (again).
    pub(crate) fn resume(&self) {
        let mut start = as_owner(bin("pg_ctl"));
        start
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args([
                "-w",
                "-o",
                &format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                    self.port,
                    self.dir.path().display()
                ),
                "start",
            ]);
        run(start);
    }

    /// Requires TLS on every TCP connection, with `pki`'s server certificate and `cert`
    /// authentication (a client certificate from `pki`'s CA whose CN is the user).
    /// Restarts the server.
    pub(crate) fn require_tls(&self, pki: &TestPki) {
        use std::os::unix::fs::PermissionsExt as _;
        let data = self.dir.path().join("data");
        let ca = std::fs::read_to_string(&pki.ca).unwrap();
        for (name, text) in [
            ("server.crt", pki.server_cert.as_str()),
            ("server.key", pki.server_key.as_str()),
            ("client-ca.crt", ca.as_str()),
        ] {
            let p = data.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            // The server runs as postgres and refuses a key it does not own.
            let _ = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&p)
                .status();
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'client-ca.crt'\n",
        );
        std::fs::write(&conf, text).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 cert\n",
        )
        .unwrap();
        self.pause();
        self.resume();
    }

    /// Stops the server (fast: open connections are ended).
    pub(crate) fn pause(&self) {
        let mut stop = as_owner(bin("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-m", "fast", "stop"]);
        run(stop);
    }

    /// A client configuration for the cluster's `p11kms` database over its Unix socket.
    pub(crate) fn socket_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(self.dir.path())
            .port(self.port)
            .user("p11kms")
            .dbname("p11kms");
        c
    }

    /// A client configuration for the cluster's `p11kms` database.
    pub(crate) fn config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port)
            .user("p11kms")
            .dbname("p11kms");
        c
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate for the user
/// `p11kms`, the client's side written as PEM files.
pub(crate) struct TestPki {
    /// The CA certificate file.
    pub(crate) ca: PathBuf,
    server_cert: String,
    server_key: String,
    /// The client certificate file.
    pub(crate) client_cert: PathBuf,
    /// The client key file.
    pub(crate) client_key: PathBuf,
}

impl TestPki {
    /// Makes them, writing `NAME-ca.pem`, `NAME-client.pem` and `NAME-client.key` in `dir`.
    pub(crate) fn new(dir: &std::path::Path, name: &str) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} database CA"));
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), &ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client.distinguished_name.push(DnType::CommonName, "p11kms");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();
        let write = |file: &str, text: String| {
            let p = dir.join(format!("{name}-{file}"));
            std::fs::write(&p, text).unwrap();
            p
        };
        Self {
            ca: write("ca.pem", ca_cert.pem()),
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
            client_cert: write("client.pem", client_cert.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let mut stop = as_owner(bin("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = stop.output();
    }
}
