//! The keys, their material versions and tags (`keys`, `key_materials`, `key_tags`,
//! `deleted_keys`), and the readiness heartbeat: the [`Store`] trait.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::tags::{delete_tags, put_tags};
use super::{from_ms, key_ids, string_pairs, to_i64, to_ms, to_u64, SqliteStore};
use crate::domain::{
    AccountId, KeyId, KeySpec, KeyState, KeyUsage, MaterialVersion, Origin, RotationType,
};
use crate::store::encoding::{imported_terms, TagTable};
use crate::store::{
    ImportedMaterial, KeyRecord, MaterialRecord, RotationSchedule, Store, StoreError,
};

impl Store for SqliteStore {
    fn insert_key(&self, rec: &KeyRecord) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO keys (key_id, account, description, creation_ms, key_usage,
                key_spec, origin, key_state, deletion_ms, current_version, policy,
                rotation_period_days, next_rotation_ms, expiration_model, valid_to_ms,
                import_check, purge_since_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            params![
                rec.key_id.to_string(),
                rec.account.as_str(),
                rec.description,
                to_ms(rec.creation_date),
                rec.key_usage.as_str(),
                rec.key_spec.as_str(),
                rec.origin.as_str(),
                rec.key_state.as_str(),
                rec.deletion_date.map(to_ms),
                rec.current_version.0,
                rec.policy,
                rec.rotation.map(|r| r.period_days),
                rec.rotation.map(|r| to_ms(r.next)),
                rec.imported.map(|i| i.expiration_model.as_str()),
                rec.imported.and_then(|i| i.valid_to).map(to_ms),
                rec.import_check,
                rec.purge_since.map(to_ms),
            ],
        )?;
        if n == 0 {
            return Err(StoreError::AlreadyExists("key"));
        }
        for m in &rec.versions {
            tx.execute(
                "INSERT INTO key_materials (key_id, version, created_ms, reserved, rotation_type)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    rec.key_id.to_string(),
                    m.version.0,
                    to_ms(m.created),
                    to_i64(m.reserved_invocations),
                    m.rotation.map(|r| r.as_str())
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT account, description, creation_ms, key_usage, key_spec, origin, key_state,
                        deletion_ms, current_version, policy, rotation_period_days,
                        next_rotation_ms, expiration_model, valid_to_ms, import_check,
                        purge_since_ms
                 FROM keys WHERE key_id = ?1",
                params![id.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                        r.get::<_, u32>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        (r.get::<_, Option<u32>>(10)?, r.get::<_, Option<i64>>(11)?),
                        (
                            r.get::<_, Option<String>>(12)?,
                            r.get::<_, Option<i64>>(13)?,
                            r.get::<_, Option<Vec<u8>>>(14)?,
                            r.get::<_, Option<i64>>(15)?,
                        ),
                    ))
                },
            )
            .optional()?;
        let Some((
            account,
            description,
            created,
            usage,
            spec,
            origin,
            state,
            deletion,
            current,
            policy,
            (period, next_rotation),
            (expiration_model, valid_to, import_check, purge_since),
        )) = row
        else {
            return Ok(None);
        };
        let mut stmt = conn.prepare_cached(
            "SELECT version, created_ms, reserved, rotation_type FROM key_materials
             WHERE key_id = ?1 ORDER BY version",
        )?;
        let versions = stmt
            .query_map(params![id.to_string()], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?
            .map(|row| {
                let (v, c, reserved, rotation) = row?;
                Ok(MaterialRecord {
                    version: MaterialVersion(v),
                    created: from_ms(c),
                    reserved_invocations: to_u64(reserved)?,
                    rotation: rotation
                        .map(|t| {
                            RotationType::parse(&t).ok_or(StoreError::Corrupt("rotation type"))
                        })
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(KeyRecord {
            key_id: *id,
            account: account
                .parse()
                .map_err(|_| StoreError::Corrupt("account id"))?,
            description,
            creation_date: from_ms(created),
            key_usage: KeyUsage::parse(&usage).ok_or(StoreError::Corrupt("key usage"))?,
            key_spec: KeySpec::parse(&spec).ok_or(StoreError::Corrupt("key spec"))?,
            origin: Origin::parse(&origin).ok_or(StoreError::Corrupt("origin"))?,
            key_state: KeyState::parse(&state).ok_or(StoreError::Corrupt("key state"))?,
            deletion_date: deletion.map(from_ms),
            current_version: MaterialVersion(current),
            versions,
            policy,
            rotation: match (period, next_rotation) {
                (Some(period_days), Some(next)) => Some(RotationSchedule {
                    period_days,
                    next: from_ms(next),
                }),
                _ => None,
            },
            imported: imported_terms(expiration_model.as_deref(), valid_to)?,
            import_check,
            purge_since: purge_since.map(from_ms),
        }))
    }

    fn list_keys(
        &self,
        account: &AccountId,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<KeyId>, StoreError> {
        let after = after.map(|k| k.to_string()).unwrap_or_default();
        key_ids(
            &self.conn(),
            "SELECT key_id FROM keys WHERE account = ?1 AND key_id > ?2 ORDER BY key_id LIMIT ?3",
            params![
                account.as_str(),
                after,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    fn set_key_enabled(&self, id: &KeyId, enabled: bool) -> Result<bool, StoreError> {
        let state = if enabled {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        };
        let n = self.conn().execute(
            "UPDATE keys SET key_state = ?2
             WHERE key_id = ?1 AND key_state IN ('Enabled', 'Disabled')",
            params![id.to_string(), state.as_str()],
        )?;
        Ok(n == 1)
    }

    fn schedule_deletion(&self, id: &KeyId, at: SystemTime) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET key_state = 'PendingDeletion', deletion_ms = ?2
             WHERE key_id = ?1 AND key_state IN ('Enabled', 'Disabled', 'PendingImport')",
            params![id.to_string(), to_ms(at)],
        )?;
        Ok(n == 1)
    }

    fn cancel_deletion(&self, id: &KeyId) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET deletion_ms = NULL,
                key_state = CASE WHEN origin = 'EXTERNAL' AND expiration_model IS NULL
                                 THEN 'PendingImport' ELSE 'Disabled' END
             WHERE key_id = ?1 AND key_state = 'PendingDeletion' AND destroy_started_ms IS NULL",
            params![id.to_string()],
        )?;
        Ok(n == 1)
    }

    fn keys_due_for_deletion(&self, now: SystemTime) -> Result<Vec<KeyId>, StoreError> {
        key_ids(
            &self.conn(),
            "SELECT key_id FROM keys
             WHERE key_state = 'PendingDeletion'
               AND (deletion_ms <= ?1 OR destroy_started_ms IS NOT NULL)
             ORDER BY key_id",
            params![to_ms(now)],
        )
    }

    fn begin_destruction(&self, id: &KeyId, now: SystemTime) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET destroy_started_ms = COALESCE(destroy_started_ms, ?2)
             WHERE key_id = ?1 AND key_state = 'PendingDeletion'
               AND (deletion_ms <= ?2 OR destroy_started_ms IS NOT NULL)",
            params![id.to_string(), to_ms(now)],
        )?;
        Ok(n == 1)
    }

    fn finish_destruction(&self, id: &KeyId, now: SystemTime) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let key = id.to_string();
        let account: Option<String> = tx
            .query_row(
                "SELECT account FROM keys WHERE key_id = ?1 AND destroy_started_ms IS NOT NULL",
                params![key],
                |r| r.get(0),
            )
            .optional()?;
        let Some(account) = account else {
            return Err(StoreError::Missing("key being destroyed"));
        };
        tx.execute("DELETE FROM aliases WHERE key_id = ?1", params![key])?;
        tx.execute("DELETE FROM key_tags WHERE key_id = ?1", params![key])?;
        tx.execute("DELETE FROM grants WHERE key_id = ?1", params![key])?;
        tx.execute("DELETE FROM key_materials WHERE key_id = ?1", params![key])?;
        tx.execute("DELETE FROM keys WHERE key_id = ?1", params![key])?;
        tx.execute(
            "INSERT OR REPLACE INTO deleted_keys (key_id, account, deleted_ms) VALUES (?1, ?2, ?3)",
            params![key, account, to_ms(now)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn deleted_key(&self, id: &KeyId) -> Result<Option<AccountId>, StoreError> {
        let conn = self.conn();
        let account: Option<String> = conn
            .query_row(
                "SELECT account FROM deleted_keys WHERE key_id = ?1",
                params![id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        account
            .map(|a| a.parse().map_err(|_| StoreError::Corrupt("account")))
            .transpose()
    }

    fn set_rotation(
        &self,
        id: &KeyId,
        rotation: Option<RotationSchedule>,
    ) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET rotation_period_days = ?2, next_rotation_ms = ?3 WHERE key_id = ?1",
            params![
                id.to_string(),
                rotation.map(|r| r.period_days),
                rotation.map(|r| to_ms(r.next))
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("key"));
        }
        Ok(())
    }

    fn keys_due_for_rotation(&self, now: SystemTime) -> Result<Vec<KeyId>, StoreError> {
        key_ids(
            &self.conn(),
            "SELECT key_id FROM keys
             WHERE key_state = 'Enabled' AND next_rotation_ms IS NOT NULL AND next_rotation_ms <= ?1
             ORDER BY key_id",
            params![to_ms(now)],
        )
    }

    fn set_imported(
        &self,
        id: &KeyId,
        _version: MaterialVersion,
        terms: &ImportedMaterial,
        prior: Option<&[u8]>,
        check: &[u8],
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET expiration_model = ?2, valid_to_ms = ?3, purge_since_ms = NULL,
                import_check = COALESCE(import_check, ?4),
                key_state = CASE WHEN key_state = 'PendingImport' THEN 'Enabled' ELSE key_state END
             WHERE key_id = ?1 AND origin = 'EXTERNAL'
               AND key_state IN ('Enabled', 'Disabled', 'PendingImport')
               AND import_check IS ?5",
            params![
                id.to_string(),
                terms.expiration_model.as_str(),
                terms.valid_to.map(to_ms),
                check,
                prior,
            ],
        )?;
        Ok(n == 1)
    }

    fn clear_imported(&self, id: &KeyId, now: SystemTime) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET expiration_model = NULL, valid_to_ms = NULL,
                purge_since_ms = COALESCE(purge_since_ms, ?2),
                key_state = CASE WHEN key_state IN ('Enabled', 'Disabled')
                                 THEN 'PendingImport' ELSE key_state END
             WHERE key_id = ?1 AND origin = 'EXTERNAL'",
            params![id.to_string(), to_ms(now)],
        )?;
        Ok(n == 1)
    }

    fn material_purged(&self, id: &KeyId) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE keys SET purge_since_ms = NULL
             WHERE key_id = ?1 AND expiration_model IS NULL",
            params![id.to_string()],
        )?;
        Ok(())
    }

    fn keys_with_expired_material(&self, now: SystemTime) -> Result<Vec<KeyId>, StoreError> {
        key_ids(
            &self.conn(),
            "SELECT key_id FROM keys
             WHERE origin = 'EXTERNAL'
               AND ((valid_to_ms IS NOT NULL AND valid_to_ms <= ?1)
                    OR purge_since_ms IS NOT NULL)
             ORDER BY key_id",
            params![to_ms(now)],
        )
    }

    fn tag_key(
        &self,
        id: &KeyId,
        tags: &[(String, String)],
        max_tags: usize,
    ) -> Result<(), StoreError> {
        put_tags(
            &mut self.conn(),
            TagTable::KEY,
            &id.to_string(),
            tags,
            max_tags,
        )
    }

    fn untag_key(&self, id: &KeyId, keys: &[String]) -> Result<(), StoreError> {
        delete_tags(&mut self.conn(), TagTable::KEY, &id.to_string(), keys)
    }

    fn key_tags(&self, id: &KeyId) -> Result<Vec<(String, String)>, StoreError> {
        string_pairs(
            &self.conn(),
            "SELECT tag_key, tag_value FROM key_tags WHERE key_id = ?1 ORDER BY tag_key",
            &id.to_string(),
        )
    }

    fn set_key_description(&self, id: &KeyId, description: &str) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET description = ?2 WHERE key_id = ?1",
            params![id.to_string(), description],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("key"));
        }
        Ok(())
    }

    fn count_keys(&self, account: &AccountId) -> Result<usize, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM keys WHERE account = ?1",
            params![account.as_str()],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn add_material(
        &self,
        id: &KeyId,
        m: &MaterialRecord,
        next_rotation: Option<SystemTime>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO key_materials (key_id, version, created_ms, reserved, rotation_type)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id.to_string(),
                m.version.0,
                to_ms(m.created),
                to_i64(m.reserved_invocations),
                m.rotation.map(|r| r.as_str())
            ],
        )?;
        let n = tx.execute(
            "UPDATE keys SET current_version = ?2,
                 next_rotation_ms = COALESCE(?3, next_rotation_ms)
             WHERE key_id = ?1",
            params![id.to_string(), m.version.0, next_rotation.map(to_ms)],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("key"));
        }
        tx.commit()?;
        Ok(())
    }

    fn claim_invocations(
        &self,
        id: &KeyId,
        version: MaterialVersion,
        block: u64,
        max: u64,
    ) -> Result<Option<std::ops::Range<u64>>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let reserved: Option<i64> = tx
            .query_row(
                "SELECT reserved FROM key_materials WHERE key_id = ?1 AND version = ?2",
                params![id.to_string(), version.0],
                |r| r.get(0),
            )
            .optional()?;
        let Some(reserved) = reserved else {
            return Err(StoreError::Missing("key material"));
        };
        let Some(claimed) = super::super::encoding::next_claim(to_u64(reserved)?, block, max)
        else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE key_materials SET reserved = ?3 WHERE key_id = ?1 AND version = ?2",
            params![id.to_string(), version.0, to_i64(claimed.end)],
        )?;
        tx.commit()?;
        Ok(Some(claimed))
    }

    fn heartbeat(&self, now: SystemTime) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO heartbeat (id, at_ms) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
            params![to_ms(now)],
        )?;
        Ok(())
    }
}
