//! The conformance suite every Store implementation must pass, written once.

use std::time::{Duration, UNIX_EPOCH};

use super::{
    AccessKeyRecord, AliasRecord, GrantRecord, ImportedMaterial, KeyRecord, MaterialRecord,
    RotationSchedule, Store, StoreError,
};
use crate::domain::{
    AccessKeyId, AccessKeyStatus, AccountId, ExpirationModel, KeyId, KeySpec, KeyState, KeyUsage,
    MaterialVersion, Origin, RotationType,
};

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
            rotation: None,
        }],
        policy: None,
        rotation: None,
        imported: None,
        import_check: None,
        purge_since: None,
    }
}

/// Inserts a few keys and returns their ids.
pub(crate) fn seed(store: &dyn Store) -> Vec<KeyId> {
    (0..3)
        .map(|_| {
            let r = record("999988887777");
            store.insert_key(&r).unwrap();
            r.key_id
        })
        .collect()
}

/// Runs every check against `store`.
pub(crate) fn run(store: &dyn Store) {
    round_trip(store);
    duplicate_insert_is_refused(store);
    listing_is_per_account_ordered_and_paged(store);
    materials_add_and_reserve(store);
    key_policies(store);
    identity_policies_and_tags(store);
    grants(store);
    aliases(store);
    descriptions(store);
    key_tags(store);
    deletion(store);
    imported_material(store);
    access_keys(store);
    store.heartbeat(std::time::SystemTime::now()).unwrap();
    store.heartbeat(std::time::SystemTime::now()).unwrap();
}

fn deletion(store: &dyn Store) {
    let r = record("555555555555");
    let account = r.account.clone();
    store.insert_key(&r).unwrap();
    let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let state = |store: &dyn Store| store.get_key(&r.key_id).unwrap().map(|k| k.key_state);
    assert_eq!(store.count_keys(&account).unwrap(), 1);
    assert!(store.set_key_enabled(&r.key_id, false).unwrap());
    assert!(store.schedule_deletion(&r.key_id, t(2_000)).unwrap());
    assert!(
        !store.schedule_deletion(&r.key_id, t(3_000)).unwrap(),
        "already pending"
    );
    assert!(
        !store.set_key_enabled(&r.key_id, true).unwrap(),
        "pending deletion is kept"
    );
    assert_eq!(state(store), Some(KeyState::PendingDeletion));
    assert!(store.keys_due_for_deletion(t(1_999)).unwrap().is_empty());
    assert_eq!(store.keys_due_for_deletion(t(2_000)).unwrap(), [r.key_id]);
    // Cancelled: Disabled, no date.
    assert!(store.cancel_deletion(&r.key_id).unwrap());
    assert!(!store.cancel_deletion(&r.key_id).unwrap());
    let k = store.get_key(&r.key_id).unwrap().unwrap();
    assert_eq!((k.key_state, k.deletion_date), (KeyState::Disabled, None));
    // Scheduled again; destruction begins only when due, and cannot be cancelled then.
    assert!(store.schedule_deletion(&r.key_id, t(2_000)).unwrap());
    assert!(!store.begin_destruction(&r.key_id, t(1_999)).unwrap());
    assert!(store.begin_destruction(&r.key_id, t(2_000)).unwrap());
    assert!(!store.cancel_deletion(&r.key_id).unwrap());
    assert_eq!(
        store.keys_due_for_deletion(t(0)).unwrap(),
        [r.key_id],
        "a begun destruction is due whatever the time"
    );
    assert_eq!(store.deleted_key(&r.key_id).unwrap(), None);
    store.finish_destruction(&r.key_id, t(2_001)).unwrap();
    assert_eq!(state(store), None);
    assert_eq!(store.deleted_key(&r.key_id).unwrap(), Some(account.clone()));
    assert_eq!(store.count_keys(&account).unwrap(), 0);
    assert!(store.keys_due_for_deletion(t(9_999)).unwrap().is_empty());
    assert!(matches!(
        store.finish_destruction(&r.key_id, t(2_002)),
        Err(StoreError::Missing(_))
    ));
}

