//! One adaptive token bucket: the call rate the operator allows itself for
//! one (AccessKey, region), between `--dts-rate-limit` (the ceiling) and
//! [`MIN_RATE`].
//!
//! Why adaptive: DTS's quotas are per account and region and are not
//! published for every action (DescribeDtsJobs is documented at 20 calls/s),
//! and other clients of the same account share them. A fixed client-side
//! rate is either too slow or, when DTS answers `Throttling*`, too fast;
//! sending on at the same rate only collects more throttled answers. So the
//! bucket slows down when DTS throttles and speeds up again when it stops.
//!
//! The algorithm is the AWS SDKs' "adaptive" retry mode (the client-side
//! rate limiter of botocore / smithy, itself CUBIC congestion control from
//! TCP), with two differences noted below:
//!
//! * **Throttled** (an answer whose reason is `Throttled`): the rate that
//!   was being achieved, `W = min(measured send rate, allowed rate)`, is
//!   remembered, and the rate drops to `BETA · W` (multiplicative decrease,
//!   [`BETA`] = 0.7). A throttled answer to a call sent *before* the last
//!   decrease does not decrease again: with several calls in flight, one
//!   overload produces several throttled answers, and TCP, too, counts one
//!   loss per window. `x-acs-retry-after` pauses the bucket: no call is sent
//!   for that key until it has passed.
//! * **Recovery**: `t` seconds after the decrease the rate is
//!   `SCALE · (t − K)³ + W` with `K = ∛(W · (1 − BETA) / SCALE)`: it climbs
//!   back to `W` in `K` seconds (about 2 s for W = 10/s), flattens there
//!   (where the quota was hit), then grows faster again, up to the ceiling.
//!   Unlike the SDKs, the rate is a function of time only (the SDKs also cap
//!   it at twice the measured rate and recompute it per answer), so an idle
//!   key recovers too, and the exported rate is exact at any instant.
//! * **Spacing**: a burst of one, as the fixed limit always had: a call may
//!   go `1 / rate` after the previous one (GCRA with no tolerance), so calls
//!   are evenly spaced and an idle bucket lets the first call go at once.
//!
//! Everything here is pure: every method takes the instant it runs at
//! (`tokio::time::Instant`, so tests drive it with paused time) and nothing
//! sleeps.

use std::num::NonZeroU32;
use std::time::Duration;

use tokio::time::Instant;

/// Multiplicative decrease on a throttled answer.
pub const BETA: f64 = 0.7;
/// How fast the rate grows back (CUBIC's C).
pub const SCALE: f64 = 0.4;
/// The lowest rate, calls per second (the SDKs' minimum fill rate), unless
/// the ceiling is lower.
pub const MIN_RATE: f64 = 0.5;
/// Weight of the newest half-second in the measured send rate.
const SMOOTH: f64 = 0.8;

/// The decrease in force.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Decrease {
    at: Instant,
    /// The rate at which DTS throttled (CUBIC's W_max).
    w_max: f64,
    /// Seconds until the rate is back at `w_max`.
    k: f64,
}

/// The send rate actually achieved, smoothed over half-second intervals
/// (the SDKs' measured transmission rate).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Measured {
    /// Start of the current half-second interval.
    interval: Instant,
    count: u32,
    rate: f64,
}

/// One key's adaptive bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    ceiling: f64,
    /// The earliest instant of the next send.
    next_at: Option<Instant>,
    /// `x-acs-retry-after`: nothing is sent before it.
    paused_until: Option<Instant>,
    decrease: Option<Decrease>,
    measured: Measured,
}

impl Bucket {
    /// A bucket at its ceiling, `ceiling` calls per second.
    pub fn new(ceiling: NonZeroU32, now: Instant) -> Self {
        Self {
            ceiling: f64::from(ceiling.get()),
            next_at: None,
            paused_until: None,
            decrease: None,
            measured: Measured {
                interval: now,
                count: 0,
                rate: 0.0,
            },
        }
    }

