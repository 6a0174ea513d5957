//! A token bucket: how often one connection (or one station's REST endpoint) may change the music.
//!
//! Hand-written rather than `governor`: one bucket per connection, owned by its task, needs no
//! shared state, keyed maps or clock abstraction, and this is a dozen lines.

use std::time::Duration;

use tokio::time::Instant;

/// Allows `burst` changes at once, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    per_second: f64,
    tokens: f64,
    refilled_at: Instant,
}

/// Default: a burst of 5 changes, then 2 per second; plenty for a person at a control panel,
/// far too few to flood the synthesis thread.
pub const CONTROL_BURST: u32 = 5;
pub const CONTROL_PER_SECOND: f64 = 2.0;

impl TokenBucket {
    pub fn new(burst: u32, per_second: f64) -> Self {
        Self {
            burst: burst as f64,
            per_second,
            tokens: burst as f64,
            refilled_at: Instant::now(),
        }
    }

    /// The bucket control messages use.
    pub fn for_control() -> Self {
        Self::new(CONTROL_BURST, CONTROL_PER_SECOND)
    }

    /// Takes one token, or says how long until one is available.
    ///
    /// # Errors
    /// The wait until the next token when the bucket is empty.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(3, 2.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(bucket.try_take(t0).is_ok());
        }
        let wait = bucket.try_take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        // Half a second later one more token has arrived, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert!(bucket.try_take(t1).is_ok());
        assert!(bucket.try_take(t1).is_err());
        // A long pause refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.try_take(t2).is_ok());
        }
        assert!(bucket.try_take(t2).is_err());
    }
}