fn imported_material(store: &dyn Store) {
    const V1: MaterialVersion = MaterialVersion(1);
    let t = |s: u64| UNIX_EPOCH + Duration::from_millis(s * 1000 + 7);
    let get = |id: &KeyId| store.get_key(id).unwrap().unwrap();
    // An AWS_KMS key takes no imported material.
    let own = record("444444444444");
    store.insert_key(&own).unwrap();
    let expires = ImportedMaterial {
        expiration_model: ExpirationModel::Expires,
        valid_to: Some(t(5_000)),
    };
    assert!(!store
        .set_imported(&own.key_id, V1, &expires, None, b"c")
        .unwrap());
    assert!(!store.clear_imported(&own.key_id, t(1)).unwrap());

    let mut r = record("444444444444");
    r.origin = Origin::External;
    r.key_state = KeyState::PendingImport;
    store.insert_key(&r).unwrap();
    assert_eq!(get(&r.key_id), r, "inserted as made");
    // A first import that expects a check the key does not have does not land.
    assert!(!store
        .set_imported(&r.key_id, V1, &expires, Some(b"x"), b"c1")
        .unwrap());
    assert!(store
        .set_imported(&r.key_id, V1, &expires, None, b"c1")
        .unwrap());
    let k = get(&r.key_id);
    assert_eq!(k.key_state, KeyState::Enabled);
    assert_eq!(k.imported, Some(expires));
    assert_eq!(k.import_check.as_deref(), Some(&b"c1"[..]));
    // A second "first" import (racing the first) is refused; a re-import keeps the check.
    assert!(!store
        .set_imported(&r.key_id, V1, &expires, None, b"c2")
        .unwrap());
    let forever = ImportedMaterial {
        expiration_model: ExpirationModel::DoesNotExpire,
        valid_to: None,
    };
    assert!(store.set_key_enabled(&r.key_id, false).unwrap());
    assert!(store
        .set_imported(&r.key_id, V1, &forever, Some(b"c1"), b"c2")
        .unwrap());
    let k = get(&r.key_id);
    assert_eq!(
        (k.key_state, k.imported, k.import_check.as_deref()),
        (KeyState::Disabled, Some(forever), Some(&b"c1"[..])),
        "a disabled key stays disabled, and the first check stays"
    );
    assert!(store
        .keys_with_expired_material(t(9_999))
        .unwrap()
        .is_empty());
    assert!(store.set_key_enabled(&r.key_id, true).unwrap());
    assert!(store
        .set_imported(&r.key_id, V1, &expires, Some(b"c1"), b"c1")
        .unwrap());
    assert!(store
        .keys_with_expired_material(t(4_999))
        .unwrap()
        .is_empty());
    assert_eq!(
        store.keys_with_expired_material(t(5_000)).unwrap(),
        [r.key_id]
    );
    // Expired or deleted: PendingImport, terms gone, check kept, the destruction pending
    // (the sweep finds the key whatever the time) until it is done; nothing to enable.
    assert!(store.clear_imported(&r.key_id, t(6_000)).unwrap());
    let k = get(&r.key_id);
    assert_eq!(
        (
            k.key_state,
            k.imported,
            k.import_check.as_deref(),
            k.purge_since
        ),
        (
            KeyState::PendingImport,
            None,
            Some(&b"c1"[..]),
            Some(t(6_000))
        )
    );
    assert_eq!(store.keys_with_expired_material(t(0)).unwrap(), [r.key_id]);
    store.material_purged(&r.key_id).unwrap();
    assert_eq!(get(&r.key_id).purge_since, None);
    assert!(store
        .keys_with_expired_material(t(9_999))
        .unwrap()
        .is_empty());
    assert!(!store.set_key_enabled(&r.key_id, true).unwrap());
    // Scheduled for deletion from PendingImport, and cancelled back to it.
    assert!(store.schedule_deletion(&r.key_id, t(7_000)).unwrap());
    assert!(!store
        .set_imported(&r.key_id, V1, &expires, Some(b"c1"), b"c1")
        .unwrap());
    assert!(store.cancel_deletion(&r.key_id).unwrap());
    assert_eq!(get(&r.key_id).key_state, KeyState::PendingImport);
    // With material, a cancelled deletion leaves the key Disabled as any other.
    assert!(store
        .set_imported(&r.key_id, V1, &forever, Some(b"c1"), b"c1")
        .unwrap());
    assert!(store.schedule_deletion(&r.key_id, t(7_000)).unwrap());
    assert!(store.cancel_deletion(&r.key_id).unwrap());
    assert_eq!(get(&r.key_id).key_state, KeyState::Disabled);
}

