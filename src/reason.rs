//! The operator's one vocabulary: every condition reason, Event reason and
//! reason metric label is a [`Reason`], so a typo does not compile and the
//! three can never disagree about one failure.
//!
//! The README's "Condition and Event reasons" table is checked against
//! [`Reason::ALL`] by a test (`reasons_are_documented_in_the_readme`).

use std::fmt;

use dts_api::{DtsError, ErrorReason};

macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// A fixed CamelCase reason (kstatus requires reasons to be
        /// identifiers; DTS codes carry dots, so they never are reasons).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[doc = $doc])* $name,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The reason as written in conditions, Events and metric labels.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reasons! {
    /// `desiredState` unset or `Running`: no DTS call is made.
    ObserveOnly,
    /// DTS confirmed the stop of every listed direction.
    Stopped,
    /// DTS refused the stop but reports the job already finished.
    AlreadyStopped,
    /// A stop was sent (or is about to be) and its outcome is awaited.
    Stopping,
    /// A retryable failure; the next attempt is scheduled with backoff.
    RetryScheduled,
    /// Timeout, reset or unreadable answer: the job is described before any new call.
    StopOutcomeUnknown,
    /// DTS refused the stop with a terminal error that has no more specific reason.
    StopFailed,
    /// DTS rejected a parameter (for example Reverse on a one-way job).
    InvalidParameter,
    /// The credentials were refused (signature, AccessKey, STS token).
    AuthenticationFailed,
    /// The credentials lack permission (RAM).
    AccessDenied,
    /// DTS does not know the job or instance.
    JobNotFound,
    /// The job's state does not allow the operation.
    InvalidJobStatus,
    /// The request's timestamp was refused (clock skew).
    ClockSkew,
    /// DTS throttled the call.
    Throttled,
    /// DTS answered 5xx / ServiceUnavailable / InternalError.
    ServiceUnavailable,
    /// DTS saw the request's nonce before.
    SignatureNonceUsed,
    /// No answer within the timeout.
    Timeout,
    /// The request never reached DTS.
    ConnectionFailed,
    /// The connection broke after the request was sent.
    ConnectionReset,
    /// DTS's answer could not be read.
    UnreadableResponse,
    /// The credentials Secret does not exist.
    CredentialsSecretNotFound,
    /// A key of the credentials Secret is missing or empty.
    CredentialsKeyMissing,
    /// No Secret is referenced and the operator has no default credentials.
    CredentialsNotConfigured,
    /// A value of the credentials Secret is not UTF-8 or larger than 4 KiB.
    CredentialsKeyInvalid,
    /// The DtsJob's namespace is not one whose Secrets the operator reads
    /// (`--secret-namespaces`, the chart's `credentialsNamespaces`).
    CredentialsNamespaceNotAllowed,
    /// A file of the default credentials directory (or the RRSA token file)
    /// is missing, empty, not UTF-8 or too large.
    CredentialsFileUnreadable,
    /// STS refused to issue temporary credentials (AssumeRole,
    /// AssumeRoleWithOIDC): stalled when terminal, retried when not.
    AssumeRoleFailed,
    /// The credentials Secret could not be read (Kubernetes API error).
    CredentialsUnavailable,
    /// DTS refused the temporary (STS) credentials as expired; the call is
    /// retried with backoff (refreshed credentials end it).
    CredentialsExpired,
    /// The circuit breaker of the job's credentials (AccessKey and region)
    /// is open after failures in a row: no call is sent until it closes.
    CircuitOpen,
    /// The circuit breaker of the job's credentials closed: calls resume.
    CircuitClosed,
    /// `desiredState: Running` after a stop.
    RestartNotSupported,
    /// The `kubedts.io/paused` annotation is `"true"`: no call, no change.
    Paused,
    /// DTS shows every listed direction running, as desired.
    Running,
    /// DTS shows every listed direction suspended, as desired.
    Suspended,
    /// SuspendDtsJob was accepted; waiting for DTS to show Suspending.
    Suspending,
    /// StartDtsJob was accepted; waiting for DTS to show the job running.
    Starting,
    /// ObserveOnly: DTS shows another state than desired; nothing is changed.
    NotInDesiredState,
    /// DTS accepted a suspend or start but never showed its target.
    TransitionNotConfirmed,
    /// DTS reports the job Failed.
    DtsJobFailed,
    /// DTS reports the job Finished although it is not to be stopped.
    JobFinished,
    /// A delay-gated stop waits for the replication delay to reach the limit.
    WaitingForDelay,
    /// The replication delay reached the limit: the stop is sent.
    DelayReached,
    /// The stopPolicy deadline passed with the delay above the limit.
    DelayDeadlineExceeded,
    /// `stopPolicy.deadline` cannot be read.
    InvalidStopPolicy,
    /// A Kubernetes API request of the reconcile failed.
    KubeApiError,
    /// The DtsJob has no namespace.
    NoNamespace,
}

