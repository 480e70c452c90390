//! What key tags and principal tags share: one table each, all-or-none writes, the
//! limit per owner.

use rusqlite::{params, Connection};

use crate::store::encoding::TagTable;
use crate::store::StoreError;

/// Adds or replaces `tags` of `owner`, all or none: LimitExceeded past `max_tags`.
pub(super) fn put_tags(
    conn: &mut Connection,
    t: TagTable,
    owner: &str,
    tags: &[(String, String)],
    max_tags: usize,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let upsert = format!(
        "INSERT INTO {table} ({owner}, tag_key, tag_value) VALUES (?1, ?2, ?3)
         ON CONFLICT ({owner}, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
        table = t.table,
        owner = t.owner
    );
    // A tag whose key differs only in case is the same tag: it is replaced, keeping
    // the new spelling (SQLite's lower() folds ASCII, as condition keys do).
    let replace_folded = format!(
        "DELETE FROM {table} WHERE {owner} = ?1 AND lower(tag_key) = lower(?2) AND tag_key != ?2",
        table = t.table,
        owner = t.owner
    );
    for (k, v) in tags {
        if t.fold_case {
            tx.execute(&replace_folded, params![owner, k])?;
        }
        tx.execute(&upsert, params![owner, k, v])?;
    }
    let n: i64 = tx.query_row(
        &format!("SELECT COUNT(*) FROM {} WHERE {} = ?1", t.table, t.owner),
        params![owner],
        |r| r.get(0),
    )?;
    if usize::try_from(n).unwrap_or(usize::MAX) > max_tags {
        // Dropping the transaction rolls every insert back.
        return Err(StoreError::LimitExceeded(format!(
            "{} has at most {max_tags} tags",
            t.what
        )));
    }
    tx.commit()?;
    Ok(())
}

/// Removes tags of `owner` by key (absent ones are ignored).
pub(super) fn delete_tags(
    conn: &mut Connection,
    t: TagTable,
    owner: &str,
    keys: &[String],
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let delete = format!(
        "DELETE FROM {} WHERE {} = ?1 AND {}",
        t.table,
        t.owner,
        if t.fold_case {
            "lower(tag_key) = lower(?2)"
        } else {
            "tag_key = ?2"
        }
    );
    for k in keys {
        tx.execute(&delete, params![owner, k])?;
    }
    tx.commit()?;
    Ok(())
}
