//! One circuit breaker: whether calls for one (AccessKey, region) are sent
//! at all.
//!
//! Why: some failures belong to the key, not to the DtsJob. A revoked
//! AccessKey (`InvalidAccessKeyId.NotFound`), a wrong secret
//! (`SignatureDoesNotMatch`), a missing RAM permission (`Forbidden.RAM`) or
//! a DTS outage (5xx) fails every call made with that key, and with many
//! DtsJobs on one key each would make its own doomed call (and repeat it
//! after each retry). After `threshold` answers in a row that fail with the
//! same [`Group`], the breaker *opens*: no call is sent for that key for the
//! cool-off. Then it is *half-open*: exactly one call (the probe) may go.
//! Its answer closes the breaker (DTS answered without that failure) or
//! opens it for another cool-off. New credentials for the key (the same
//! AccessKeyId with another secret or token, e.g. a fixed Secret) close it
//! at once: the failures were those of the old credentials.
//!
//! So with a key that stays bad, at most `threshold` calls fail before the
//! breaker opens (plus the calls already on the wire at that moment), and
//! then one call per cool-off.
//!
//! What counts: only answers (see [`verdict`]). Throttling, timeouts, lost
//! connections and unreadable answers say nothing about the key and neither
//! count nor break a run; any other DTS answer (a success, or a business
//! error such as `InvalidParameter`) proves the key works and ends the run.
//!
//! Pure: every method takes the instant it runs at.

use std::time::Duration;

use tokio::time::Instant;

use dts_api::{DtsError, ErrorKind, ErrorReason};

/// The failures the breaker acts on, each a property of the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// The credentials were refused (`AuthenticationFailed`: signature,
    /// AccessKey, STS token).
    Credentials,
    /// The credentials lack a RAM permission (`AccessDenied`).
    Permission,
    /// DTS answered 5xx, `ServiceUnavailable` or `InternalError`.
    Unavailable,
}

impl Group {
    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Group::Credentials => "credentials",
            Group::Permission => "permission",
            Group::Unavailable => "unavailable",
        }
    }

    /// Whether a human must act (the DtsJob shows `Stalled=True`) rather
    /// than wait for DTS (`Reconciling=True`).
    pub const fn needs_a_human(self) -> bool {
        matches!(self, Group::Credentials | Group::Permission)
    }
}

/// What one answer says about the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// DTS authenticated the call and answered (success or a business error).
    Healthy,
    /// Nothing about the key: throttled, no answer, unreadable answer.
    Neutral,
    Failure(Group),
}

/// The verdict on one call's result.
pub fn verdict<T>(result: &Result<T, DtsError>) -> Verdict {
    match result {
        Ok(_) => Verdict::Healthy,
        Err(e) => verdict_of(e),
    }
}

/// The group of a DTS error code recorded in status, if it is one the
/// breaker acts on.
pub fn group_of_code(code: &str) -> Option<Group> {
    match dts_api::error::reason_for_code(code)? {
        ErrorReason::AuthenticationFailed | ErrorReason::CredentialsExpired => Some(Group::Credentials),
        ErrorReason::AccessDenied => Some(Group::Permission),
        ErrorReason::ServiceUnavailable => Some(Group::Unavailable),
        _ => None,
    }
}

/// The verdict on one failure.
pub fn verdict_of(e: &DtsError) -> Verdict {
    match e.reason() {
        // Expired temporary credentials in a Secret fail every call until
        // they are replaced, like refused ones.
        ErrorReason::AuthenticationFailed | ErrorReason::CredentialsExpired => Verdict::Failure(Group::Credentials),
        ErrorReason::AccessDenied => Verdict::Failure(Group::Permission),
        ErrorReason::ServiceUnavailable => Verdict::Failure(Group::Unavailable),
        ErrorReason::Throttled
        | ErrorReason::Timeout
        | ErrorReason::ConnectionFailed
        | ErrorReason::ConnectionReset
        | ErrorReason::UnreadableResponse
        | ErrorReason::SignatureNonceUsed
        | ErrorReason::ClockSkew => Verdict::Neutral,
        // The client refused to build the request: nothing reached DTS.
        _ if e.kind == ErrorKind::InvalidRequest => Verdict::Neutral,
        ErrorReason::InvalidParameter
        | ErrorReason::JobNotFound
        | ErrorReason::InvalidJobStatus
        | ErrorReason::DtsError => Verdict::Healthy,
    }
}