impl Reason {
    /// The reason for a failed DTS call: the same rule names the Stalled
    /// condition, the Warning Event and the metric label. Failures without a
    /// specific reason are [`Reason::StopFailed`].
    pub fn for_dts_error(e: &DtsError) -> Reason {
        e.reason().into()
    }

    /// The reason for a DTS error code alone (a code recorded in status).
    pub fn for_dts_code(code: &str) -> Reason {
        dts_api::error::reason_for_code(code)
            .map(Reason::from)
            .unwrap_or(Reason::StopFailed)
    }
}

impl From<ErrorReason> for Reason {
    /// Exhaustive: a new DTS client reason does not compile until it has a
    /// place in the vocabulary.
    fn from(r: ErrorReason) -> Reason {
        match r {
            ErrorReason::Throttled => Reason::Throttled,
            ErrorReason::ServiceUnavailable => Reason::ServiceUnavailable,
            ErrorReason::SignatureNonceUsed => Reason::SignatureNonceUsed,
            ErrorReason::Timeout => Reason::Timeout,
            ErrorReason::ConnectionFailed => Reason::ConnectionFailed,
            ErrorReason::ConnectionReset => Reason::ConnectionReset,
            ErrorReason::UnreadableResponse => Reason::UnreadableResponse,
            ErrorReason::InvalidParameter => Reason::InvalidParameter,
            ErrorReason::AuthenticationFailed => Reason::AuthenticationFailed,
            ErrorReason::AccessDenied => Reason::AccessDenied,
            ErrorReason::JobNotFound => Reason::JobNotFound,
            ErrorReason::InvalidJobStatus => Reason::InvalidJobStatus,
            ErrorReason::ClockSkew => Reason::ClockSkew,
            ErrorReason::CredentialsExpired => Reason::CredentialsExpired,
            ErrorReason::DtsError => Reason::StopFailed,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_camel_case_identifiers() {
        let names: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        for n in names {
            assert!(n.chars().next().is_some_and(|c| c.is_ascii_uppercase()), "{n}");
            assert!(n.chars().all(|c| c.is_ascii_alphanumeric()), "{n}");
        }
    }

    /// Every reason in the README's table is a `Reason`, and every `Reason`
    /// is in the table: the table is the user's map of the vocabulary.
    #[test]
    fn reasons_are_documented_in_the_readme() {
        let readme = include_str!("../README.md");
        let table = readme
            .split("### Condition and Event reasons")
            .nth(1)
            .expect("README has the reasons section");
        let mut documented = BTreeSet::new();
        for line in table.lines().skip_while(|l| !l.starts_with('|')) {
            if !line.starts_with('|') {
                break;
            }
            let first = line.split('|').nth(1).unwrap_or_default();
            for name in first.split('`').skip(1).step_by(2) {
                documented.insert(name.to_owned());
            }
        }
        let known: BTreeSet<String> = Reason::ALL.iter().map(|r| r.as_str().to_owned()).collect();
        let undocumented: Vec<_> = known.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&known).collect();
        assert!(
            undocumented.is_empty(),
            "reasons missing from the README table: {undocumented:?}"
        );
        assert!(
            unknown.is_empty(),
            "README table names reasons that do not exist: {unknown:?}"
        );
    }

    #[test]
    fn every_dts_client_reason_keeps_its_name_except_the_catch_all() {
        for r in ErrorReason::ALL {
            let ours = Reason::from(*r);
            if *r == ErrorReason::DtsError {
                assert_eq!(ours, Reason::StopFailed);
            } else {
                assert_eq!(ours.as_str(), r.as_str());
            }
        }
    }

    #[test]
    fn dts_codes_map_to_reasons() {
        assert_eq!(
            Reason::for_dts_code("InvalidAccessKeyId.NotFound"),
            Reason::AuthenticationFailed
        );
        assert_eq!(
            Reason::for_dts_code("SignatureDoesNotMatch"),
            Reason::AuthenticationFailed
        );
        assert_eq!(Reason::for_dts_code("Forbidden.InstanceNotFound"), Reason::JobNotFound);
        assert_eq!(Reason::for_dts_code("Forbidden.RAM"), Reason::AccessDenied);
        assert_eq!(Reason::for_dts_code("InvalidApi.NotFound"), Reason::StopFailed);
        assert_eq!(Reason::for_dts_code("Weird.Code"), Reason::StopFailed);
    }
}
