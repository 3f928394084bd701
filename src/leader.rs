//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's
//! semantics (`k8s.io/client-go/tools/leaderelection`), so only one replica
//! reconciles and calls DTS.
//!
//! * A candidate reads the Lease every `retry_period`. It takes the Lease when
//!   it is free (no holder, e.g. after a release) or when the holder's record
//!   has not changed for the holder's `leaseDurationSeconds`, measured on the
//!   candidate's own monotonic clock since it *observed* the last change (as
//!   client-go does, so clock skew between nodes does not matter).
//! * Every write is a replace with the `resourceVersion` just read, so of two
//!   candidates racing for an expired Lease exactly one wins (the other gets
//!   409 Conflict).
//! * The leader renews every `retry_period`. When no renewal has succeeded for
//!   `renew_deadline` it stops being leader at once: [`LeaderState::is_leader`]
//!   also checks that deadline itself, so even a stalled election task cannot
//!   leave a replica believing it leads. `renew_deadline < lease_duration`
//!   leaves the old leader that margin to stop before anyone may take over.
//! * On shutdown the leader releases the Lease (empty holder, 1 s duration),
//!   so a standby takes over on its next poll instead of waiting for expiry.
//!
//! Why not kube-lease-manager (0.13.1, kube 5): it writes the Lease with
//! PATCH (strategic merge and server-side apply), which needs the `patch` verb,
//! takes whole seconds only, and has no renew deadline — a leader whose renewals
//! keep failing stays leader until its own lock expires, where a leader must
//! stop acting at once. What is needed here is one small state machine
//! with a pure, unit-tested decision function.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio::time::Instant;

/// client-go's `LeaseDuration` default.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// client-go's `RenewDeadline` default.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// client-go's `RetryPeriod` default.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Where the Lease lives, who we are, and the timing (client-go's names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Lease name (`--lease-name`).
    pub name: String,
    /// Lease namespace: the operator's own namespace (`--lease-namespace`).
    pub namespace: String,
    /// Holder identity, unique per replica: the pod name.
    pub identity: String,
    /// How long others wait after the last observed renewal before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// Interval between acquire and renew attempts.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A config with client-go's default timing (15 s / 10 s / 2 s).
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// client-go's checks: `lease_duration > renew_deadline > 1.2 × retry_period`.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let invalid = |m: &str| Err(LeaderError::InvalidConfig(m.to_string()));
        if self.name.is_empty() || self.namespace.is_empty() {
            return invalid("lease name and namespace must not be empty");
        }
        if self.identity.is_empty() {
            return invalid("identity must not be empty (set POD_NAME)");
        }
        if self.lease_duration <= self.renew_deadline {
            return invalid("lease duration must be greater than the renew deadline");
        }
        if self.renew_deadline <= self.retry_period.mul_f64(JITTER_FACTOR) {
            return invalid("renew deadline must be greater than 1.2 × the retry period");
        }
        if self.retry_period.is_zero() {
            return invalid("retry period must be positive");
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        // The Lease stores whole seconds; round up so others never wait less.
        let secs = self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }
}

/// client-go's `JitterFactor`; our acquire polls add up to 20 % instead of
/// client-go's 120 % so that a handover stays close to `lease_duration + retry_period`.
const JITTER_FACTOR: f64 = 1.2;
const ACQUIRE_JITTER: f64 = 0.2;

/// Errors of leader election: only a bad config. API errors while electing
/// are logged and retried, never returned.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid leader election config: {0}")]
    InvalidConfig(String),
}

/// Cheap, cloneable view of "do I hold the Lease right now?". Gate every DTS
/// call and status write on [`is_leader`](Self::is_leader).
#[derive(Clone, Debug)]
pub struct LeaderState {
    rx: watch::Receiver<bool>,
    /// The instant after which leadership is void unless renewed; `None` with
    /// `rx == true` means leader unconditionally (election disabled).
    valid_until: Arc<Mutex<Option<Instant>>>,
}

