//! DTS call limits that match DTS's quotas: per key, adaptive, with a
//! circuit breaker (docs/design.md §2.10).
//!
//! DTS counts its quotas per account and per region (DescribeDtsJobs is
//! documented at 20 calls/s per account per region), so the unit of every
//! limit here is a [`LimitKey`]: the AccessKeyId the call is signed with (the
//! role ARN, once assumed-role credentials exist) and the region. Each key
//! has, created on its first call and dropped when idle:
//!
//! * an adaptive token bucket ([`bucket`]): `--dts-rate-limit` is its
//!   ceiling; `Throttling*` answers slow it down (and `x-acs-retry-after`
//!   pauses it), and it recovers by itself. One account's throttling never
//!   slows another's calls;
//! * a circuit breaker ([`breaker`]): after `--circuit-failure-threshold`
//!   answers in a row that fail with the same class (credentials refused,
//!   RAM permission missing, DTS 5xx), no call is sent with that key for
//!   `--circuit-cooloff`, then one probe;
//! * a FIFO turnstile, so the key's callers take their turns in order.
//!
//! The concurrency limit (`--dts-max-concurrency`) stays global: it bounds
//! the operator's own sockets and memory, not a DTS quota. A permit is taken
//! only once the key's bucket has a slot, and held until the answer: a call
//! waiting for a slow (throttled) key holds no permit, so it cannot starve
//! the calls of other keys.
//!
//! The DtsJobs a tripped breaker holds are its *members*: told (through
//! [`Limits::take_wakeups`]) to reconcile when it opens (so a DtsJob whose
//! own call failed before it opened shows `CircuitOpen` too) and when it
//! closes (so they resume at once).
//!
//! Secrets stay out of everything exported: a key is labelled by a hash of
//! its AccessKeyId ([`label`]), and credentials are compared through a
//! digest keyed per process ([`Limits::digest`]).

pub mod breaker;
pub mod bucket;

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::metrics::Metrics;
use breaker::{Admission, Breaker, CloseCause, Group, Ticket, Transition, Trip};
use bucket::Bucket;
use dts_api::{Credentials, DtsError, ErrorReason};

/// A key with no call and no check for this long is dropped.
pub const IDLE_TTL: Duration = Duration::from_secs(600);
/// How often idle keys are looked for (at most).
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// The shortest "look again in" a held DtsJob is given.
const MIN_RETRY: Duration = Duration::from_secs(1);
/// Wake-ups that may wait for the controller; more are dropped (the held
/// DtsJobs also requeue themselves).
const WAKEUPS: usize = 1024;

/// The limits' tunables (the `run` flags).
#[derive(Clone, Debug)]
pub struct LimitsConfig {
    /// Calls per second at most, per key (the adaptive bucket's ceiling).
    pub rate: NonZeroU32,
    /// Calls in flight at most, all keys together.
    pub max_concurrency: usize,
    /// Failures of one class in a row that open a key's breaker; 0: never.
    pub failure_threshold: u32,
    /// How long an open breaker sends nothing before its probe.
    pub cooloff: Duration,
}

/// What DTS's quotas are counted per.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitKey {
    /// The AccessKeyId (the role ARN, once assumed-role credentials exist).
    pub principal: String,
    pub region: String,
}

impl LimitKey {
    pub fn of(creds: &Credentials, region: &str) -> Self {
        Self {
            principal: creds.access_key_id.clone(),
            region: region.to_owned(),
        }
    }
}

/// The name of a principal in metrics, logs and messages: the first 8 hex
/// digits of the SHA-256 of the AccessKeyId. An AccessKeyId is not a
/// secret, but it names an account; the hash correlates without spelling
/// it out (`printf %s "$ID" | sha256sum | cut -c1-8`).
pub fn label(principal: &str) -> String {
    let hash = Sha256::digest(principal.as_bytes());
    hex::encode(&hash[..4])
}

/// An open (or half-open) breaker as a DtsJob sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitInfo {
    /// [`label`] of the principal.
    pub key: String,
    pub region: String,
    pub group: Group,
    /// The code that opened it (or of the last failed probe).
    pub code: String,
    pub failures: u32,
    pub cooloff: Duration,
    /// When to look again.
    pub retry_in: Duration,
}

