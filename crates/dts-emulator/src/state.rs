//! Per-job state: the topology (one-way or two-way) and the status of each
//! direction, plus the transitions the lifecycle operations make.

use std::collections::BTreeMap;

use serde::Serialize;

use super::config::JobSpec;

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

/// One job as `GET /_emulator/jobs` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub job_id: String,
    pub instance_id: Option<String>,
    pub region_id: String,
    pub two_way: bool,
    pub status: DirectionStatus,
}

impl Job {
    pub fn from_spec(spec: &JobSpec) -> Job {
        Job {
            job_id: spec.job_id.clone(),
            instance_id: spec.instance_id.clone(),
            region_id: spec.region_id.clone(),
            two_way: spec.two_way,
            status: DirectionStatus {
                forward: spec.status.clone(),
                reverse: spec.two_way.then(|| spec.status.clone()),
            },
        }
    }

    /// The status of `dir`, or `None` when the job has no such direction.
    pub fn status(&self, dir: Direction) -> Option<&str> {
        match dir {
            Direction::Forward => Some(&self.status.forward),
            Direction::Reverse => self.status.reverse.as_deref(),
        }
    }

    fn status_mut(&mut self, dir: Direction) -> Option<&mut String> {
        match dir {
            Direction::Forward => Some(&mut self.status.forward),
            Direction::Reverse => self.status.reverse.as_mut(),
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

/// All jobs, keyed by jobId.
#[derive(Debug, Default)]
pub struct Jobs {
    jobs: BTreeMap<String, Job>,
}

/// DTS status values are compared case-insensitively (its docs spell
/// `synchronizing` and `Synchronizing` both).
fn is(status: &str, want: &str) -> bool {
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

    pub fn list(&self) -> Vec<Job> {
        self.jobs.values().cloned().collect()
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

    /// Applies `t` to direction `dir` of the job found by [`Jobs::find`].
    pub fn transition(
        &mut self,
        job_id: Option<&str>,
        instance_id: Option<&str>,
        region: Option<&str>,
        dir: Direction,
        t: Transition,
    ) -> Result<(), JobError> {
        let key = self.find(job_id, instance_id, region)?.job_id.clone();
        let job = self.jobs.get_mut(&key).ok_or(JobError::NotFound(key))?;
        let status = job.status_mut(dir).ok_or(JobError::InvalidDirection)?;
        // Finished is terminal in DTS: it can be neither stopped again nor
        // restarted.
        if is(status, "Finished") {
            return Err(JobError::InvalidStatus(status.clone()));
        }
        *status = match t {
            Transition::Stop => "Finished",
            Transition::Start => "Synchronizing",
            Transition::Suspend => "Suspending",
        }
        .to_owned();
        Ok(())
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
        }
    }

    #[test]
    fn stop_finishes_only_the_named_direction_once() {
        let mut jobs = Jobs::new(&[spec("j", true)]);
        jobs.transition(Some("j"), None, None, Direction::Reverse, Transition::Stop)
            .unwrap();
        let j = jobs.find(Some("j"), None, None).unwrap();
        assert_eq!(j.status(Direction::Reverse), Some("Finished"));
        assert_eq!(j.status(Direction::Forward), Some("Synchronizing"));
        assert_eq!(
            jobs.transition(Some("j"), None, None, Direction::Reverse, Transition::Stop),
            Err(JobError::InvalidStatus("Finished".into()))
        );
    }

    #[test]
    fn reverse_of_one_way_job_and_unknown_jobs_are_errors() {
        let mut jobs = Jobs::new(&[spec("j", false)]);
        assert_eq!(
            jobs.transition(Some("j"), None, None, Direction::Reverse, Transition::Stop),
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
}
