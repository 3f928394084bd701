//! DTS call failures: what went wrong ([`DtsError`]), whether trying again is
//! safe ([`ErrorClass`]), and a stable label for it ([`DtsError::reason`]).
//!
//! Classification is by error code first and HTTP status second, because the
//! status that goes with a code is not reliable (`Forbidden.RAM` has been seen
//! with 400 and 403, `InvalidAccessKeyId.NotFound` with 400 and 404;
//! docs/dts-api.md §5, §8).

use std::fmt;
use std::time::Duration;

use super::transport::TransportError;

/// What the caller may do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// DTS did not execute the call (or the request never left): calling
    /// again, after a backoff and with a fresh nonce, is safe.
    Retryable,
    /// The call may or may not have been executed (timeout, connection lost
    /// after sending, an unreadable success answer). Look before calling again.
    Ambiguous,
    /// DTS refused the call for a reason that trying again will not fix.
    Terminal,
}

impl ErrorClass {
    /// `retryable`, `ambiguous` or `terminal`: the label in metrics and status.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Ambiguous => "ambiguous",
            ErrorClass::Terminal => "terminal",
        }
    }
}

/// Where a [`DtsError`] came from. It decides the [`DtsError::reason`] when
/// there is no error code to go by (a transport failure has neither code nor
/// status, and a timeout must not be confused with a refused connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An HTTP answer whose body was read as JSON or XML.
    Api,
    /// An HTTP answer whose body could not be read (HTML, truncated, empty...).
    Unreadable,
    /// The request never left (connection refused, DNS, TLS handshake).
    NotSent,
    /// No complete answer within the timeout.
    Timeout,
    /// The connection broke after the request was (possibly) sent.
    AfterSend,
    /// The client refused to build the request (bad regionId, bad endpoint).
    InvalidRequest,
}

/// Why a DTS call failed, as a closed vocabulary (CamelCase, fit for
/// condition reasons and metric labels). Computed from the code, the kind and
/// the status, never from `Debug` output, so it cannot change when a message
/// does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorReason {
    /// A throttling code, or HTTP 429.
    Throttled,
    /// `ServiceUnavailable`, `InternalError`, or another 5xx.
    ServiceUnavailable,
    /// The nonce was seen before; retry with a fresh one.
    SignatureNonceUsed,
    /// No complete answer within the timeout.
    Timeout,
    /// The request never left.
    ConnectionFailed,
    /// The connection broke after the request was (possibly) sent.
    ConnectionReset,
    /// An answer whose body could not be read.
    UnreadableResponse,
    /// A parameter was rejected (or the client refused to build the request).
    InvalidParameter,
    /// Signature, AccessKey or STS token refused.
    AuthenticationFailed,
    /// RAM permission missing.
    AccessDenied,
    /// The job or instance is unknown.
    JobNotFound,
    /// The job's state does not allow the operation.
    InvalidJobStatus,
    /// The request's timestamp was refused.
    ClockSkew,
    /// The STS security token has expired: the gateway refused the call
    /// before executing it, and new temporary credentials fix it.
    CredentialsExpired,
    /// Any other failure.
    DtsError,
}

