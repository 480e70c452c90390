//! The `access_keys` table (migration 9): access key ids, their principals and sealed
//! secrets.

use rusqlite::{params, OptionalExtension};

use super::{from_ms, to_ms, SqliteStore};
use crate::domain::{AccessKeyId, AccessKeyStatus, AccountId};
use crate::store::{AccessKeyRecord, AccessKeyStore, StoreError};

const COLUMNS: &str = "access_key_id, principal, account, status, created_ms, sealed_secret";

type Row = (String, String, String, String, i64, Vec<u8>);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn record(
    (id, principal, account, status, created_ms, sealed): Row,
) -> Result<AccessKeyRecord, StoreError> {
    Ok(AccessKeyRecord {
        access_key_id: id
            .parse()
            .map_err(|_| StoreError::Corrupt("access key id"))?,
        principal,
        account: account
            .parse::<AccountId>()
            .map_err(|_| StoreError::Corrupt("account id"))?,
        status: status
            .parse::<AccessKeyStatus>()
            .map_err(|()| StoreError::Corrupt("access key status"))?,
        created: from_ms(created_ms),
        sealed_secret: sealed,
    })
}

impl AccessKeyStore for SqliteStore {
    fn insert_access_key(
        &self,
        k: &AccessKeyRecord,
        max_per_principal: usize,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let count: i64 = tx.query_row(
            "SELECT COUNT(*) FROM access_keys WHERE principal = ?1",
            params![k.principal],
            |r| r.get(0),
        )?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= max_per_principal {
            return Err(StoreError::LimitExceeded(format!(
                "a principal has at most {max_per_principal} access keys; delete one first"
            )));
        }
        let inserted = tx.execute(
            &format!(
                "INSERT OR IGNORE INTO access_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ),
            params![
                k.access_key_id.as_str(),
                k.principal,
                k.account.to_string(),
                k.status.as_str(),
                to_ms(k.created),
                k.sealed_secret,
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists("access key"));
        }
        tx.commit()?;
        Ok(())
    }

    fn access_key(&self, id: &AccessKeyId) -> Result<Option<AccessKeyRecord>, StoreError> {
        let found = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM access_keys WHERE access_key_id = ?1"),
                params![id.as_str()],
                row,
            )
            .optional()?;
        found.map(record).transpose()
    }

    fn access_keys(&self, principal: &str) -> Result<Vec<AccessKeyRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM access_keys WHERE principal = ?1 ORDER BY created_ms, access_key_id"
        ))?;
        let rows = stmt
            .query_map(params![principal], row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(record).collect()
    }

    fn delete_access_key(&self, id: &AccessKeyId) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM access_keys WHERE access_key_id = ?1",
            params![id.as_str()],
        )?;
        Ok(n > 0)
    }
}
