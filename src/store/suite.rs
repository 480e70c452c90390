//! The conformance suite every Store implementation must pass, written once.

use std::time::{Duration, UNIX_EPOCH};

use super::{KeyRecord, MaterialRecord, Store, StoreError};
use crate::domain::{AccountId, KeyId, KeySpec, KeyState, KeyUsage, MaterialVersion, Origin};

fn record(account: &str) -> KeyRecord {
    let created = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    KeyRecord {
        key_id: KeyId::generate(),
        account: account.parse().unwrap(),
        description: "test key ✓".into(),
        creation_date: created,
        key_usage: KeyUsage::EncryptDecrypt,
        key_spec: KeySpec::SymmetricDefault,
        origin: Origin::AwsKms,
        key_state: KeyState::Enabled,
        deletion_date: None,
        current_version: MaterialVersion(1),
        versions: vec![MaterialRecord {
            version: MaterialVersion(1),
            created,
            reserved_invocations: 65536,
        }],
    }
}

/// Inserts a few keys and returns their ids.
pub(super) fn seed(store: &dyn Store) -> Vec<KeyId> {
    (0..3)
        .map(|_| {
            let r = record("999988887777");
            store.insert_key(&r).unwrap();
            r.key_id
        })
        .collect()
}

/// Runs every check against `store`.
pub(super) fn run(store: &dyn Store) {
    round_trip(store);
    duplicate_insert_is_refused(store);
    listing_is_per_account_ordered_and_paged(store);
    materials_add_and_reserve(store);
}

fn round_trip(store: &dyn Store) {
    let r = record("111122223333");
    store.insert_key(&r).unwrap();
    assert_eq!(store.get_key(&r.key_id).unwrap(), Some(r));
    assert_eq!(store.get_key(&KeyId::generate()).unwrap(), None);
}

fn duplicate_insert_is_refused(store: &dyn Store) {
    let r = record("111122223333");
    store.insert_key(&r).unwrap();
    assert!(matches!(
        store.insert_key(&r),
        Err(StoreError::AlreadyExists(_))
    ));
}

fn listing_is_per_account_ordered_and_paged(store: &dyn Store) {
    let acct: AccountId = "222233334444".parse().unwrap();
    let mut ids: Vec<KeyId> = (0..7)
        .map(|_| {
            let r = record(acct.as_str());
            store.insert_key(&r).unwrap();
            r.key_id
        })
        .collect();
    store.insert_key(&record("555566667777")).unwrap();
    ids.sort_by_key(|k| k.to_string());
    let page1 = store.list_keys(&acct, None, 3).unwrap();
    assert_eq!(page1, ids[..3]);
    let page2 = store.list_keys(&acct, page1.last(), 3).unwrap();
    assert_eq!(page2, ids[3..6]);
    let page3 = store.list_keys(&acct, page2.last(), 3).unwrap();
    assert_eq!(page3, ids[6..]);
}

fn materials_add_and_reserve(store: &dyn Store) {
    let r = record("111122223333");
    store.insert_key(&r).unwrap();
    store
        .reserve_invocations(&r.key_id, MaterialVersion(1), 131072)
        .unwrap();
    // Never lowered.
    store
        .reserve_invocations(&r.key_id, MaterialVersion(1), 10)
        .unwrap();
    store
        .add_material(
            &r.key_id,
            &MaterialRecord {
                version: MaterialVersion(2),
                created: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                reserved_invocations: 0,
            },
        )
        .unwrap();
    let got = store.get_key(&r.key_id).unwrap().unwrap();
    assert_eq!(got.current_version, MaterialVersion(2));
    assert_eq!(got.versions.len(), 2);
    assert_eq!(got.versions[0].reserved_invocations, 131072);
    assert!(matches!(
        store.reserve_invocations(&r.key_id, MaterialVersion(9), 1),
        Err(StoreError::Missing(_))
    ));
    assert!(matches!(
        store.add_material(&KeyId::generate(), &got.versions[0]),
        Err(StoreError::Sqlite(_)) | Err(StoreError::Missing(_))
    ));
}