impl ErrorReason {
    /// Every reason, in declaration order.
    pub const ALL: &'static [ErrorReason] = &[
        ErrorReason::Throttled,
        ErrorReason::ServiceUnavailable,
        ErrorReason::SignatureNonceUsed,
        ErrorReason::Timeout,
        ErrorReason::ConnectionFailed,
        ErrorReason::ConnectionReset,
        ErrorReason::UnreadableResponse,
        ErrorReason::InvalidParameter,
        ErrorReason::AuthenticationFailed,
        ErrorReason::AccessDenied,
        ErrorReason::JobNotFound,
        ErrorReason::InvalidJobStatus,
        ErrorReason::ClockSkew,
        ErrorReason::CredentialsExpired,
        ErrorReason::DtsError,
    ];

    /// The reason's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Throttled => "Throttled",
            ErrorReason::ServiceUnavailable => "ServiceUnavailable",
            ErrorReason::SignatureNonceUsed => "SignatureNonceUsed",
            ErrorReason::Timeout => "Timeout",
            ErrorReason::ConnectionFailed => "ConnectionFailed",
            ErrorReason::ConnectionReset => "ConnectionReset",
            ErrorReason::UnreadableResponse => "UnreadableResponse",
            ErrorReason::InvalidParameter => "InvalidParameter",
            ErrorReason::AuthenticationFailed => "AuthenticationFailed",
            ErrorReason::AccessDenied => "AccessDenied",
            ErrorReason::JobNotFound => "JobNotFound",
            ErrorReason::InvalidJobStatus => "InvalidJobStatus",
            ErrorReason::ClockSkew => "ClockSkew",
            ErrorReason::CredentialsExpired => "CredentialsExpired",
            ErrorReason::DtsError => "DtsError",
        }
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A failed DTS call.
///
/// Every text field comes from DTS's answer or from this client, never from
/// the credentials: [`crate::DtsClient`] scrubs the secret and the STS
/// token out of server-provided text before returning (a
/// `SignatureDoesNotMatch` message echoes the server's string-to-sign, which
/// contains the `SecurityToken` in HMAC-SHA1 mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtsError {
    pub class: ErrorClass,
    /// Where the error came from; see [`ErrorKind`].
    pub kind: ErrorKind,
    /// The HTTP status of the answer; `None` when there was no answer.
    pub http_status: Option<u16>,
    /// `ErrCode` of a `Success:false` body, or `Code` of a gateway error.
    pub code: Option<String>,
    /// Human-readable text: `ErrMessage` with `%s` replaced by
    /// `DynamicMessage` (the StopDtsJob documentation's rule), or the
    /// gateway's `Message`, or a description written by this client.
    pub message: Option<String>,
    /// `ErrMessage`/`Message` exactly as DTS sent it.
    pub raw_message: Option<String>,
    pub dynamic_code: Option<String>,
    pub dynamic_message: Option<String>,
    pub request_id: Option<String>,
    /// From `x-acs-retry-after` (milliseconds), as the official SDK reads it.
    pub retry_after: Option<Duration>,
}

impl DtsError {
    /// An error for a request that this client refused to build or send.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Terminal,
            kind: ErrorKind::InvalidRequest,
            http_status: None,
            code: None,
            message: Some(message.into()),
            raw_message: None,
            dynamic_code: None,
            dynamic_message: None,
            request_id: None,
            retry_after: None,
        }
    }

    /// The error for a transport failure: no answer, so no code and no status.
    pub fn from_transport(err: &TransportError) -> Self {
        let (class, kind) = match err {
            // Nothing reached DTS: safe to send again.
            TransportError::NotSent(_) => (ErrorClass::Retryable, ErrorKind::NotSent),
            // The request may have been executed: the caller must look first.
            TransportError::Timeout => (ErrorClass::Ambiguous, ErrorKind::Timeout),
            TransportError::AfterSend(_) => (ErrorClass::Ambiguous, ErrorKind::AfterSend),
        };
        Self {
            class,
            kind,
            http_status: None,
            code: None,
            message: Some(err.to_string()),
            raw_message: None,
            dynamic_code: None,
            dynamic_message: None,
            request_id: None,
            retry_after: None,
        }
    }

    /// Why the call failed: see [`ErrorReason`].
    pub fn reason(&self) -> ErrorReason {
        use ErrorReason as R;
        if let Some(code) = self.code.as_deref() {
            if let Some(reason) = reason_for_code(code) {
                return reason;
            }
        }
        match self.kind {
            ErrorKind::NotSent => R::ConnectionFailed,
            ErrorKind::AfterSend => R::ConnectionReset,
            ErrorKind::Timeout => R::Timeout,
            ErrorKind::InvalidRequest => R::InvalidParameter,
            ErrorKind::Api | ErrorKind::Unreadable => match self.http_status {
                Some(429) => R::Throttled,
                Some(s) if (500..600).contains(&s) => R::ServiceUnavailable,
                _ if self.kind == ErrorKind::Unreadable => R::UnreadableResponse,
                Some(401) => R::AuthenticationFailed,
                Some(403) => R::AccessDenied,
                _ => R::DtsError,
            },
        }
    }

    /// Replaces every occurrence of `secret` in the server-provided text with
    /// a marker. Also catches the percent-encoded forms, since a server that
    /// echoes a string-to-sign encodes once (query) or twice (string-to-sign).
    pub(crate) fn scrub(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let once = super::sign::percent_encode(secret);
        let twice = super::sign::percent_encode(&once);
        let forms = [secret.to_owned(), once, twice];
        for field in [
            &mut self.message,
            &mut self.raw_message,
            &mut self.dynamic_message,
            &mut self.dynamic_code,
            &mut self.code,
            &mut self.request_id,
        ] {
            if let Some(text) = field.as_mut() {
                for form in &forms {
                    if text.contains(form.as_str()) {
                        *text = text.replace(form.as_str(), "** REDACTED **");
                    }
                }
            }
        }
    }
}

