//! The DTS operations: StopDtsJob, StartDtsJob, SuspendDtsJob,
//! DescribeDtsJobDetail and DescribeDtsJobs, with the response fields of
//! docs/dts-api.md §6. Business failures are HTTP 200 with `"Success": false`
//! (docs/dts-api.md §5); only a missing required parameter is a gateway error.

use std::collections::BTreeMap;
use std::time::Instant;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::state::{is, Direction, Job, JobError, Jobs, Transition};

/// The operations the emulator serves; any other action is
/// `InvalidApi.NotFound`.
pub const ACTIONS: [&str; 5] = [
    "StopDtsJob",
    "StartDtsJob",
    "SuspendDtsJob",
    "DescribeDtsJobDetail",
    "DescribeDtsJobs",
];

/// A 2xx answer: its body and, for `Success:false`, the `ErrCode`.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub body: Value,
    pub error_code: Option<String>,
}

fn success(request_id: &str, extra: Map<String, Value>) -> Answer {
    let mut body = Map::new();
    body.insert("RequestId".into(), request_id.into());
    body.insert("HttpStatusCode".into(), 200.into());
    body.insert("Success".into(), true.into());
    body.extend(extra);
    Answer {
        body: Value::Object(body),
        error_code: None,
    }
}

/// `Success:false` with a `%s` message filled by `DynamicMessage`, the
/// documented rendering rule.
fn failure(request_id: &str, code: &str, message: &str, dynamic: &str) -> Answer {
    Answer {
        body: json!({
            "RequestId": request_id,
            "HttpStatusCode": 200,
            "Success": false,
            "ErrCode": code,
            "ErrMessage": message,
            "DynamicMessage": dynamic,
            "DynamicCode": "",
        }),
        error_code: Some(code.to_owned()),
    }
}

fn job_error(request_id: &str, e: JobError) -> Answer {
    match e {
        // docs/dts-api.md §8: DTS's "job or instance missing" code.
        JobError::NotFound(id) => failure(
            request_id,
            "Forbidden.InstanceNotFound",
            "The specified DTS job %s does not exist.",
            &id,
        ),
        JobError::InvalidDirection => invalid_parameter(request_id, "SynchronizationDirection"),
        // Not documented by DTS; the emulator's choice (see README).
        JobError::InvalidStatus(status) => failure(
            request_id,
            "InvalidJobStatus",
            "The operation is not allowed in the current job status %s.",
            &status,
        ),
    }
}

fn invalid_parameter(request_id: &str, name: &str) -> Answer {
    failure(
        request_id,
        "InvalidParameter",
        "The Value of Input Parameter %s is not valid.",
        name,
    )
}

fn opt<'a>(params: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    params.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

/// Runs `action` (one of [`ACTIONS`]) against `jobs`; `clock` times
/// lifecycle transitions, `now` is the wall clock of `Checkpoint`.
pub fn call(
    jobs: &mut Jobs,
    clock: Instant,
    action: &str,
    params: &BTreeMap<String, String>,
    request_id: &str,
    now: Timestamp,
) -> Result<Answer, GatewayError> {
    match action {
        "StopDtsJob" => lifecycle(jobs, params, request_id, Transition::Stop, clock),
        "StartDtsJob" => lifecycle(jobs, params, request_id, Transition::Start, clock),
        "SuspendDtsJob" => lifecycle(jobs, params, request_id, Transition::Suspend, clock),
        "DescribeDtsJobDetail" => Ok(describe_detail(jobs, params, request_id, now)),
        "DescribeDtsJobs" => describe_jobs(jobs, params, request_id, now),
        _ => Err(GatewayError::api_not_found()),
    }
}

fn lifecycle(
    jobs: &mut Jobs,
    params: &BTreeMap<String, String>,
    request_id: &str,
    t: Transition,
    clock: Instant,
) -> Result<Answer, GatewayError> {
    let job_id = opt(params, "DtsJobId");
    let instance_id = opt(params, "DtsInstanceId");
    if job_id.is_none() && instance_id.is_none() {
        return Err(GatewayError::missing_parameter("DtsJobId"));
    }
    let Some(dir) = Direction::parse(opt(params, "SynchronizationDirection")) else {
        return Ok(invalid_parameter(request_id, "SynchronizationDirection"));
    };
    Ok(
        match jobs.transition(job_id, instance_id, opt(params, "RegionId"), dir, t, clock) {
            Ok(()) => success(request_id, Map::new()),
            Err(e) => job_error(request_id, e),
        },
    )
}

/// How `Checkpoint` is typed: the SDK models type it as an integer in
/// DescribeDtsJobDetail and as a string in DescribeDtsJobs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CheckpointAs {
    Integer,
    String,
}

