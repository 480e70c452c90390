//! Domain types shared by every layer below the transport: identifiers, key metadata,
//! encryption context and secret byte containers. Nothing here does I/O.

#[macro_use]
mod aws_enum;

mod access_key;
mod context;
mod digest;
mod ids;
mod import;
mod key;
mod key_ref;
mod key_spec;
mod pem;
mod secret;

pub(crate) use access_key::RandomFailed;
pub use access_key::{AccessKeyId, AccessKeyStatus, SecretAccessKey};
pub(crate) use context::{encode_pairs, EncryptionContext};
pub(crate) use digest::{from_hex, sha256_hex, to_hex};
pub use ids::{AccountId, KeyId};
pub(crate) use ids::{KeyArn, Partition, Region};
pub(crate) use import::{
    ExpirationModel, WrappingAlgorithm, WrappingKeySpec, RETIRED_WRAPPING_ALGORITHMS,
};
pub use key::MaterialVersion;
pub(crate) use key::{KeyMetadata, KeyState, Origin, RotationType};
pub(crate) use key_ref::{KeyRef, KeyRefError};
pub(crate) use key_spec::{
    Curve, Hash, KeySpec, KeyUsage, MacAlgorithm, MaterialKind, MessageType, SignatureScheme,
    SigningAlgorithm,
};
pub use pem::public_key_pem;
pub use secret::{Pin, Plaintext};