impl LeaderState {
    /// A state that always leads: for `--leader-elect` off (one replica).
    pub fn always_leader() -> Self {
        let (tx, rx) = watch::channel(true);
        // Without a sender the receiver keeps its last value for ever.
        drop(tx);
        Self {
            rx,
            valid_until: Arc::new(Mutex::new(None)),
        }
    }

    /// True while this replica holds the Lease and its last renewal is younger
    /// than the renew deadline.
    pub fn is_leader(&self) -> bool {
        if !*self.rx.borrow() {
            return false;
        }
        match *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(until) => Instant::now() < until,
            None => true,
        }
    }

    /// Resolves once this replica leads (at once if it already does). Never
    /// resolves for a replica that stays standby.
    pub async fn wait_leader(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|leader| *leader).await.is_err() {
            // The elector is gone and we were not leading: we never will.
            std::future::pending::<()>().await;
        }
    }

    /// Resolves when this replica stops leading (at once if it does not lead).
    /// Useful to abort work in a `select!` the moment the Lease is lost.
    pub async fn wait_lost(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|leader| !*leader).await.is_err() && *self.rx.borrow() {
            // The elector is gone while leading: only `always_leader` does that.
            std::future::pending::<()>().await;
        }
    }

    /// The raw leadership flag, for callers that want to react to changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}

/// What a candidate does with the Lease it just read. Pure: see [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it with us as holder.
    Create,
    /// Take the Lease: it is free or its holder let it expire.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a valid Lease; it expires in `expires_in` unless renewed.
    Wait { holder: String, expires_in: Duration },
}

/// client-go's `tryAcquireOrRenew` decision. `observed_at` is when this
/// candidate first saw the Lease record in its current form (monotonic clock).
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, observed_at: Instant, now: Instant) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    let expires = observed_at + duration;
    if now < expires {
        Decision::Wait {
            holder: holder.to_string(),
            expires_in: expires - now,
        }
    } else {
        Decision::Acquire
    }
}

/// The record we write when acquiring or renewing (client-go's rules):
/// `acquireTime` and `leaseTransitions` are kept on renewal; a change of holder
/// bumps `leaseTransitions` and sets `acquireTime`.
pub fn next_spec(
    old: Option<&LeaseSpec>,
    identity: &str,
    lease_duration_seconds: i32,
    now: jiff::Timestamp,
) -> LeaseSpec {
    let renewing = old.and_then(|s| s.holder_identity.as_deref()) == Some(identity);
    let (acquire_time, transitions) = match old {
        Some(old) if renewing => (old.acquire_time.clone().or(Some(MicroTime(now))), old.lease_transitions),
        Some(old) => (Some(MicroTime(now)), Some(old.lease_transitions.unwrap_or(0) + 1)),
        None => (Some(MicroTime(now)), Some(0)),
    };
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(lease_duration_seconds),
        acquire_time,
        renew_time: Some(MicroTime(now)),
        lease_transitions: transitions,
        ..Default::default()
    }
}

/// The record of a released Lease (client-go's `release`): no holder, a 1 s
/// duration, transitions kept, so the next candidate takes it at once.
pub fn released_spec(old: &LeaseSpec, now: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: old.lease_transitions,
        ..Default::default()
    }
}

/// Outcome of one acquire/renew attempt.
enum Attempt {
    /// We hold the Lease as of the attempt's start.
    Held,
    /// Someone else holds it.
    Standby,
}

