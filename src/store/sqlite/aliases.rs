//! The `aliases` table: the [`AliasStore`] trait.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::{from_ms, to_ms, SqliteStore};
use crate::domain::{AccountId, KeyId};
use crate::store::{AliasRecord, AliasStore, StoreError};

const ALIAS_COLUMNS: &str = "account, name, key_id, created_ms, updated_ms";

/// After a write in `tx`: LimitExceeded (and so a rollback) when `key` now has more
/// than `max` aliases.
fn check_alias_room(
    tx: &rusqlite::Transaction<'_>,
    key: &KeyId,
    max: usize,
) -> Result<(), StoreError> {
    let n: i64 = tx.query_row(
        "SELECT COUNT(*) FROM aliases WHERE key_id = ?1",
        params![key.to_string()],
        |r| r.get(0),
    )?;
    if usize::try_from(n).unwrap_or(usize::MAX) > max {
        return Err(StoreError::LimitExceeded(format!(
            "a key has at most {max} aliases"
        )));
    }
    Ok(())
}

fn alias_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn alias_record(
    (account, name, key_id, created, updated): (String, String, String, i64, i64),
) -> Result<AliasRecord, StoreError> {
    Ok(AliasRecord {
        account: account
            .parse()
            .map_err(|_| StoreError::Corrupt("alias account"))?,
        name,
        key_id: key_id
            .parse()
            .map_err(|_| StoreError::Corrupt("alias key id"))?,
        created: from_ms(created),
        updated: from_ms(updated),
    })
}

impl AliasStore for SqliteStore {
    fn insert_alias(&self, a: &AliasRecord, max_per_key: usize) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let r = tx.execute(
            &format!("INSERT INTO aliases ({ALIAS_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
            params![
                a.account.as_str(),
                a.name,
                a.key_id.to_string(),
                to_ms(a.created),
                to_ms(a.updated)
            ],
        );
        match r {
            Ok(_) => {
                check_alias_room(&tx, &a.key_id, max_per_key)?;
                Ok(tx.commit()?)
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::AlreadyExists("alias"))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn update_alias(
        &self,
        account: &AccountId,
        name: &str,
        from: &KeyId,
        to: &KeyId,
        at: SystemTime,
        max_per_key: usize,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE aliases SET key_id = ?4, updated_ms = ?5
             WHERE account = ?1 AND name = ?2 AND key_id = ?3",
            params![
                account.as_str(),
                name,
                from.to_string(),
                to.to_string(),
                to_ms(at)
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("alias"));
        }
        check_alias_room(&tx, to, max_per_key)?;
        tx.commit()?;
        Ok(())
    }

    fn delete_alias(
        &self,
        account: &AccountId,
        name: &str,
        key: &KeyId,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM aliases WHERE account = ?1 AND name = ?2 AND key_id = ?3",
            params![account.as_str(), name, key.to_string()],
        )?;
        Ok(n > 0)
    }

    fn alias(&self, account: &AccountId, name: &str) -> Result<Option<AliasRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ALIAS_COLUMNS} FROM aliases WHERE account = ?1 AND name = ?2"
        ))?;
        let row = stmt
            .query_row(params![account.as_str(), name], alias_row)
            .optional()?;
        row.map(alias_record).transpose()
    }

    fn list_aliases(
        &self,
        account: &AccountId,
        key: Option<&KeyId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ALIAS_COLUMNS} FROM aliases
             WHERE account = ?1 AND (?2 IS NULL OR key_id = ?2) AND name > ?3
             ORDER BY name LIMIT ?4"
        ))?;
        let rows = stmt
            .query_map(
                params![
                    account.as_str(),
                    key.map(|k| k.to_string()),
                    after.unwrap_or(""),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                alias_row,
            )?
            .map(|r| alias_record(r?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
