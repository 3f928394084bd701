//! Fault injection, set through `POST /_emulator/faults`.
//!
//! Faults fall in two groups, because a client must handle them differently:
//! * *before any effect* (`resetBeforeReadNext`, `throttleNext`, `failNext`,
//!   `html502Next`, `emptyNext` with an error status, `qps`, the per-account
//!   quota `accountQps`, and the Describe* quota `describeQps`): the call is
//!   answered with an error (or its connection dropped unread) and the job is
//!   not touched — DTS did not execute it;
//! * *after the effect* (`latencyMs`, `malformedNext`, `resetNext`,
//!   `emptyNext` with a 2xx status, `hugeNext`): the job has changed and the
//!   call is journaled, then the answer is delayed, garbled, emptied, bloated
//!   or never sent — the client cannot know whether it worked, as with a real
//!   service.
//!
//! `clockSkewSeconds` is neither: it moves the clock the emulator checks
//! request timestamps against, as a DTS whose clock (or the caller's) is off.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use super::error::GatewayError;

/// Default `x-acs-retry-after` (milliseconds) on throttled answers.
pub const DEFAULT_RETRY_AFTER_MS: u64 = 1000;

/// The body of `POST /_emulator/faults`; every field is optional and only
/// the fields present change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultsRequest {
    pub throttle_next: Option<u32>,
    pub fail_next: Option<FailNext>,
    pub latency_ms: Option<u64>,
    pub malformed_next: Option<u32>,
    pub reset_next: Option<u32>,
    /// Calls per second allowed; `0` removes the limit.
    pub qps: Option<u32>,
    /// `x-acs-retry-after` sent with throttled answers (default 1000 ms).
    pub retry_after_ms: Option<u64>,
    /// Describe* calls per second per (AccessKeyId, region); `0` = unlimited.
    pub describe_qps: Option<u32>,
    /// Calls per second (every action) per (AccessKeyId, region), for the
    /// AccessKeyIds named: DTS's per-account quota, for one account only.
    /// Replaces the previous map; `0` (or leaving an account out) removes
    /// its quota.
    pub account_qps: Option<BTreeMap<String, u32>>,
    /// The next N calls have their connection dropped before the request's
    /// body is read or anything is checked (only its head was parsed, to
    /// route it): no answer, no effect (a load balancer or a crashed gateway).
    pub reset_before_read_next: Option<u32>,
    /// The next N calls get a load balancer's HTML `502 Bad Gateway` page,
    /// before any effect.
    pub html502_next: Option<u32>,
    /// The next `count` calls get `status` with an empty body: before the
    /// effect for an error status, after it for a 2xx (the answer was lost).
    pub empty_next: Option<EmptyNext>,
    /// The next N calls that take effect are answered 200 with a JSON body of
    /// [`HUGE_BODY_BYTES`], streamed without a `Content-Length`.
    pub huge_next: Option<u32>,
    /// Seconds added to the emulator's clock when it checks a request's
    /// timestamp (negative: behind). Beyond ±15 min every signed call is
    /// refused with `InvalidTimeStamp.Expired`. `0` restores the real clock.
    pub clock_skew_seconds: Option<i64>,
}

/// `emptyNext`: the next `count` calls get `status` and an empty body.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmptyNext {
    pub count: u32,
    #[serde(default = "default_empty_status")]
    pub status: u16,
}

fn default_empty_status() -> u16 {
    200
}

/// The size of a `hugeNext` answer: well past any client's sane cap.
pub const HUGE_BODY_BYTES: usize = 10 * 1024 * 1024;

/// `failNext`: the next `count` calls get this gateway error.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailNext {
    pub count: u32,
    #[serde(default = "default_fail_status")]
    pub status: u16,
    #[serde(default = "default_fail_code")]
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn default_fail_status() -> u16 {
    503
}

fn default_fail_code() -> String {
    "ServiceUnavailable".to_owned()
}

/// The current settings, as `GET /_emulator/faults` shows them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultsView {
    pub throttle_next: u32,
    pub fail_next: Option<FailNext>,
    pub latency_ms: u64,
    pub malformed_next: u32,
    pub reset_next: u32,
    pub qps: Option<u32>,
    pub retry_after_ms: u64,
    /// The Describe* quota per (AccessKeyId, region); 0 = unlimited.
    pub describe_qps: u32,
    /// The quota of every action per (AccessKeyId, region), by AccessKeyId.
    pub account_qps: BTreeMap<String, u32>,
    pub reset_before_read_next: u32,
    pub html502_next: u32,
    pub empty_next: Option<EmptyNext>,
    pub huge_next: u32,
    pub clock_skew_seconds: i64,
}

