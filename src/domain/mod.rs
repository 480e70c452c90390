//! Domain types shared by every layer below the transport: identifiers, key metadata,
//! encryption context and secret byte containers. Nothing here does I/O.

mod context;
mod ids;
mod key;
mod key_ref;
mod secret;

pub use context::{encode_pairs, EncryptionContext, MAX_CONTEXT_BYTES};
pub use ids::{AccountId, KeyArn, KeyId, Partition, Region};
pub use key::{
    KeyManager, KeyMetadata, KeySpec, KeyState, KeyUsage, MaterialVersion, Origin, RotationType,
};
pub use key_ref::{KeyRef, KeyRefError, MAX_KEY_ID_LEN};
pub use secret::{Pin, Plaintext};
