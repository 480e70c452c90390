//! `access_key_secret` and the sealing, against a real SoftHSM2 token in a temp dir.

use std::sync::Arc;

use crate::dev::{softhsm_module, DevDir};
use crate::domain::AccessKeyId;
use crate::hsm::{HsmPool, Module, PoolConfig};
use crate::identity::Principal;
use crate::store::{AccessKeyRecord, AccessKeyStore, SqliteStore, Store};
use crate::vault::{SystemClock, Vault, VaultSettings};

fn vault(pool: &HsmPool, store: &Arc<SqliteStore>) -> Vault {
    let store: Arc<dyn Store> = store.clone();
    Vault::new(
        pool.clone(),
        store,
        VaultSettings {
            partition: "aws".parse().unwrap(),
            region: "us-east-1".parse().unwrap(),
            max_encryptions_per_material: 1 << 20,
            trusted_services: Vec::new(),
            clock: Arc::new(SystemClock),
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn access_key_secret_opens_what_was_issued_and_a_swapped_secret_does_not_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = DevDir::at(tmp.path());
    dev.prepare().unwrap();
    // This is the only test of the unit-test binary that loads a PKCS#11 module, and it
    // sets the variable before loading it.
    std::env::set_var("SOFTHSM2_CONF", dev.softhsm_conf());
    let module_path = softhsm_module().unwrap();
    dev.init_token_if_missing(&module_path, &Default::default())
        .unwrap();
    let config = crate::config::Config::load(&dev.config_path()).unwrap();
    let pin = config.pin.read().unwrap();
    let module = Module::load(&config.module).unwrap();
    let slot = module.find_slot(&config.token).unwrap();
    module.ensure_secret_seal_key(slot, &pin).unwrap();
    // A second start finds the same key instead of making another.
    module.ensure_secret_seal_key(slot, &pin).unwrap();
    let pool = HsmPool::start(&module, slot, pin, &PoolConfig::default()).unwrap();
    let store = Arc::new(SqliteStore::open(&tmp.path().join("t.db")).unwrap());
    let v = vault(&pool, &store);

    let alice: Principal = "arn:aws:iam::111122223333:user/Alice".parse().unwrap();
    let bob: Principal = "arn:aws:iam::111122223333:user/Bob".parse().unwrap();
    let a = v.issue_access_key(&alice).await.unwrap();
    let b = v.issue_access_key(&bob).await.unwrap();
    let got = v
        .access_key_secret(a.metadata.access_key_id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.principal, alice);
    assert_eq!(got.secret.as_str(), a.secret.expose());
    assert!(!format!("{got:?}").contains(a.secret.expose()));
    assert!(v
        .access_key_secret(AccessKeyId::generate().unwrap().as_str())
        .await
        .unwrap()
        .is_none());
    assert!(v.access_key_secret("nonsense").await.unwrap().is_none());

    // A fresh vault (empty cache) opens from the store through the HSM.
    let fresh = vault(&pool, &store);
    let got = fresh
        .access_key_secret(b.metadata.access_key_id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.principal, bob);
    assert_eq!(got.secret.as_str(), b.secret.expose());

    // Swap the sealed secrets of the two rows: neither opens.
    let ra = store
        .access_key(&a.metadata.access_key_id)
        .unwrap()
        .unwrap();
    let rb = store
        .access_key(&b.metadata.access_key_id)
        .unwrap()
        .unwrap();
    assert!(!ra
        .sealed_secret
        .windows(40)
        .any(|w| w == a.secret.expose().as_bytes()));
    store.delete_access_key(&ra.access_key_id).unwrap();
    store.delete_access_key(&rb.access_key_id).unwrap();
    let swapped = |r: &AccessKeyRecord, sealed: &[u8]| AccessKeyRecord {
        sealed_secret: sealed.to_vec(),
        ..r.clone()
    };
    store
        .insert_access_key(&swapped(&ra, &rb.sealed_secret), 2)
        .unwrap();
    store
        .insert_access_key(&swapped(&rb, &ra.sealed_secret), 2)
        .unwrap();
    let after = vault(&pool, &store);
    for id in [&ra.access_key_id, &rb.access_key_id] {
        let e = after.access_key_secret(id.as_str()).await.unwrap_err();
        assert_eq!(e.name(), "KMSInternalException");
    }

    // A delete drops the cached secret at once.
    let c = v.issue_access_key(&alice).await.unwrap();
    let id = c.metadata.access_key_id.clone();
    assert!(v.access_key_secret(id.as_str()).await.unwrap().is_some());
    store.delete_access_key(&id).unwrap();
    v.access_keys.remove(&id);
    assert!(v.access_key_secret(id.as_str()).await.unwrap().is_none());

    drop((v, fresh, after));
    pool.shutdown();
    module.finalize().unwrap();
}