/// The fields DTS returns for one direction of a job (the caller checked
/// that the direction exists).
fn job_fields(job: &Job, dir: Direction, now: Timestamp, cp: CheckpointAs) -> Map<String, Value> {
    let state = job.dir(dir);
    let mut m = Map::new();
    m.insert("DtsJobId".into(), job.job_id.clone().into());
    m.insert(
        "DtsInstanceID".into(),
        job.instance_id.clone().unwrap_or_default().into(),
    );
    m.insert("DtsJobName".into(), job.job_id.clone().into());
    m.insert("JobType".into(), job.job_type.clone().into());
    m.insert("Status".into(), job.status(dir).unwrap_or_default().into());
    // Returned only for two-way topologies (docs/dts-api.md §6.1).
    if job.two_way {
        m.insert("DtsJobDirection".into(), dir.as_str().into());
    }
    m.insert(
        "ErrorMessage".into(),
        state.map(|s| s.error_message.clone()).unwrap_or_default().into(),
    );
    m.insert("Delay".into(), state.map_or(0, |s| s.delay_ms).into());
    let checkpoint = state.and_then(|s| s.checkpoint).unwrap_or_else(|| now.as_second());
    m.insert(
        "Checkpoint".into(),
        match cp {
            CheckpointAs::Integer => checkpoint.into(),
            CheckpointAs::String => checkpoint.to_string().into(),
        },
    );
    m
}

fn describe_detail(jobs: &Jobs, params: &BTreeMap<String, String>, request_id: &str, now: Timestamp) -> Answer {
    // DescribeDtsJobDetail spells it `DtsInstanceID` (docs/dts-api.md §6); the
    // `Id` spelling is ignored, as DTS would ignore an unknown parameter.
    let job_id = opt(params, "DtsJobId");
    let instance_id = opt(params, "DtsInstanceID");
    let Some(dir) = Direction::parse(opt(params, "SynchronizationDirection")) else {
        return invalid_parameter(request_id, "SynchronizationDirection");
    };
    let job = match jobs.find(job_id, instance_id, opt(params, "RegionId")) {
        Ok(job) => job,
        Err(e) => return job_error(request_id, e),
    };
    if job.status(dir).is_none() {
        return job_error(request_id, JobError::InvalidDirection);
    }
    let mut fields = job_fields(job, dir, now, CheckpointAs::Integer);
    fields.insert("SynchronizationDirection".into(), dir.as_str().into());
    success(request_id, fields)
}

fn page_param(params: &BTreeMap<String, String>, name: &str, default: u64, max: u64) -> Result<u64, GatewayError> {
    match opt(params, name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(GatewayError::invalid_parameter(
                name,
                &format!("expected an integer in 1..{max}"),
            )),
        },
    }
}

fn describe_jobs(
    jobs: &Jobs,
    params: &BTreeMap<String, String>,
    request_id: &str,
    now: Timestamp,
) -> Result<Answer, GatewayError> {
    // The SDK model documents a maximum of 30.
    let page_size = page_param(params, "PageSize", 20, 30)?;
    let page_number = page_param(params, "PageNumber", 1, u64::from(u32::MAX))?;
    let list = |k: &str| opt(params, k).map(|v| v.split(',').map(str::trim).collect::<Vec<_>>());
    let ids = list("DtsJobId");
    let instances = list("DtsInstanceId");
    // `Region` is the documented parameter; `RegionId` is deprecated here
    // but still sent by some clients.
    let region = opt(params, "Region").or(opt(params, "RegionId"));
    // DTS defaults JobType to MIGRATION (docs/dts-api.md): a client that
    // leaves it out does not see its SYNC or SUBSCRIBE jobs, here as there.
    let job_type = opt(params, "JobType").unwrap_or("MIGRATION");
    let status = opt(params, "Status");
    let matching: Vec<&Job> = jobs
        .iter()
        .filter(|j| job_type.eq_ignore_ascii_case(&j.job_type))
        .filter(|j| status.is_none_or(|s| j.status(Direction::Forward).is_some_and(|f| is(f, s))))
        .filter(|j| region.is_none_or(|r| r == j.region_id))
        .filter(|j| ids.as_ref().is_none_or(|ids| ids.contains(&j.job_id.as_str())))
        .filter(|j| {
            instances
                .as_ref()
                .is_none_or(|is| j.instance_id.as_deref().is_some_and(|i| is.contains(&i)))
        })
        .collect();
    let total = matching.len();
    let start = usize::try_from((page_number - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
    let page: Vec<Value> = matching
        .into_iter()
        .skip(start)
        .take(usize::try_from(page_size).unwrap_or(usize::MAX))
        .map(|j| {
            let mut m = job_fields(j, Direction::Forward, now, CheckpointAs::String);
            if j.two_way {
                m.insert(
                    "ReverseJob".into(),
                    Value::Object(job_fields(j, Direction::Reverse, now, CheckpointAs::String)),
                );
            }
            Value::Object(m)
        })
        .collect();
    let mut extra = Map::new();
    extra.insert("TotalRecordCount".into(), total.into());
    extra.insert("PageNumber".into(), page_number.into());
    extra.insert("PageRecordCount".into(), page.len().into());
    extra.insert("DtsJobList".into(), Value::Array(page));
    Ok(success(request_id, extra))
}
