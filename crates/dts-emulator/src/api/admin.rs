//! The admin API under `/_emulator/`: journal, faults and jobs. It needs no
//! signature — it is for the test harness and the user on loopback.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::Shared;
use crate::config::JobSpec;
use crate::faults::FaultsRequest;
use crate::state::AddError;

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
    s.lock().faults = Default::default();
    StatusCode::NO_CONTENT
}

pub async fn list_jobs(State(s): State<Arc<Shared>>) -> Response {
    Json(s.lock().jobs.list()).into_response()
}

pub async fn add_job(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let spec: JobSpec = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match s.lock().jobs.add(&spec) {
        Ok(job) => (StatusCode::CREATED, Json(job)).into_response(),
        Err(AddError::Exists(e)) => (StatusCode::CONFLICT, Json(json!({ "error": e }))).into_response(),
        Err(AddError::Invalid(e)) => bad_request(e),
    }
}
