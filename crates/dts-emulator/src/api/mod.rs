//! HTTP surface: the DTS endpoint (`/`, any other path answers like the
//! gateway does for an unknown API) and the admin API under `/_emulator/`.

pub mod admin;
pub mod dts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use jiff::Timestamp;
use serde_json::Value;

use super::config::{Account, Config};
use super::error::GatewayError;
use super::faults::{Before, Delivery, Faults, HUGE_BODY_BYTES};
use super::journal::{Entry, Journal};
use super::ledger::Ledger;
use super::server::ConnCtl;
use super::state::Jobs;
use super::sts::{self, StsState};
use super::verify::{self, Incoming, NonceCache, Scheme};

/// Largest request body read; DTS lifecycle calls have empty bodies.
const MAX_BODY: usize = 1 << 20;

/// State shared by all handlers.
pub struct Shared {
    accounts: HashMap<String, Account>,
    /// The config's Describe* quota, restored by `DELETE /_emulator/faults`.
    pub describe_qps: u32,
    sts: Option<super::config::StsConfig>,
    /// Where the secrets of each call are recorded (`--secret-ledger`).
    ledger: Option<Ledger>,
    inner: Mutex<Inner>,
}

/// Everything that changes, behind one lock: a call's checks, effect and
/// journal entry happen atomically, so concurrent calls see a consistent
/// order (no await is held across it).
pub struct Inner {
    pub jobs: Jobs,
    pub nonces: NonceCache,
    pub faults: Faults,
    pub journal: Journal,
    /// The credentials STS issued.
    pub sts: StsState,
}

impl Shared {
    pub fn new(config: &Config) -> Shared {
        Shared {
            accounts: config
                .accounts
                .iter()
                .map(|a| (a.access_key_id.clone(), a.clone()))
                .collect(),
            describe_qps: config.describe_qps(),
            sts: config.sts.clone(),
            ledger: None,
            inner: Mutex::new(Inner {
                sts: StsState::new(config.sts.as_ref()),
                jobs: Jobs::new(&config.jobs),
                nonces: NonceCache::default(),
                faults: Faults::new(config.describe_qps()),
                journal: Journal::default(),
            }),
        }
    }

    /// Records the secrets of every call in `ledger`, starting with the
    /// configured accounts'.
    pub fn with_ledger(mut self, ledger: Ledger) -> Shared {
        ledger.record_accounts(&self.accounts.values().cloned().collect::<Vec<_>>());
        self.ledger = Some(ledger);
        self
    }

    /// The state lock. A panic elsewhere must not take the emulator down
    /// with a poisoned lock, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The router for one emulator.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_emulator/journal", get(admin::journal).delete(admin::clear_journal))
        .route(
            "/_emulator/faults",
            get(admin::get_faults)
                .post(admin::set_faults)
                .delete(admin::clear_faults),
        )
        .route("/_emulator/jobs", get(admin::list_jobs).post(admin::add_job))
        .route("/_emulator/jobs/{job_id}", get(admin::get_job))
        .route("/_emulator/jobs/{job_id}/state", post(admin::change_job))
        .route("/_emulator/sts/credentials", get(admin::sts_credentials))
        .route("/_emulator/sts/expire", post(admin::sts_expire))
        .fallback(dts_call)
        .with_state(shared)
}

/// DTS's RequestId format: an upper-case UUID.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// RFC 3339 UTC with milliseconds, for the journal.
fn journal_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// How one call is answered, decided under the lock.
struct Outcome {
    status: StatusCode,
    body: Value,
    retry_after_ms: Option<u64>,
    delay: std::time::Duration,
    delivery: Delivery,
}

fn json_response(status: StatusCode, body: &Value, request_id: &str, retry_after_ms: Option<u64>) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-acs-request-id", v);
    }
    if let Some(ms) = retry_after_ms {
        h.insert("x-acs-retry-after", HeaderValue::from(ms));
    }
    resp
}

