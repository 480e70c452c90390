//! The `grants` table and the daemon-wide secrets: the [`GrantStore`] trait.

use rusqlite::{params, OptionalExtension};

use super::{from_ms, to_ms, SqliteStore};
use crate::domain::KeyId;
use crate::store::encoding::{
    constraints_from_column, constraints_to_column, operations_from_column, operations_to_column,
};
use crate::store::{GrantRecord, GrantStore, StoreError};

fn grant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GrantRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

type GrantRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    i64,
);

fn to_grant(row: GrantRow) -> Result<GrantRecord, StoreError> {
    let (grant_id, key_id, name, grantee, retiring, ops, constraints, issuing, created) = row;
    Ok(GrantRecord {
        grant_id,
        key_id: key_id
            .parse()
            .map_err(|_| StoreError::Corrupt("grant key id"))?,
        name,
        grantee,
        retiring,
        operations: operations_from_column(&ops)?,
        constraints: constraints
            .as_deref()
            .map(constraints_from_column)
            .transpose()?,
        issuing_account: issuing,
        creation_date: from_ms(created),
    })
}

const GRANT_COLUMNS: &str =
    "grant_id, key_id, name, grantee, retiring, operations, constraints, issuing_account, creation_ms";

impl GrantStore for SqliteStore {
    fn insert_grant(
        &self,
        g: &GrantRecord,
        max_per_key: usize,
        max_per_grantee: usize,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let key = g.key_id.to_string();
        let per_key: i64 = tx.query_row(
            "SELECT COUNT(*) FROM grants WHERE key_id = ?1",
            params![key],
            |r| r.get(0),
        )?;
        let per_grantee: i64 = tx.query_row(
            "SELECT COUNT(*) FROM grants WHERE key_id = ?1 AND grantee = ?2",
            params![key, g.grantee],
            |r| r.get(0),
        )?;
        if usize::try_from(per_key).unwrap_or(usize::MAX) >= max_per_key {
            return Err(StoreError::LimitExceeded(format!(
                "a key has at most {max_per_key} grants"
            )));
        }
        if usize::try_from(per_grantee).unwrap_or(usize::MAX) >= max_per_grantee {
            return Err(StoreError::LimitExceeded(format!(
                "a key has at most {max_per_grantee} grants for one grantee"
            )));
        }
        let ops = operations_to_column(&g.operations);
        let constraints = g.constraints.as_ref().map(constraints_to_column);
        tx.execute(
            &format!(
                "INSERT INTO grants ({GRANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                g.grant_id,
                key,
                g.name,
                g.grantee,
                g.retiring,
                ops,
                constraints,
                g.issuing_account,
                to_ms(g.creation_date)
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn grants_for_key(&self, key: &KeyId) -> Result<Vec<GrantRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE key_id = ?1 ORDER BY grant_id"
        ))?;
        let rows = stmt
            .query_map(params![key.to_string()], grant_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(to_grant).collect()
    }

    fn grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE grant_id = ?1"),
                params![grant_id],
                grant_row,
            )
            .optional()?;
        row.map(to_grant).transpose()
    }

    fn delete_grant(&self, grant_id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM grants WHERE grant_id = ?1", params![grant_id])?;
        Ok(n > 0)
    }

    fn retirable_grants(
        &self,
        retiring: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE retiring = ?1 AND grant_id > ?2 ORDER BY grant_id LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(
                params![retiring, after, i64::try_from(limit).unwrap_or(i64::MAX)],
                grant_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(to_grant).collect()
    }

    fn secret(&self, name: &str, make: &dyn Fn() -> Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let conn = self.conn();
        // INSERT OR IGNORE then read: the first daemon to ask makes the secret, every
        // later one (and every restart) reads the same bytes.
        conn.execute(
            "INSERT OR IGNORE INTO daemon_secrets (name, value) VALUES (?1, ?2)",
            params![name, make()],
        )?;
        Ok(conn.query_row(
            "SELECT value FROM daemon_secrets WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?)
    }
}
