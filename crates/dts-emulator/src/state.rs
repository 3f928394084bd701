//! Per-job state: the topology (one-way or two-way), the job type, and per
//! direction the status, error message, delay, checkpoint and any lifecycle
//! transition still on its way, plus the transitions the lifecycle
//! operations and the admin API make.
//!
//! Time is passed in (`now: Instant`) and pending transitions are settled
//! lazily by every reader, so there is no background task.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::config::{normalize_job_type, JobSpec};

/// A synchronization direction. `Forward` is the default when a call omits
/// `SynchronizationDirection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

impl Direction {
    /// Parses the wire value; DTS spells them exactly `Forward`/`Reverse`.
    pub fn parse(s: Option<&str>) -> Option<Direction> {
        match s {
            None | Some("Forward") => Some(Direction::Forward),
            Some("Reverse") => Some(Direction::Reverse),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "Forward",
            Direction::Reverse => "Reverse",
        }
    }
}

/// Status of each direction; `Reverse` is present only for two-way jobs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DirectionStatus {
    #[serde(rename = "Forward")]
    pub forward: String,
    #[serde(rename = "Reverse", skip_serializing_if = "Option::is_none")]
    pub reverse: Option<String>,
}

/// One job as `GET /_emulator/jobs` lists it (the shape is kept stable; the
/// details are in [`JobView`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    pub job_id: String,
    pub instance_id: Option<String>,
    pub region_id: String,
    pub two_way: bool,
    pub status: DirectionStatus,
}

/// A lifecycle call accepted but not yet effective: the direction reaches
/// `target` at `due`.
#[derive(Debug, Clone, PartialEq)]
struct Pending {
    target: String,
    due: Instant,
}

/// The state of one direction of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct DirState {
    pub status: String,
    /// Shown as `ErrorMessage`; empty unless set (e.g. with `Failed`).
    pub error_message: String,
    /// Replication delay (`Delay`), milliseconds.
    pub delay_ms: u64,
    /// `Checkpoint` in unix seconds; `None`: the time of the call.
    pub checkpoint: Option<i64>,
    /// How long a lifecycle call takes to reach its target; 0 = at once.
    pub transition_ms: u64,
    pending: Option<Pending>,
}

impl DirState {
    fn from_spec(spec: &JobSpec) -> DirState {
        DirState {
            status: spec.status.clone(),
            error_message: spec.error_message.clone().unwrap_or_default(),
            delay_ms: spec.delay_ms,
            checkpoint: spec.checkpoint,
            transition_ms: spec.transition_ms,
            pending: None,
        }
    }

    /// Makes a due pending transition effective.
    fn settle(&mut self, now: Instant) {
        if self.pending.as_ref().is_some_and(|p| p.due <= now) {
            let p = self.pending.take().expect("checked");
            self.reach(p.target);
        }
    }

    fn reach(&mut self, target: String) {
        if !is(&target, "Failed") {
            self.error_message.clear();
        }
        self.status = target;
    }