async fn dts_call(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnCtl>,
    req: Request,
) -> Response {
    let now = Timestamp::now();
    let request_id = request_id();
    let (parts, body) = req.into_parts();
    if let Some(resp) = reset_before_read(&shared, &conn, &parts, now, &request_id) {
        return resp;
    }
    let body = axum::body::to_bytes(body, MAX_BODY).await;
    let body_bytes = body.as_deref().unwrap_or_default();
    let raw_query = parts.uri.query().unwrap_or_default();
    let incoming = Incoming {
        method: &parts.method,
        path: parts.uri.path(),
        raw_query,
        headers: &parts.headers,
        body: body_bytes,
    };
    let parsed = verify::parse(&incoming);
    let outcome = {
        let mut inner = shared.lock();
        let (outcome, entry) = handle(&shared, &mut inner, &incoming, &parsed, body.is_err(), now, &request_id);
        // Only non-secret fields: the params may hold a SecurityToken.
        tracing::info!(
            action = entry.action.as_deref().unwrap_or("-"),
            scheme = ?entry.scheme,
            access_key_id = entry.access_key_id.as_deref().unwrap_or("-"),
            auth_ok = entry.auth_ok,
            http_status = entry.http_status,
            error_code = entry.error_code.as_deref().unwrap_or("-"),
            fault = entry.fault.as_deref().unwrap_or("-"),
            request_id = %entry.request_id,
            "dts call"
        );
        inner.journal.push(entry);
        outcome
    };
    if let Some(ledger) = &shared.ledger {
        ledger.record_call(&incoming, &parsed, &outcome.body);
    }
    // Effect and journal are done; only now does the answer get delayed,
    // garbled or dropped, as a slow or broken network would.
    if !outcome.delay.is_zero() {
        tokio::time::sleep(outcome.delay).await;
    }
    match outcome.delivery {
        Delivery::Reset => {
            conn.kill();
            // Never written: the killed connection fails the write and closes.
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Delivery::Malformed => {
            let mut resp = (StatusCode::OK, "<html><body>upstream hiccup: not JSON").into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=utf-8"),
            );
            resp
        }
        Delivery::Normal => json_response(outcome.status, &outcome.body, &request_id, outcome.retry_after_ms),
        other => sabotaged(other, &request_id),
    }
}

