//! The daemon on PostgreSQL (`[store] postgres`): a throw-away cluster, the daemon's
//! calls over the wire, and everything still there after a restart, read back from the
//! database.

use p11kms::proto;

use crate::harness::*;

#[path = "../../src/store/postgres/testdb.rs"]
#[allow(dead_code)]
mod testdb;

/// A dev directory whose daemon keeps its metadata in `db`.
fn on_postgres(db: &testdb::TestDb) -> TestDir {
    let dir = TestDir::new();
    dir.prepare();
    dir.edit_config(|t| {
        let mut store = toml::Table::new();
        store.insert(
            "postgres".into(),
            format!("postgresql://p11kms@127.0.0.1:{}/p11kms", db.port).into(),
        );
        store.insert("pool_size".into(), 8.into());
        t.insert("store".into(), store.into());
    });
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
