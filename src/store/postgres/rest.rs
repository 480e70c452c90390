//! Policies and principal tags, key and principal tags' shared writes, aliases,
//! grants with the daemon's secrets, and access keys: the store's other traits on
//! PostgreSQL. Every quota is counted under the transaction's advisory lock on its
//! owner, so that two daemons cannot both pass it.

use std::time::SystemTime;

use super::announce;
use super::{count, from_ms, is_unique_violation, limit, lock, to_ms, PostgresStore};
use crate::domain::{AccessKeyId, AccessKeyStatus, AccountId, KeyId};
use crate::store::encoding::{
    constraints_from_column, constraints_to_column, operations_from_column, operations_to_column,
    TagTable,
};
use crate::store::{
    AccessKeyRecord, AccessKeyStore, AliasRecord, AliasStore, Change, GrantRecord, GrantStore,
    PolicyStore, StoreError,
};

/// The change a write to `t`'s rows of `owner` makes.
fn tag_change(t: TagTable, owner: &str) -> Change {
    match owner.parse::<KeyId>() {
        Ok(id) if t.table == TagTable::KEY.table => Change::Key(id),
        _ => Change::Principal(owner.to_owned()),
    }
}

/// Adds or replaces `tags` of `owner`, all or none: LimitExceeded past `max_tags`.
pub(super) fn put_tags(
    store: &PostgresStore,
    t: TagTable,
    owner: String,
    tags: &[(String, String)],
    max_tags: usize,
) -> Result<(), StoreError> {
    let tags = tags.to_vec();
    store.with(move |mut c| async move {
        let tx = c.transaction().await?;
        lock(&tx, &format!("{}:{owner}", t.table)).await?;
        let upsert = format!(
            "INSERT INTO {table} ({owner_col}, tag_key, tag_value) VALUES ($1, $2, $3)
             ON CONFLICT ({owner_col}, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
            table = t.table,
            owner_col = t.owner
        );
        // ASCII folding only, as condition keys fold (the C collation's lower()).
        let replace_folded = format!(
            "DELETE FROM {table} WHERE {owner_col} = $1
               AND lower(tag_key COLLATE \"C\") = lower($2 COLLATE \"C\") AND tag_key <> $2",
            table = t.table,
            owner_col = t.owner
        );
        for (k, v) in &tags {
            if t.fold_case {
                tx.execute(&replace_folded, &[&owner, k]).await?;
            }
            tx.execute(&upsert, &[&owner, k, v]).await?;
        }
        let n: i64 = tx
            .query_one(
                &format!("SELECT COUNT(*) FROM {} WHERE {} = $1", t.table, t.owner),
                &[&owner],
            )
            .await?
            .get(0);
        if count(n) > max_tags {
            // Dropping the transaction rolls every insert back.
            return Err(StoreError::LimitExceeded(format!(
                "{} has at most {max_tags} tags",
                t.what
            )));
        }
        announce(&*tx, &tag_change(t, &owner)).await?;
        tx.commit().await?;
        Ok(())
    })
}

/// Removes tags of `owner` by key (absent ones are ignored).
pub(super) fn delete_tags(
    store: &PostgresStore,
    t: TagTable,
    owner: String,
    keys: &[String],
) -> Result<(), StoreError> {
    let keys = keys.to_vec();
    store.with(move |c| async move {
        let sql = format!(
            "DELETE FROM {} WHERE {} = $1 AND {}",
            t.table,
            t.owner,
            if t.fold_case {
                "lower(tag_key COLLATE \"C\") = ANY (SELECT lower(k COLLATE \"C\") FROM unnest($2::text[]) AS k)"
            } else {
                "tag_key = ANY ($2)"
            }
        );
        c.execute(&sql, &[&owner, &keys]).await?;
        announce(&**c, &tag_change(t, &owner)).await?;
        Ok(())
    })
}

/// (name, value) rows of one owner, ordered by the first column.
fn pairs(
    store: &PostgresStore,
    sql: &'static str,
    owner: String,
) -> Result<Vec<(String, String)>, StoreError> {
    store.with(move |c| async move {
        Ok(c.query(sql, &[&owner])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    })
}

impl PolicyStore for PostgresStore {
    fn set_key_policy(&self, id: &KeyId, policy: &str) -> Result<(), StoreError> {
        let (key, id, policy) = (id.to_string(), *id, policy.to_owned());
        self.with(move |c| async move {
            let n = c
                .execute(
                    "UPDATE keys SET policy = $2 WHERE key_id = $1",
                    &[&key, &policy],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::Missing("key"));
            }
            announce(&**c, &Change::Key(id)).await?;
            Ok(())
        })
    }

    fn put_identity_policy(
        &self,
        principal: &str,
        name: &str,
        document: &str,
    ) -> Result<(), StoreError> {
        let (p, n, d) = (principal.to_owned(), name.to_owned(), document.to_owned());
        self.with(move |c| async move {
            c.execute(
                "INSERT INTO identity_policies (principal, policy_name, document)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (principal, policy_name) DO UPDATE SET document = excluded.document",
                &[&p, &n, &d],
            )
            .await?;
            announce(&**c, &Change::Principal(p)).await?;
            Ok(())
        })
    }

    fn identity_policies(&self, principal: &str) -> Result<Vec<(String, String)>, StoreError> {
        pairs(
            self,
            "SELECT policy_name, document FROM identity_policies WHERE principal = $1
             ORDER BY policy_name COLLATE \"C\"",
            principal.to_owned(),
        )
    }

    fn delete_identity_policy(&self, principal: &str, name: &str) -> Result<bool, StoreError> {
        let (p, n) = (principal.to_owned(), name.to_owned());
        self.with(move |c| async move {
            let deleted = c
                .execute(
                    "DELETE FROM identity_policies WHERE principal = $1 AND policy_name = $2",
                    &[&p, &n],
                )
                .await?
                > 0;
            if deleted {
                announce(&**c, &Change::Principal(p)).await?;
            }
            Ok(deleted)
        })
    }

    fn principal_tags(&self, principal: &str) -> Result<Vec<(String, String)>, StoreError> {
        pairs(
            self,
            "SELECT tag_key, tag_value FROM principal_tags WHERE principal = $1
             ORDER BY tag_key COLLATE \"C\"",
            principal.to_owned(),
        )
    }

    fn tag_principal(
        &self,
        principal: &str,
        tags: &[(String, String)],
        max_tags: usize,
    ) -> Result<(), StoreError> {
        put_tags(
            self,
            TagTable::PRINCIPAL,
            principal.to_owned(),
            tags,
            max_tags,
        )
    }

    fn untag_principal(&self, principal: &str, keys: &[String]) -> Result<(), StoreError> {
        delete_tags(self, TagTable::PRINCIPAL, principal.to_owned(), keys)
    }
}

const ALIAS_COLUMNS: &str = "account, name, key_id, created_ms, updated_ms";

fn alias(r: &tokio_postgres::Row) -> Result<AliasRecord, StoreError> {
    Ok(AliasRecord {
        account: r
            .get::<_, String>(0)
            .parse()
            .map_err(|_| StoreError::Corrupt("alias account"))?,
        name: r.get(1),
        key_id: r
            .get::<_, String>(2)
            .parse()
            .map_err(|_| StoreError::Corrupt("alias key id"))?,
        created: from_ms(r.get(3)),
        updated: from_ms(r.get(4)),
    })
}

/// After a write in `tx` (holding the key's lock): LimitExceeded (and so a rollback)
/// when `key` now has more than `max` aliases.
async fn check_alias_room(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &str,
    max: usize,
) -> Result<(), StoreError> {
    let n: i64 = tx
        .query_one("SELECT COUNT(*) FROM aliases WHERE key_id = $1", &[&key])
        .await?
        .get(0);
    if count(n) > max {
        return Err(StoreError::LimitExceeded(format!(
            "a key has at most {max} aliases"
        )));
    }
    Ok(())
}

impl AliasStore for PostgresStore {
    fn insert_alias(&self, a: &AliasRecord, max_per_key: usize) -> Result<(), StoreError> {
        let a = a.clone();
        self.with(move |mut c| async move {
            let tx = c.transaction().await?;
            let key = a.key_id.to_string();
            lock(&tx, &format!("aliases:{key}")).await?;
            let inserted = tx
                .execute(
                    &format!(
                        "INSERT INTO aliases ({ALIAS_COLUMNS}) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (account, name) DO NOTHING"
                    ),
                    &[
                        &a.account.as_str(),
                        &a.name,
                        &key,
                        &to_ms(a.created),
                        &to_ms(a.updated),
                    ],
                )
                .await?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists("alias"));
            }
            check_alias_room(&tx, &key, max_per_key).await?;
            announce(&*tx, &Change::Alias(a.account.clone(), a.name.clone())).await?;
            announce(&*tx, &Change::Key(a.key_id)).await?;
            tx.commit().await?;
            Ok(())
        })
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
        let (account, name, from, to) = (
            account.as_str().to_owned(),
            name.to_owned(),
            from.to_string(),
            to.to_string(),
        );
        self.with(move |mut c| async move {
            let tx = c.transaction().await?;
            lock(&tx, &format!("aliases:{to}")).await?;
            let n = tx
                .execute(
                    "UPDATE aliases SET key_id = $4, updated_ms = $5
                     WHERE account = $1 AND name = $2 AND key_id = $3",
                    &[&account, &name, &from, &to, &to_ms(at)],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::Missing("alias"));
            }
            check_alias_room(&tx, &to, max_per_key).await?;
            for change in [
                account
                    .parse()
                    .map_or(Change::All, |a| Change::Alias(a, name.clone())),
                from.parse().map_or(Change::All, Change::Key),
                to.parse().map_or(Change::All, Change::Key),
            ] {
                announce(&*tx, &change).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn delete_alias(
        &self,
        account: &AccountId,
        name: &str,
        key: &KeyId,
    ) -> Result<bool, StoreError> {
        let (acct, name, id) = (account.clone(), name.to_owned(), *key);
        self.with(move |c| async move {
            let deleted = c
                .execute(
                    "DELETE FROM aliases WHERE account = $1 AND name = $2 AND key_id = $3",
                    &[&acct.as_str(), &name, &id.to_string()],
                )
                .await?
                > 0;
            if deleted {
                announce(&**c, &Change::Alias(acct, name)).await?;
                announce(&**c, &Change::Key(id)).await?;
            }
            Ok(deleted)
        })
    }

    fn alias(&self, account: &AccountId, name: &str) -> Result<Option<AliasRecord>, StoreError> {
        let (account, name) = (account.as_str().to_owned(), name.to_owned());
        self.with(move |c| async move {
            c.query_opt(
                &format!("SELECT {ALIAS_COLUMNS} FROM aliases WHERE account = $1 AND name = $2"),
                &[&account, &name],
            )
            .await?
            .as_ref()
            .map(alias)
            .transpose()
        })
    }

    fn list_aliases(
        &self,
        account: &AccountId,
        key: Option<&KeyId>,
        after: Option<&str>,
        limit_to: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let (account, key, after) = (
            account.as_str().to_owned(),
            key.map(|k| k.to_string()),
            after.unwrap_or("").to_owned(),
        );
        self.with(move |c| async move {
            c.query(
                &format!(
                    "SELECT {ALIAS_COLUMNS} FROM aliases
                     WHERE account = $1 AND ($2::text IS NULL OR key_id = $2)
                       AND name COLLATE \"C\" > $3
                     ORDER BY name COLLATE \"C\" LIMIT $4"
                ),
                &[&account, &key, &after, &limit(limit_to)],
            )
            .await?
            .iter()
            .map(alias)
            .collect()
        })
    }
}

const GRANT_COLUMNS: &str =
    "grant_id, key_id, name, grantee, retiring, operations, constraints, issuing_account, creation_ms";

fn grant(r: &tokio_postgres::Row) -> Result<GrantRecord, StoreError> {
    Ok(GrantRecord {
        grant_id: r.get(0),
        key_id: r
            .get::<_, String>(1)
            .parse()
            .map_err(|_| StoreError::Corrupt("grant key id"))?,
        name: r.get(2),
        grantee: r.get(3),
        retiring: r.get(4),
        operations: operations_from_column(&r.get::<_, String>(5))?,
        constraints: r
            .get::<_, Option<String>>(6)
            .as_deref()
            .map(constraints_from_column)
            .transpose()?,
        issuing_account: r.get(7),
        creation_date: from_ms(r.get(8)),
    })
}

impl GrantStore for PostgresStore {
    fn insert_grant(
        &self,
        g: &GrantRecord,
        max_per_key: usize,
        max_per_grantee: usize,
    ) -> Result<(), StoreError> {
        let g = g.clone();
        self.with(move |mut c| async move {
            let tx = c.transaction().await?;
            let key = g.key_id.to_string();
            lock(&tx, &format!("grants:{key}")).await?;
            let counts = tx
                .query_one(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE grantee = $2)
                     FROM grants WHERE key_id = $1",
                    &[&key, &g.grantee],
                )
                .await?;
            if count(counts.get(0)) >= max_per_key {
                return Err(StoreError::LimitExceeded(format!(
                    "a key has at most {max_per_key} grants"
                )));
            }
            if count(counts.get(1)) >= max_per_grantee {
                return Err(StoreError::LimitExceeded(format!(
                    "a key has at most {max_per_grantee} grants for one grantee"
                )));
            }
            tx.execute(
                &format!(
                    "INSERT INTO grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ),
                &[
                    &g.grant_id,
                    &key,
                    &g.name,
                    &g.grantee,
                    &g.retiring,
                    &operations_to_column(&g.operations),
                    &g.constraints.as_ref().map(constraints_to_column),
                    &g.issuing_account,
                    &to_ms(g.creation_date),
                ],
            )
            .await?;
            announce(&*tx, &Change::Key(g.key_id)).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn grants_for_key(&self, key: &KeyId) -> Result<Vec<GrantRecord>, StoreError> {
        let key = key.to_string();
        self.with(move |c| async move {
            c.query(
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM grants WHERE key_id = $1
                     ORDER BY grant_id COLLATE \"C\""
                ),
                &[&key],
            )
            .await?
            .iter()
            .map(grant)
            .collect()
        })
    }

    fn grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let id = grant_id.to_owned();
        self.with(move |c| async move {
            c.query_opt(
                &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE grant_id = $1"),
                &[&id],
            )
            .await?
            .as_ref()
            .map(grant)
            .transpose()
        })
    }

    fn delete_grant(&self, grant_id: &str) -> Result<bool, StoreError> {
        let id = grant_id.to_owned();
        self.with(move |c| async move {
            let Some(row) = c
                .query_opt(
                    "DELETE FROM grants WHERE grant_id = $1 RETURNING key_id",
                    &[&id],
                )
                .await?
            else {
                return Ok(false);
            };
            let key: String = row.get(0);
            announce(&**c, &key.parse().map_or(Change::All, Change::Key)).await?;
            Ok(true)
        })
    }

    fn retirable_grants(
        &self,
        retiring: &str,
        after: &str,
        limit_to: usize,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let (retiring, after) = (retiring.to_owned(), after.to_owned());
        self.with(move |c| async move {
            c.query(
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM grants
                     WHERE retiring = $1 AND grant_id COLLATE \"C\" > $2
                     ORDER BY grant_id COLLATE \"C\" LIMIT $3"
                ),
                &[&retiring, &after, &limit(limit_to)],
            )
            .await?
            .iter()
            .map(grant)
            .collect()
        })
    }

    fn secret(&self, name: &str, make: &dyn Fn() -> Vec<u8>) -> Result<Vec<u8>, StoreError> {
        // Made here, on the caller's thread: `make` is not Send.
        let (name, made) = (name.to_owned(), make());
        self.with(move |c| async move {
            // The first daemon to ask makes the secret; every later one (and every
            // restart) reads the same bytes.
            c.execute(
                "INSERT INTO daemon_secrets (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &made],
            )
            .await?;
            Ok(
                c.query_one("SELECT value FROM daemon_secrets WHERE name = $1", &[&name])
                    .await?
                    .get(0),
            )
        })
    }
}

const ACCESS_KEY_COLUMNS: &str =
    "access_key_id, principal, account, status, created_ms, sealed_secret";

fn access_key(r: &tokio_postgres::Row) -> Result<AccessKeyRecord, StoreError> {
    Ok(AccessKeyRecord {
        access_key_id: r
            .get::<_, String>(0)
            .parse()
            .map_err(|_| StoreError::Corrupt("access key id"))?,
        principal: r.get(1),
        account: r
            .get::<_, String>(2)
            .parse::<AccountId>()
            .map_err(|_| StoreError::Corrupt("account id"))?,
        status: r
            .get::<_, String>(3)
            .parse::<AccessKeyStatus>()
            .map_err(|()| StoreError::Corrupt("access key status"))?,
        created: from_ms(r.get(4)),
        sealed_secret: r.get(5),
    })
}

impl AccessKeyStore for PostgresStore {
    fn insert_access_key(
        &self,
        k: &AccessKeyRecord,
        max_per_principal: usize,
    ) -> Result<(), StoreError> {
        let k = k.clone();
        self.with(move |mut c| async move {
            let tx = c.transaction().await?;
            lock(&tx, &format!("access_keys:{}", k.principal)).await?;
            let n: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM access_keys WHERE principal = $1",
                    &[&k.principal],
                )
                .await?
                .get(0);
            if count(n) >= max_per_principal {
                return Err(StoreError::LimitExceeded(format!(
                    "a principal has at most {max_per_principal} access keys; delete one first"
                )));
            }
            let inserted = tx
                .execute(
                    &format!(
                        "INSERT INTO access_keys ({ACCESS_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
                    ),
                    &[
                        &k.access_key_id.as_str(),
                        &k.principal,
                        &k.account.to_string(),
                        &k.status.as_str(),
                        &to_ms(k.created),
                        &k.sealed_secret,
                    ],
                )
                .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::AlreadyExists("access key"))
                }
                Err(e) => return Err(e.into()),
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn access_key(&self, id: &AccessKeyId) -> Result<Option<AccessKeyRecord>, StoreError> {
        let id = id.as_str().to_owned();
        self.with(move |c| async move {
            c.query_opt(
                &format!("SELECT {ACCESS_KEY_COLUMNS} FROM access_keys WHERE access_key_id = $1"),
                &[&id],
            )
            .await?
            .as_ref()
            .map(access_key)
            .transpose()
        })
    }

    fn access_keys(&self, principal: &str) -> Result<Vec<AccessKeyRecord>, StoreError> {
        let principal = principal.to_owned();
        self.with(move |c| async move {
            c.query(
                &format!(
                    "SELECT {ACCESS_KEY_COLUMNS} FROM access_keys WHERE principal = $1
                     ORDER BY created_ms, access_key_id COLLATE \"C\""
                ),
                &[&principal],
            )
            .await?
            .iter()
            .map(access_key)
            .collect()
        })
    }

    fn delete_access_key(&self, id: &AccessKeyId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.with(move |c| async move {
            let deleted = c
                .execute("DELETE FROM access_keys WHERE access_key_id = $1", &[&id])
                .await?
                > 0;
            if deleted {
                announce(&**c, &Change::AccessKey(id)).await?;
            }
            Ok(deleted)
        })
    }
}
