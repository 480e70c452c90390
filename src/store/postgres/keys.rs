//! The keys, their material versions and tags, and the readiness heartbeat: the
//! [`Store`] trait on PostgreSQL.

use std::time::SystemTime;

use super::{count, from_ms, limit, to_i64, to_ms, to_u64, PostgresStore};
use crate::domain::{
    AccountId, KeyId, KeySpec, KeyState, KeyUsage, MaterialVersion, Origin, RotationType,
};
use crate::store::encoding::imported_terms;
use crate::store::{
    Change, ImportedMaterial, KeyRecord, MaterialRecord, RotationSchedule, Store, StoreError,
};

/// The key ids in the first column of `rows`.
fn key_ids(rows: &[tokio_postgres::Row]) -> Result<Vec<KeyId>, StoreError> {
    rows.iter()
        .map(|r| {
            r.get::<_, String>(0)
                .parse()
                .map_err(|_| StoreError::Corrupt("key id"))
        })
        .collect()
}

/// What one `UPDATE` changed, as "did it".
fn changed(n: u64) -> bool {
    n > 0
}

impl Store for PostgresStore {
    fn insert_key(&self, rec: &KeyRecord) -> Result<(), StoreError> {
        let rec = rec.clone();
        self.with(move |mut c| async move {
            let tx = c.transaction().await?;
            let n = tx
                .execute(
                    "INSERT INTO keys (key_id, account, description, creation_ms, key_usage,
                        key_spec, origin, key_state, deletion_ms, current_version, policy,
                        rotation_period_days, next_rotation_ms, expiration_model, valid_to_ms,
                        import_check, purge_since_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                        $16, $17)
                     ON CONFLICT (key_id) DO NOTHING",
                    &[
                        &rec.key_id.to_string(),
                        &rec.account.as_str(),
                        &rec.description,
                        &to_ms(rec.creation_date),
                        &rec.key_usage.as_str(),
                        &rec.key_spec.as_str(),
                        &rec.origin.as_str(),
                        &rec.key_state.as_str(),
                        &rec.deletion_date.map(to_ms),
                        &i64::from(rec.current_version.0),
                        &rec.policy,
                        &rec.rotation.map(|r| i64::from(r.period_days)),
                        &rec.rotation.map(|r| to_ms(r.next)),
                        &rec.imported.map(|i| i.expiration_model.as_str()),
                        &rec.imported.and_then(|i| i.valid_to).map(to_ms),
                        &rec.import_check,
                        &rec.purge_since.map(to_ms),
                    ],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::AlreadyExists("key"));
            }
            for m in &rec.versions {
                tx.execute(
                    "INSERT INTO key_materials (key_id, version, created_ms, reserved, rotation_type)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &rec.key_id.to_string(),
                        &i64::from(m.version.0),
                        &to_ms(m.created),
                        &to_i64(m.reserved_invocations),
                        &m.rotation.map(|r| r.as_str()),
                    ],
                )
                .await?;
            }
            // The claim CreateKey took on its first version (see `claim_material`).
            give_back_claim(&tx, &rec.key_id.to_string(), rec.current_version).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let id = *id;
        self.with(move |c| async move {
            let key = id.to_string();
            let Some(row) = c
                .query_opt(
                    "SELECT account, description, creation_ms, key_usage, key_spec, origin,
                            key_state, deletion_ms, current_version, policy,
                            rotation_period_days, next_rotation_ms, expiration_model,
                            valid_to_ms, import_check, purge_since_ms
                     FROM keys WHERE key_id = $1",
                    &[&key],
                )
                .await?
            else {
                return Ok(None);
            };
            let versions = c
                .query(
                    "SELECT version, created_ms, reserved, rotation_type FROM key_materials
                     WHERE key_id = $1 ORDER BY version",
                    &[&key],
                )
                .await?
                .iter()
                .map(|r| {
                    Ok(MaterialRecord {
                        version: MaterialVersion(
                            u32::try_from(r.get::<_, i64>(0))
                                .map_err(|_| StoreError::Corrupt("material version"))?,
                        ),
                        created: from_ms(r.get(1)),
                        reserved_invocations: to_u64(r.get(2))?,
                        rotation: r
                            .get::<_, Option<String>>(3)
                            .map(|t| {
                                RotationType::parse(&t).ok_or(StoreError::Corrupt("rotation type"))
                            })
                            .transpose()?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let text = |i: usize| row.get::<_, String>(i);
            let period: Option<i64> = row.get(10);
            let next: Option<i64> = row.get(11);
            Ok(Some(KeyRecord {
                key_id: id,
                account: text(0)
                    .parse()
                    .map_err(|_| StoreError::Corrupt("account id"))?,
                description: text(1),
                creation_date: from_ms(row.get(2)),
                key_usage: KeyUsage::parse(&text(3)).ok_or(StoreError::Corrupt("key usage"))?,
                key_spec: KeySpec::parse(&text(4)).ok_or(StoreError::Corrupt("key spec"))?,
                origin: Origin::parse(&text(5)).ok_or(StoreError::Corrupt("origin"))?,
                key_state: KeyState::parse(&text(6)).ok_or(StoreError::Corrupt("key state"))?,
                deletion_date: row.get::<_, Option<i64>>(7).map(from_ms),
                current_version: MaterialVersion(
                    u32::try_from(row.get::<_, i64>(8))
                        .map_err(|_| StoreError::Corrupt("material version"))?,
                ),
                versions,
                policy: row.get(9),
                rotation: match (period, next) {
                    (Some(p), Some(next)) => Some(RotationSchedule {
                        period_days: u32::try_from(p)
                            .map_err(|_| StoreError::Corrupt("rotation period"))?,
                        next: from_ms(next),
                    }),
                    _ => None,
                },
                imported: imported_terms(row.get::<_, Option<String>>(12).as_deref(), row.get(13))?,
                import_check: row.get(14),
                purge_since: row.get::<_, Option<i64>>(15).map(from_ms),
            }))
        })
    }

    fn list_keys(
        &self,
        account: &AccountId,
        after: Option<&KeyId>,
        limit_to: usize,
    ) -> Result<Vec<KeyId>, StoreError> {
        let (account, after) = (
            account.as_str().to_owned(),
            after.map(|k| k.to_string()).unwrap_or_default(),
        );
        self.with(move |c| async move {
            let rows = c
                .query(
                    "SELECT key_id FROM keys WHERE account = $1 AND key_id > $2
                     ORDER BY key_id LIMIT $3",
                    &[&account, &after, &limit(limit_to)],
                )
                .await?;
            key_ids(&rows)
        })
    }

    fn set_key_enabled(&self, id: &KeyId, enabled: bool) -> Result<bool, StoreError> {
        let state = if enabled {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        };
        let (key, id) = (id.to_string(), *id);
        self.with(move |c| async move {
            let n = c
                .execute(
                    "UPDATE keys SET key_state = $2
                     WHERE key_id = $1 AND key_state IN ('Enabled', 'Disabled')",
                    &[&key, &state.as_str()],
                )
                .await?;
            if n > 0 {
                super::announce(&**c, &Change::Key(id)).await?;
            }
            Ok(changed(n))
        })
    }

    fn schedule_deletion(&self, id: &KeyId, at: SystemTime) -> Result<bool, StoreError> {
        let (key, id) = (id.to_string(), *id);
        self.with(move |c| async move {
            let n = c
                .execute(
                    "UPDATE keys SET key_state = 'PendingDeletion', deletion_ms = $2
                     WHERE key_id = $1 AND key_state IN ('Enabled', 'Disabled', 'PendingImport')",
                    &[&key, &to_ms(at)],
                )
                .await?;
            if n > 0 {
                super::announce(&**c, &Change::Key(id)).await?;
            }
            Ok(changed(n))
        })
    }

    fn cancel_deletion(&self, id: &KeyId) -> Result<bool, StoreError> {
        let (key, id) = (id.to_string(), *id);
        self.with(move |c| async move {
            let n = c
                .execute(
                    "UPDATE keys SET deletion_ms = NULL,
                        key_state = CASE WHEN origin = 'EXTERNAL' AND expiration_model IS NULL
                                         THEN 'PendingImport' ELSE 'Disabled' END
                     WHERE key_id = $1 AND key_state = 'PendingDeletion'
                       AND destroy_started_ms IS NULL",
                    &[&key],
                )
                .await?;
            if n > 0 {
                super::announce(&**c, &Change::Key(id)).await?;
            }
            Ok(changed(n))
        })
    }

    fn keys_due_for_deletion(&self, now: SystemTime) -> Result<Vec<KeyId>, StoreError> {
        self.with(move |c| async move {
            let rows = c
                .query(
                    "SELECT key_id FROM keys
                     WHERE key_state = 'PendingDeletion'
                       AND (deletion_ms <= $1 OR destroy_started_ms IS NOT NULL)
                     ORDER BY key_id",
                    &[&to_ms(now)],
                )
                .await?;
            key_ids(&rows)
        })
    }

    fn begin_destruction(&self, id: &KeyId, now: SystemTime) -> Result<bool, StoreError> {
        let key = id.to_string();
        self.with(move |c| async move {
            Ok(changed(
                c.execute(
                    "UPDATE keys SET destroy_started_ms = COALESCE(destroy_started_ms, $2)
                     WHERE key_id = $1 AND key_state = 'PendingDeletion'
                       AND (deletion_ms <= $2 OR destroy_started_ms IS NOT NULL)",
                    &[&key, &to_ms(now)],
                )
                .await?,
            ))
        })
    }

    fn finish_destruction(&self, id: &KeyId, now: SystemTime) -> Result<(), StoreError> {
        let (key, id) = (id.to_string(), *id);
        self.with(move |mut c| async move {
            let tx = c.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT account FROM keys WHERE key_id = $1 AND destroy_started_ms IS NOT NULL
                     FOR UPDATE",
                    &[&key],
                )
                .await?
            else {
                return Err(StoreError::Missing("key being destroyed"));
            };
            let account: String = row.get(0);
            for table in [
                "aliases",
                "key_tags",
                "grants",
                "material_claims",
                "key_materials",
                "keys",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE key_id = $1"), &[&key])
                    .await?;
            }
            tx.execute(
                "INSERT INTO deleted_keys (key_id, account, deleted_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (key_id) DO UPDATE SET account = excluded.account,
                     deleted_ms = excluded.deleted_ms",
                &[&key, &account, &to_ms(now)],
            )
            .await?;
            super::announce(&*tx, &Change::Key(id)).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn deleted_key(&self, id: &KeyId) -> Result<Option<AccountId>, StoreError> {
        let key = id.to_string();
        self.with(move |c| async move {
            c.query_opt(
                "SELECT account FROM deleted_keys WHERE key_id = $1",
                &[&key],
            )
            .await?
            .map(|r| {
                r.get::<_, String>(0)
                    .parse()
                    .map_err(|_| StoreError::Corrupt("account"))
            })
            .transpose()
        })
    }

    fn set_rotation(
        &self,
        id: &KeyId,
        rotation: Option<RotationSchedule>,
    ) -> Result<(), StoreError> {
        let (key, id) = (id.to_string(), *id);
        self.with(move |c| async move {
            let n = c
                .execute(
                    "UPDATE keys SET rotation_period_days = $2, next_rotation_ms = $3
                     WHERE key_id = $1",
                    &[
                        &key,
                        &rotation.map(|r| i64::from(r.period_days)),
                        &rotation.map(|r| to_ms(r.next)),
                    ],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::Missing("key"));
            }
            super::announce(&**c, &Change::Key(id)).await?;
            Ok(())
        })
    }

    fn keys_due_for_rotation(&self, now: SystemTime) -> Result<Vec<KeyId>, StoreError> {
        self.with(move |c| async move {
            let rows = c
                .query(
                    "SELECT key_id FROM keys
                     WHERE key_state = 'Enabled' AND next_rotation_ms IS NOT NULL
                       AND next_rotation_ms <= $1
                     ORDER BY key_id",
                    &[&to_ms(now)],
                )
                .await?;
            key_ids(&rows)
        })
    }

    fn set_imported(
        &self,
        id: &KeyId,
        version: MaterialVersion,
        terms: &ImportedMaterial,
        prior: Option<&[u8]>,
        check: &[u8],
    ) -> Result<bool, StoreError> {
        let (key, id, terms) = (id.to_string(), *id, *terms);
        let (prior, check) = (prior.map(<[u8]>::to_vec), check.to_vec());
        self.with(move |mut c| async move {
            let tx = c.transaction().await?;
            let n = tx
                .execute(
                    "UPDATE keys SET expiration_model = $2, valid_to_ms = $3,
                        purge_since_ms = NULL, import_check = COALESCE(import_check, $4),
                        key_state = CASE WHEN key_state = 'PendingImport' THEN 'Enabled'
                                         ELSE key_state END
                     WHERE key_id = $1 AND origin = 'EXTERNAL'
                       AND key_state IN ('Enabled', 'Disabled', 'PendingImport')
                       AND import_check IS NOT DISTINCT FROM $5",
                    &[
                        &key,
                        &terms.expiration_model.as_str(),
                        &terms.valid_to.map(to_ms),
                        &check,
                        &prior,
                    ],
                )
                .await?;
            if n == 0 {
                return Ok(false);
            }
            // The claim the import took before unwrapping (see `claim_material`).
            give_back_claim(&tx, &key, version).await?;
            super::announce(&*tx, &Change::Key(id)).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn clear_imported(&self, id: &KeyId, now: SystemTime) -> Result<bool, StoreError> {
        let (key, id) = (id.to_string(), *id);
        self.with(move |c| async move {
            let n = c
                .execute(
                    "UPDATE keys SET expiration_model = NULL, valid_to_ms = NULL,
                        purge_since_ms = COALESCE(purge_since_ms, $2),
                        key_state = CASE WHEN key_state IN ('Enabled', 'Disabled')
                                         THEN 'PendingImport' ELSE key_state END
                     WHERE key_id = $1 AND origin = 'EXTERNAL'",
                    &[&key, &to_ms(now)],
                )
                .await?;
            if n > 0 {
                super::announce(&**c, &Change::Key(id)).await?;
            }
            Ok(changed(n))
        })
    }

    fn material_purged(&self, id: &KeyId) -> Result<(), StoreError> {
        let key = id.to_string();
        self.with(move |c| async move {
            c.execute(
                "UPDATE keys SET purge_since_ms = NULL
                 WHERE key_id = $1 AND expiration_model IS NULL",
                &[&key],
            )
            .await?;
            Ok(())
        })
    }

    fn keys_with_expired_material(&self, now: SystemTime) -> Result<Vec<KeyId>, StoreError> {
        self.with(move |c| async move {
            let rows = c
                .query(
                    "SELECT key_id FROM keys
                     WHERE origin = 'EXTERNAL'
                       AND ((valid_to_ms IS NOT NULL AND valid_to_ms <= $1)
                            OR purge_since_ms IS NOT NULL)
                     ORDER BY key_id",
                    &[&to_ms(now)],
                )
                .await?;
            key_ids(&rows)
        })
    }

    fn tag_key(
        &self,
        id: &KeyId,
        tags: &[(String, String)],
        max_tags: usize,
    ) -> Result<(), StoreError> {
        super::rest::put_tags(
            self,
            crate::store::encoding::TagTable::KEY,
            id.to_string(),
            tags,
            max_tags,
        )
    }

    fn untag_key(&self, id: &KeyId, keys: &[String]) -> Result<(), StoreError> {
        super::rest::delete_tags(
            self,
            crate::store::encoding::TagTable::KEY,
            id.to_string(),
            keys,
        )
    }

    fn key_tags(&self, id: &KeyId) -> Result<Vec<(String, String)>, StoreError> {
        let key = id.to_string();
        self.with(move |c| async move {
            Ok(c.query(
                "SELECT tag_key, tag_value FROM key_tags WHERE key_id = $1
                     ORDER BY tag_key COLLATE \"C\"",
                &[&key],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn set_key_description(&self, id: &KeyId, description: &str) -> Result<(), StoreError> {
        let (key, id, description) = (id.to_string(), *id, description.to_owned());
        self.with(move |c| async move {
            let n = c
                .execute(
                    "UPDATE keys SET description = $2 WHERE key_id = $1",
                    &[&key, &description],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::Missing("key"));
            }
            super::announce(&**c, &Change::Key(id)).await?;
            Ok(())
        })
    }

    fn count_keys(&self, account: &AccountId) -> Result<usize, StoreError> {
        let account = account.as_str().to_owned();
        self.with(move |c| async move {
            let n: i64 = c
                .query_one("SELECT COUNT(*) FROM keys WHERE account = $1", &[&account])
                .await?
                .get(0);
            Ok(count(n))
        })
    }

    fn add_material(
        &self,
        id: &KeyId,
        m: &MaterialRecord,
        next_rotation: Option<SystemTime>,
    ) -> Result<(), StoreError> {
        let (key, id, m) = (id.to_string(), *id, m.clone());
        self.with(move |mut c| async move {
            let tx = c.transaction().await?;
            tx.execute(
                "INSERT INTO key_materials (key_id, version, created_ms, reserved, rotation_type)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &key,
                    &i64::from(m.version.0),
                    &to_ms(m.created),
                    &to_i64(m.reserved_invocations),
                    &m.rotation.map(|r| r.as_str()),
                ],
            )
            .await?;
            let n = tx
                .execute(
                    "UPDATE keys SET current_version = $2,
                         next_rotation_ms = COALESCE($3, next_rotation_ms)
                     WHERE key_id = $1",
                    &[&key, &i64::from(m.version.0), &next_rotation.map(to_ms)],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::Missing("key"));
            }
            give_back_claim(&tx, &key, m.version).await?;
            super::announce(&*tx, &Change::Key(id)).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn claim_invocations(
        &self,
        id: &KeyId,
        version: MaterialVersion,
        block: u64,
        max: u64,
    ) -> Result<Option<std::ops::Range<u64>>, StoreError> {
        let key = id.to_string();
        self.with(move |mut c| async move {
            let tx = c.transaction().await?;
            // The row's lock: a claim by another daemon waits for this one's commit, then
            // reads what it wrote.
            let Some(row) = tx
                .query_opt(
                    "SELECT reserved FROM key_materials WHERE key_id = $1 AND version = $2
                     FOR UPDATE",
                    &[&key, &i64::from(version.0)],
                )
                .await?
            else {
                return Err(StoreError::Missing("key material"));
            };
            let Some(claimed) = crate::store::encoding::next_claim(to_u64(row.get(0))?, block, max)
            else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE key_materials SET reserved = $3 WHERE key_id = $1 AND version = $2",
                &[&key, &i64::from(version.0), &to_i64(claimed.end)],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(claimed))
        })
    }

    fn lead(&self) -> Result<bool, StoreError> {
        PostgresStore::lead(self)
    }

    fn shared(&self) -> bool {
        true
    }

    fn claim_material(
        &self,
        id: &KeyId,
        version: MaterialVersion,
        stale_after: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let key = id.to_string();
        let stale = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
        self.with(move |c| async move {
            // The database's clock, not the daemon's: daemons' clocks may differ. A claim
            // this daemon holds blocks it too: two of its requests may make new material
            // for one key at once (one through a cache entry dropped since), and the
            // second must wait for the first's record, not destroy its object. A claim
            // whose owner has no connection to the database left (pg_stat_activity, by
            // application_name) is a dead daemon's: taken over at once. One that looks
            // dead but is not (its role cannot see others' application_name) is taken
            // over too, which is safe: its maker's record is refused (ClaimLost).
            let n = c
                .execute(
                    "INSERT INTO material_claims (key_id, version, claimed_ms, owner)
                     VALUES ($1, $2, (extract(epoch from clock_timestamp()) * 1000)::bigint, $3)
                     ON CONFLICT (key_id, version) DO UPDATE
                         SET claimed_ms = excluded.claimed_ms, owner = excluded.owner
                     WHERE material_claims.claimed_ms < excluded.claimed_ms - $4
                        OR material_claims.owner = $5
                        OR NOT EXISTS (SELECT 1 FROM pg_stat_activity
                                       WHERE application_name = $6 || material_claims.owner)",
                    &[
                        &key,
                        &i64::from(version.0),
                        &&*owner(),
                        &stale,
                        &ABANDONED,
                        &super::APPLICATION_PREFIX,
                    ],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn abandon_material(&self, id: &KeyId, version: MaterialVersion) -> Result<(), StoreError> {
        let key = id.to_string();
        self.with(move |c| async move {
            c.execute(
                "UPDATE material_claims SET owner = $4
                 WHERE key_id = $1 AND version = $2 AND owner = $3",
                &[&key, &i64::from(version.0), &&*owner(), &ABANDONED],
            )
            .await?;
            Ok(())
        })
    }

    fn release_material(&self, id: &KeyId, version: MaterialVersion) -> Result<(), StoreError> {
        let key = id.to_string();
        self.with(move |c| async move {
            c.execute(
                "DELETE FROM material_claims WHERE key_id = $1 AND version = $2 AND owner = $3",
                &[&key, &i64::from(version.0), &&*owner()],
            )
            .await?;
            Ok(())
        })
    }

    fn watch(&self, on_change: crate::store::OnChange) {
        PostgresStore::watch(self, on_change);
    }

    fn heartbeat(&self, now: SystemTime) -> Result<(), StoreError> {
        self.with(move |c| async move {
            c.execute(
                "INSERT INTO heartbeat (id, at_ms) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
                &[&to_ms(now)],
            )
            .await?;
            Ok(())
        })
    }
}

/// The owner of a claim the orphan sweep gave up (`abandon_material`): no store
/// handle's name (those are origins), so it blocks every recorder and yields to every
/// maker.
const ABANDONED: &str = "(abandoned by the orphan sweep)";

/// This store handle's name in claims (see [`super::ORIGIN`]).
fn owner() -> std::sync::Arc<str> {
    super::ORIGIN
        .try_with(std::sync::Arc::clone)
        .unwrap_or_else(|_| "".into())
}

/// Recording `version` of `key` gives back this daemon's claim to make it, and refuses
/// (ClaimLost, rolling the transaction back) while another daemon holds one. No claim
/// at all is fine: a store only one daemon writes, or a version made without a race.
async fn give_back_claim(
    tx: &tokio_postgres::Transaction<'_>,
    key: &str,
    version: MaterialVersion,
) -> Result<(), StoreError> {
    let me = owner();
    let holders = tx
        .query(
            "DELETE FROM material_claims WHERE key_id = $1 AND version = $2 RETURNING owner",
            &[&key, &i64::from(version.0)],
        )
        .await?;
    if holders.iter().any(|r| r.get::<_, &str>(0) != &*me) {
        return Err(StoreError::ClaimLost);
    }
    Ok(())
}