impl CircuitInfo {
    fn new(key: &KeyLimits, trip: &Trip, cooloff: Duration, retry_in: Duration) -> Self {
        Self {
            key: key.label.clone(),
            region: key.key.region.clone(),
            group: trip.group,
            code: trip.code.clone(),
            failures: trip.failures,
            cooloff,
            retry_in: retry_in.max(MIN_RETRY),
        }
    }

    /// The condition message. It carries nothing that changes while the
    /// circuit stays open for the same code (no countdown), so looking
    /// again writes nothing.
    pub fn message(&self) -> String {
        let tested = match self.group {
            Group::Credentials => "the credentials",
            Group::Permission => "the permission",
            Group::Unavailable => "DTS",
        };
        format!(
            "DTS calls with AccessKey {} in {} are paused: {} calls in a row failed with {}; one call tests {tested} every {}",
            self.key,
            self.region,
            self.failures,
            self.code,
            seconds(self.cooloff)
        )
    }
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// What the breaker of a DtsJob's key allows its reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Circuit {
    /// Calls go (also: not looked at, when no call can be needed).
    #[default]
    Closed,
    /// Half-open, and this reconcile holds the one probe.
    Probe,
    /// Nothing is sent for the key: hold the DtsJob.
    Open(CircuitInfo),
}

/// A DtsJob held by (or failing with) a key's breaker.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    pub namespace: String,
    pub name: String,
}

/// One key's current limits, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySnapshot {
    pub key: String,
    pub region: String,
    /// The rate allowed now, calls per second.
    pub rate: f64,
    /// The breaker is open or half-open.
    pub open: bool,
}

struct KeyLimits {
    key: LimitKey,
    label: String,
    /// The callers of this key, in arrival order.
    turnstile: tokio::sync::Mutex<()>,
    state: Mutex<KeyState>,
}

struct KeyState {
    bucket: Bucket,
    breaker: Breaker,
    members: BTreeSet<Member>,
    last_active: Instant,
}

impl KeyLimits {
    fn lock(&self) -> MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The right to send one call: the key's slot, a concurrency permit, and
/// the breaker's ticket. Report the answer with [`Limits::answered`], or
/// [`Limits::not_sent`].
pub struct Pass<'a> {
    key: Arc<KeyLimits>,
    _permit: SemaphorePermit<'a>,
    ticket: Ticket,
    digest: u64,
    sent_at: Instant,
}

/// Every key's limits.
pub struct Limits {
    config: LimitsConfig,
    in_flight: Semaphore,
    keys: Mutex<HashMap<LimitKey, Arc<KeyLimits>>>,
    last_sweep: Mutex<Option<Instant>>,
    hasher: RandomState,
    wake_tx: mpsc::Sender<Member>,
    wake_rx: Mutex<Option<mpsc::Receiver<Member>>>,
    metrics: Arc<Metrics>,
}