    /// The rate allowed at `now`, calls per second.
    pub fn rate(&self, now: Instant) -> f64 {
        let floor = MIN_RATE.min(self.ceiling);
        match self.decrease {
            None => self.ceiling,
            Some(d) => {
                let t = now.saturating_duration_since(d.at).as_secs_f64();
                (SCALE * (t - d.k).powi(3) + d.w_max).clamp(floor, self.ceiling)
            }
        }
    }

    /// When the next call may be sent (`now` or later).
    pub fn ready_at(&self, now: Instant) -> Instant {
        [self.next_at, self.paused_until]
            .into_iter()
            .flatten()
            .fold(now, Instant::max)
    }

    /// Until when the bucket is paused by `x-acs-retry-after`, if it is.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|p| *p > now)
    }

    /// Takes the slot of one call at `now`, or says when the next one is.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        let at = self.ready_at(now);
        if at > now {
            return Err(at);
        }
        let rate = self.rate(now);
        self.next_at = Some(now + Duration::from_secs_f64(1.0 / rate));
        self.count_send(now);
        // Back at the ceiling: the decrease is over.
        if rate >= self.ceiling
            && self
                .decrease
                .is_some_and(|d| now.saturating_duration_since(d.at).as_secs_f64() > d.k)
        {
            self.decrease = None;
        }
        Ok(())
    }

    /// DTS throttled a call sent at `sent_at`, answered at `now`.
    pub fn throttled(&mut self, now: Instant, sent_at: Instant, retry_after: Option<Duration>) {
        if let Some(d) = retry_after {
            let until = now + d;
            self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
        }
        // Sent before the last decrease: that decrease already answered it.
        if self.decrease.is_some_and(|d| sent_at < d.at) {
            return;
        }
        let allowed = self.rate(now);
        let achieved = if self.measured.rate > 0.0 {
            self.measured.rate.min(allowed)
        } else {
            allowed
        };
        let w_max = achieved.max(MIN_RATE.min(self.ceiling));
        self.decrease = Some(Decrease {
            at: now,
            w_max,
            k: (w_max * (1.0 - BETA) / SCALE).cbrt(),
        });
        // The spacing at the new rate starts now.
        let next = now + Duration::from_secs_f64(1.0 / self.rate(now));
        self.next_at = Some(self.next_at.map_or(next, |n| n.max(next)));
    }

    fn count_send(&mut self, now: Instant) {
        let m = &mut self.measured;
        m.count += 1;
        let elapsed = now.saturating_duration_since(m.interval).as_secs_f64();
        if elapsed >= 0.5 {
            // Whole half-seconds since the interval began.
            let span = (elapsed * 2.0).floor() / 2.0;
            let current = f64::from(m.count) / span;
            m.rate = current * SMOOTH + m.rate * (1.0 - SMOOTH);
            m.count = 0;
            m.interval += Duration::from_secs_f64(span);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ten() -> NonZeroU32 {
        NonZeroU32::new(10).unwrap()
    }

    #[test]
    fn at_the_ceiling_calls_are_spaced_evenly_with_a_burst_of_one() {
        let t0 = Instant::now();
        let mut b = Bucket::new(ten(), t0);
        assert_eq!(b.try_take(t0), Ok(()), "an idle bucket lets the first call go at once");
        assert_eq!(b.try_take(t0), Err(t0 + ms(100)));
        assert_eq!(b.try_take(t0 + ms(99)), Err(t0 + ms(100)));
        assert_eq!(b.try_take(t0 + ms(100)), Ok(()));
        // Idle for a second: still one call, not ten.
        assert_eq!(b.try_take(t0 + ms(1200)), Ok(()));
        assert_eq!(b.try_take(t0 + ms(1200)), Err(t0 + ms(1300)));
        assert_eq!(b.rate(t0 + ms(1200)), 10.0);
    }

    #[test]
    fn a_throttle_cuts_the_rate_by_beta_and_retry_after_pauses_the_bucket() {
        let t0 = Instant::now();
        let mut b = Bucket::new(ten(), t0);
        // No send rate measured yet: the allowed rate is what was achieved.
        b.try_take(t0).unwrap();
        b.throttled(t0 + ms(10), t0, Some(ms(500)));
        let rate = b.rate(t0 + ms(10));
        assert!((rate - 7.0).abs() < 1e-9, "{rate}");
        assert_eq!(b.paused_until(t0 + ms(10)), Some(t0 + ms(510)));
        assert_eq!(
            b.try_take(t0 + ms(400)),
            Err(t0 + ms(510)),
            "paused by x-acs-retry-after"
        );
        assert_eq!(b.try_take(t0 + ms(510)), Ok(()));
        // The next call is spaced at the recovering rate, slower than 10/s.
        let rate = b.rate(t0 + ms(510));
        assert!(rate > 7.0 && rate < 10.0, "{rate}");
        let Err(next) = b.try_take(t0 + ms(510)) else {
            panic!("spaced")
        };
        let gap = (next - (t0 + ms(510))).as_secs_f64();
        assert!((gap - 1.0 / rate).abs() < 1e-6 && gap > 0.1, "{gap}");
    }

    #[test]
    fn the_rate_recovers_along_the_cubic_to_the_ceiling() {
        let t0 = Instant::now();
        let mut b = Bucket::new(ten(), t0);
        b.try_take(t0).unwrap();
        b.throttled(t0, t0, None);
        // K = cbrt(10 * 0.3 / 0.4) = cbrt(7.5) ≈ 1.957 s: back at W_max = 10.
        let k = 7.5f64.cbrt();
        let at = |s: f64| b.rate(t0 + Duration::from_secs_f64(s));
        assert!((at(0.0) - 7.0).abs() < 1e-9);
        assert!(
            at(0.5) > 7.0 && at(0.5) < at(1.0) && at(1.0) < at(k),
            "monotonic recovery"
        );
        assert!((at(k) - 10.0).abs() < 1e-6);
        assert_eq!(at(5.0), 10.0, "capped at the ceiling");
        // Back at the ceiling, the decrease is forgotten at the next call.
        b.try_take(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(b.decrease, None);
    }

    #[test]
    fn answers_to_calls_sent_before_a_decrease_do_not_decrease_again() {
        let t0 = Instant::now();
        let mut b = Bucket::new(ten(), t0);
        b.try_take(t0).unwrap();
        b.throttled(t0 + ms(50), t0, None);
        let once = b.rate(t0 + ms(50));
        // Two more answers to calls sent at t0, arriving after the decrease.
        b.throttled(t0 + ms(60), t0, Some(ms(300)));
        b.throttled(t0 + ms(70), t0, None);
        assert!((b.rate(t0 + ms(50)) - once).abs() < 1e-9, "one overload, one decrease");
        assert_eq!(
            b.paused_until(t0 + ms(70)),
            Some(t0 + ms(360)),
            "but the pause is honoured"
        );
        // A call sent after the decrease and throttled again: a second decrease.
        let before = b.rate(t0 + ms(500));
        b.throttled(t0 + ms(500), t0 + ms(400), None);
        let after = b.rate(t0 + ms(500));
        assert!((after - before * BETA).abs() < 1e-9, "{before} → {after}");
    }

    #[test]
    fn the_decrease_starts_from_the_measured_rate_and_never_goes_below_the_floor() {
        let t0 = Instant::now();
        let mut b = Bucket::new(NonZeroU32::new(100).unwrap(), t0);
        // Two calls a second for three seconds: far below the ceiling.
        for i in 0..6 {
            b.try_take(t0 + ms(500 * i)).unwrap();
        }
        b.throttled(t0 + ms(3000), t0 + ms(2500), None);
        let rate = b.rate(t0 + ms(3000));
        assert!(rate < 2.0, "from about 2/s, not from 100/s: {rate}");
        // Throttled again and again: never below MIN_RATE.
        let mut t = t0 + ms(3000);
        for _ in 0..20 {
            t += ms(10);
            b.throttled(t, t, None);
        }
        assert_eq!(b.rate(t), MIN_RATE);
        // A ceiling under the floor wins.
        let mut one = Bucket::new(NonZeroU32::MIN, t0);
        one.try_take(t0).unwrap();
        for i in 1..10 {
            one.throttled(t0 + ms(i), t0 + ms(i), None);
        }
        assert_eq!(one.rate(t0 + ms(10)), MIN_RATE);
        assert!(one.rate(t0 + Duration::from_secs(60)) <= 1.0);
    }
}