    fn view(&self, now: Instant) -> DirView {
        DirView {
            status: self.status.clone(),
            error_message: self.error_message.clone(),
            delay_ms: self.delay_ms,
            checkpoint: self.checkpoint,
            transition_ms: self.transition_ms,
            pending: self.pending.as_ref().map(|p| PendingView {
                status: p.target.clone(),
                due_in_ms: u64::try_from(p.due.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

/// One direction as `GET /_emulator/jobs/{jobId}` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DirView {
    pub status: String,
    pub error_message: String,
    pub delay_ms: u64,
    /// `null`: Describe reports the time of the call.
    pub checkpoint: Option<i64>,
    pub transition_ms: u64,
    /// A lifecycle call on its way: the status it will reach and when.
    pub pending: Option<PendingView>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingView {
    pub status: String,
    pub due_in_ms: u64,
}

/// One job with every detail, as `GET /_emulator/jobs/{jobId}` and
/// `POST /_emulator/jobs/{jobId}/state` answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub job_id: String,
    pub instance_id: Option<String>,
    pub region_id: String,
    pub two_way: bool,
    pub job_type: String,
    #[serde(rename = "Forward")]
    pub forward: DirView,
    #[serde(rename = "Reverse", skip_serializing_if = "Option::is_none")]
    pub reverse: Option<DirView>,
}

/// One job: topology, type and the state of each direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub job_id: String,
    pub instance_id: Option<String>,
    pub region_id: String,
    pub two_way: bool,
    /// `SYNC`, `MIGRATION` or `SUBSCRIBE` (upper case).
    pub job_type: String,
    pub forward: DirState,
    pub reverse: Option<DirState>,
}

impl Job {
    pub fn from_spec(spec: &JobSpec) -> Job {
        Job {
            job_id: spec.job_id.clone(),
            instance_id: spec.instance_id.clone(),
            region_id: spec.region_id.clone(),
            two_way: spec.two_way,
            job_type: normalize_job_type(&spec.job_type).unwrap_or("SYNC").to_owned(),
            forward: DirState::from_spec(spec),
            reverse: spec.two_way.then(|| DirState::from_spec(spec)),
        }
    }

    /// The state of `dir`, or `None` when the job has no such direction.
    pub fn dir(&self, dir: Direction) -> Option<&DirState> {
        match dir {
            Direction::Forward => Some(&self.forward),
            Direction::Reverse => self.reverse.as_ref(),
        }
    }

    fn dir_mut(&mut self, dir: Direction) -> Option<&mut DirState> {
        match dir {
            Direction::Forward => Some(&mut self.forward),
            Direction::Reverse => self.reverse.as_mut(),
        }
    }

    /// The status of `dir`, or `None` when the job has no such direction.
    pub fn status(&self, dir: Direction) -> Option<&str> {
        self.dir(dir).map(|d| d.status.as_str())
    }

    /// A change-tracking (`SUBSCRIBE`) job.
    pub fn is_change_tracking(&self) -> bool {
        self.job_type == "SUBSCRIBE"
    }

    fn settle(&mut self, now: Instant) {
        self.forward.settle(now);
        if let Some(r) = &mut self.reverse {
            r.settle(now);
        }
    }

    pub fn summary(&self) -> JobSummary {
        JobSummary {
            job_id: self.job_id.clone(),
            instance_id: self.instance_id.clone(),
            region_id: self.region_id.clone(),
            two_way: self.two_way,
            status: DirectionStatus {
                forward: self.forward.status.clone(),
                reverse: self.reverse.as_ref().map(|r| r.status.clone()),
            },
        }
    }

    pub fn view(&self, now: Instant) -> JobView {
        JobView {
            job_id: self.job_id.clone(),
            instance_id: self.instance_id.clone(),
            region_id: self.region_id.clone(),
            two_way: self.two_way,
            job_type: self.job_type.clone(),
            forward: self.forward.view(now),
            reverse: self.reverse.as_ref().map(|r| r.view(now)),
        }
    }

    /// The status `StartDtsJob` leads to for this job's type.
    fn running_status(&self) -> &'static str {
        match self.job_type.as_str() {
            "MIGRATION" => "Migrating",
            "SUBSCRIBE" => "Normal",
            _ => "Synchronizing",
        }
    }
}

/// A lifecycle operation that changes a direction's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Stop,
    Start,
    Suspend,
}

/// Why a lookup or transition did not happen; the API layer renders each as
/// a 200 `Success:false` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// No job with that id (or instance id) in that region.
    NotFound(String),
    /// `Reverse` on a one-way job, or an unknown direction value.
    InvalidDirection,
    /// The direction's status does not allow the operation (e.g. stopping a
    /// `Finished` direction; a stopped DTS job cannot be restarted).
    InvalidStatus(String),
}

/// An out-of-band change, as the console (or DTS itself) would make it:
/// the body of `POST /_emulator/jobs/{jobId}/state`. Only the fields present
/// change.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateChange {
    /// `Forward` (default) or `Reverse`.
    pub direction: Option<String>,
    /// The new status, effective at once; it cancels a pending lifecycle
    /// transition of that direction.
    pub status: Option<String>,
    /// Shown as `ErrorMessage`. With `status` and without this field, the
    /// message is cleared, or for `Failed` set to a default text.
    pub error_message: Option<String>,
    pub delay_ms: Option<u64>,
    pub checkpoint: Option<i64>,
    /// Time later lifecycle calls on this direction take.
    pub transition_ms: Option<u64>,
    /// The job's type (job-wide): `SYNC`, `MIGRATION` or `SUBSCRIBE`.
    pub job_type: Option<String>,
}

/// `ErrorMessage` of a direction failed through the admin API without one.
pub const DEFAULT_FAILED_MESSAGE: &str = "The DTS job failed (set through the emulator's admin API).";