impl Limits {
    pub fn new(config: LimitsConfig, metrics: Arc<Metrics>) -> Self {
        let (wake_tx, wake_rx) = mpsc::channel(WAKEUPS);
        Self {
            in_flight: Semaphore::new(config.max_concurrency.max(1)),
            config,
            keys: Mutex::default(),
            last_sweep: Mutex::default(),
            hasher: RandomState::new(),
            wake_tx,
            wake_rx: Mutex::new(Some(wake_rx)),
            metrics,
        }
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// The DtsJobs to reconcile because a breaker they wait on opened or
    /// closed. Once: the controller takes it.
    pub fn take_wakeups(&self) -> Option<mpsc::Receiver<Member>> {
        self.wake_rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// A digest of the secret parts of `creds`, keyed per process (SipHash
    /// with random keys): equal credentials give equal digests, and nothing
    /// outside this process can tell anything from it. Kept in memory only.
    pub fn digest(&self, creds: &Credentials) -> u64 {
        self.hasher.hash_one((&creds.access_key_secret, &creds.security_token))
    }

    /// Observe's question, before any mark is written: may this DtsJob's
    /// reconcile call with `creds` in `region`? In half-open state the first
    /// reconcile to ask (`holder`, its UID) holds the probe.
    pub fn admit(&self, creds: &Credentials, region: &str, member: &Member, holder: &str) -> Circuit {
        let now = Instant::now();
        let digest = self.digest(creds);
        let key = self.entry(&LimitKey::of(creds, region), now);
        let mut st = key.lock();
        st.last_active = now;
        let (admission, transition) = st.breaker.admit(now, digest, holder);
        if let Some(t) = transition {
            self.transition(&key, &mut st, t);
        }
        match admission {
            Admission::Closed => Circuit::Closed,
            Admission::Probe => Circuit::Probe,
            Admission::Open(trip, retry_in) => {
                st.members.insert(member.clone());
                Circuit::Open(CircuitInfo::new(&key, &trip, self.config.cooloff, retry_in))
            }
        }
    }

    /// The probe `holder` held is not needed (its reconcile made no call).
    pub fn release(&self, creds: &Credentials, region: &str, holder: &str) {
        let key = self.entry(&LimitKey::of(creds, region), Instant::now());
        key.lock().breaker.release(holder);
    }

    /// After a call of `member` failed with `group`: the breaker, if it is
    /// open for that group now, holds the DtsJob (`Some`); either way the
    /// DtsJob is told when it opens or closes.
    pub fn enlist(&self, creds: &Credentials, region: &str, member: &Member, group: Group) -> Option<CircuitInfo> {
        let now = Instant::now();
        let key = self.entry(&LimitKey::of(creds, region), now);
        let mut st = key.lock();
        st.members.insert(member.clone());
        let trip = st.breaker.trip().filter(|t| t.group == group)?.clone();
        let retry_in = st.breaker.retry_in(now).unwrap_or(self.config.cooloff);
        Some(CircuitInfo::new(&key, &trip, self.config.cooloff, retry_in))
    }

    /// Waits until a call with `creds` in `region` may be sent: the breaker
    /// lets it (`may_probe`: it may be a half-open breaker's probe), the
    /// key's bucket has a slot, and a concurrency permit is free. `Err`: the
    /// breaker refused it; nothing may be sent.
    pub async fn acquire(&self, creds: &Credentials, region: &str, may_probe: bool) -> Result<Pass<'_>, CircuitInfo> {
        let digest = self.digest(creds);
        let key = self.entry(&LimitKey::of(creds, region), Instant::now());
        // Open: refused at once, without queueing.
        self.refuse_if_open(&key, digest)?;
        let turn = key.turnstile.lock().await;
        let permit = loop {
            // Opened while this call queued: refused without waiting further.
            self.refuse_if_open(&key, digest)?;
            let now = Instant::now();
            let at = key.lock().bucket.ready_at(now);
            if at > now {
                tokio::time::sleep_until(at).await;
                continue;
            }
            // The semaphore is never closed.
            let Ok(permit) = self.in_flight.acquire().await else {
                continue;
            };
            // The bucket may have been paused while waiting for the permit.
            if key.lock().bucket.try_take(Instant::now()).is_ok() {
                break permit;
            }
        };
        drop(turn);
        let now = Instant::now();
        let mut st = key.lock();
        st.last_active = now;
        let (ticket, transition) = st.breaker.before_send(now, digest, may_probe);
        if let Some(t) = transition {
            self.transition(&key, &mut st, t);
        }
        match ticket {
            Ok(ticket) => {
                drop(st);
                Ok(Pass {
                    key,
                    _permit: permit,
                    ticket,
                    digest,
                    sent_at: now,
                })
            }
            Err((trip, retry_in)) => Err(CircuitInfo::new(&key, &trip, self.config.cooloff, retry_in)),
        }
    }

    /// The call `pass` was for was not sent after all.
    pub fn not_sent(&self, pass: Pass<'_>) {
        pass.key.lock().breaker.not_sent(pass.ticket);
    }

    /// Reports the answer to the call sent with `pass`.
    pub fn answered<T>(&self, pass: Pass<'_>, result: &Result<T, DtsError>) {
        let now = Instant::now();
        let mut st = pass.key.lock();
        st.last_active = now;
        if let Err(e) = result {
            if e.reason() == ErrorReason::Throttled {
                st.bucket.throttled(now, pass.sent_at, e.retry_after);
            }
        }
        let code = result
            .as_ref()
            .err()
            .map(|e| e.code.clone().unwrap_or_else(|| e.reason().as_str().to_owned()));
        let verdict = breaker::verdict(result);
        if let Some(t) = st
            .breaker
            .answered(now, pass.digest, pass.ticket, verdict, code.as_deref())
        {
            self.transition(&pass.key, &mut st, t);
        }
    }

    /// Every live key's rate and breaker, for the metrics (idle keys are
    /// dropped first).
    pub fn snapshot(&self) -> Vec<KeySnapshot> {
        let now = Instant::now();
        self.sweep(now);
        let keys: Vec<Arc<KeyLimits>> = self.keys().values().cloned().collect();
        let mut out: Vec<KeySnapshot> = keys
            .iter()
            .map(|k| {
                let st = k.lock();
                KeySnapshot {
                    key: k.label.clone(),
                    region: k.key.region.clone(),
                    rate: st.bucket.rate(now),
                    open: st.breaker.tripped(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.key, &a.region).cmp(&(&b.key, &b.region)));
        out
    }

    /// The number of keys held (tests).
    pub fn len(&self) -> usize {
        self.keys().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn keys(&self) -> MutexGuard<'_, HashMap<LimitKey, Arc<KeyLimits>>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refuse_if_open(&self, key: &KeyLimits, digest: u64) -> Result<(), CircuitInfo> {
        let now = Instant::now();
        let mut st = key.lock();
        if let Some(t) = st.breaker.poll(now, digest) {
            self.transition(key, &mut st, t);
        }
        match st.breaker.refusing(now) {
            Some((trip, retry_in)) => Err(CircuitInfo::new(key, &trip, self.config.cooloff, retry_in)),
            None => Ok(()),
        }
    }

    /// The key's limits, created on first use.
    fn entry(&self, key: &LimitKey, now: Instant) -> Arc<KeyLimits> {
        self.sweep_if_due(now);
        let mut keys = self.keys();
        keys.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(KeyLimits {
                    key: key.clone(),
                    label: label(&key.principal),
                    turnstile: tokio::sync::Mutex::new(()),
                    state: Mutex::new(KeyState {
                        bucket: Bucket::new(self.config.rate, now),
                        breaker: Breaker::new(self.config.failure_threshold, self.config.cooloff),
                        members: BTreeSet::new(),
                        last_active: now,
                    }),
                })
            })
            .clone()
    }

    fn sweep_if_due(&self, now: Instant) {
        let due = {
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY);
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            self.sweep(now);
        }
    }

