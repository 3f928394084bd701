//! Per-object exponential backoff with jitter.
//!
//! Flat requeue intervals hammer a throttled API and synchronize retries
//! across objects; this keeps a failure count per object (reset on
//! success), doubles the delay from `base` up to `cap`, and draws the actual
//! delay from the upper half of that window ("equal jitter"), so the spacing
//! never drops below half the nominal delay.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<String, u32>>,
    not_before: Mutex<HashMap<String, Instant>>,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: Mutex::new(HashMap::new()),
            not_before: Mutex::new(HashMap::new()),
        }
    }

    /// The nominal (un-jittered) delay after `failures` consecutive failures.
    pub fn nominal(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Records a failure of `key` and returns how long to wait, never less
    /// than the server's `retry_after`.
    pub fn failed(&self, key: &str, retry_after: Option<Duration>) -> Duration {
        let n = {
            let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(key.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let nominal = self.nominal(n);
        let half = nominal / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis().min(u64::MAX as u128) as u64);
        let delay = half + Duration::from_millis(jitter);
        delay
            .max(retry_after.unwrap_or_default())
            .min(self.cap.max(retry_after.unwrap_or_default()))
    }

    /// Remembers that `key` must not be retried before `wait` has passed,
    /// whatever else triggers a reconcile meanwhile (a Secret touch, a resync).
    pub fn schedule(&self, key: &str, wait: Duration) {
        self.not_before
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), Instant::now() + wait);
    }

    /// How long `key` must still wait, if a retry is scheduled in the future.
    pub fn remaining(&self, key: &str) -> Option<Duration> {
        let map = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        let due = *map.get(key)?;
        due.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    /// Forgets `key`'s failures and schedule (after a success).
    pub fn reset(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        self.not_before.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        for (i, nominal) in [1u64, 2, 4, 8, 16].iter().enumerate() {
            let d = b.failed("ns/a", None);
            assert!(d >= Duration::from_millis(nominal * 500), "attempt {i}: {d:?}");
            assert!(d <= Duration::from_secs(*nominal), "attempt {i}: {d:?}");
        }
        for _ in 0..30 {
            b.failed("ns/a", None);
        }
        assert!(b.failed("ns/a", None) <= Duration::from_secs(300));
    }

    #[test]
    fn retry_after_is_a_floor_and_success_resets() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        assert!(b.failed("k", Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        b.failed("k", None);
        b.reset("k");
        assert!(b.failed("k", None) <= Duration::from_secs(1));
        // Objects are independent.
        assert!(b.failed("other", None) <= Duration::from_secs(1));
    }

    #[test]
    fn a_scheduled_retry_is_not_due_early() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(b.remaining("k"), None);
        b.schedule("k", Duration::from_secs(60));
        assert!(b.remaining("k").unwrap() > Duration::from_secs(50));
        b.reset("k");
        assert_eq!(b.remaining("k"), None);
    }
}
