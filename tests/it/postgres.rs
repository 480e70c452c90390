//! The daemon on PostgreSQL (`[store] postgres`): a throw-away cluster, the daemon's
//! calls over the wire, and everything still there after a restart, read back from the
//! database.

use p11kms::proto;

use crate::harness::*;

use crate::testdb;

/// Points `dir`'s store at `db`.
pub(crate) fn use_db(dir: &TestDir, db: &testdb::TestDb) {
    dir.edit_config(|t| {
        let mut store = toml::Table::new();
        store.insert(
            "postgres".into(),
            format!("postgresql://p11kms@127.0.0.1:{}/p11kms", db.port).into(),
        );
        store.insert("pool_size".into(), 8.into());
        t.insert("store".into(), store.into());
    });
}

/// A dev directory whose daemon keeps its metadata in `db`.
fn on_postgres(db: &testdb::TestDb) -> TestDir {
    let dir = TestDir::new();
    dir.prepare();
    use_db(&dir, db);
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_serves_from_postgresql_and_keeps_everything_across_a_restart() {
    let db = testdb::TestDb::start();
    let dir = on_postgres(&db);
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await.key_id;
    c.create_alias(proto::CreateAliasRequest {
        alias_name: "alias/on-postgres".into(),
        target_key_id: key.clone(),
    })
    .await
    .unwrap();
    let grant = c
        .create_grant(proto::CreateGrantRequest {
            key_id: key.clone(),
            grantee_principal: role("111122223333", "pg"),
            operations: vec!["Decrypt".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .grant_id;
    let blob = encrypt(&mut c, "alias/on-postgres", b"kept in postgres", &[]).await;
    c.rotate_key_on_demand(proto::RotateKeyOnDemandRequest {
        key_id: key.clone(),
    })
    .await
    .unwrap();
    d.stop();
    // No SQLite file was made: the metadata is in the database.
    assert!(!dir.path().join("p11kms.db").exists());

    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    assert_eq!(list_key_ids(&mut c).await, vec![key.clone()]);
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"kept in postgres");
    let m = describe(&mut c, "alias/on-postgres").await;
    assert_eq!(m.key_id, key);
    let rotations = c
        .list_key_rotations(proto::ListKeyRotationsRequest {
            key_id: key.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rotations;
    assert_eq!(rotations.len(), 1);
    let grants = c
        .list_grants(proto::ListGrantsRequest {
            key_id: key.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert_eq!(
        grants
            .iter()
            .map(|g| g.grant_id.clone())
            .collect::<Vec<_>>(),
        vec![grant]
    );
    d.stop();
}

/// `p11kms store copy` moves a SQLite store into PostgreSQL whole: after it, the daemon
/// on PostgreSQL (same token) serves every key, version, alias, grant, tag, identity
/// policy, rotation schedule and deletion schedule as before, and decrypts what the
/// daemon on SQLite encrypted. A second copy into the now full database is refused.
#[tokio::test(flavor = "multi_thread")]
async fn store_copy_moves_a_sqlite_store_to_postgresql_whole() {
    let db = testdb::TestDb::start();
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let (kept, doomed) = (
        create_key(&mut c).await.key_id,
        create_key(&mut c).await.key_id,
    );
    let blob = encrypt(&mut c, &kept, b"moved to postgres", &[]).await;
    c.rotate_key_on_demand(proto::RotateKeyOnDemandRequest {
        key_id: kept.clone(),
    })
    .await
    .unwrap();
    let newer = encrypt(&mut c, &kept, b"after the rotation", &[]).await;
    c.enable_key_rotation(proto::EnableKeyRotationRequest {
        key_id: kept.clone(),
        rotation_period_in_days: Some(180),
    })
    .await
    .unwrap();
    c.create_alias(proto::CreateAliasRequest {
        alias_name: "alias/moved".into(),
        target_key_id: kept.clone(),
    })
    .await
    .unwrap();
    c.tag_resource(proto::TagResourceRequest {
        key_id: kept.clone(),
        tags: vec![proto::Tag {
            tag_key: "team".into(),
            tag_value: "payments".into(),
        }],
    })
    .await
    .unwrap();
    let grant = c
        .create_grant(proto::CreateGrantRequest {
            key_id: kept.clone(),
            grantee_principal: role("111122223333", "mover"),
            operations: vec!["Decrypt".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .grant_id;
    put_identity_policy(
        &mut c,
        &role("111122223333", "mover"),
        "read",
        allow(&["kms:DescribeKey"]),
    )
    .await;
    c.schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
        key_id: doomed.clone(),
        pending_window_in_days: Some(9),
    })
    .await
    .unwrap();
    d.stop();

    let url = format!("postgres:postgresql://p11kms@127.0.0.1:{}/p11kms", db.port);
    let from = format!("sqlite:{}", dir.path().join("p11kms.db").display());
    let out = run_cli(
        dir.path(),
        &["store", "copy", "--from", &from, "--to", &url],
        b"",
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("keys: 2 rows") && said.contains("key_materials: 3 rows"),
        "{said}"
    );
    assert!(said.contains("both sides hold the same rows"), "{said}");

    use_db(&dir, &db);
    std::fs::rename(
        dir.path().join("p11kms.db"),
        dir.path().join("moved-away.db"),
    )
    .unwrap();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let mut keys = list_key_ids(&mut c).await;
    keys.sort();
    let mut expected = vec![kept.clone(), doomed.clone()];
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"moved to postgres");
    assert_eq!(decrypt(&mut c, &newer, &[]).await, b"after the rotation");
    assert_eq!(describe(&mut c, "alias/moved").await.key_id, kept);
    assert_eq!(describe(&mut c, &doomed).await.key_state, "PendingDeletion");
    let rotation = c
        .get_key_rotation_status(proto::GetKeyRotationStatusRequest {
            key_id: kept.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rotation.key_rotation_enabled);
    assert_eq!(rotation.rotation_period_in_days, Some(180));
    let tags = c
        .list_resource_tags(proto::ListResourceTagsRequest {
            key_id: kept.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tags;
    assert_eq!(
        tags.iter()
            .map(|t| (t.tag_key.as_str(), t.tag_value.as_str()))
            .collect::<Vec<_>>(),
        vec![("team", "payments")]
    );
    let grants = c
        .list_grants(proto::ListGrantsRequest {
            key_id: kept.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].grant_id, grant);
    // The mover's identity policy came along: it may describe, and nothing else.
    let mut mover = d.client_as(&role("111122223333", "mover")).await;
    assert_eq!(describe(&mut mover, &kept).await.key_id, kept);
    d.stop();

    let again = run_cli(
        dir.path(),
        &[
            "store",
            "copy",
            "--from",
            &format!("sqlite:{}", dir.path().join("moved-away.db").display()),
            "--to",
            &url,
        ],
        b"",
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("copy into an empty one"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// PostgreSQL restarted under load: calls that need it fail with a name while it is
/// down (none succeeds without its write), the daemon reconnects by itself, and every
/// key whose creation was acknowledged is there afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_rides_out_a_database_restart() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let db = testdb::TestDb::start();
    let dir = on_postgres(&db);
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await.key_id;
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (mut c, stop, created, failures, key) = (
            c.clone(),
            Arc::clone(&stop),
            Arc::clone(&created),
            Arc::clone(&failures),
            key.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.create_key(proto::CreateKeyRequest::default()).await {
                    Ok(r) => created
                        .lock()
                        .unwrap()
                        .push(r.into_inner().key_metadata.unwrap().key_id),
                    Err(s) => failures
                        .lock()
                        .unwrap()
                        .push(p11kms::client::error_name(&s).unwrap_or("none").to_owned()),
                }
                if let Err(s) = c.encrypt(encrypt_req(&key, b"through it", &[])).await {
                    failures
                        .lock()
                        .unwrap()
                        .push(p11kms::client::error_name(&s).unwrap_or("none").to_owned());
                }
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    db.pause();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let during = created.lock().unwrap().len();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        created.lock().unwrap().len(),
        during,
        "a CreateKey succeeded while the database was down"
    );
    let back = std::time::Instant::now();
    db.resume();
    eventually("a CreateKey succeeds again", || async {
        created.lock().unwrap().len() > during
    })
    .await;
    println!(
        "database restart: a CreateKey succeeds {:?} after the database is started again",
        back.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(!failures.is_empty(), "the outage was not seen");
    for f in &failures {
        assert!(
            ["KMSInternalException", "DependencyTimeoutException"].contains(&f.as_str()),
            "{f} in {failures:?}"
        );
    }
    let listed = list_key_ids(&mut c).await;
    for k in created.lock().unwrap().iter() {
        assert!(
            listed.contains(k),
            "{k}, whose creation was acknowledged, is missing"
        );
    }
    d.stop();
}

/// Points `dir`'s store at `db` over TLS with `pki`'s CA and client certificate.
fn use_db_over_tls(dir: &TestDir, db: &testdb::TestDb, pki: &testdb::TestPki) {
    use_db(dir, db);
    dir.edit_config(|t| {
        let store = t.get_mut("store").unwrap().as_table_mut().unwrap();
        for (field, path) in [
            ("tls_ca_file", &pki.ca),
            ("tls_cert_file", &pki.client_cert),
            ("tls_key_file", &pki.client_key),
        ] {
            store.insert(field.into(), path.to_str().unwrap().into());
        }
    });
}

/// A database that takes only TLS connections with a client certificate (`hostssl …
/// cert`): the daemon with the CA and its certificate serves from it and keeps its
/// keys across a restart, and `store copy` moves a SQLite store into it. A daemon
/// without TLS is refused by the database, and one that trusts another CA refuses the
/// database's certificate; each says so and does not start.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_reaches_postgresql_over_verified_tls_with_a_client_certificate() {
    let db = testdb::TestDb::start();
    let dir = TestDir::new();
    dir.prepare();
    // A key made on SQLite first, for `store copy` over TLS.
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await.key_id;
    let blob = encrypt(&mut c, &key, b"over tls", &[]).await;
    drop(c);
    d.stop();

    let pki = testdb::TestPki::new(dir.path(), "good");
    db.require_tls(&pki);
    let url = format!("postgres:postgresql://p11kms@127.0.0.1:{}/p11kms", db.port);
    let from = format!("sqlite:{}", dir.path().join("p11kms.db").display());
    let copy = |extra: &[&str]| {
        let mut args = vec!["store", "copy", "--from", &from, "--to", &url];
        args.extend_from_slice(extra);
        run_cli(dir.path(), &args, b"")
    };
    // Without TLS the database refuses the connection, and nothing is copied.
    let plain = copy(&[]);
    assert!(!plain.status.success());
    let said = String::from_utf8_lossy(&plain.stderr);
    println!("store copy without TLS: {}", said.trim());
    assert!(
        said.contains("pg_hba.conf") || said.contains("SSL"),
        "{said}"
    );
    let (ca, cert, key_file) = (
        pki.ca.to_str().unwrap(),
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
    );
    let out = copy(&[
        "--tls-ca-file",
        ca,
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key_file,
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    use_db_over_tls(&dir, &db, &pki);
    std::fs::rename(
        dir.path().join("p11kms.db"),
        dir.path().join("moved-away.db"),
    )
    .unwrap();
    for _ in 0..2 {
        let d = Daemon::start(&dir);
        let mut c = d.admin().await;
        assert_eq!(decrypt(&mut c, &blob, &[]).await, b"over tls");
        create_key(&mut c).await;
        drop(c);
        d.stop();
    }

    // The daemon without TLS: refused by the database.
    use_db(&dir, &db);
    let refused = Daemon::try_start(&dir).err().expect("started without TLS");
    println!(
        "without TLS: {}",
        refused.lines().last().unwrap_or_default()
    );
    assert!(
        refused.contains("pg_hba.conf") || refused.contains("SSL"),
        "{refused}"
    );
    // The daemon trusting another CA: it refuses the database's certificate.
    let other = testdb::TestPki::new(dir.path(), "other");
    use_db_over_tls(&dir, &db, &other);
    let refused = Daemon::try_start(&dir)
        .err()
        .expect("started with a foreign CA");
    println!("another CA: {}", refused.lines().last().unwrap_or_default());
    assert!(refused.contains("UnknownIssuer"), "{refused}");
}