/// Why the breaker is open: what the DtsJobs it holds show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trip {
    pub group: Group,
    /// The error code of the last failure (or the client's reason when the
    /// answer had no code).
    pub code: String,
    /// The failures in a row that opened it.
    pub failures: u32,
}

/// How a call may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ticket {
    /// The breaker is closed.
    Normal,
    /// The one call of a half-open breaker.
    Probe,
}

/// A change of state, to log, count and tell the waiting DtsJobs about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Closed → open.
    Opened(Trip),
    /// Half-open → open: the probe failed (or told nothing).
    Reopened(Trip),
    Closed(CloseCause),
}

/// Why a breaker closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCause {
    /// The probe (or another call) was answered without the failure.
    Answered,
    /// Calls came with other credentials for the same AccessKeyId.
    CredentialsChanged,
    /// No DtsJob asked about the key for two cool-offs: it was forgotten.
    Unused,
}

impl CloseCause {
    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseCause::Answered => "answered",
            CloseCause::CredentialsChanged => "credentials_changed",
            CloseCause::Unused => "unused",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Probe {
    /// Anyone may probe.
    Free,
    /// Reserved by a reconcile (observe), so that the others do not write a
    /// Stopping mark only to be refused; its own call may go.
    Held { by: String, until: Instant },
    /// The probe is on the wire.
    OnWire { until: Instant },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Closed {
        /// The failures in a row so far: group, count, last code.
        run: Option<(Group, u32, String)>,
    },
    Open {
        trip: Trip,
        until: Instant,
    },
    HalfOpen {
        trip: Trip,
        probe: Probe,
    },
}

/// What a DtsJob's reconcile may do about a key, as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Closed,
    /// Half-open, and this reconcile holds the probe.
    Probe,
    /// Open (or half-open with the probe taken): no call; look again then.
    Open(Trip, Duration),
}

/// The breaker of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breaker {
    /// 0: never opens.
    threshold: u32,
    cooloff: Duration,
    state: State,
    /// The credentials (a digest, never the secret) that the current run of
    /// failures, or the open breaker, belongs to.
    digest: Option<u64>,
}

impl Breaker {
    /// A closed breaker opening after `threshold` failures in a row (0:
    /// never) for `cooloff`.
    pub fn new(threshold: u32, cooloff: Duration) -> Self {
        Self {
            threshold,
            cooloff,
            state: State::Closed { run: None },
            digest: None,
        }
    }

    /// Whether it is open or half-open.
    pub fn tripped(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// The trip, while open or half-open.
    pub fn trip(&self) -> Option<&Trip> {
        match &self.state {
            State::Closed { .. } => None,
            State::Open { trip, .. } | State::HalfOpen { trip, .. } => Some(trip),
        }
    }

    /// While open (not half-open): the trip and the time left.
    pub fn refusing(&self, now: Instant) -> Option<(Trip, Duration)> {
        match &self.state {
            State::Open { trip, until } => Some((trip.clone(), until.saturating_duration_since(now))),
            _ => None,
        }
    }

    /// When a DtsJob it holds should look again: at the end of the
    /// cool-off, or of the probe; `None` while closed.
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        match &self.state {
            State::Closed { .. } => None,
            State::Open { until, .. }
            | State::HalfOpen {
                probe: Probe::Held { until, .. } | Probe::OnWire { until },
                ..
            } => Some(until.saturating_duration_since(now)),
            State::HalfOpen { .. } => Some(Duration::ZERO),
        }
    }

    /// Time and credentials: an open breaker whose cool-off is over becomes
    /// half-open; other credentials than the ones that failed close it.
    pub fn poll(&mut self, now: Instant, digest: u64) -> Option<Transition> {
        if self.digest != Some(digest) {
            // The key's calls now use these credentials; the failures of
            // the others are theirs.
            let tripped = self.tripped();
            self.state = State::Closed { run: None };
            self.digest = Some(digest);
            if tripped {
                return Some(Transition::Closed(CloseCause::CredentialsChanged));
            }
        }
        match &mut self.state {
            State::Open { trip, until } if now >= *until => {
                let trip = trip.clone();
                self.state = State::HalfOpen {
                    trip,
                    probe: Probe::Free,
                };
            }
            State::HalfOpen { probe, .. } => {
                if let Probe::Held { until, .. } | Probe::OnWire { until } = probe {
                    // A holder that never called, a probe never answered.
                    if now >= *until {
                        *probe = Probe::Free;
                    }
                }
            }
            _ => {}
        }
        None
    }