/// What to do before a verified call takes effect.
#[derive(Debug, Clone, PartialEq)]
pub enum Before {
    Proceed,
    /// Answer this error (with `x-acs-retry-after` when set) and stop.
    Reject(GatewayError, Option<u64>),
    /// Not executed, and answered with this sabotaged delivery
    /// ([`Delivery::Html502`] or [`Delivery::Empty`] with an error status).
    Sabotage(Delivery),
}

/// How to deliver the answer of a call that took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Normal,
    /// 200 with a body that is not JSON.
    Malformed,
    /// Close the connection without answering.
    Reset,
    /// Close the connection before reading the request (nothing executed).
    ResetBeforeRead,
    /// A load balancer's HTML 502 page (nothing executed).
    Html502,
    /// This status with an empty body.
    Empty(u16),
    /// 200 with a [`HUGE_BODY_BYTES`] JSON body.
    Huge,
}

impl Delivery {
    /// The journal's `fault` label.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Delivery::Normal => None,
            Delivery::Malformed => Some("malformed"),
            Delivery::Reset => Some("reset"),
            Delivery::ResetBeforeRead => Some("resetBeforeRead"),
            Delivery::Html502 => Some("html502"),
            Delivery::Empty(_) => Some("empty"),
            Delivery::Huge => Some("huge"),
        }
    }

    /// The status the journal records; `None` when nothing was answered.
    pub fn http_status(self) -> Option<u16> {
        match self {
            Delivery::Reset | Delivery::ResetBeforeRead => None,
            Delivery::Html502 => Some(502),
            Delivery::Empty(status) => Some(status),
            Delivery::Normal | Delivery::Malformed | Delivery::Huge => Some(200),
        }
    }
}

/// A token bucket per key, refilled at `rate` tokens a second and holding at
/// most `rate` (the burst is one second's worth of calls).
#[derive(Debug, Default)]
pub struct KeyedBuckets {
    rate: u32,
    buckets: HashMap<(String, String), (f64, Instant)>,
}