/// Why [`Jobs::change`] refused, each a 404 or a 400 of the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    NotFound(String),
    Invalid(String),
}

/// All jobs, keyed by jobId.
#[derive(Debug, Default)]
pub struct Jobs {
    jobs: BTreeMap<String, Job>,
}

/// DTS status values are compared case-insensitively (its docs spell
/// `synchronizing` and `Synchronizing` both).
pub fn is(status: &str, want: &str) -> bool {
    status.eq_ignore_ascii_case(want)
}

/// Why [`Jobs::add`] refused a job, each with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddError {
    /// The spec is invalid (a 400 for the admin API).
    Invalid(String),
    /// The jobId is taken (a 409).
    Exists(String),
}

impl Jobs {
    pub fn new(specs: &[JobSpec]) -> Jobs {
        Jobs {
            jobs: specs.iter().map(|s| (s.job_id.clone(), Job::from_spec(s))).collect(),
        }
    }

    /// Makes every pending transition that is due by `now` effective. Every
    /// reader calls it first, under the state lock.
    pub fn settle(&mut self, now: Instant) {
        for job in self.jobs.values_mut() {
            job.settle(now);
        }
    }

    /// Adds a job; `Err` when the spec is invalid or the id is taken.
    pub fn add(&mut self, spec: &JobSpec) -> Result<Job, AddError> {
        spec.validate().map_err(AddError::Invalid)?;
        if self.jobs.contains_key(&spec.job_id) {
            return Err(AddError::Exists(format!("jobId {:?} already exists", spec.job_id)));
        }
        let job = Job::from_spec(spec);
        self.jobs.insert(job.job_id.clone(), job.clone());
        Ok(job)
    }

    /// Every job, in jobId order.
    pub fn list(&self) -> Vec<Job> {
        self.jobs.values().cloned().collect()
    }

    /// Every job, in jobId order, without copying.
    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    pub fn get(&self, job_id: &str) -> Option<&Job> {
        self.jobs.get(job_id)
    }

    /// Finds the job a call names: by `DtsJobId` when given, else by the
    /// instance id. When both are given they must belong to the same job, and
    /// a `RegionId` (when given) must be the job's region, as a real regional
    /// service would not see a job of another region.
    pub fn find(
        &self,
        job_id: Option<&str>,
        instance_id: Option<&str>,
        region: Option<&str>,
    ) -> Result<&Job, JobError> {
        let shown = job_id.or(instance_id).unwrap_or_default().to_owned();
        let job = match (job_id, instance_id) {
            (Some(j), _) => self.jobs.get(j),
            (None, Some(i)) => self.jobs.values().find(|job| job.instance_id.as_deref() == Some(i)),
            (None, None) => None,
        };
        let job = job.ok_or_else(|| JobError::NotFound(shown.clone()))?;
        if let (Some(_), Some(i)) = (job_id, instance_id) {
            if job.instance_id.as_deref() != Some(i) {
                return Err(JobError::NotFound(shown));
            }
        }
        if region.is_some_and(|r| r != job.region_id) {
            return Err(JobError::NotFound(shown));
        }
        Ok(job)
    }

    /// Applies `t` to direction `dir` of the job found by [`Jobs::find`]:
    /// at once when the direction's `transition_ms` is 0, else it becomes
    /// pending and is reached `transition_ms` after `now` (the status shown
    /// until then is the current one). A new call replaces a pending one
    /// with another target; one with the same target keeps its due time.
    pub fn transition(
        &mut self,
        job_id: Option<&str>,
        instance_id: Option<&str>,
        region: Option<&str>,
        dir: Direction,
        t: Transition,
        now: Instant,
    ) -> Result<(), JobError> {
        let key = self.find(job_id, instance_id, region)?.job_id.clone();
        let job = self.jobs.get_mut(&key).ok_or(JobError::NotFound(key))?;
        job.settle(now);
        let change_tracking = job.is_change_tracking();
        let target = match t {
            Transition::Stop => "Finished",
            Transition::Start => job.running_status(),
            Transition::Suspend => "Suspending",
        };
        let state = job.dir_mut(dir).ok_or(JobError::InvalidDirection)?;
        // Finished is terminal in DTS: it can be neither stopped again nor
        // restarted.
        if is(&state.status, "Finished") {
            return Err(JobError::InvalidStatus(state.status.clone()));
        }
        // DTS: on change-tracking tasks SuspendDtsJob returns success but
        // does not pause.
        if t == Transition::Suspend && change_tracking {
            return Ok(());
        }
        if state.transition_ms == 0 {
            state.pending = None;
            state.reach(target.to_owned());
        } else if state.pending.as_ref().is_none_or(|p| p.target != target) {
            state.pending = Some(Pending {
                target: target.to_owned(),
                due: now + Duration::from_millis(state.transition_ms),
            });
        }
        Ok(())
    }