/// The code → class rule. `None` for codes this client does not know, which
/// then fall back to the HTTP status.
pub(crate) fn class_for_code(code: &str) -> Option<ErrorClass> {
    match reason_for_code(code)? {
        // An expired STS token is refused before anything is executed, and
        // temporary credentials are refreshed by their provider: retry.
        ErrorReason::Throttled
        | ErrorReason::ServiceUnavailable
        | ErrorReason::SignatureNonceUsed
        | ErrorReason::CredentialsExpired => Some(ErrorClass::Retryable),
        _ => Some(ErrorClass::Terminal),
    }
}

/// The class for an answer: by code first, then by status (5xx and 429 are
/// "not executed, try later"; anything else is terminal).
pub(crate) fn classify(code: Option<&str>, status: u16) -> ErrorClass {
    if let Some(class) = code.and_then(class_for_code) {
        return class;
    }
    if status == 429 || (500..600).contains(&status) {
        ErrorClass::Retryable
    } else {
        ErrorClass::Terminal
    }
}

/// `code` equals `family` or is a sub-code of it (`family.` prefix).
fn is_family(code: &str, family: &str) -> bool {
    code == family || code.strip_prefix(family).is_some_and(|rest| rest.starts_with('.'))
}

/// The reason for a DTS error code; `None` for codes without a specific one.
/// The one mapping behind Events, metric labels and the Stalled condition.
pub fn reason_for_code(code: &str) -> Option<ErrorReason> {
    // Throttling, Throttling.User, Throttling.Api, DTS.Msg.Throttling.User...
    if code.starts_with("Throttling") || code.split('.').any(|seg| seg == "Throttling") {
        return Some(ErrorReason::Throttled);
    }
    if is_family(code, "ServiceUnavailable") || is_family(code, "InternalError") {
        return Some(ErrorReason::ServiceUnavailable);
    }
    if code == "SignatureNonceUsed" {
        return Some(ErrorReason::SignatureNonceUsed);
    }
    if is_family(code, "InvalidTimeStamp") {
        return Some(ErrorReason::ClockSkew);
    }
    if code == "InvalidSecurityToken.Expired" {
        return Some(ErrorReason::CredentialsExpired);
    }
    // STS: AuthenticationFail.OIDCToken.AudienceNotMatch, .Expired, .InvalidSignature, ...
    if code == "SignatureDoesNotMatch"
        || is_family(code, "AuthenticationFail")
        || code == "IncompleteSignature"
        || code == "InvalidAccessKeySecret"
        || is_family(code, "InvalidAccessKeyId")
        || is_family(code, "InvalidSecurityToken")
    {
        return Some(ErrorReason::AuthenticationFailed);
    }
    if code == "Forbidden.InstanceNotFound" {
        return Some(ErrorReason::JobNotFound);
    }
    if is_family(code, "Forbidden") || code == "NoPermission" || code.starts_with("NoPermission.") {
        return Some(ErrorReason::AccessDenied);
    }
    if code == "InvalidJobStatus" || code == "InvalidTaskStatus" || code.contains("JobStatus") {
        return Some(ErrorReason::InvalidJobStatus);
    }
    // Wrong action, version or host: not a missing job.
    if is_family(code, "InvalidApi") || is_family(code, "InvalidProduct") || is_family(code, "InvalidAction") {
        return None;
    }
    if code.ends_with(".NotFound") || code.ends_with("NotExist") || code.ends_with("NotExists") {
        return Some(ErrorReason::JobNotFound);
    }
    if is_family(code, "InvalidParameter") || code.starts_with("Missing") || code.starts_with("InvalidParam") {
        return Some(ErrorReason::InvalidParameter);
    }
    None
}