impl KeyedBuckets {
    pub fn new(rate: u32) -> KeyedBuckets {
        KeyedBuckets {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `key` at `now`; `Err(ms)` when none is left, with
    /// the milliseconds until the next one.
    pub fn take(&mut self, key: (String, String), now: Instant) -> Result<(), u64> {
        if self.rate == 0 {
            return Ok(());
        }
        let rate = f64::from(self.rate);
        let (tokens, last) = self.buckets.entry(key).or_insert((rate, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            // Whole milliseconds, rounded up, at least 1.
            let wait = ((1.0 - *tokens) / rate * 1000.0).ceil();
            Err((wait as u64).max(1))
        }
    }
}

/// Live fault state.
#[derive(Debug, Default)]
pub struct Faults {
    view: FaultsView,
    limiter: Option<DefaultDirectRateLimiter>,
    describe: KeyedBuckets,
    /// `accountQps`: one set of buckets per AccessKeyId, keyed by
    /// (AccessKeyId, region) inside.
    accounts: HashMap<String, KeyedBuckets>,
}

impl Faults {
    /// No faults, and a Describe* quota of `describe_qps` per (AccessKeyId,
    /// region) (0 = unlimited).
    pub fn new(describe_qps: u32) -> Faults {
        Faults {
            view: FaultsView {
                describe_qps,
                ..Default::default()
            },
            limiter: None,
            describe: KeyedBuckets::new(describe_qps),
            accounts: HashMap::new(),
        }
    }

    /// The Describe* quota: `Reject` with `Throttling.User` when the
    /// (AccessKeyId, region) bucket is empty. Called after [`Faults::before`]
    /// for Describe* actions only.
    pub fn describe_quota(&mut self, access_key_id: &str, region: &str, now: Instant) -> Before {
        match self.describe.take((access_key_id.to_owned(), region.to_owned()), now) {
            Ok(()) => Before::Proceed,
            Err(ms) => Before::Reject(GatewayError::throttled(), Some(ms)),
        }
    }

    /// The per-account quota (`accountQps`): `Reject` with `Throttling.User`
    /// when the (AccessKeyId, region) bucket of a limited account is empty.
    /// Called after [`Faults::before`], for every action.
    pub fn account_quota(&mut self, access_key_id: &str, region: &str, now: Instant) -> Before {
        let Some(buckets) = self.accounts.get_mut(access_key_id) else {
            return Before::Proceed;
        };
        match buckets.take((access_key_id.to_owned(), region.to_owned()), now) {
            Ok(()) => Before::Proceed,
            Err(ms) => Before::Reject(GatewayError::throttled(), Some(ms)),
        }
    }

    pub fn view(&self) -> FaultsView {
        let mut v = self.view.clone();
        v.retry_after_ms = self.retry_after_ms();
        v
    }

    fn retry_after_ms(&self) -> u64 {
        if self.view.retry_after_ms == 0 {
            DEFAULT_RETRY_AFTER_MS
        } else {
            self.view.retry_after_ms
        }
    }

    /// Applies a `POST /_emulator/faults` body. `Err` names the bad field.
    pub fn apply(&mut self, req: FaultsRequest) -> Result<(), String> {
        if let Some(f) = &req.fail_next {
            if !(400..=599).contains(&f.status) {
                return Err(format!("failNext.status must be 400..599, got {}", f.status));
            }
            if f.code.trim().is_empty() {
                return Err("failNext.code is empty".into());
            }
        }
        if let Some(e) = &req.empty_next {
            if !(200..=599).contains(&e.status) || (300..400).contains(&e.status) {
                return Err(format!("emptyNext.status must be 2xx, 4xx or 5xx, got {}", e.status));
            }
        }
        if let Some(s) = req.clock_skew_seconds {
            // jiff's span limit, and far beyond any real clock error.
            if s.unsigned_abs() > 100 * 365 * 86_400 {
                return Err(format!("clockSkewSeconds must be within ±100 years, got {s}"));
            }
        }
        if let Some(n) = req.reset_before_read_next {
            self.view.reset_before_read_next = n;
        }
        if let Some(n) = req.html502_next {
            self.view.html502_next = n;
        }
        if let Some(e) = req.empty_next {
            self.view.empty_next = (e.count > 0).then_some(e);
        }
        if let Some(n) = req.huge_next {
            self.view.huge_next = n;
        }
        if let Some(s) = req.clock_skew_seconds {
            self.view.clock_skew_seconds = s;
        }
        if let Some(n) = req.throttle_next {
            self.view.throttle_next = n;
        }
        if let Some(f) = req.fail_next {
            self.view.fail_next = (f.count > 0).then_some(f);
        }
        if let Some(ms) = req.latency_ms {
            self.view.latency_ms = ms;
        }
        if let Some(n) = req.malformed_next {
            self.view.malformed_next = n;
        }
        if let Some(n) = req.reset_next {
            self.view.reset_next = n;
        }
        if let Some(ms) = req.retry_after_ms {
            self.view.retry_after_ms = ms;
        }
        if let Some(quotas) = req.account_qps {
            let quotas: BTreeMap<String, u32> = quotas.into_iter().filter(|(_, q)| *q > 0).collect();
            self.accounts = quotas
                .iter()
                .map(|(id, q)| (id.clone(), KeyedBuckets::new(*q)))
                .collect();
            self.view.account_qps = quotas;
        }
        if let Some(q) = req.describe_qps {
            self.view.describe_qps = q;
            self.describe = KeyedBuckets::new(q);
        }
        if let Some(q) = req.qps {
            self.view.qps = NonZeroU32::new(q).map(|_| q);
            // A token bucket of one second's worth of calls.
            self.limiter = NonZeroU32::new(q).map(|q| RateLimiter::direct(Quota::per_second(q)));
        }
        Ok(())
    }

    /// Whether this connection is dropped before its request is read
    /// (`resetBeforeReadNext`); counts one down.
    pub fn reset_before_read(&mut self) -> bool {
        let hit = self.view.reset_before_read_next > 0;
        if hit {
            self.view.reset_before_read_next -= 1;
        }
        hit
    }

    /// The emulator's clock for timestamp checks: `now` moved by
    /// `clockSkewSeconds`.
    pub fn skewed(&self, now: jiff::Timestamp) -> jiff::Timestamp {
        now.checked_add(jiff::SignedDuration::from_secs(self.view.clock_skew_seconds))
            .unwrap_or(now)
    }

    /// Decides, before any effect, whether this call is refused.
    pub fn before(&mut self) -> Before {
        if self.view.html502_next > 0 {
            self.view.html502_next -= 1;
            return Before::Sabotage(Delivery::Html502);
        }
        if let Some(e) = &mut self.view.empty_next {
            if !(200..300).contains(&e.status) {
                let status = e.status;
                e.count -= 1;
                if e.count == 0 {
                    self.view.empty_next = None;
                }
                return Before::Sabotage(Delivery::Empty(status));
            }
        }
        if self.view.throttle_next > 0 {
            self.view.throttle_next -= 1;
            return Before::Reject(GatewayError::throttled(), Some(self.retry_after_ms()));
        }
        if let Some(f) = &mut self.view.fail_next {
            let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let message = f
                .message
                .clone()
                .unwrap_or_else(|| "The request has failed due to a temporary failure of the server.".into());
            let err = GatewayError::new(status, f.code.clone(), message);
            f.count -= 1;
            if f.count == 0 {
                self.view.fail_next = None;
            }
            return Before::Reject(err, None);
        }
        if let Some(limiter) = &self.limiter {
            if limiter.check().is_err() {
                let per_call = 1000 / u64::from(self.view.qps.unwrap_or(1).max(1));
                return Before::Reject(GatewayError::throttled(), Some(per_call.max(1)));
            }
        }
        Before::Proceed
    }

    /// Decides, after the call took effect, how its answer is delivered.
    pub fn after(&mut self) -> (Duration, Delivery) {
        let latency = Duration::from_millis(self.view.latency_ms);
        if self.view.reset_next > 0 {
            self.view.reset_next -= 1;
            return (latency, Delivery::Reset);
        }
        if self.view.malformed_next > 0 {
            self.view.malformed_next -= 1;
            return (latency, Delivery::Malformed);
        }
        if let Some(e) = &mut self.view.empty_next {
            if (200..300).contains(&e.status) {
                let status = e.status;
                e.count -= 1;
                if e.count == 0 {
                    self.view.empty_next = None;
                }
                return (latency, Delivery::Empty(status));
            }
        }
        if self.view.huge_next > 0 {
            self.view.huge_next -= 1;
            return (latency, Delivery::Huge);
        }
        (latency, Delivery::Normal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_run_down_in_order() {
        let mut f = Faults::default();
        f.apply(FaultsRequest {
            throttle_next: Some(1),
            fail_next: Some(FailNext {
                count: 1,
                status: 503,
                code: "ServiceUnavailable".into(),
                message: None,
            }),
            reset_next: Some(1),
            malformed_next: Some(1),
            ..Default::default()
        })
        .unwrap();
        assert!(matches!(f.before(), Before::Reject(e, Some(1000)) if e.code == "Throttling.User"));
        assert!(matches!(f.before(), Before::Reject(e, None) if e.code == "ServiceUnavailable" && e.status == 503));
        assert_eq!(f.before(), Before::Proceed);
        assert_eq!(f.after().1, Delivery::Reset);
        assert_eq!(f.after().1, Delivery::Malformed);
        assert_eq!(f.after().1, Delivery::Normal);
    }

    #[test]
    fn qps_limits_and_zero_removes_the_limit() {
        let mut f = Faults::default();
        f.apply(FaultsRequest {
            qps: Some(1),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.before(), Before::Proceed);
        assert!(matches!(f.before(), Before::Reject(e, Some(_)) if e.code == "Throttling.User"));
        f.apply(FaultsRequest {
            qps: Some(0),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.before(), Before::Proceed);
        assert_eq!(f.view().qps, None);
    }

    #[test]
    fn new_faults_fall_in_their_group() {
        let mut f = Faults::default();
        f.apply(FaultsRequest {
            reset_before_read_next: Some(1),
            html502_next: Some(1),
            huge_next: Some(1),
            empty_next: Some(EmptyNext { count: 2, status: 503 }),
            ..Default::default()
        })
        .unwrap();
        assert!(f.reset_before_read());
        assert!(!f.reset_before_read(), "one connection only");
        assert_eq!(f.before(), Before::Sabotage(Delivery::Html502));
        assert_eq!(f.before(), Before::Sabotage(Delivery::Empty(503)));
        assert_eq!(f.before(), Before::Sabotage(Delivery::Empty(503)));
        assert_eq!(f.before(), Before::Proceed);
        assert_eq!(f.view().empty_next, None, "used up");
        assert_eq!(f.after().1, Delivery::Huge);
        assert_eq!(f.after().1, Delivery::Normal);

        // A 2xx empty answer is an answer lost after the effect.
        f.apply(FaultsRequest {
            empty_next: Some(EmptyNext { count: 1, status: 200 }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.before(), Before::Proceed, "not refused before the effect");
        assert_eq!(f.after().1, Delivery::Empty(200));
        assert_eq!(f.after().1, Delivery::Normal);
        assert_eq!(Delivery::Empty(200).http_status(), Some(200));
        assert_eq!(Delivery::ResetBeforeRead.http_status(), None);
        assert_eq!(Delivery::Html502.label(), Some("html502"));
    }

    #[test]
    fn clock_skew_moves_the_checking_clock_and_is_bounded() {
        let mut f = Faults::default();
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(f.skewed(now), now);
        f.apply(FaultsRequest {
            clock_skew_seconds: Some(-1200),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.skewed(now).to_string(), "2025-12-31T23:40:00Z");
        assert!(f
            .apply(FaultsRequest {
                clock_skew_seconds: Some(i64::MAX),
                ..Default::default()
            })
            .is_err());
        assert_eq!(f.view().clock_skew_seconds, -1200, "a refused request changes nothing");
        for status in [100, 302, 600] {
            assert!(
                f.apply(FaultsRequest {
                    empty_next: Some(EmptyNext { count: 1, status }),
                    ..Default::default()
                })
                .is_err(),
                "{status}"
            );
        }
    }

    #[test]
    fn rejects_a_non_error_status() {
        let mut f = Faults::default();
        let bad = FailNext {
            count: 1,
            status: 200,
            code: "X".into(),
            message: None,
        };
        assert!(f
            .apply(FaultsRequest {
                fail_next: Some(bad),
                ..Default::default()
            })
            .is_err());
    }

    #[test]
    fn account_quota_limits_only_the_named_account_in_each_region() {
        let mut f = Faults::new(0);
        f.apply(FaultsRequest {
            account_qps: Some(BTreeMap::from([("slow".to_owned(), 2), ("off".to_owned(), 0)])),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.view().account_qps, BTreeMap::from([("slow".to_owned(), 2)]));
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(f.account_quota("slow", "r", t0), Before::Proceed);
        }
        // The third call of the second: throttled, told when the next token comes.
        assert!(
            matches!(f.account_quota("slow", "r", t0), Before::Reject(e, Some(500)) if e.code == "Throttling.User")
        );
        assert_eq!(f.account_quota("slow", "r2", t0), Before::Proceed, "per region");
        for _ in 0..100 {
            assert_eq!(
                f.account_quota("fast", "r", t0),
                Before::Proceed,
                "other accounts: no quota"
            );
            assert_eq!(f.account_quota("off", "r", t0), Before::Proceed, "0 removes it");
        }
        assert_eq!(
            f.account_quota("slow", "r", t0 + Duration::from_millis(500)),
            Before::Proceed
        );
        // A new map replaces the old one.
        f.apply(FaultsRequest {
            account_qps: Some(BTreeMap::new()),
            ..Default::default()
        })
        .unwrap();
        for _ in 0..10 {
            assert_eq!(f.account_quota("slow", "r", t0), Before::Proceed);
        }
        assert!(f.view().account_qps.is_empty());
    }

    #[test]
    fn describe_quota_is_per_key_with_a_burst_of_the_rate() {
        let mut f = Faults::new(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(f.describe_quota("a", "r", t0), Before::Proceed);
        }
        assert!(matches!(f.describe_quota("a", "r", t0), Before::Reject(e, Some(334)) if e.code == "Throttling.User"));
        assert_eq!(f.describe_quota("b", "r", t0), Before::Proceed);
        assert_eq!(f.describe_quota("a", "r2", t0), Before::Proceed);
        // One token back a third of a second later.
        assert_eq!(
            f.describe_quota("a", "r", t0 + Duration::from_millis(334)),
            Before::Proceed
        );
        f.apply(FaultsRequest {
            describe_qps: Some(0),
            ..Default::default()
        })
        .unwrap();
        for _ in 0..100 {
            assert_eq!(f.describe_quota("a", "r", t0), Before::Proceed);
        }
        assert_eq!(f.view().describe_qps, 0);
    }
}
