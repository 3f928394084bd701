//! Per-object exponential backoff with jitter.
//!
//! Flat requeue intervals hammer a throttled API and synchronize retries
//! across objects; this keeps a failure count per object (reset on
//! success), doubles the delay from `base` up to `cap`, and draws the actual
//! delay from the upper half of that window ("equal jitter"), so the spacing
//! never drops below half the nominal delay.
//!
//! Entries are keyed by the object's UID, not its name: a DtsJob deleted and
//! created again under the same name is a new object and starts with no
//! delay. The watch forgets an entry when its object is deleted
//! ([`Backoff::forget`], [`Backoff::retain`]), so the map holds only live
//! objects.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// The backoff state of one object.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// Consecutive failures.
    failures: u32,
    /// No retry before this instant, whatever else triggers a reconcile...
    not_before: Option<Instant>,
    /// ...except a new reconcile-requested-at value: the one seen when
    /// the retry was scheduled.
    requested_at: Option<String>,
}

#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The nominal (un-jittered) delay after `failures` consecutive failures.
    pub fn nominal(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Records a failure of `uid`, schedules its retry and returns how long
    /// to wait: never less than the server's `retry_after`, and no retry is
    /// due before then ([`Backoff::remaining`]) unless the object's
    /// reconcile-requested-at annotation changes from `requested_at`.
    pub fn failed(&self, uid: &str, retry_after: Option<Duration>, requested_at: Option<&str>) -> Duration {
        let floor = retry_after.unwrap_or_default();
        self.with(|map| {
            let entry = map.entry(uid.to_owned()).or_default();
            entry.failures = entry.failures.saturating_add(1);
            let nominal = self.nominal(entry.failures);
            let half = nominal / 2;
            let jitter = rand::rng().random_range(0..=half.as_millis().min(u64::MAX as u128) as u64);
            let delay = (half + Duration::from_millis(jitter))
                .max(floor)
                .min(self.cap.max(floor));
            entry.not_before = Some(Instant::now() + delay);
            entry.requested_at = requested_at.map(str::to_owned);
            delay
        })
    }

    /// How long `uid` must still wait, if a retry is scheduled in the
    /// future and no new reconcile was requested since (`requested_at` is
    /// the annotation's current value).
    pub fn remaining(&self, uid: &str, requested_at: Option<&str>) -> Option<Duration> {
        let due = self.with(|map| {
            map.get(uid)
                .filter(|e| e.requested_at.as_deref() == requested_at)
                .and_then(|e| e.not_before)
        })?;
        due.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    /// Forgets `uid`'s failures and schedule (after a success, or when the
    /// object is deleted).
    pub fn forget(&self, uid: &str) {
        self.with(|map| map.remove(uid));
    }

    /// Keeps only the entries of `live` objects (after a relist, which
    /// reports no deletions).
    pub fn retain(&self, live: &HashSet<String>) {
        self.with(|map| map.retain(|uid, _| live.contains(uid)));
    }

    /// How many objects have an entry.
    pub fn len(&self) -> usize {
        self.with(|map| map.len())
    }

    /// Whether no object has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        for (i, nominal) in [1u64, 2, 4, 8, 16].iter().enumerate() {
            let d = b.failed("uid-a", None, None);
            assert!(d >= Duration::from_millis(nominal * 500), "attempt {i}: {d:?}");
            assert!(d <= Duration::from_secs(*nominal), "attempt {i}: {d:?}");
        }
        for _ in 0..30 {
            b.failed("uid-a", None, None);
        }
        assert!(b.failed("uid-a", None, None) <= Duration::from_secs(300));
    }

    #[test]
    fn retry_after_is_a_floor_and_success_resets() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        assert!(b.failed("k", Some(Duration::from_secs(7)), None) >= Duration::from_secs(7));
        b.failed("k", None, None);
        b.forget("k");
        assert!(b.failed("k", None, None) <= Duration::from_secs(1));
        // Objects are independent.
        assert!(b.failed("other", None, None) <= Duration::from_secs(1));
    }

    #[test]
    fn a_failure_schedules_its_retry_and_forgetting_clears_it() {
        let b = Backoff::new(Duration::from_secs(60), Duration::from_secs(300));
        assert_eq!(b.remaining("k", None), None);
        b.failed("k", None, None);
        assert!(b.remaining("k", None).unwrap() > Duration::from_secs(20));
        b.forget("k");
        assert_eq!(b.remaining("k", None), None);
    }

    #[test]
    fn a_new_reconcile_request_cuts_the_wait_short() {
        let b = Backoff::new(Duration::from_secs(60), Duration::from_secs(300));
        b.failed("k", None, Some("t1"));
        assert!(b.remaining("k", Some("t1")).is_some(), "same request: wait");
        assert_eq!(b.remaining("k", Some("t2")), None, "a new value: no wait");
        assert_eq!(b.remaining("k", None), None, "annotation removed: a change too");
    }

    #[test]
    fn a_recreated_object_does_not_inherit_the_old_delay() {
        let b = Backoff::new(Duration::from_secs(60), Duration::from_secs(300));
        b.failed("uid-old", None, None);
        // Same name, new object: a new UID, so no wait.
        assert_eq!(b.remaining("uid-new", None), None);
    }

    #[test]
    fn entries_of_deleted_objects_are_dropped() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        for uid in ["a", "b", "c"] {
            b.failed(uid, None, None);
        }
        b.forget("a");
        assert_eq!(b.len(), 2);
        b.retain(&HashSet::from(["c".to_owned()]));
        assert_eq!(b.len(), 1);
        assert!(b.remaining("c", None).is_some());
        assert_eq!(b.remaining("b", None), None);
    }
}
