//! Key policies, identity policies and principal tags: the [`PolicyStore`] trait.

use rusqlite::params;

use super::tags::{delete_tags, put_tags};
use super::{string_pairs, SqliteStore};
use crate::domain::KeyId;
use crate::store::encoding::TagTable;
use crate::store::{PolicyStore, StoreError};

const TAGS_SQL: &str =
    "SELECT tag_key, tag_value FROM principal_tags WHERE principal = ?1 ORDER BY tag_key";
const POLICIES_SQL: &str =
    "SELECT policy_name, document FROM identity_policies WHERE principal = ?1 ORDER BY policy_name";

impl PolicyStore for SqliteStore {
    fn set_key_policy(&self, id: &KeyId, policy: &str) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET policy = ?2 WHERE key_id = ?1",
            params![id.to_string(), policy],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("key"));
        }
        Ok(())
    }

    fn put_identity_policy(
        &self,
        principal: &str,
        name: &str,
        document: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO identity_policies (principal, policy_name, document) VALUES (?1, ?2, ?3)
             ON CONFLICT (principal, policy_name) DO UPDATE SET document = excluded.document",
            params![principal, name, document],
        )?;
        Ok(())
    }

    fn identity_policies(&self, principal: &str) -> Result<Vec<(String, String)>, StoreError> {
        string_pairs(&self.conn(), POLICIES_SQL, principal)
    }

    fn delete_identity_policy(&self, principal: &str, name: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM identity_policies WHERE principal = ?1 AND policy_name = ?2",
            params![principal, name],
        )?;
        Ok(n > 0)
    }

    fn principal_tags(&self, principal: &str) -> Result<Vec<(String, String)>, StoreError> {
        string_pairs(&self.conn(), TAGS_SQL, principal)
    }

    fn tag_principal(
        &self,
        principal: &str,
        tags: &[(String, String)],
        max_tags: usize,
    ) -> Result<(), StoreError> {
        put_tags(
            &mut self.conn(),
            TagTable::PRINCIPAL,
            principal,
            tags,
            max_tags,
        )
    }

    fn untag_principal(&self, principal: &str, keys: &[String]) -> Result<(), StoreError> {
        delete_tags(&mut self.conn(), TagTable::PRINCIPAL, principal, keys)
    }
}
