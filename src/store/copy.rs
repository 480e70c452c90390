//! `p11kms store copy`: a single-node SQLite store moved into an empty PostgreSQL
//! database, table by table (the two backends keep the same tables and columns), in one
//! PostgreSQL transaction, then checked: every table holds the same rows on both sides.

use std::path::Path;

use rusqlite::types::Value;
use tokio_postgres::types::ToSql;

use super::{PostgresStore, SqliteStore, StoreError};

/// The tables copied, parents before children (foreign keys). The heartbeat row is the
/// readiness probe's own and is not data.
const TABLES: &[&str] = &[
    "keys",
    "key_materials",
    "identity_policies",
    "principal_tags",
    "grants",
    "daemon_secrets",
    "aliases",
    "deleted_keys",
    "key_tags",
    "access_keys",
];

/// What a copy moved: rows per table, in [`TABLES`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// (table, rows) for each table.
    pub tables: Vec<(&'static str, usize)>,
}

/// A value as both sides can hold it, for moving and for comparing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// One table's rows, sorted, with its column names.
type Rows = (Vec<String>, Vec<Vec<Cell>>);

fn sqlite_rows(store: &SqliteStore, table: &str) -> Result<Rows, StoreError> {
    let conn = store.conn();
    let mut stmt = conn.prepare(&format!("SELECT * FROM {table}"))?;
    let columns: Vec<String> = stmt
        .column_names()
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let n = columns.len();
    let mut rows = stmt
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get::<_, Value>(i)? {
                        Value::Null => Cell::Null,
                        Value::Integer(v) => Cell::Int(v),
                        Value::Text(v) => Cell::Text(v),
                        Value::Blob(v) => Cell::Bytes(v),
                        // No column of the schema holds a REAL.
                        Value::Real(v) => Cell::Text(v.to_string()),
                    })
                })
                .collect::<rusqlite::Result<Vec<Cell>>>()
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.sort();
    Ok((columns, rows))
}

/// The PostgreSQL side of one table, in the columns `columns`, sorted.
async fn postgres_rows(
    c: &impl tokio_postgres::GenericClient,
    table: &str,
    columns: &[String],
) -> Result<Vec<Vec<Cell>>, StoreError> {
    let types = column_types(c, table, columns).await?;
    let list = columns.join(", ");
    let mut rows = Vec::new();
    for r in c.query(&format!("SELECT {list} FROM {table}"), &[]).await? {
        let mut row = Vec::new();
        for (i, ty) in types.iter().enumerate() {
            row.push(match ty.as_str() {
                "bigint" => r.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Int),
                "integer" => r
                    .get::<_, Option<i32>>(i)
                    .map_or(Cell::Null, |v| Cell::Int(i64::from(v))),
                "bytea" => r
                    .get::<_, Option<Vec<u8>>>(i)
                    .map_or(Cell::Null, Cell::Bytes),
                _ => r.get::<_, Option<String>>(i).map_or(Cell::Null, Cell::Text),
            });
        }
        rows.push(row);
    }
    rows.sort();
    Ok(rows)
}

/// The PostgreSQL data type of each of `columns` of `table`, in their order.
async fn column_types(
    c: &impl tokio_postgres::GenericClient,
    table: &str,
    columns: &[String],
) -> Result<Vec<String>, StoreError> {
    let types: Vec<(String, String)> = c
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    columns
        .iter()
        .map(|col| {
            types
                .iter()
                .find(|(n, _)| n == col)
                .map(|(_, t)| t.clone())
                .ok_or(StoreError::Corrupt("column missing in PostgreSQL"))
        })
        .collect()
}

/// A cell as a parameter of the PostgreSQL column type `ty`.
fn param(cell: &Cell, ty: &str) -> Result<Box<dyn ToSql + Sync + Send>, StoreError> {
    let wrong = || StoreError::Corrupt("a value that does not fit its PostgreSQL column");
    Ok(match (ty, cell) {
        ("bigint", Cell::Int(v)) => Box::new(Some(*v)),
        ("bigint", Cell::Null) => Box::new(None::<i64>),
        ("integer", Cell::Int(v)) => Box::new(Some(i32::try_from(*v).map_err(|_| wrong())?)),
        ("integer", Cell::Null) => Box::new(None::<i32>),
        ("bytea", Cell::Bytes(v)) => Box::new(Some(v.clone())),
        ("bytea", Cell::Null) => Box::new(None::<Vec<u8>>),
        ("text", Cell::Text(v)) => Box::new(Some(v.clone())),
        ("text", Cell::Null) => Box::new(None::<String>),
        _ => return Err(wrong()),
    })
}

/// Copies every table of the SQLite store at `from` into `to`, which must hold no key,
/// alias, grant, policy or access key yet; then compares both sides table by table.
pub fn copy_sqlite_to_postgres(from: &Path, to: &PostgresStore) -> Result<CopyReport, StoreError> {
    if !from.exists() {
        return Err(StoreError::Missing("SQLite database file"));
    }
    let source = SqliteStore::open(from)?;
    let mut tables = Vec::new();
    for table in TABLES {
        tables.push((*table, sqlite_rows(&source, table)?));
    }
    let to_check = tables.clone();
    let report = CopyReport {
        tables: tables
            .iter()
            .map(|(t, (_, rows))| (*t, rows.len()))
            .collect(),
    };
    to.with(move |mut c| async move {
        let tx = c.transaction().await?;
        for (table, _) in &tables {
            // daemon_secrets: the target made its own at its first start if a daemon
            // ran on it; the source's are the ones its grant tokens and markers use.
            if *table == "daemon_secrets" {
                continue;
            }
            let n: i64 = tx
                .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
                .await?
                .get(0);
            if n > 0 {
                return Err(StoreError::AlreadyExists(
                    "data in the PostgreSQL database (copy into an empty one)",
                ));
            }
        }
        tx.execute("DELETE FROM daemon_secrets", &[]).await?;
        for (table, (columns, rows)) in &tables {
            let col_types = column_types(&*tx, table, columns).await?;
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                columns.join(", "),
                (1..=columns.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let stmt = tx.prepare(&sql).await?;
            for row in rows {
                let params = row
                    .iter()
                    .zip(&col_types)
                    .map(|(cell, t)| param(cell, t))
                    .collect::<Result<Vec<_>, _>>()?;
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                tx.execute(&stmt, &refs).await?;
            }
        }
        tx.commit().await?;
        // The check: every table, read back, equals its source.
        for (table, (columns, rows)) in &to_check {
            if postgres_rows(&**c, table, columns).await? != *rows {
                return Err(StoreError::Corrupt(
                    "a table that differs between SQLite and PostgreSQL after the copy",
                ));
            }
        }
        Ok(())
    })?;
    Ok(report)
}
