//! Key metadata persistence behind a trait: SQLite today (embedded, WAL), another
//! backend later. Stores what points at HSM objects, never key material.

mod record;
mod sqlite;
#[cfg(test)]
mod suite;

pub use record::{KeyRecord, MaterialRecord};
pub use sqlite::SqliteStore;

use crate::domain::{AccountId, KeyId, MaterialVersion};

/// A failure of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database itself failed.
    #[error("metadata database error")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value did not parse: the database was edited or is from a newer build.
    #[error("metadata database holds an invalid {0}")]
    Corrupt(&'static str),
    /// The schema is newer than this build knows.
    #[error("metadata database schema version {found} is newer than this build ({known})")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Latest version this build knows.
        known: i64,
    },
    /// An insert met an existing row.
    #[error("the {0} already exists")]
    AlreadyExists(&'static str),
    /// An update found no row.
    #[error("the {0} does not exist")]
    Missing(&'static str),
}

/// What the vault needs from a metadata store. Methods block; the vault calls them off
/// the async runtime.
pub trait Store: Send + Sync + 'static {
    /// Inserts a new key with its first material version.
    fn insert_key(&self, rec: &KeyRecord) -> Result<(), StoreError>;
    /// One key with all its material versions.
    fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError>;
    /// Key ids of an account in id order, starting after `after`, at most `limit`.
    fn list_keys(
        &self,
        account: &AccountId,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<KeyId>, StoreError>;
    /// Adds a material version and makes it the key's current one, atomically.
    fn add_material(&self, id: &KeyId, m: &MaterialRecord) -> Result<(), StoreError>;
    /// Raises the count of GCM invocations reserved for a material version. Never
    /// lowers it: after a crash the daemon resumes above everything it may have used.
    fn reserve_invocations(
        &self,
        id: &KeyId,
        version: MaterialVersion,
        reserved: u64,
    ) -> Result<(), StoreError>;
}
