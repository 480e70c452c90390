//! Data-key caching for envelope encryption: reuse one data key for several messages
//! within limits, instead of a round trip to the daemon per message.
//!
//! Entries are partitioned by a caller-supplied partition key (the algorithm suite and
//! the encryption context), so a data key is never reused under another context. An
//! entry serves encryptions while it is younger than `max_age` and has encrypted fewer
//! than `max_messages` messages and `max_bytes` bytes; the request that would exceed a
//! limit evicts it instead. Data keys are wiped when their entry is dropped (the
//! materials type owns them as `Plaintext`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the cache reads the time; tests move it by hand.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Limits of a cache and of each entry in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Entries kept at most; the least recently used goes first.
    pub capacity: usize,
    /// An entry older than this serves nothing.
    pub max_age: Duration,
    /// Messages one data key may encrypt.
    pub max_messages: u64,
    /// Plaintext bytes one data key may encrypt.
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            capacity: 100,
            max_age: Duration::from_secs(300),
            max_messages: 1 << 32,
            max_bytes: u64::MAX,
        }
    }
}

/// Hit and miss counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups that were not.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

struct Entry<V> {
    value: V,
    created: Instant,
    last_used: Instant,
    messages: u64,
    bytes: u64,
}

/// A materials cache.
pub struct MaterialsCache<V> {
    limits: CacheLimits,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<Vec<u8>, Entry<V>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<V: Clone> MaterialsCache<V> {
    /// A cache on the system clock.
    pub fn new(limits: CacheLimits) -> Self {
        Self::with_clock(limits, Arc::new(SystemClock))
    }

    /// A cache on a given clock.
    pub fn with_clock(limits: CacheLimits, clock: Arc<dyn Clock>) -> Self {
        Self {
            limits,
            clock,
            entries: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Entry<V>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Materials to encrypt one more message of `bytes` plaintext bytes under
    /// `partition`, counting the use; `None` (a miss) when there are none within limits.
    pub fn get_for_encrypt(&self, partition: &[u8], bytes: u64) -> Option<V> {
        let now = self.clock.now();
        let mut map = self.lock();
        let usable = map.get(partition).is_some_and(|e| {
            now.duration_since(e.created) < self.limits.max_age
                && e.messages < self.limits.max_messages
                && e.bytes
                    .checked_add(bytes)
                    .is_some_and(|b| b <= self.limits.max_bytes)
        });
        if !usable {
            map.remove(partition);
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let e = map.get_mut(partition)?;
        e.messages += 1;
        e.bytes += bytes;
        e.last_used = now;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(e.value.clone())
    }

    /// Materials for decryption (looked up by what identifies them; no usage limits but
    /// age).
    pub fn get_for_decrypt(&self, id: &[u8]) -> Option<V> {
        let now = self.clock.now();
        let mut map = self.lock();
        match map.get_mut(id) {
            Some(e) if now.duration_since(e.created) < self.limits.max_age => {
                e.last_used = now;
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(e.value.clone())
            }
            _ => {
                map.remove(id);
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Stores fresh materials that have just encrypted one message of `bytes` bytes (or,
    /// for decryption, none). Not stored when that use alone is at a limit.
    pub fn put(&self, key: Vec<u8>, value: V, messages: u64, bytes: u64) {
        if messages >= self.limits.max_messages
            || bytes > self.limits.max_bytes
            || self.limits.capacity == 0
        {
            return;
        }
        let now = self.clock.now();
        let mut map = self.lock();
        if !map.contains_key(&key) && map.len() >= self.limits.capacity {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            key,
            Entry {
                value,
                created: now,
                last_used: now,
                messages,
                bytes,
            },
        );
    }

    /// Counts so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.lock().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock tests move by hand.
    struct ManualClock(Mutex<Instant>);

    impl ManualClock {
        fn advance(&self, d: Duration) {
            let mut t = self.0.lock().unwrap();
            *t += d;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn cache(limits: CacheLimits) -> (MaterialsCache<u32>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        (MaterialsCache::with_clock(limits, clock.clone()), clock)
    }

    #[test]
    fn max_age_is_enforced() {
        let (c, clock) = cache(CacheLimits {
            max_age: Duration::from_secs(60),
            ..Default::default()
        });
        c.put(b"ctx".to_vec(), 7, 1, 10);
        assert_eq!(c.get_for_encrypt(b"ctx", 10), Some(7));
        clock.advance(Duration::from_secs(59));
        assert_eq!(c.get_for_encrypt(b"ctx", 10), Some(7));
        clock.advance(Duration::from_secs(1));
        assert_eq!(c.get_for_encrypt(b"ctx", 10), None);
        assert_eq!(
            c.stats(),
            CacheStats {
                hits: 2,
                misses: 1,
                entries: 0
            }
        );
    }

    #[test]
    fn max_messages_is_enforced() {
        let (c, _) = cache(CacheLimits {
            max_messages: 3,
            ..Default::default()
        });
        c.put(b"ctx".to_vec(), 1, 1, 0);
        assert_eq!(c.get_for_encrypt(b"ctx", 0), Some(1)); // message 2
        assert_eq!(c.get_for_encrypt(b"ctx", 0), Some(1)); // message 3
        assert_eq!(
            c.get_for_encrypt(b"ctx", 0),
            None,
            "a 4th message needs a new data key"
        );
        c.put(b"one".to_vec(), 2, 3, 0);
        assert_eq!(c.stats().entries, 0, "materials at the limit are not kept");
    }

    #[test]
    fn max_bytes_is_enforced() {
        let (c, _) = cache(CacheLimits {
            max_bytes: 100,
            ..Default::default()
        });
        c.put(b"ctx".to_vec(), 1, 1, 60);
        assert_eq!(c.get_for_encrypt(b"ctx", 40), Some(1));
        assert_eq!(c.get_for_encrypt(b"ctx", 1), None);
        c.put(b"small".to_vec(), 2, 1, 10);
        c.put(b"big".to_vec(), 3, 1, 101);
        assert_eq!(
            c.stats().entries,
            1,
            "only small is kept: big's one use is already over the byte limit"
        );
        assert_eq!(c.get_for_encrypt(b"small", 0), Some(2));
    }

    #[test]
    fn partitions_are_separate_and_capacity_evicts_least_recently_used() {
        let (c, clock) = cache(CacheLimits {
            capacity: 2,
            ..Default::default()
        });
        c.put(b"a".to_vec(), 1, 1, 0);
        clock.advance(Duration::from_millis(1));
        c.put(b"b".to_vec(), 2, 1, 0);
        clock.advance(Duration::from_millis(1));
        assert_eq!(c.get_for_encrypt(b"a", 0), Some(1));
        clock.advance(Duration::from_millis(1));
        c.put(b"c".to_vec(), 3, 1, 0);
        assert_eq!(
            c.get_for_encrypt(b"b", 0),
            None,
            "b was least recently used"
        );
        assert_eq!(c.get_for_encrypt(b"a", 0), Some(1));
        assert_eq!(c.get_for_encrypt(b"c", 0), Some(3));
        assert_eq!(c.get_for_decrypt(b"zzz"), None);
    }
}
