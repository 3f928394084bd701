//! The admin API under `/_emulator/`: journal, faults, jobs and
//! out-of-band job changes. It needs no
//! signature — it is for the test harness and the user on loopback.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::Shared;
use crate::config::JobSpec;
use crate::faults::{Faults, FaultsRequest};
use crate::state::{AddError, ChangeError, Job, StateChange};

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

/// Parses a JSON body with a message that names the problem (axum's own
/// rejection text is less specific about unknown fields).
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| Box::new(bad_request(format!("invalid JSON body: {e}"))))
}

pub async fn journal(State(s): State<Arc<Shared>>) -> Response {
    Json(s.lock().journal.entries()).into_response()
}

pub async fn clear_journal(State(s): State<Arc<Shared>>) -> StatusCode {
    s.lock().journal.clear();
    StatusCode::NO_CONTENT
}

pub async fn get_faults(State(s): State<Arc<Shared>>) -> Response {
    Json(s.lock().faults.view()).into_response()
}

pub async fn set_faults(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: FaultsRequest = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let mut inner = s.lock();
    match inner.faults.apply(req) {
        Ok(()) => Json(inner.faults.view()).into_response(),
        Err(e) => bad_request(e),
    }
}

pub async fn clear_faults(State(s): State<Arc<Shared>>) -> StatusCode {
    // Back to the start-up state, the config's Describe* quota included.
    let qps = s.describe_qps;
    s.lock().faults = Faults::new(qps);
    StatusCode::NO_CONTENT
}

pub async fn list_jobs(State(s): State<Arc<Shared>>) -> Response {
    let mut inner = s.lock();
    inner.jobs.settle(Instant::now());
    let list: Vec<_> = inner.jobs.iter().map(Job::summary).collect();
    Json(list).into_response()
}

fn not_found(message: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": message }))).into_response()
}

/// `GET /_emulator/jobs/{jobId}`: every detail of one job.
pub async fn get_job(State(s): State<Arc<Shared>>, Path(job_id): Path<String>) -> Response {
    let now = Instant::now();
    let mut inner = s.lock();
    inner.jobs.settle(now);
    match inner.jobs.get(&job_id) {
        Some(job) => Json(job.view(now)).into_response(),
        None => not_found(format!("no job {job_id:?}")),
    }
}

/// `POST /_emulator/jobs/{jobId}/state`: an out-of-band change, as the
/// console would make it.
pub async fn change_job(State(s): State<Arc<Shared>>, Path(job_id): Path<String>, body: Bytes) -> Response {
    let change: StateChange = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match s.lock().jobs.change(&job_id, &change, Instant::now()) {
        Ok(view) => Json(view).into_response(),
        Err(ChangeError::NotFound(e)) => not_found(e),
        Err(ChangeError::Invalid(e)) => bad_request(e),
    }
}

pub async fn add_job(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let spec: JobSpec = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match s.lock().jobs.add(&spec) {
        Ok(job) => (StatusCode::CREATED, Json(job.summary())).into_response(),
        Err(AddError::Exists(e)) => (StatusCode::CONFLICT, Json(json!({ "error": e }))).into_response(),
        Err(AddError::Invalid(e)) => bad_request(e),
    }
}

/// `GET /_emulator/sts/credentials`: every credential STS issued, secrets
/// included (a test's leak checks search for them), with its expiry.
pub async fn sts_credentials(State(s): State<Arc<Shared>>) -> Response {
    Json(s.lock().sts.list()).into_response()
}

/// `POST /_emulator/sts/expire`: expires every issued credential now.
pub async fn sts_expire(State(s): State<Arc<Shared>>) -> Response {
    let n = s.lock().sts.expire_all(jiff::Timestamp::now());
    Json(json!({ "expired": n })).into_response()
}