fn key_tags(store: &dyn Store) {
    let r = record("444444444444");
    store.insert_key(&r).unwrap();
    let t = |k: &str, v: &str| (k.to_string(), v.to_string());
    store
        .tag_key(&r.key_id, &[t("b", "2"), t("a", "1")], 3)
        .unwrap();
    store.tag_key(&r.key_id, &[t("a", "one")], 3).unwrap();
    assert_eq!(
        store.key_tags(&r.key_id).unwrap(),
        [t("a", "one"), t("b", "2")]
    );
    // Over the limit: nothing of the request is kept.
    assert!(matches!(
        store.tag_key(&r.key_id, &[t("c", "3"), t("d", "4")], 3),
        Err(StoreError::LimitExceeded(_))
    ));
    assert_eq!(store.key_tags(&r.key_id).unwrap().len(), 2);
    store
        .untag_key(&r.key_id, &["a".into(), "zz".into()])
        .unwrap();
    assert_eq!(store.key_tags(&r.key_id).unwrap(), [t("b", "2")]);
}

fn descriptions(store: &dyn Store) {
    let r = record("333333333333");
    store.insert_key(&r).unwrap();
    store.set_key_description(&r.key_id, "new ✓").unwrap();
    assert_eq!(
        store.get_key(&r.key_id).unwrap().unwrap().description,
        "new ✓"
    );
    assert!(matches!(
        store.set_key_description(&KeyId::generate(), "x"),
        Err(StoreError::Missing(_))
    ));
}

fn aliases(store: &dyn Store) {
    let a = record("111111111111");
    let b = record("111111111111");
    store.insert_key(&a).unwrap();
    store.insert_key(&b).unwrap();
    let account: AccountId = "111111111111".parse().unwrap();
    let other: AccountId = "222222222222".parse().unwrap();
    let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    let alias = |name: &str, key: KeyId| AliasRecord {
        account: account.clone(),
        name: name.into(),
        key_id: key,
        created: at,
        updated: at,
    };
    for (n, k) in [
        ("alias/b", a.key_id),
        ("alias/a", a.key_id),
        ("alias/c", b.key_id),
    ] {
        store.insert_alias(&alias(n, k), 2).unwrap();
    }
    assert!(matches!(
        store.insert_alias(&alias("alias/a", b.key_id), 2),
        Err(StoreError::AlreadyExists(_))
    ));
    // Key a has its 2 aliases already.
    assert!(matches!(
        store.insert_alias(&alias("alias/d", a.key_id), 2),
        Err(StoreError::LimitExceeded(_))
    ));
    assert_eq!(
        store.alias(&account, "alias/a").unwrap(),
        Some(alias("alias/a", a.key_id))
    );
    assert_eq!(store.alias(&other, "alias/a").unwrap(), None);
    let names = |v: Vec<AliasRecord>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_aliases(&account, None, None, 10).unwrap()),
        ["alias/a", "alias/b", "alias/c"]
    );
    assert_eq!(
        names(
            store
                .list_aliases(&account, Some(&a.key_id), None, 10)
                .unwrap()
        ),
        ["alias/a", "alias/b"]
    );
    assert_eq!(
        names(
            store
                .list_aliases(&account, None, Some("alias/a"), 1)
                .unwrap()
        ),
        ["alias/b"]
    );
    let later = at + Duration::from_secs(5);
    // Only from the key it points at.
    assert!(matches!(
        store.update_alias(&account, "alias/a", &b.key_id, &b.key_id, later, 2),
        Err(StoreError::Missing(_))
    ));
    store
        .update_alias(&account, "alias/a", &a.key_id, &b.key_id, later, 2)
        .unwrap();
    // b now has alias/a and alias/c: no room for alias/b.
    assert!(matches!(
        store.update_alias(&account, "alias/b", &a.key_id, &b.key_id, later, 2),
        Err(StoreError::LimitExceeded(_))
    ));
    let moved = store.alias(&account, "alias/a").unwrap().unwrap();
    assert_eq!(
        (moved.key_id, moved.created, moved.updated),
        (b.key_id, at, later)
    );
    assert!(matches!(
        store.update_alias(&account, "alias/none", &a.key_id, &b.key_id, later, 2),
        Err(StoreError::Missing(_))
    ));
    assert!(!store.delete_alias(&account, "alias/a", &a.key_id).unwrap());
    assert!(store.delete_alias(&account, "alias/a", &b.key_id).unwrap());
    assert!(!store.delete_alias(&account, "alias/a", &b.key_id).unwrap());
    assert!(store
        .list_aliases(&other, None, None, 10)
        .unwrap()
        .is_empty());
}