    /// A reconcile asks whether it may call (before it writes any mark).
    /// In half-open state the first asker holds the probe, for a cool-off at
    /// most; the others are told to wait.
    pub fn admit(&mut self, now: Instant, digest: u64, holder: &str) -> (Admission, Option<Transition>) {
        let transition = self.poll(now, digest);
        let cooloff = self.cooloff;
        let admission = match &mut self.state {
            State::Closed { .. } => Admission::Closed,
            State::Open { trip, until } => Admission::Open(trip.clone(), until.saturating_duration_since(now)),
            State::HalfOpen { trip, probe } => match probe {
                Probe::Free => {
                    *probe = Probe::Held {
                        by: holder.to_owned(),
                        until: now + cooloff,
                    };
                    Admission::Probe
                }
                Probe::Held { by, .. } if by == holder => Admission::Probe,
                Probe::Held { until, .. } | Probe::OnWire { until } => {
                    Admission::Open(trip.clone(), until.saturating_duration_since(now))
                }
            },
        };
        (admission, transition)
    }

    /// The holder's reconcile ended without calling: the probe is free again.
    pub fn release(&mut self, holder: &str) {
        if let State::HalfOpen { probe, .. } = &mut self.state {
            if matches!(probe, Probe::Held { by, .. } if by == holder) {
                *probe = Probe::Free;
            }
        }
    }

    /// Right before a call is sent. `may_probe`: the call may be the probe
    /// of a half-open breaker (a reconcile's call; the observer's batch
    /// reads never probe). `Err`: refused, with the trip and when to look
    /// again.
    pub fn before_send(
        &mut self,
        now: Instant,
        digest: u64,
        may_probe: bool,
    ) -> (Result<Ticket, (Trip, Duration)>, Option<Transition>) {
        let transition = self.poll(now, digest);
        let cooloff = self.cooloff;
        let result = match &mut self.state {
            State::Closed { .. } => Ok(Ticket::Normal),
            State::Open { trip, until } => Err((trip.clone(), until.saturating_duration_since(now))),
            State::HalfOpen { trip, probe } => match probe {
                Probe::Free | Probe::Held { .. } if may_probe => {
                    *probe = Probe::OnWire { until: now + cooloff };
                    Ok(Ticket::Probe)
                }
                Probe::Held { until, .. } | Probe::OnWire { until } => {
                    Err((trip.clone(), until.saturating_duration_since(now)))
                }
                Probe::Free => Err((trip.clone(), cooloff)),
            },
        };
        (result, transition)
    }

    /// A call that got `before_send`'s ticket was not sent after all (the
    /// Lease was lost): a probe is free again.
    pub fn not_sent(&mut self, ticket: Ticket) {
        if let (Ticket::Probe, State::HalfOpen { probe, .. }) = (ticket, &mut self.state) {
            if matches!(probe, Probe::OnWire { .. }) {
                *probe = Probe::Free;
            }
        }
    }

