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

    /// Stops the server (fast: open connections are ended).
    pub(crate) fn pause(&self) {
        let mut stop = as_owner(bin("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-m", "fast", "stop"]);
        run(stop);
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

impl Drop for TestDb {
    fn drop(&mut self) {
        let mut stop = as_owner(bin("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = stop.output();
    }
}