impl fmt::Display for DtsError {
    /// `Code: message (HTTP 200, RequestId X)`. Built only from the fields,
    /// which never hold a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.as_deref().unwrap_or_else(|| self.reason().as_str()))?;
        if let Some(message) = self.message.as_deref().filter(|m| !m.is_empty()) {
            write!(f, ": {message}")?;
        }
        match (self.http_status, self.request_id.as_deref()) {
            (Some(status), Some(id)) => write!(f, " (HTTP {status}, RequestId {id})"),
            (Some(status), None) => write!(f, " (HTTP {status})"),
            (None, Some(id)) => write!(f, " (RequestId {id})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for DtsError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: Option<&str>, status: u16) -> DtsError {
        DtsError {
            class: classify(code, status),
            kind: ErrorKind::Api,
            http_status: Some(status),
            code: code.map(str::to_owned),
            message: None,
            raw_message: None,
            dynamic_code: None,
            dynamic_message: None,
            request_id: None,
            retry_after: None,
        }
    }

    #[test]
    fn codes_decide_before_statuses() {
        use ErrorClass::*;
        let cases: &[(Option<&str>, u16, ErrorClass, &str)] = &[
            (Some("Throttling"), 400, Retryable, "Throttled"),
            (Some("Throttling.User"), 400, Retryable, "Throttled"),
            (Some("Throttling.Api"), 503, Retryable, "Throttled"),
            (Some("DTS.Msg.Throttling.User"), 200, Retryable, "Throttled"),
            (Some("ServiceUnavailable"), 503, Retryable, "ServiceUnavailable"),
            (Some("InternalError"), 500, Retryable, "ServiceUnavailable"),
            (Some("SignatureNonceUsed"), 400, Retryable, "SignatureNonceUsed"),
            (Some("InvalidParameter"), 400, Terminal, "InvalidParameter"),
            (Some("InvalidParameter"), 500, Terminal, "InvalidParameter"),
            (Some("MissingDtsJobId"), 400, Terminal, "InvalidParameter"),
            (Some("SignatureDoesNotMatch"), 400, Terminal, "AuthenticationFailed"),
            (
                Some("InvalidAccessKeyId.NotFound"),
                404,
                Terminal,
                "AuthenticationFailed",
            ),
            (
                Some("InvalidAccessKeyId.Inactive"),
                400,
                Terminal,
                "AuthenticationFailed",
            ),
            (
                Some("InvalidSecurityToken.Expired"),
                400,
                Retryable,
                "CredentialsExpired",
            ),
            (
                Some("InvalidSecurityToken.Malformed"),
                400,
                Terminal,
                "AuthenticationFailed",
            ),
            (
                Some("AuthenticationFail.OIDCToken.AudienceNotMatch"),
                401,
                Terminal,
                "AuthenticationFailed",
            ),
            (Some("Forbidden.RAM"), 400, Terminal, "AccessDenied"),
            (Some("Forbidden.RAM"), 403, Terminal, "AccessDenied"),
            (Some("Forbidden.InstanceNotFound"), 200, Terminal, "JobNotFound"),
            (Some("InvalidJobStatus"), 200, Terminal, "InvalidJobStatus"),
            (Some("InvalidTaskStatus"), 200, Terminal, "InvalidJobStatus"),
            (
                Some("DTS.Msg.OperationDenied.JobStatusModifying"),
                200,
                Terminal,
                "InvalidJobStatus",
            ),
            (Some("InvalidTimeStamp.Expired"), 400, Terminal, "ClockSkew"),
            (Some("InvalidApi.NotFound"), 404, Terminal, "DtsError"),
            (Some("SomethingNew"), 400, Terminal, "DtsError"),
            (Some("SomethingNew"), 502, Retryable, "ServiceUnavailable"),
            (None, 503, Retryable, "ServiceUnavailable"),
            (None, 429, Retryable, "Throttled"),
            (None, 403, Terminal, "AccessDenied"),
            (None, 400, Terminal, "DtsError"),
        ];
        for (code, status, class, reason) in cases {
            let e = api(*code, *status);
            assert_eq!(e.class, *class, "{code:?} {status}");
            assert_eq!(e.reason(), *reason, "{code:?} {status}");
        }
    }

    #[test]
    fn transport_errors_map_to_classes() {
        let e = DtsError::from_transport(&TransportError::NotSent("connection refused".into()));
        assert_eq!(
            (e.class, e.reason()),
            (ErrorClass::Retryable, ErrorReason::ConnectionFailed)
        );
        let e = DtsError::from_transport(&TransportError::Timeout);
        assert_eq!((e.class, e.reason()), (ErrorClass::Ambiguous, ErrorReason::Timeout));
        let e = DtsError::from_transport(&TransportError::AfterSend("reset".into()));
        assert_eq!(
            (e.class, e.reason()),
            (ErrorClass::Ambiguous, ErrorReason::ConnectionReset)
        );
    }

    #[test]
    fn display_reads_like_the_design_example() {
        let mut e = api(Some("InvalidParameter"), 200);
        e.message = Some("The Value of Input Parameter SynchronizationDirection is not valid.".into());
        e.request_id = Some("7C1A".into());
        assert_eq!(
            e.to_string(),
            "InvalidParameter: The Value of Input Parameter SynchronizationDirection is not valid. (HTTP 200, RequestId 7C1A)"
        );
        let t = DtsError::from_transport(&TransportError::Timeout);
        assert_eq!(t.to_string(), "Timeout: no answer from DTS within the timeout");
    }

    #[test]
    fn scrub_removes_plain_and_encoded_secrets() {
        let mut e = api(Some("SignatureDoesNotMatch"), 400);
        e.message = Some(
            "server string to sign is:POST&%2F&SecurityToken%3Dtok%252B%252Fx%26X raw tok+/x once tok%2B%2Fx".into(),
        );
        e.scrub("tok+/x");
        let m = e.message.unwrap_or_default();
        assert!(!m.contains("tok"), "{m}");
    }
}

/// The DTS error codes this client knows by name (docs/dts-api.md §8, and the
/// gateway codes the official SDKs document). A metric label must come from
/// a bounded set: [`metric_code`] keeps these and folds every other code
/// into `Other`; the raw code still reaches status and Event messages.
pub const KNOWN_CODES: &[&str] = &[
    "Throttling",
    "Throttling.User",
    "Throttling.Api",
    "Throttling.Resource",
    "ServiceUnavailable",
    "InternalError",
    "SignatureNonceUsed",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
    "InvalidAccessKeySecret",
    "InvalidSecurityToken.Expired",
    "InvalidSecurityToken.Malformed",
    "InvalidSecurityToken.MismatchWithAccessKey",
    "InvalidTimeStamp.Expired",
    "InvalidTimeStamp.Format",
    "Forbidden",
    "Forbidden.RAM",
    "Forbidden.InstanceNotFound",
    "NoPermission",
    "InvalidParameter",
    "MissingParameter",
    "InvalidJobStatus",
    "InvalidTaskStatus",
    "DTS.Msg.OperationDenied.JobStatusModifying",
    "DTS.Msg.ModifyDenied.JobStatusNotRunning",
    "InvalidApi.NotFound",
    "InvalidVersion",
    "InvalidAction.NotFound",
    "AuthenticationFail.NoPermission",
    "AuthenticationFail.OIDCToken.AudienceNotMatch",
    "AuthenticationFail.OIDCToken.Expired",
    "AuthenticationFail.OIDCToken.InvalidSignature",
    "AuthenticationFail.OIDCToken.IssuerNotMatch",
    "AuthenticationFail.OIDCToken.Invalid",
];

/// `code` if it is one of [`KNOWN_CODES`], else `Other`.
pub fn metric_code(code: &str) -> &'static str {
    KNOWN_CODES.iter().copied().find(|k| *k == code).unwrap_or("Other")
}

#[cfg(test)]
mod metric_code_tests {
    use super::*;

    #[test]
    fn known_codes_are_kept_and_others_fold_into_other() {
        assert_eq!(metric_code("Throttling.User"), "Throttling.User");
        assert_eq!(metric_code("Forbidden.RAM"), "Forbidden.RAM");
        assert_eq!(metric_code("Some.New.Code-123"), "Other");
        assert_eq!(metric_code(""), "Other");
        assert_eq!(metric_code("throttling.user"), "Other", "codes are case-sensitive");
    }
}
