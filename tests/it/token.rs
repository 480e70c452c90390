//! Key material lives in the token as non-extractable, sensitive token objects.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn key_material_is_a_sensitive_non_extractable_token_object() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let objects = dir.token_objects();
    let id = format!("{}00000001", key.key_id.replace('-', ""));
    let o = objects
        .iter()
        .find(|o| o["id"] == id.as_str())
        .expect("material found by CKA_ID");
    assert_eq!(o["label"], format!("p11kms/{}/v1", key.key_id).as_str());
    assert_eq!(o["token"], true);
    assert_eq!(o["sensitive"], true);
    assert_eq!(o["extractable"], false);
    assert_eq!(o["private"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_checkpoint_key_is_a_sensitive_non_extractable_token_object() {
    let dir = TestDir::new();
    Daemon::start(&dir).stop();
    let objects = dir.token_objects();
    let hex = hex(b"p11kms-audit-checkpoint-v1");
    let pair: Vec<_> = objects.iter().filter(|o| o["id"] == hex.as_str()).collect();
    assert_eq!(pair.len(), 2, "{objects:?}");
    let public = pair.iter().find(|o| o["class"] == "public-key");
    assert!(public.is_some_and(|p| p["private"] == false), "{objects:?}");
    let keys: Vec<_> = pair
        .iter()
        .filter(|o| o["class"] == "private-key")
        .collect();
    assert_eq!(keys.len(), 1, "{objects:?}");
    let o = keys[0];
    assert_eq!(o["label"], "p11kms/audit-checkpoint");
    assert_eq!(o["token"], true);
    assert_eq!(o["sensitive"], true);
    assert_eq!(o["extractable"], false);
    assert_eq!(o["private"], true);
    // A restart finds the same key instead of making another.
    Daemon::start(&dir).stop();
    assert_eq!(dir.token_objects(), objects);
}

/// A path made unreadable to this process, put back as it was when dropped.
enum Unreadable {
    /// `chmod 000`; the mode it had.
    Chmod(PathBuf, u32),
    /// Where permissions do not bind (root reads anything): moved aside to the second
    /// path (outside the token directory, where SoftHSM2 would find it again), with a
    /// file in its place.
    Replaced(PathBuf, PathBuf),
}

impl Unreadable {
    fn make(path: &Path, aside: PathBuf) -> Self {
        let mode = fs::metadata(path).unwrap().permissions().mode();
        fs::set_permissions(path, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read_dir(path).is_err() {
            return Self::Chmod(path.to_owned(), mode);
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        fs::rename(path, &aside).unwrap();
        fs::write(path, b"not a directory").unwrap();
        Self::Replaced(path.to_owned(), aside)
    }
}

impl Drop for Unreadable {
    fn drop(&mut self) {
        match self {
            Self::Chmod(path, mode) => {
                fs::set_permissions(&*path, fs::Permissions::from_mode(*mode)).unwrap();
            }
            Self::Replaced(path, aside) => {
                fs::remove_file(&*path).unwrap();
                fs::rename(&*aside, &*path).unwrap();
            }
        }
    }
}

/// `p11kms serve --dev` on `dir`, which must refuse to start: its exit status and
/// stderr. A daemon that starts instead is stopped after 60 s and fails the test.
fn serve_dev_refused(dir: &TestDir) -> (std::process::ExitStatus, String) {
    let log = dir.path().join("refused.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_p11kms"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--aws-api-listen", "127.0.0.1:0"])
        .args(["--xks-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("P11KMS_DEV_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the daemon started instead of refusing:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, fs::read_to_string(&log).unwrap())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Dev mode never forks its token: when SoftHSM2 cannot read the token (or the token
/// directory), `serve --dev` stops with a message naming what it could not read,
/// instead of initialising a second, empty token with the same label and serving from
/// it. Once the token is readable again, the daemon serves the same keys.
#[tokio::test(flavor = "multi_thread")]
async fn dev_mode_refuses_to_start_rather_than_initialise_a_second_token() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let blob = encrypt(&mut c, &key.key_id, b"before", &[]).await;
    d.stop();
    let tokens = dir.dev().tokens_dir();
    let before = entries(&tokens);
    assert_eq!(before.len(), 1, "one token: {before:?}");
    let token = tokens.join(&before[0]);

    {
        let _unreadable = Unreadable::make(&token, dir.path().join("token-aside"));
        let (status, log) = serve_dev_refused(&dir);
        assert!(!status.success(), "{log}");
        assert!(
            log.contains("will not initialise a second token")
                && log.contains(&token.display().to_string()),
            "{log}"
        );
        assert!(!log.contains("initialised the dev token"), "{log}");
        assert_eq!(entries(&tokens), before, "no second token");
    }
    {
        let _unreadable = Unreadable::make(&tokens, dir.path().join("tokens-aside"));
        let (status, log) = serve_dev_refused(&dir);
        assert!(!status.success(), "{log}");
        assert!(log.contains(&tokens.display().to_string()), "{log}");
        assert!(!log.contains("initialised the dev token"), "{log}");
    }
    assert_eq!(entries(&tokens), before, "no second token");

    // The token is readable again: the same token, the same keys.
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"before");
    assert_eq!(entries(&tokens), before);
}