fn grant_record(key: KeyId, id: &str, grantee: &str, retiring: Option<&str>) -> GrantRecord {
    GrantRecord {
        grant_id: id.into(),
        key_id: key,
        name: String::new(),
        grantee: grantee.into(),
        retiring: retiring.map(str::to_owned),
        operations: vec!["Decrypt".into()],
        constraints: Some(crate::authz::GrantConstraints {
            encryption_context_subset: Some(
                [("a".to_string(), "b".to_string())].into_iter().collect(),
            ),
            encryption_context_equals: None,
        }),
        issuing_account: "arn:aws:iam::111122223333:root".into(),
        creation_date: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
    }
}

fn grants(store: &dyn Store) {
    let r = record("111122223333");
    store.insert_key(&r).unwrap();
    let g1 = grant_record(
        r.key_id,
        "g1",
        "arn:aws:iam::111122223333:role/A",
        Some("arn:aws:iam::111122223333:role/R"),
    );
    let g2 = grant_record(r.key_id, "g2", "arn:aws:iam::111122223333:role/A", None);
    store.insert_grant(&g1, 10, 10).unwrap();
    store.insert_grant(&g2, 10, 10).unwrap();
    assert_eq!(
        store.grants_for_key(&r.key_id).unwrap(),
        vec![g1.clone(), g2.clone()]
    );
    assert_eq!(store.grant("g1").unwrap(), Some(g1.clone()));
    assert!(matches!(
        store.insert_grant(
            &grant_record(r.key_id, "g3", "arn:aws:iam::111122223333:role/A", None),
            10,
            2
        ),
        Err(StoreError::LimitExceeded(_))
    ));
    assert!(matches!(
        store.insert_grant(
            &grant_record(r.key_id, "g3", "arn:aws:iam::111122223333:role/B", None),
            2,
            10
        ),
        Err(StoreError::LimitExceeded(_))
    ));
    assert_eq!(
        store
            .retirable_grants("arn:aws:iam::111122223333:role/R", "", 10)
            .unwrap(),
        vec![g1]
    );
    assert!(store.delete_grant("g1").unwrap());
    assert!(!store.delete_grant("g1").unwrap());
    assert_eq!(store.grants_for_key(&r.key_id).unwrap(), vec![g2]);
    let a = store.secret("s", &|| vec![1, 2, 3]).unwrap();
    let b = store.secret("s", &|| vec![9]).unwrap();
    assert_eq!((a, b), (vec![1, 2, 3], vec![1, 2, 3]));
}

fn key_policies(store: &dyn Store) {
    let r = record("111122223333");
    store.insert_key(&r).unwrap();
    store
        .set_key_policy(&r.key_id, "{\"Statement\": []}")
        .unwrap();
    assert_eq!(
        store.get_key(&r.key_id).unwrap().unwrap().policy.as_deref(),
        Some("{\"Statement\": []}")
    );
    assert!(matches!(
        store.set_key_policy(&KeyId::generate(), "{}"),
        Err(StoreError::Missing(_))
    ));
}