/// `resetBeforeReadNext`: drops the connection before the request's body is
/// read or anything is checked, and journals the drop (the action as the
/// query names it, unverified). `None` when the fault is not armed.
fn reset_before_read(
    shared: &Shared,
    conn: &ConnCtl,
    parts: &axum::http::request::Parts,
    now: Timestamp,
    request_id: &str,
) -> Option<Response> {
    let mut inner = shared.lock();
    if !inner.faults.reset_before_read() {
        return None;
    }
    let params: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let action = params.get("Action").cloned().or_else(|| {
        parts
            .headers
            .get("x-acs-action")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    tracing::info!(
        action = action.as_deref().unwrap_or("-"),
        fault = "resetBeforeRead",
        request_id,
        "dts call dropped unread"
    );
    inner.journal.push(Entry {
        time: journal_time(now),
        action,
        params,
        scheme: verify::parse(&Incoming {
            method: &parts.method,
            path: parts.uri.path(),
            raw_query: parts.uri.query().unwrap_or_default(),
            headers: &parts.headers,
            body: &[],
        })
        .scheme,
        access_key_id: None,
        auth_ok: false,
        http_status: None,
        request_id: request_id.to_owned(),
        error_code: None,
        fault: Delivery::ResetBeforeRead.label().map(str::to_owned),
    });
    conn.kill();
    Some(StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The answers of the faults that imitate what is in front of DTS or a
/// broken answer: a load balancer's 502 page, an empty body, a 10 MiB body.
fn sabotaged(delivery: Delivery, request_id: &str) -> Response {
    match delivery {
        Delivery::Html502 => {
            let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n";
            let mut resp = (StatusCode::BAD_GATEWAY, page).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            resp
        }
        Delivery::Empty(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut resp = status.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=utf-8"),
            );
            resp
        }
        Delivery::Huge => huge_answer(request_id),
        Delivery::Normal | Delivery::Malformed | Delivery::Reset | Delivery::ResetBeforeRead => {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A valid JSON success padded with whitespace to [`HUGE_BODY_BYTES`],
/// streamed in 64 KiB chunks without a `Content-Length`: a client that
/// does not cap what it reads would accept it as a success.
fn huge_answer(request_id: &str) -> Response {
    const CHUNK: usize = 64 * 1024;
    static PADDING: [u8; CHUNK] = [b' '; CHUNK];
    let head = format!("{{\"Success\":true,\"RequestId\":\"{request_id}\",\"Padding\":");
    let chunks = HUGE_BODY_BYTES / CHUNK;
    let parts = std::iter::once(axum::body::Bytes::from(head))
        .chain((0..chunks).map(|_| axum::body::Bytes::from_static(&PADDING)))
        .chain(std::iter::once(axum::body::Bytes::from_static(b"null}")))
        .map(Ok::<_, std::io::Error>);
    let mut resp = axum::body::Body::from_stream(futures::stream::iter(parts)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    resp
}

/// The region a call is counted against (the Describe* and per-account
/// quotas): DescribeDtsJobs's
/// `Region` (or the deprecated `RegionId`), else `RegionId`; `""` when the
/// call names none.
fn quota_region(params: &std::collections::BTreeMap<String, String>) -> &str {
    ["Region", "RegionId"]
        .iter()
        .filter_map(|k| params.get(*k))
        .find(|v| !v.is_empty())
        .map_or("", String::as_str)
}

/// Routes, verifies, applies faults and runs the operation; returns the
/// answer and the journal entry.
fn handle(
    shared: &Shared,
    inner: &mut Inner,
    incoming: &Incoming<'_>,
    parsed: &verify::Parsed,
    body_too_large: bool,
    now: Timestamp,
    request_id: &str,
) -> (Outcome, Entry) {
    let mut entry = Entry {
        time: journal_time(now),
        action: parsed.action.clone(),
        params: parsed.params.clone(),
        scheme: parsed.scheme,
        access_key_id: parsed.access_key_id.clone(),
        auth_ok: false,
        http_status: None,
        request_id: request_id.to_owned(),
        error_code: None,
        fault: None,
    };
    let reject = |entry: &mut Entry, e: GatewayError, retry_after_ms: Option<u64>| {
        entry.http_status = Some(e.status.as_u16());
        entry.error_code = Some(e.code.clone());
        Outcome {
            status: e.status,
            body: e.body(request_id),
            retry_after_ms,
            delay: std::time::Duration::ZERO,
            delivery: Delivery::Normal,
        }
    };
    let pre = (|| {
        if body_too_large {
            return Err(GatewayError::invalid_parameter("body", "larger than 1 MiB"));
        }
        if incoming.path != "/" || !matches!(incoming.method.as_str(), "GET" | "POST") {
            return Err(GatewayError::api_not_found());
        }
        let action = parsed.action.as_deref().filter(|a| !a.is_empty()).ok_or_else(|| {
            GatewayError::missing_parameter(match parsed.scheme {
                Scheme::HmacSha1 => "Action",
                Scheme::Acs3HmacSha256 => "x-acs-action",
            })
        })?;
        let is_sts = sts::ACTIONS.contains(&action);
        if !is_sts && !dts::ACTIONS.contains(&action) {
            return Err(GatewayError::api_not_found());
        }
        if action == "AssumeRoleWithOIDC" {
            // Unsigned: the OIDC token is verified by the operation itself.
            let version = parsed.params.get("Version").map(String::as_str).unwrap_or_default();
            if version != sts::STS_VERSION {
                return Err(GatewayError::api_not_found());
            }
            return Ok(action.to_owned());
        }
        let version = if is_sts { sts::STS_VERSION } else { verify::API_VERSION };
        let lookup = |id: &str| {
            shared
                .accounts
                .get(id)
                .cloned()
                .or_else(|| inner.sts.get(id).map(|(a, _)| a))
        };
        // `clockSkewSeconds` moves only the clock timestamps are checked against.
        let verified = verify::verify(incoming, parsed, &lookup, version, inner.faults.skewed(now))?;
        // Temporary credentials are refused once expired, whatever they sign.
        if let Some((_, expiration)) = parsed.access_key_id.as_deref().and_then(|id| inner.sts.get(id)) {
            if expiration <= now {
                return Err(GatewayError::token_expired());
            }
        }
        if !inner
            .nonces
            .check_and_insert(&verified.nonce, verified.request_time, now)
        {
            return Err(GatewayError::nonce_used());
        }
        Ok(action.to_owned())
    })();
    let action = match pre {
        Ok(a) => a,
        Err(e) => {
            let o = reject(&mut entry, e, None);
            return (o, entry);
        }
    };
    entry.auth_ok = true;
    match inner.faults.before() {
        Before::Proceed => {}
        Before::Reject(e, retry_after) => {
            let o = reject(&mut entry, e, retry_after);
            return (o, entry);
        }
        Before::Sabotage(delivery) => {
            entry.fault = delivery.label().map(str::to_owned);
            entry.http_status = delivery.http_status();
            let o = Outcome {
                status: StatusCode::BAD_GATEWAY,
                body: Value::Null,
                retry_after_ms: None,
                delay: std::time::Duration::ZERO,
                delivery,
            };
            return (o, entry);
        }
    }
    let clock = std::time::Instant::now();
    let key_id = parsed.access_key_id.as_deref().unwrap_or_default();
    if let Before::Reject(e, retry_after) = inner.faults.account_quota(key_id, quota_region(&parsed.params), clock) {
        let o = reject(&mut entry, e, retry_after);
        return (o, entry);
    }
    if action.starts_with("Describe") {
        if let Before::Reject(e, retry_after) = inner.faults.describe_quota(key_id, quota_region(&parsed.params), clock)
        {
            let o = reject(&mut entry, e, retry_after);
            return (o, entry);
        }
    }
    if sts::ACTIONS.contains(&action.as_str()) {
        let result = if action == "AssumeRole" {
            let caller = parsed.access_key_id.as_deref().unwrap_or_default();
            sts::assume_role(
                &mut inner.sts,
                shared.sts.as_ref(),
                caller,
                &parsed.params,
                now,
                request_id,
            )
        } else {
            sts::assume_role_with_oidc(&mut inner.sts, shared.sts.as_ref(), &parsed.params, now, request_id)
        };
        let body = match result {
            Ok(body) => body,
            Err(e) => {
                let o = reject(&mut entry, e, None);
                return (o, entry);
            }
        };
        let (delay, delivery) = inner.faults.after();
        entry.fault = delivery.label().map(str::to_owned);
        entry.http_status = delivery.http_status();
        return (
            Outcome {
                status: StatusCode::OK,
                body,
                retry_after_ms: None,
                delay,
                delivery,
            },
            entry,
        );
    }
    inner.jobs.settle(clock);
    let answer = match dts::call(&mut inner.jobs, clock, &action, &parsed.params, request_id, now) {
        Ok(a) => a,
        Err(e) => {
            let o = reject(&mut entry, e, None);
            return (o, entry);
        }
    };
    let (delay, delivery) = inner.faults.after();
    entry.fault = delivery.label().map(str::to_owned);
    entry.http_status = delivery.http_status();
    entry.error_code = answer.error_code;
    (
        Outcome {
            status: StatusCode::OK,
            body: answer.body,
            retry_after_ms: None,
            delay,
            delivery,
        },
        entry,
    )
}