    /// Applies an out-of-band change (the admin API) to job `job_id`.
    pub fn change(&mut self, job_id: &str, c: &StateChange, now: Instant) -> Result<JobView, ChangeError> {
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| ChangeError::NotFound(format!("no job {job_id:?}")))?;
        job.settle(now);
        let dir = Direction::parse(c.direction.as_deref())
            .ok_or_else(|| ChangeError::Invalid(format!("direction {:?} is not Forward or Reverse", c.direction)))?;
        if job.dir(dir).is_none() {
            return Err(ChangeError::Invalid(format!(
                "job {job_id:?} is one-way: it has no Reverse direction"
            )));
        }
        let job_type = match &c.job_type {
            None => None,
            Some(t) => {
                let t = normalize_job_type(t).ok_or_else(|| {
                    ChangeError::Invalid(format!("jobType {t:?} is not one of SYNC, MIGRATION, SUBSCRIBE"))
                })?;
                if t != "SYNC" && job.two_way {
                    return Err(ChangeError::Invalid(format!(
                        "job {job_id:?} is two-way: jobType must be SYNC"
                    )));
                }
                Some(t)
            }
        };
        if c.status.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(ChangeError::Invalid("status is empty".into()));
        }
        if let Some(t) = job_type {
            t.clone_into(&mut job.job_type);
        }
        let state = job.dir_mut(dir).expect("checked above");
        if let Some(status) = &c.status {
            state.pending = None;
            state.status.clone_from(status);
            state.error_message = match &c.error_message {
                Some(m) => m.clone(),
                None if is(status, "Failed") => DEFAULT_FAILED_MESSAGE.to_owned(),
                None => String::new(),
            };
        } else if let Some(m) = &c.error_message {
            state.error_message.clone_from(m);
        }
        if let Some(d) = c.delay_ms {
            state.delay_ms = d;
        }
        if let Some(cp) = c.checkpoint {
            state.checkpoint = Some(cp);
        }
        if let Some(ms) = c.transition_ms {
            state.transition_ms = ms;
        }
        Ok(job.view(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, two_way: bool) -> JobSpec {
        JobSpec {
            job_id: id.into(),
            instance_id: Some(format!("inst-{id}")),
            region_id: "cn-hangzhou".into(),
            two_way,
            status: "Synchronizing".into(),
            job_type: "SYNC".into(),
            transition_ms: 0,
            delay_ms: 0,
            checkpoint: None,
            error_message: None,
        }
    }

    #[test]
    fn stop_finishes_only_the_named_direction_once() {
        let mut jobs = Jobs::new(&[spec("j", true)]);
        jobs.transition(
            Some("j"),
            None,
            None,
            Direction::Reverse,
            Transition::Stop,
            Instant::now(),
        )
        .unwrap();
        let j = jobs.find(Some("j"), None, None).unwrap();
        assert_eq!(j.status(Direction::Reverse), Some("Finished"));
        assert_eq!(j.status(Direction::Forward), Some("Synchronizing"));
        assert_eq!(
            jobs.transition(
                Some("j"),
                None,
                None,
                Direction::Reverse,
                Transition::Stop,
                Instant::now()
            ),
            Err(JobError::InvalidStatus("Finished".into()))
        );
    }

    #[test]
    fn reverse_of_one_way_job_and_unknown_jobs_are_errors() {
        let mut jobs = Jobs::new(&[spec("j", false)]);
        assert_eq!(
            jobs.transition(
                Some("j"),
                None,
                None,
                Direction::Reverse,
                Transition::Stop,
                Instant::now()
            ),
            Err(JobError::InvalidDirection)
        );
        assert_eq!(
            jobs.find(Some("x"), None, None).unwrap_err(),
            JobError::NotFound("x".into())
        );
        assert!(jobs.find(Some("j"), None, Some("cn-beijing")).is_err());
        assert!(jobs.find(None, Some("inst-j"), Some("cn-hangzhou")).is_ok());
        assert!(jobs.find(Some("j"), Some("inst-other"), None).is_err());
    }

    #[test]
    fn add_rejects_duplicates() {
        let mut jobs = Jobs::new(&[spec("j", false)]);
        assert!(jobs.add(&spec("j", true)).is_err());
        assert!(jobs.add(&spec("k", true)).is_ok());
        assert_eq!(jobs.list().len(), 2);
    }

    #[test]
    fn a_slow_transition_shows_the_old_status_until_it_is_due() {
        let mut s = spec("j", true);
        s.transition_ms = 1000;
        let mut jobs = Jobs::new(&[s]);
        let t0 = Instant::now();
        jobs.transition(Some("j"), None, None, Direction::Forward, Transition::Suspend, t0)
            .unwrap();
        jobs.settle(t0 + Duration::from_millis(999));
        assert_eq!(jobs.get("j").unwrap().status(Direction::Forward), Some("Synchronizing"));
        let v = jobs.get("j").unwrap().view(t0 + Duration::from_millis(400));
        assert_eq!(v.forward.pending.unwrap().status, "Suspending");
        // The same target again keeps the due time; another replaces it.
        jobs.transition(
            Some("j"),
            None,
            None,
            Direction::Forward,
            Transition::Suspend,
            t0 + Duration::from_millis(500),
        )
        .unwrap();
        jobs.settle(t0 + Duration::from_millis(1000));
        assert_eq!(jobs.get("j").unwrap().status(Direction::Forward), Some("Suspending"));
        jobs.transition(
            Some("j"),
            None,
            None,
            Direction::Forward,
            Transition::Start,
            t0 + Duration::from_millis(1000),
        )
        .unwrap();
        jobs.transition(
            Some("j"),
            None,
            None,
            Direction::Forward,
            Transition::Stop,
            t0 + Duration::from_millis(1500),
        )
        .unwrap();
        jobs.settle(t0 + Duration::from_millis(2400));
        assert_eq!(jobs.get("j").unwrap().status(Direction::Forward), Some("Suspending"));
        jobs.settle(t0 + Duration::from_millis(2500));
        assert_eq!(jobs.get("j").unwrap().status(Direction::Forward), Some("Finished"));
        assert_eq!(jobs.get("j").unwrap().status(Direction::Reverse), Some("Synchronizing"));
    }

    #[test]
    fn change_tracking_suspend_changes_nothing_and_start_means_normal() {
        let mut s = spec("t", false);
        s.job_type = "subscribe".into();
        s.status = "Normal".into();
        let mut jobs = Jobs::new(&[s]);
        let now = Instant::now();
        jobs.transition(Some("t"), None, None, Direction::Forward, Transition::Suspend, now)
            .unwrap();
        assert_eq!(jobs.get("t").unwrap().status(Direction::Forward), Some("Normal"));
        assert_eq!(jobs.get("t").unwrap().job_type, "SUBSCRIBE");
    }

    #[test]
    fn out_of_band_changes_set_status_and_details() {
        let mut s = spec("j", false);
        s.transition_ms = 60_000;
        let mut jobs = Jobs::new(&[s]);
        let now = Instant::now();
        jobs.transition(Some("j"), None, None, Direction::Forward, Transition::Stop, now)
            .unwrap();
        let fail = StateChange {
            status: Some("Failed".into()),
            delay_ms: Some(1500),
            ..Default::default()
        };
        let v = jobs.change("j", &fail, now).unwrap();
        assert_eq!(
            (v.forward.status.as_str(), v.forward.pending.as_ref()),
            ("Failed", None)
        );
        assert_eq!(v.forward.error_message, DEFAULT_FAILED_MESSAGE);
        assert_eq!(v.forward.delay_ms, 1500);
        let resume = StateChange {
            status: Some("Synchronizing".into()),
            ..Default::default()
        };
        assert_eq!(jobs.change("j", &resume, now).unwrap().forward.error_message, "");
        let reverse = StateChange {
            direction: Some("Reverse".into()),
            ..Default::default()
        };
        assert!(matches!(jobs.change("j", &reverse, now), Err(ChangeError::Invalid(_))));
        assert!(matches!(jobs.change("x", &resume, now), Err(ChangeError::NotFound(_))));
    }
}