fn identity_policies_and_tags(store: &dyn Store) {
    let p = "arn:aws:iam::111122223333:role/App";
    store.put_identity_policy(p, "b", "doc-b").unwrap();
    store.put_identity_policy(p, "a", "doc-a").unwrap();
    store.put_identity_policy(p, "a", "doc-a2").unwrap();
    assert_eq!(
        store.identity_policies(p).unwrap(),
        vec![
            ("a".to_string(), "doc-a2".to_string()),
            ("b".to_string(), "doc-b".to_string())
        ]
    );
    assert!(store
        .identity_policies("arn:aws:iam::111122223333:role/Other")
        .unwrap()
        .is_empty());
    assert!(store.delete_identity_policy(p, "a").unwrap());
    assert!(!store.delete_identity_policy(p, "a").unwrap());
    let tags = vec![
        ("team".to_string(), "blue".to_string()),
        ("env".to_string(), "prod".to_string()),
    ];
    store.tag_principal(p, &tags, 50).unwrap();
    store
        .tag_principal(p, &[("team".to_string(), "red".to_string())], 50)
        .unwrap();
    assert_eq!(
        store.principal_tags(p).unwrap(),
        vec![
            ("env".to_string(), "prod".to_string()),
            ("team".to_string(), "red".to_string())
        ]
    );
    let too_many: Vec<_> = (0..3).map(|i| (format!("k{i}"), "v".to_string())).collect();
    assert!(matches!(
        store.tag_principal(p, &too_many, 4),
        Err(StoreError::LimitExceeded(_))
    ));
    assert_eq!(
        store.principal_tags(p).unwrap().len(),
        2,
        "a refused write changes nothing"
    );
    store.untag_principal(p, &["env".to_string()]).unwrap();
    assert_eq!(
        store.principal_tags(p).unwrap(),
        vec![("team".to_string(), "red".to_string())]
    );
    // IAM tag keys ignore case: Team replaces team, and untagging TEAM removes it.
    store
        .tag_principal(p, &[("Team".to_string(), "green".to_string())], 50)
        .unwrap();
    assert_eq!(
        store.principal_tags(p).unwrap(),
        vec![("Team".to_string(), "green".to_string())]
    );
    store.untag_principal(p, &["TEAM".to_string()]).unwrap();
    assert!(store.principal_tags(p).unwrap().is_empty());
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
    // The record's first reservation is 65,536: claims follow it, capped at the max.
    assert_eq!(
        store
            .claim_invocations(&r.key_id, MaterialVersion(1), 50_000, 131_072)
            .unwrap(),
        Some(65_536..115_536)
    );
    assert_eq!(
        store
            .claim_invocations(&r.key_id, MaterialVersion(1), 50_000, 131_072)
            .unwrap(),
        Some(115_536..131_072)
    );
    assert_eq!(
        store
            .claim_invocations(&r.key_id, MaterialVersion(1), 50_000, 131_072)
            .unwrap(),
        None
    );
    store
        .add_material(
            &r.key_id,
            &MaterialRecord {
                version: MaterialVersion(2),
                created: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                reserved_invocations: 0,
                rotation: Some(RotationType::OnDemand),
            },
            None,
        )
        .unwrap();
    let got = store.get_key(&r.key_id).unwrap().unwrap();
    assert_eq!(got.current_version, MaterialVersion(2));
    assert_eq!(got.versions.len(), 2);
    assert_eq!(got.versions[1].rotation, Some(RotationType::OnDemand));
    assert_eq!(got.versions[0].rotation, None);
    // Rotation schedule: set, moved by an automatic rotation in the same transaction,
    // due only when enabled and past its date.
    let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    store
        .set_rotation(
            &r.key_id,
            Some(RotationSchedule {
                period_days: 90,
                next: t(2_000_000_000),
            }),
        )
        .unwrap();
    assert!(store
        .keys_due_for_rotation(t(1_999_999_999))
        .unwrap()
        .is_empty());
    assert_eq!(
        store.keys_due_for_rotation(t(2_000_000_000)).unwrap(),
        [r.key_id]
    );
    store
        .add_material(
            &r.key_id,
            &MaterialRecord {
                version: MaterialVersion(3),
                created: t(2_000_000_000),
                reserved_invocations: 0,
                rotation: Some(RotationType::Automatic),
            },
            Some(t(2_007_776_000)),
        )
        .unwrap();
    let got = store.get_key(&r.key_id).unwrap().unwrap();
    assert_eq!(
        got.rotation,
        Some(RotationSchedule {
            period_days: 90,
            next: t(2_007_776_000)
        })
    );
    assert!(store
        .keys_due_for_rotation(t(2_000_000_001))
        .unwrap()
        .is_empty());
    store.set_rotation(&r.key_id, None).unwrap();
    assert_eq!(store.get_key(&r.key_id).unwrap().unwrap().rotation, None);
    assert_eq!(got.versions[0].reserved_invocations, 131072);
    assert!(matches!(
        store.claim_invocations(&r.key_id, MaterialVersion(9), 1, 10),
        Err(StoreError::Missing(_))
    ));
    assert!(matches!(
        store.add_material(&KeyId::generate(), &got.versions[0], None),
        Err(StoreError::Database(_)) | Err(StoreError::Missing(_))
    ));
}

fn access_key(principal: &str, sealed: &[u8]) -> AccessKeyRecord {
    AccessKeyRecord {
        access_key_id: AccessKeyId::generate().unwrap(),
        principal: principal.into(),
        account: "111122223333".parse().unwrap(),
        status: AccessKeyStatus::Active,
        created: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        sealed_secret: sealed.to_vec(),
    }
}

