//! The caching materials manager: reuses a data key for several messages within the
//! cache's limits, instead of a round trip to the daemon per message.
//!
//! Encryption entries are keyed by suite and encryption context (a hash of both), so a
//! data key is never reused under another context; decryption entries by suite, context
//! and the message's encrypted data keys. Requests the cache cannot count are passed
//! through: an unknown plaintext length (a stream) and the signed suite, whose signing
//! key must be new for every message.

use std::sync::Arc;

use aws_lc_rs::digest;

use super::{
    serialize_context, BoxFuture, DecryptionMaterials, DecryptionRequest, EncryptionMaterials,
    EncryptionRequest, EnvelopeError, MaterialsManager,
};
use crate::client::cache::{CacheLimits, CacheStats, Clock, MaterialsCache, SystemClock};

/// A caching manager in front of another manager (usually a p11kms keyring).
pub struct CachingMaterialsManager {
    inner: Arc<dyn MaterialsManager>,
    partition: Vec<u8>,
    encrypt: MaterialsCache<EncryptionMaterials>,
    decrypt: MaterialsCache<DecryptionMaterials>,
}

impl CachingMaterialsManager {
    /// A cache over `inner`, with the same limits for encryption and decryption entries.
    /// `partition` keeps managers that share nothing apart (e.g. one per service).
    pub fn new(inner: Arc<dyn MaterialsManager>, partition: &str, limits: CacheLimits) -> Self {
        Self::with_clock(inner, partition, limits, Arc::new(SystemClock))
    }

    /// The same on a given clock (tests move it).
    pub fn with_clock(
        inner: Arc<dyn MaterialsManager>,
        partition: &str,
        limits: CacheLimits,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner,
            partition: partition.as_bytes().to_vec(),
            encrypt: MaterialsCache::with_clock(limits, clock.clone()),
            decrypt: MaterialsCache::with_clock(limits, clock),
        }
    }

    /// Hits and misses of the encryption side.
    pub fn encrypt_stats(&self) -> CacheStats {
        self.encrypt.stats()
    }

    /// Hits and misses of the decryption side.
    pub fn decrypt_stats(&self) -> CacheStats {
        self.decrypt.stats()
    }

    /// SHA-512 over length-prefixed parts: no two different inputs share an id.
    fn id(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut h = digest::Context::new(&digest::SHA512);
        for p in std::iter::once(&self.partition.as_slice()).chain(parts) {
            h.update(&(p.len() as u64).to_be_bytes());
            h.update(p);
        }
        h.finish().as_ref().to_vec()
    }
}

impl MaterialsManager for CachingMaterialsManager {
    fn encryption_materials<'a>(
        &'a self,
        request: EncryptionRequest<'a>,
    ) -> BoxFuture<'a, Result<EncryptionMaterials, EnvelopeError>> {
        Box::pin(async move {
            let Some(len) = request
                .plaintext_length
                .filter(|_| !request.suite.is_signed())
            else {
                return self.inner.encryption_materials(request).await;
            };
            let id = self.id(&[
                b"encrypt",
                &request.suite.id().to_be_bytes(),
                &serialize_context(request.context)?,
            ]);
            if let Some(m) = self.encrypt.get_for_encrypt(&id, len) {
                return Ok(m);
            }
            let m = self.inner.encryption_materials(request).await?;
            self.encrypt.put(id, m.clone(), 1, len);
            Ok(m)
        })
    }

    fn decryption_materials<'a>(
        &'a self,
        request: DecryptionRequest<'a>,
    ) -> BoxFuture<'a, Result<DecryptionMaterials, EnvelopeError>> {
        Box::pin(async move {
            let ctx = serialize_context(request.context)?;
            let suite = request.suite.id().to_be_bytes();
            let mut parts: Vec<&[u8]> = vec![b"decrypt", &suite, &ctx];
            for e in request.edks {
                parts.extend([e.provider_id.as_bytes(), &e.provider_info, &e.ciphertext]);
            }
            let id = self.id(&parts);
            if let Some(m) = self.decrypt.get_for_decrypt(&id) {
                return Ok(m);
            }
            let m = self.inner.decryption_materials(request).await?;
            self.decrypt.put(id, m.clone(), 0, 0);
            Ok(m)
        })
    }
}
