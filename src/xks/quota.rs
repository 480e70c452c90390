//! A logical key store's request quota (`max_requests_per_second`): a token bucket
//! holding one second's worth of requests, refilled continuously. The specification
//! lets a proxy keep a quota per URI path and answer ThrottlingException beyond it;
//! p11kms counts every request to the store's path, signed or not, so that a flood of
//! unsigned requests cannot take the HSM's or the audit trail's capacity from AWS KMS
//! beyond the quota.

use std::sync::Mutex;
use std::time::Instant;

/// The bucket of one store.
#[derive(Debug)]
pub(crate) struct Quota {
    rate: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Quota {
    /// A full bucket of `per_second` requests.
    pub(crate) fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        Self {
            rate,
            bucket: Mutex::new(Bucket {
                tokens: rate,
                at: Instant::now(),
            }),
        }
    }

    /// Takes one request's token at `now`; false when the bucket is empty.
    pub(crate) fn admit(&self, now: Instant) -> bool {
        // A poisoned lock only means another request panicked mid-update of two
        // numbers: the bucket is still usable.
        let mut b = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.rate);
        b.at = now.max(b.at);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_second_of_requests_then_the_rate() {
        let q = Quota::new(10);
        let t0 = Instant::now();
        assert_eq!((0..25).filter(|_| q.admit(t0)).count(), 10);
        // 100 ms refill one token.
        assert!(q.admit(t0 + Duration::from_millis(100)));
        assert!(!q.admit(t0 + Duration::from_millis(100)));
        // Never more than a second's worth, however long the pause.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..25).filter(|_| q.admit(later)).count(), 10);
        // A clock read out of order takes nothing back.
        assert!(!q.admit(t0));
    }
}