/// Runs the election for one replica. Create it, hand [`state`](Self::state)
/// to the controller, then spawn [`run`](Self::run).
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    tx: watch::Sender<bool>,
    state: LeaderState,
    /// The last record read and when it was first seen in that form.
    observed: Option<(LeaseSpec, Instant)>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Result<Self, LeaderError> {
        config.validate()?;
        let api = Api::namespaced(client, &config.namespace);
        let (tx, rx) = watch::channel(false);
        let state = LeaderState {
            rx,
            valid_until: Arc::new(Mutex::new(Some(Instant::now()))),
        };
        Ok(Self {
            api,
            config,
            tx,
            state,
            observed: None,
        })
    }

    /// The handle to gate work on; clone it freely.
    pub fn state(&self) -> LeaderState {
        self.state.clone()
    }

    /// Campaigns, leads and renews until `shutdown` resolves, then releases the
    /// Lease if held. A replica that loses the Lease goes back to campaigning.
    ///
    /// Resolve `shutdown` only after in-flight DTS calls have finished: the
    /// Lease stays renewed until then, so no other replica can start calling
    /// while this one still has calls on the wire.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let cfg = self.config.clone();
        loop {
            // Standby: poll until we hold the Lease.
            let mut renewed_at = loop {
                let started = Instant::now();
                let attempt = tokio::select! {
                    _ = &mut shutdown => return,
                    a = tokio::time::timeout(cfg.renew_deadline, self.try_acquire_or_renew()) => a,
                };
                if let Ok(Ok(Attempt::Held)) = attempt {
                    break started;
                }
                if let Ok(Err(e)) = attempt {
                    tracing::warn!(error = %e, lease = %cfg.name, "leader election: cannot read or write the Lease");
                }
                let pause = cfg.retry_period.mul_f64(1.0 + rand::random::<f64>() * ACQUIRE_JITTER);
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            };
            self.set_leader(Some(renewed_at + cfg.renew_deadline));
            tracing::info!(identity = %cfg.identity, lease = %cfg.name, namespace = %cfg.namespace, "became leader");

            // Leader: renew every retry period until the renew deadline passes
            // without success, someone else takes the Lease, or shutdown.
            loop {
                tokio::select! {
                    _ = &mut shutdown => {
                        self.set_leader(None);
                        self.release().await;
                        return;
                    }
                    // Wake no later than the deadline, so the flag flips on time.
                    _ = tokio::time::sleep_until(
                        (Instant::now() + cfg.retry_period).min(renewed_at + cfg.renew_deadline)
                    ) => {}
                }
                let deadline = renewed_at + cfg.renew_deadline;
                let started = Instant::now();
                let attempt = tokio::select! {
                    _ = &mut shutdown => {
                        self.set_leader(None);
                        self.release().await;
                        return;
                    }
                    a = tokio::time::timeout_at(deadline, self.try_acquire_or_renew()) => a,
                };
                match attempt {
                    Ok(Ok(Attempt::Held)) => {
                        renewed_at = started;
                        self.set_leader(Some(renewed_at + cfg.renew_deadline));
                    }
                    Ok(Ok(Attempt::Standby)) => {
                        self.set_leader(None);
                        tracing::warn!(identity = %cfg.identity, "lost leadership: another replica holds the Lease");
                        break;
                    }
                    Ok(Err(e)) if Instant::now() < deadline => {
                        tracing::warn!(error = %e, "leader election: renewal failed; retrying until the renew deadline");
                    }
                    Ok(Err(_)) | Err(_) => {
                        self.set_leader(None);
                        tracing::warn!(identity = %cfg.identity, renew_deadline = ?cfg.renew_deadline,
                            "lost leadership: no successful renewal within the renew deadline");
                        break;
                    }
                }
            }
        }
    }

    fn set_leader(&self, valid_until: Option<Instant>) {
        let leader = valid_until.is_some();
        *self.state.valid_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(valid_until.unwrap_or_else(Instant::now));
        self.tx.send_if_modified(|v| std::mem::replace(v, leader) != leader);
    }

    /// Reads the Lease and, as [`decide`] says, creates, takes or renews it.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let cfg = &self.config;
        let now = Instant::now();
        let lease = self.api.get_opt(&cfg.name).await?;
        let spec = lease.as_ref().and_then(|l| l.spec.clone());
        let observed_at = match (&self.observed, &spec) {
            (Some((seen, at)), Some(spec)) if seen == spec => *at,
            _ => now,
        };
        self.observed = spec.clone().map(|s| (s, observed_at));

        let secs = cfg.lease_duration_seconds();
        let decision = match (&lease, &spec) {
            // A Lease without a spec (created by hand) is free.
            (Some(_), None) => Decision::Acquire,
            _ => decide(spec.as_ref(), &cfg.identity, observed_at, now),
        };
        match decision {
            Decision::Wait { holder, expires_in } => {
                tracing::debug!(%holder, ?expires_in, "Lease held by another replica");
                Ok(Attempt::Standby)
            }
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(cfg.name.clone()),
                        namespace: Some(cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(next_spec(None, &cfg.identity, secs, jiff::Timestamp::now())),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(created) => {
                        self.observed = created.spec.map(|s| (s, now));
                        Ok(Attempt::Held)
                    }
                    // Another replica created it first.
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Standby),
                    Err(e) => Err(e),
                }
            }
            Decision::Acquire | Decision::Renew => {
                let Some(mut lease) = lease else {
                    return Ok(Attempt::Standby);
                };
                lease.spec = Some(next_spec(spec.as_ref(), &cfg.identity, secs, jiff::Timestamp::now()));
                // metadata.resourceVersion is the one just read: a concurrent
                // writer makes this fail with 409 instead of both winning.
                match self.api.replace(&cfg.name, &PostParams::default(), &lease).await {
                    Ok(replaced) => {
                        self.observed = replaced.spec.map(|s| (s, now));
                        Ok(Attempt::Held)
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Standby),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Gives the Lease up if we still hold it, so a standby takes over on its
    /// next poll. Best effort: on failure the Lease simply expires.
    async fn release(&self) {
        let cfg = &self.config;
        let result = tokio::time::timeout(cfg.renew_deadline, async {
            let Some(mut lease) = self.api.get_opt(&cfg.name).await? else {
                return Ok(false);
            };
            let Some(spec) = lease.spec.as_ref() else {
                return Ok(false);
            };
            if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
                return Ok(false);
            }
            lease.spec = Some(released_spec(spec, jiff::Timestamp::now()));
            self.api
                .replace(&cfg.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        })
        .await;
        match result {
            Ok(Ok(true)) => tracing::info!(identity = %cfg.identity, "released the Lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the Lease; it will expire"),
            Err(_) => tracing::warn!("timed out releasing the Lease; it will expire"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, duration: i32, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(transitions),
            acquire_time: Some(MicroTime(jiff::Timestamp::UNIX_EPOCH)),
            renew_time: Some(MicroTime(jiff::Timestamp::UNIX_EPOCH)),
            ..Default::default()
        }
    }

    fn ts(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn missing_lease_is_created() {
        let t = Instant::now();
        assert_eq!(decide(None, "a", t, t), Decision::Create);
    }

    #[test]
    fn own_lease_is_renewed_even_when_old() {
        let t = Instant::now();
        let spec = held_by("a", 15, 0);
        assert_eq!(
            decide(Some(&spec), "a", t, t + Duration::from_secs(60)),
            Decision::Renew
        );
    }

    #[test]
    fn released_lease_is_taken_at_once() {
        let t = Instant::now();
        let spec = released_spec(&held_by("b", 15, 3), ts(100));
        assert_eq!(decide(Some(&spec), "a", t, t), Decision::Acquire);
    }

    #[test]
    fn others_lease_is_respected_until_duration_after_observed_change() {
        let t = Instant::now();
        let spec = held_by("b", 15, 0);
        assert_eq!(
            decide(Some(&spec), "a", t, t + Duration::from_secs(5)),
            Decision::Wait {
                holder: "b".into(),
                expires_in: Duration::from_secs(10)
            }
        );
        assert!(matches!(
            decide(Some(&spec), "a", t, t + Duration::from_millis(14_999)),
            Decision::Wait { .. }
        ));
        assert_eq!(
            decide(Some(&spec), "a", t, t + Duration::from_secs(15)),
            Decision::Acquire
        );
    }

    #[test]
    fn expiry_uses_the_holders_duration_not_ours() {
        let t = Instant::now();
        let spec = held_by("b", 60, 0);
        assert!(matches!(
            decide(Some(&spec), "a", t, t + Duration::from_secs(30)),
            Decision::Wait { .. }
        ));
    }

    #[test]
    fn renewal_keeps_acquire_time_and_transitions() {
        let old = next_spec(None, "a", 15, ts(100));
        assert_eq!(old.lease_transitions, Some(0));
        let renewed = next_spec(Some(&old), "a", 15, ts(102));
        assert_eq!(renewed.acquire_time, Some(MicroTime(ts(100))));
        assert_eq!(renewed.renew_time, Some(MicroTime(ts(102))));
        assert_eq!(renewed.lease_transitions, Some(0));
        assert_eq!(renewed.holder_identity.as_deref(), Some("a"));
        assert_eq!(renewed.lease_duration_seconds, Some(15));
    }

    #[test]
    fn takeover_bumps_transitions_and_acquire_time() {
        let old = held_by("b", 15, 4);
        let taken = next_spec(Some(&old), "a", 15, ts(200));
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(5));
        assert_eq!(taken.acquire_time, Some(MicroTime(ts(200))));
        assert_eq!(taken.renew_time, Some(MicroTime(ts(200))));
    }

    #[test]
    fn release_clears_holder_and_keeps_transitions() {
        let released = released_spec(&held_by("a", 15, 7), ts(300));
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(7));
        // Taking a released Lease counts as a transition.
        assert_eq!(next_spec(Some(&released), "b", 15, ts(301)).lease_transitions, Some(8));
    }

    #[test]
    fn config_defaults_are_client_go_and_valid() {
        let c = LeaseConfig::new("dts-operator", "dts-system", "pod-a");
        assert_eq!(
            (c.lease_duration, c.renew_deadline, c.retry_period),
            (Duration::from_secs(15), Duration::from_secs(10), Duration::from_secs(2))
        );
        c.validate().unwrap();
        assert_eq!(c.lease_duration_seconds(), 15);
    }

    #[test]
    fn config_rejects_inverted_timing_and_empty_identity() {
        let ok = LeaseConfig::new("l", "ns", "me");
        let bad = |f: fn(&mut LeaseConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().is_err()
        };
        assert!(bad(|c| c.renew_deadline = c.lease_duration));
        assert!(bad(|c| c.retry_period = Duration::from_secs(9)));
        assert!(bad(|c| c.identity.clear()));
        assert!(bad(|c| c.namespace.clear()));
    }

    #[test]
    fn fractional_lease_duration_rounds_up() {
        let mut c = LeaseConfig::new("l", "ns", "me");
        c.lease_duration = Duration::from_millis(1500);
        assert_eq!(c.lease_duration_seconds(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_is_void_once_the_renew_deadline_passes_even_without_the_task() {
        let (tx, rx) = watch::channel(true);
        let state = LeaderState {
            rx,
            valid_until: Arc::new(Mutex::new(Some(Instant::now() + Duration::from_secs(10)))),
        };
        assert!(state.is_leader());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            !state.is_leader(),
            "deadline passed: not leader even though the flag is set"
        );
        drop(tx);
    }

    #[tokio::test]
    async fn always_leader_leads_and_never_loses() {
        let state = LeaderState::always_leader();
        assert!(state.is_leader());
        state.wait_leader().await;
        let lost = tokio::time::timeout(Duration::from_millis(20), state.wait_lost()).await;
        assert!(lost.is_err());
    }

    #[tokio::test]
    async fn wait_leader_resolves_on_the_flip() {
        let (tx, rx) = watch::channel(false);
        let state = LeaderState {
            rx,
            valid_until: Arc::new(Mutex::new(Some(Instant::now() + Duration::from_secs(10)))),
        };
        assert!(!state.is_leader());
        let waiter = tokio::spawn({
            let state = state.clone();
            async move { state.wait_leader().await }
        });
        tx.send(true).unwrap();
        waiter.await.unwrap();
        assert!(state.is_leader());
        tx.send(false).unwrap();
        state.wait_lost().await;
        assert!(!state.is_leader());
    }
}