fn access_keys(store: &dyn Store) {
    let p = "arn:aws:iam::111122223333:user/Alice";
    let a = access_key(p, b"sealed-a");
    let mut b = access_key(p, b"sealed-b");
    b.created += Duration::from_millis(1);
    store.insert_access_key(&a, 2).unwrap();
    assert!(matches!(
        store.insert_access_key(&a, 2),
        Err(StoreError::AlreadyExists(_))
    ));
    store.insert_access_key(&b, 2).unwrap();
    // The limit is per principal, checked in the insert's own transaction.
    assert!(matches!(
        store.insert_access_key(&access_key(p, b"c"), 2),
        Err(StoreError::LimitExceeded(_))
    ));
    let other = access_key("arn:aws:iam::111122223333:user/Bob", b"sealed-o");
    store.insert_access_key(&other, 2).unwrap();
    assert_eq!(store.access_key(&a.access_key_id).unwrap(), Some(a.clone()));
    assert_eq!(store.access_keys(p).unwrap(), vec![a.clone(), b.clone()]);
    assert!(store.delete_access_key(&a.access_key_id).unwrap());
    assert!(!store.delete_access_key(&a.access_key_id).unwrap());
    assert_eq!(store.access_key(&a.access_key_id).unwrap(), None);
    assert_eq!(store.access_keys(p).unwrap(), vec![b]);
    assert_eq!(
        store.access_keys(&other.principal).unwrap(),
        vec![other.clone()]
    );
}

/// Quotas "checked in the same transaction" hold when writers race: `stores` are
/// separate handles on one database (separate connections, as separate daemons have),
/// and 16 writers at once try to pass each quota of 3. Exactly 3 do, whatever the
/// interleaving, and the rest are LimitExceeded.
pub(crate) fn quotas_hold_under_concurrent_writers(stores: &[&dyn Store]) {
    const MAX: usize = 3;
    let key = record("999988887777");
    stores[0].insert_key(&key).unwrap();
    let key = key.key_id;
    let race = |write: &(dyn Fn(usize) -> Result<(), StoreError> + Sync)| {
        let results: Vec<Result<(), StoreError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16).map(|i| s.spawn(move || write(i))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        for r in &results {
            assert!(
                matches!(r, Ok(()) | Err(StoreError::LimitExceeded(_))),
                "{r:?}"
            );
        }
        ok
    };
    let at = UNIX_EPOCH + Duration::from_secs(1);
    let aliases = race(&|i| {
        stores[i % stores.len()].insert_alias(
            &AliasRecord {
                account: "999988887777".parse().unwrap(),
                name: format!("alias/race-{i}"),
                key_id: key,
                created: at,
                updated: at,
            },
            MAX,
        )
    });
    assert_eq!(aliases, MAX, "aliases past the quota");
    let grants = race(&|i| {
        stores[i % stores.len()].insert_grant(
            &grant_record(
                key,
                &format!("race-grant-{i}"),
                "arn:aws:iam::1:role/g",
                None,
            ),
            MAX,
            100,
        )
    });
    assert_eq!(grants, MAX, "grants past the quota");
    let principal = "arn:aws:iam::999988887777:role/racer";
    let access_keys = race(&|i| {
        stores[i % stores.len()].insert_access_key(
            &AccessKeyRecord {
                access_key_id: AccessKeyId::generate().unwrap(),
                principal: principal.into(),
                account: "999988887777".parse().unwrap(),
                status: AccessKeyStatus::Active,
                created: at + Duration::from_millis(i as u64),
                sealed_secret: vec![1, 2, 3],
            },
            MAX,
        )
    });
    assert_eq!(access_keys, MAX, "access keys past the quota");
    // Invocation claims never overlap, whoever makes them.
    let claims = std::sync::Mutex::new(Vec::new());
    let claimed = race(&|i| {
        let c =
            stores[i % stores.len()].claim_invocations(&key, MaterialVersion(1), 1000, u64::MAX)?;
        claims.lock().unwrap().push(c.unwrap());
        Ok(())
    });
    assert_eq!(claimed, 16);
    let mut claims = claims.into_inner().unwrap();
    claims.sort_by_key(|r| r.start);
    for pair in claims.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "{claims:?}");
    }
    assert_eq!(
        stores[1 % stores.len()]
            .access_keys(principal)
            .unwrap()
            .len(),
        MAX
    );
}
