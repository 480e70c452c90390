//! Faults of the metadata store: the database held by another writer past the busy
//! timeout, and a full disk. Each answers with its AWS error name, writes nothing half
//! (no key without material, no material without a key), and service resumes by itself
//! once the fault clears. A read-only database stops the start, naming the file.

use std::process::Command;
use std::time::{Duration, Instant};

use p11kms::proto;

use crate::harness::*;

async fn key_count(c: &mut p11kms::client::KmsClient) -> usize {
    list_key_ids(c).await.len()
}

fn material_objects(dir: &TestDir) -> usize {
    dir.token_objects()
        .iter()
        .filter(|o| o["id"].as_str().is_some_and(|id| id.len() == 40))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_held_by_another_writer_times_out_cleanly_and_heals() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await.key_id;
    let blob = encrypt(&mut c, &key, b"before", &[]).await;
    let (keys, objects) = (key_count(&mut c).await, material_objects(&dir));

    let db = rusqlite::Connection::open(dir.path().join("p11kms.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let r = c.create_key(proto::CreateKeyRequest::default()).await;
    let took = started.elapsed();
    assert_kms_error(r, "DependencyTimeoutException");
    println!("store busy: CreateKey answered DependencyTimeoutException after {took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    // Keys already in memory keep working: reads need no write lock.
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"before");
    encrypt(&mut c, &key, b"while locked", &[]).await;
    db.execute_batch("COMMIT").unwrap();
    drop(db);

    // Nothing half-written: no new key, and its material was removed from the token.
    assert_eq!(key_count(&mut c).await, keys);
    assert_eq!(material_objects(&dir), objects);
    let fresh = create_key(&mut c).await.key_id;
    let b = encrypt(&mut c, &fresh, b"after", &[]).await;
    assert_eq!(decrypt(&mut c, &b, &[]).await, b"after");
}

/// A 1 MiB tmpfs, unmounted when dropped.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: std::path::PathBuf) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&path)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test mounts a 1 MiB tmpfs (it needs root, as CI has): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { path }
    }

    /// Points `dir`'s configuration at a database on this disk; returns its path.
    fn holds_the_database_of(&self, dir: &TestDir) -> std::path::PathBuf {
        let db_path = self.path.join("p11kms.db");
        dir.edit_config(|t| {
            t["store"]
                .as_table_mut()
                .unwrap()
                .insert("sqlite".into(), db_path.display().to_string().into());
        });
        db_path
    }

    /// Remounts it read-write or read-only (nothing may have a file on it open for
    /// writing).
    fn remount(&self, writable: bool) {
        let out = Command::new("mount")
            .args(["-o", if writable { "remount,rw" } else { "remount,ro" }])
            .arg(&self.path)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fills the disk; returns the filler file.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_writes_with_an_aws_name_and_service_resumes_when_space_returns() {
    let dir = TestDir::new();
    dir.prepare();
    let disk = SmallDisk::mount(dir.path().join("small"));
    let db_path = disk.holds_the_database_of(&dir);
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await.key_id;
    let blob = encrypt(&mut c, &key, b"before", &[]).await;
    let (keys, objects) = (key_count(&mut c).await, material_objects(&dir));

    let filler = disk.fill();
    let mut refused = 0;
    for _ in 0..5 {
        // A page freed inside the database may still take one small write.
        if let Err(s) = c.create_key(proto::CreateKeyRequest::default()).await {
            assert_eq!(
                p11kms::client::error_name(&s),
                Some("KMSInternalException"),
                "{s:?}"
            );
            refused += 1;
        }
    }
    assert!(refused > 0, "no write failed on a full disk");
    // Reads go on.
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"before");

    std::fs::remove_file(filler).unwrap();
    // Nothing half-written: every key listed has its material, and no material is
    // left without a key.
    let listed = key_count(&mut c).await;
    assert!(
        listed >= keys && listed - keys == 5 - refused,
        "{listed} keys"
    );
    assert_eq!(material_objects(&dir), objects + listed - keys);
    let fresh = create_key(&mut c).await.key_id;
    let b = encrypt(&mut c, &fresh, b"after", &[]).await;
    assert_eq!(decrypt(&mut c, &b, &[]).await, b"after");
    d.stop();
    let db = rusqlite::Connection::open(&db_path).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

/// A database on a file system that went read-only (as the kernel remounts one after
/// I/O errors) cannot be served: the daemon refuses to start, naming the file and the
/// cause, writes nothing, and starts with everything intact once it is writable again.
/// (A running daemon keeps its open descriptors writable: a file system with files
/// open for writing cannot be remounted read-only, and a chmod changes no open file.)
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_database_stops_the_start_with_its_name_and_service_resumes_when_writable() {
    let dir = TestDir::new();
    dir.prepare();
    let disk = SmallDisk::mount(dir.path().join("ro"));
    let db_path = disk.holds_the_database_of(&dir);
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await.key_id;
    let blob = encrypt(&mut c, &key, b"before", &[]).await;
    d.stop();

    disk.remount(false);
    let log = match Daemon::try_start(&dir) {
        Ok(d) => panic!("served from a read-only database:\n{}", d.stop()),
        Err(log) => log,
    };
    println!("read-only database: {}", log.lines().last().unwrap_or(""));
    assert!(log.contains(&db_path.display().to_string()), "{log}");
    assert!(
        log.contains("cannot be written (Read-only file system"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");

    disk.remount(true);
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"before");
    let fresh = create_key(&mut c).await.key_id;
    let b = encrypt(&mut c, &fresh, b"after", &[]).await;
    assert_eq!(decrypt(&mut c, &b, &[]).await, b"after");
    d.stop();
}