    /// The answer to a call sent with `digest` and `ticket`: `code` is its
    /// error code (or reason) when it failed.
    pub fn answered(
        &mut self,
        now: Instant,
        digest: u64,
        ticket: Ticket,
        verdict: Verdict,
        code: Option<&str>,
    ) -> Option<Transition> {
        // An answer for credentials the key no longer uses (they were
        // replaced while it was on the wire) says nothing about the current ones.
        if self.digest.is_some_and(|d| d != digest) {
            return None;
        }
        self.digest = Some(digest);
        let code = code.unwrap_or("unknown").to_owned();
        let cooloff = self.cooloff;
        match (&mut self.state, verdict) {
            (State::Closed { run }, Verdict::Healthy) => {
                *run = None;
                None
            }
            (State::Closed { .. }, Verdict::Neutral) => None,
            (State::Closed { run }, Verdict::Failure(group)) => {
                let count = match run {
                    Some((g, n, _)) if *g == group => *n + 1,
                    _ => 1,
                };
                if self.threshold > 0 && count >= self.threshold {
                    let trip = Trip {
                        group,
                        code,
                        failures: count,
                    };
                    self.state = State::Open {
                        trip: trip.clone(),
                        until: now + cooloff,
                    };
                    Some(Transition::Opened(trip))
                } else {
                    *run = Some((group, count, code));
                    None
                }
            }
            // Any answer without the failure: the key works again.
            (State::Open { .. } | State::HalfOpen { .. }, Verdict::Healthy) => {
                self.state = State::Closed { run: None };
                Some(Transition::Closed(CloseCause::Answered))
            }
            // Answers to calls sent before it opened change nothing.
            (State::Open { .. }, _) => None,
            (State::HalfOpen { trip, .. }, v) if ticket == Ticket::Probe => {
                let mut trip = trip.clone();
                if let Verdict::Failure(group) = v {
                    trip.group = group;
                    trip.code = code;
                }
                self.state = State::Open {
                    trip: trip.clone(),
                    until: now + cooloff,
                };
                Some(Transition::Reopened(trip))
            }
            (State::HalfOpen { .. }, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dts_api::ErrorClass;

    const KEY: u64 = 1;
    const COOLOFF: Duration = Duration::from_secs(30);

    // Built as DTS returns it (see the allowance in the DTS client).
    #[allow(clippy::result_large_err)]
    fn error(code: &str) -> Result<(), DtsError> {
        Err(DtsError {
            kind: ErrorKind::Api,
            http_status: Some(400),
            code: Some(code.into()),
            class: ErrorClass::Terminal,
            ..DtsError::invalid_request("")
        })
    }

    fn fail(b: &mut Breaker, now: Instant, code: &str) -> Option<Transition> {
        let r = error(code);
        b.answered(now, KEY, Ticket::Normal, verdict(&r), Some(code))
    }

    #[test]
    fn answers_are_judged_by_what_they_say_about_the_key() {
        assert_eq!(verdict(&Ok::<(), DtsError>(())), Verdict::Healthy);
        for (code, v) in [
            ("InvalidAccessKeyId.NotFound", Verdict::Failure(Group::Credentials)),
            ("SignatureDoesNotMatch", Verdict::Failure(Group::Credentials)),
            ("InvalidSecurityToken.Expired", Verdict::Failure(Group::Credentials)),
            ("Forbidden.RAM", Verdict::Failure(Group::Permission)),
            ("ServiceUnavailable", Verdict::Failure(Group::Unavailable)),
            ("InternalError", Verdict::Failure(Group::Unavailable)),
            ("Throttling.User", Verdict::Neutral),
            ("SignatureNonceUsed", Verdict::Neutral),
            ("InvalidTimeStamp.Expired", Verdict::Neutral),
            ("InvalidParameter", Verdict::Healthy),
            ("Forbidden.InstanceNotFound", Verdict::Healthy),
            ("InvalidJobStatus", Verdict::Healthy),
        ] {
            assert_eq!(verdict(&error(code)), v, "{code}");
        }
        let timeout: Result<(), DtsError> = Err(DtsError::from_transport(&dts_api::TransportError::Timeout));
        assert_eq!(verdict(&timeout), Verdict::Neutral);
        let refused: Result<(), DtsError> = Err(DtsError::invalid_request("bad region"));
        assert_eq!(verdict(&refused), Verdict::Neutral);
    }

    #[test]
    fn the_threshold_of_same_group_failures_in_a_row_opens_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, COOLOFF);
        assert_eq!(fail(&mut b, t0, "InvalidAccessKeyId.NotFound"), None);
        assert_eq!(fail(&mut b, t0, "InvalidAccessKeyId.NotFound"), None);
        // A throttled answer neither counts nor breaks the run.
        assert_eq!(fail(&mut b, t0, "Throttling.User"), None);
        let opened = fail(&mut b, t0, "InvalidAccessKeyId.NotFound");
        let trip = Trip {
            group: Group::Credentials,
            code: "InvalidAccessKeyId.NotFound".into(),
            failures: 3,
        };
        assert_eq!(opened, Some(Transition::Opened(trip.clone())));
        assert_eq!(b.before_send(t0, KEY, true).0, Err((trip, COOLOFF)));
    }

    #[test]
    fn another_group_or_a_healthy_answer_starts_the_count_again() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, COOLOFF);
        fail(&mut b, t0, "InvalidAccessKeyId.NotFound");
        fail(&mut b, t0, "ServiceUnavailable");
        assert!(!b.tripped(), "two failures, but of two groups");
        fail(&mut b, t0, "InvalidParameter");
        fail(&mut b, t0, "ServiceUnavailable");
        assert!(!b.tripped(), "a business error proves the key works");
        assert!(
            matches!(fail(&mut b, t0, "InternalError"), Some(Transition::Opened(t)) if t.group == Group::Unavailable && t.code == "InternalError")
        );
        let mut off = Breaker::new(0, COOLOFF);
        for _ in 0..100 {
            assert_eq!(fail(&mut off, t0, "SignatureDoesNotMatch"), None);
        }
        assert!(!off.tripped(), "threshold 0: never opens");
    }

    #[test]
    fn after_the_cooloff_exactly_one_probe_goes_and_its_answer_decides() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOLOFF);
        fail(&mut b, t0, "Forbidden.RAM");
        let half = t0 + COOLOFF;
        assert!(
            matches!(b.before_send(half - Duration::from_millis(1), KEY, true).0, Err((_, d)) if d == Duration::from_millis(1))
        );
        // The observer's reads never probe.
        assert!(b.before_send(half, KEY, false).0.is_err());
        assert_eq!(b.before_send(half, KEY, true).0, Ok(Ticket::Probe));
        assert!(
            b.before_send(half, KEY, true).0.is_err(),
            "one probe on the wire at a time"
        );
        // The probe fails again: open for another cool-off.
        let r = error("Forbidden.RAM");
        let t1 = half + Duration::from_millis(20);
        assert!(matches!(
            b.answered(t1, KEY, Ticket::Probe, verdict(&r), Some("Forbidden.RAM")),
            Some(Transition::Reopened(_))
        ));
        assert!(b
            .before_send(t1 + COOLOFF - Duration::from_millis(1), KEY, true)
            .0
            .is_err());
        // Next probe answered: closed, and calls go again.
        assert_eq!(b.before_send(t1 + COOLOFF, KEY, true).0, Ok(Ticket::Probe));
        assert_eq!(
            b.answered(t1 + COOLOFF, KEY, Ticket::Probe, Verdict::Healthy, None),
            Some(Transition::Closed(CloseCause::Answered))
        );
        assert_eq!(b.before_send(t1 + COOLOFF, KEY, false).0, Ok(Ticket::Normal));
    }

    #[test]
    fn a_probe_held_by_one_reconcile_keeps_the_others_waiting_until_released() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOLOFF);
        fail(&mut b, t0, "SignatureDoesNotMatch");
        let half = t0 + COOLOFF;
        assert_eq!(b.admit(half, KEY, "uid-a").0, Admission::Probe);
        assert_eq!(b.admit(half, KEY, "uid-a").0, Admission::Probe, "the holder again");
        assert!(matches!(b.admit(half, KEY, "uid-b").0, Admission::Open(_, d) if d == COOLOFF));
        // uid-a decided not to call: uid-b may probe.
        b.release("uid-b");
        assert!(
            matches!(b.admit(half, KEY, "uid-c").0, Admission::Open(..)),
            "only the holder releases"
        );
        b.release("uid-a");
        assert_eq!(b.admit(half, KEY, "uid-b").0, Admission::Probe);
        // A holder that neither calls nor releases holds it for a cool-off at most.
        assert_eq!(b.admit(half + COOLOFF, KEY, "uid-c").0, Admission::Probe);
        // A probe that was not sent after all frees it too.
        let (ticket, _) = b.before_send(half + COOLOFF, KEY, true);
        b.not_sent(ticket.unwrap());
        assert_eq!(b.admit(half + COOLOFF, KEY, "uid-d").0, Admission::Probe);
    }

    #[test]
    fn new_credentials_for_the_key_close_it_at_once() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOLOFF);
        fail(&mut b, t0, "SignatureDoesNotMatch");
        assert!(b.tripped());
        let (admission, transition) = b.admit(t0, 2, "uid-a");
        assert_eq!(admission, Admission::Closed);
        assert_eq!(transition, Some(Transition::Closed(CloseCause::CredentialsChanged)));
        // A late answer for the old credentials does not reopen it.
        let r = error("SignatureDoesNotMatch");
        b.answered(t0, KEY, Ticket::Normal, verdict(&r), Some("SignatureDoesNotMatch"));
        assert!(!b.tripped());
    }

    #[test]
    fn a_success_while_open_closes_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOLOFF);
        fail(&mut b, t0, "ServiceUnavailable");
        // A call sent before it opened, answered after.
        assert_eq!(
            b.answered(t0, KEY, Ticket::Normal, Verdict::Healthy, None),
            Some(Transition::Closed(CloseCause::Answered))
        );
        // And a failure of such a call changes nothing.
        fail(&mut b, t0, "ServiceUnavailable");
        assert_eq!(fail(&mut b, t0, "ServiceUnavailable"), None, "already open");
    }
}