    /// Drops the keys nobody uses: no call or check for [`IDLE_TTL`], or a
    /// tripped breaker no DtsJob asked about for two cool-offs (a held
    /// DtsJob asks at least once per cool-off, so nobody waits on it).
    /// A key with a call under way is kept.
    pub fn sweep(&self, now: Instant) {
        let cooloff = self.config.cooloff;
        let mut dropped = Vec::new();
        self.keys().retain(|_, k| {
            if Arc::strong_count(k) > 1 {
                return true;
            }
            let st = k.lock();
            let idle = now.saturating_duration_since(st.last_active);
            let keep = idle < IDLE_TTL && !(st.breaker.tripped() && idle >= cooloff * 2);
            if !keep && st.breaker.tripped() {
                dropped.push((k.label.clone(), k.key.region.clone()));
            }
            keep
        });
        for (key, region) in dropped {
            self.metrics.circuit_closed(CloseCause::Unused.as_str());
            info!(key = %key, region = %region, "circuit closed: no DtsJob uses these credentials any more");
        }
    }

    /// Logs, counts and announces a breaker's change of state.
    fn transition(&self, key: &KeyLimits, st: &mut KeyState, t: Transition) {
        let (label, region) = (&key.label, &key.key.region);
        match &t {
            Transition::Opened(trip) => {
                self.metrics.circuit_opened(trip.group.as_str());
                warn!(key = %label, %region, code = %trip.code, failures = trip.failures, cooloff = ?self.config.cooloff,
                      "circuit open: no DTS call with these credentials until the cool-off is over");
                // DtsJobs whose own call failed before it opened show it too.
                self.wake(&st.members);
            }
            Transition::Reopened(trip) => {
                info!(key = %label, %region, code = %trip.code, cooloff = ?self.config.cooloff,
                      "circuit open again: the probe failed");
            }
            Transition::Closed(cause) => {
                self.metrics.circuit_closed(cause.as_str());
                info!(key = %label, %region, cause = cause.as_str(), "circuit closed: DTS calls resume");
                let members = std::mem::take(&mut st.members);
                self.wake(&members);
            }
        }
    }

    fn wake(&self, members: &BTreeSet<Member>) {
        for m in members {
            // Full or not taken: the held DtsJobs requeue themselves anyway.
            let _ = self.wake_tx.try_send(m.clone());
        }
    }
}

#[cfg(test)]
mod tests;
