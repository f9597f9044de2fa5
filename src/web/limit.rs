//! The limiter of failed basic-auth verifications, so a flood of wrong passwords cannot
//! starve the few bcrypt slots that legitimate users need.
//!
//! Each configured user has a token bucket of bcrypt attempts ([`BURST`] deep, refilled
//! at [`REFILL_PER_SECOND`]); all unknown users share one more. An attempt takes a token
//! before bcrypt runs and gives it back if the password was right, so only failures
//! count. With the bucket empty the request is answered 429 at once, without bcrypt. A
//! pair already verified is served from the cache and never reaches the limiter.
//!
//! Trade-offs, chosen on purpose:
//! - A flood aimed at one user's name also refuses that user's *uncached* right password
//!   until the flood stops (a scraper that already got in is cached and unaffected).
//!   Keying by client address instead would not help against a spread-out flood, and
//!   one global bucket would lock every user out.
//! - Unknown users share a bucket so random names cannot mint buckets; in exchange, a
//!   prober can tell a known name from an unknown one by which bucket a 429 comes from.
//!   Names are the low-value half of a credential.
//! - bcrypt time per user is bounded to about `BURST` checks, then one a second, one at
//!   a time: a flood takes at most a fraction of one core.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Failed attempts a user may make in a row before being limited.
pub const BURST: f64 = 5.0;
/// Failed attempts allowed per second once the burst is spent.
pub const REFILL_PER_SECOND: f64 = 1.0;

struct Bucket {
    tokens: f64,
    at: Instant,
    /// One bcrypt check at a time for this bucket.
    turn: Arc<Semaphore>,
}

/// Token buckets of bcrypt attempts, by configured user name (`None`: every unknown
/// user). The map holds at most one entry per configured user, plus one.
#[derive(Default)]
pub struct FailureLimiter {
    buckets: Mutex<HashMap<Option<String>, Bucket>>,
}

impl FailureLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Option<String>, Bucket>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a token for one bcrypt attempt and returns the bucket's turn, to hold
    /// while bcrypt runs; `Err` is how long until a token is available.
    pub fn take(&self, key: Option<&str>) -> Result<Arc<Semaphore>, Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: Option<&str>, now: Instant) -> Result<Arc<Semaphore>, Duration> {
        let mut buckets = self.lock();
        let b = buckets
            .entry(key.map(str::to_owned))
            .or_insert_with(|| Bucket {
                tokens: BURST,
                at: now,
                turn: Arc::new(Semaphore::new(1)),
            });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * REFILL_PER_SECOND).min(BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(b.turn.clone())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - b.tokens) / REFILL_PER_SECOND,
            ))
        }
    }

    /// Gives back the token of an attempt that succeeded: only failures are limited.
    pub fn refund(&self, key: Option<&str>) {
        if let Some(b) = self.lock().get_mut(&key.map(str::to_owned)) {
            b.tokens = (b.tokens + 1.0).min(BURST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_user_and_successes_are_free() {
        let l = FailureLimiter::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.take_at(Some("a"), t0).is_ok());
        }
        let wait = l.take_at(Some("a"), t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another user, and the unknown-user bucket, are untouched.
        assert!(l.take_at(Some("b"), t0).is_ok());
        assert!(l.take_at(None, t0).is_ok());
        // One token back a second later.
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.take_at(Some("a"), t1).is_ok());
        assert!(l.take_at(Some("a"), t1).is_err());
        // A success gives its token back.
        l.refund(Some("a"));
        assert!(l.take_at(Some("a"), t1).is_ok());
        // The bucket never holds more than the burst.
        let later = t1 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert!(l.take_at(Some("a"), later).is_ok());
        }
        assert!(l.take_at(Some("a"), later).is_err());
    }
}
