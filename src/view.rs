//! DTS's own view of the jobs, as the operator last read it.
//!
//! Filled by the batch observer (DescribeDtsJobs, grouped by credentials
//! and region) and by the confirmations after a lifecycle call
//! (DescribeDtsJobDetail); read by the reconcile's observe step, so a
//! reconcile never makes a DTS call just to look. Keyed by (regionId,
//! jobId): a DtsJob is one DTS job in one region.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::{Direction, Observation};
use dts_api::{JobDetail, JobView};

/// What DTS reported for one direction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionView {
    /// DTS's `Status` (compare case-insensitively).
    pub status: Option<String>,
    /// `Delay`, as DTS sent it.
    pub delay_ms: Option<i64>,
    /// `Checkpoint`, unix seconds.
    pub checkpoint: Option<i64>,
    /// `ErrorMessage`.
    pub error_message: Option<String>,
}

/// How often replication progress alone (delay, checkpoint) is worth a
/// reconcile and a status write: both move on every read of a running job,
/// so they are passed on at most this often; a new status or error message
/// is passed on at once.
pub const OBSERVATION_HEARTBEAT: Duration = Duration::from_secs(600);

impl DirectionView {
    /// Whether `other` shows the same state: status (ignoring case) and
    /// error message. Delay and checkpoint are progress, not state.
    pub fn same_state(&self, other: &DirectionView) -> bool {
        self.as_ref().same_state(&other.as_ref())
    }

    /// Whether `newer`, read at `now`, is worth passing on after `self`,
    /// passed on at `since`: another state at once, other progress only
    /// once the heartbeat has passed.
    pub fn worth_passing_on(&self, since: &Time, newer: &DirectionView, now: &Time) -> bool {
        self.as_ref()
            .worth_passing_on(since.0.as_second(), &newer.as_ref(), now.0.as_second())
    }

    /// Whether `Status` is `wanted`, ignoring case and surrounding spaces.
    pub fn status_is(&self, wanted: &str) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case(wanted))
    }

    fn as_ref(&self) -> ViewRef<'_> {
        ViewRef {
            status: self.status.as_deref(),
            error_message: self.error_message.as_deref(),
            delay_ms: self.delay_ms,
            checkpoint: self.checkpoint,
        }
    }
}

/// A view borrowed from either form (the public [`DirectionView`] or the
/// stored [`Packed`]), so both compare by one rule.
#[derive(PartialEq, Eq)]
struct ViewRef<'a> {
    status: Option<&'a str>,
    error_message: Option<&'a str>,
    delay_ms: Option<i64>,
    checkpoint: Option<i64>,
}

impl ViewRef<'_> {
    fn same_state(&self, other: &ViewRef<'_>) -> bool {
        let status = |v: &ViewRef<'_>| v.status.map(|s| s.trim().to_ascii_lowercase());
        status(self) == status(other) && self.error_message == other.error_message
    }

    /// [`DirectionView::worth_passing_on`], with times in unix seconds.
    fn worth_passing_on(&self, since_s: i64, newer: &ViewRef<'_>, now_s: i64) -> bool {
        !self.same_state(newer) || (self != newer && now_s - since_s >= OBSERVATION_HEARTBEAT.as_secs() as i64)
    }
}

impl From<&JobView> for DirectionView {
    fn from(v: &JobView) -> Self {
        Self {
            status: v.status.clone(),
            delay_ms: v.delay_ms,
            checkpoint: v.checkpoint,
            error_message: v.error_message.clone(),
        }
    }
}

impl From<&JobDetail> for DirectionView {
    fn from(v: &JobDetail) -> Self {
        Self {
            status: v.status.clone(),
            delay_ms: v.delay_ms,
            checkpoint: v.checkpoint,
            error_message: v.error_message.clone(),
        }
    }
}

impl From<&Observation> for DirectionView {
    /// What a status's `observed` says DTS showed.
    fn from(o: &Observation) -> Self {
        Self {
            status: o.status.clone(),
            delay_ms: o.delay_ms,
            checkpoint: o.checkpoint,
            error_message: o.error_message.clone(),
        }
    }
}

impl DirectionView {
    /// The view as a status's `observed`, read at `at`.
    pub fn observation(&self, at: &Time) -> Observation {
        Observation {
            status: self.status.clone(),
            delay_ms: self.delay_ms,
            checkpoint: self.checkpoint,
            error_message: self.error_message.clone(),
            observed_at: at.clone(),
        }
    }
}

/// One direction's view and when it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub view: DirectionView,
    pub read_at: Time,
}

/// A direction's view as stored: the status shared with every other
/// direction in the same status (a fleet shows a handful of distinct ones),
/// the error message boxed, and absent numbers flagged instead of each
/// padding an `Option` to 16 bytes. 56 bytes where a [`DirectionView`] is
/// 80 and owns a status string besides.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Packed {
    status: Option<Arc<str>>,
    error_message: Option<Box<str>>,
    delay_ms: i64,
    checkpoint: i64,
    /// [`HAS_DELAY`] and [`HAS_CHECKPOINT`].
    has: u8,
}

const HAS_DELAY: u8 = 1;
const HAS_CHECKPOINT: u8 = 2;

impl Packed {
    fn as_ref(&self) -> ViewRef<'_> {
        ViewRef {
            status: self.status.as_deref(),
            error_message: self.error_message.as_deref(),
            delay_ms: (self.has & HAS_DELAY != 0).then_some(self.delay_ms),
            checkpoint: (self.has & HAS_CHECKPOINT != 0).then_some(self.checkpoint),
        }
    }

    fn unpack(&self) -> DirectionView {
        let v = self.as_ref();
        DirectionView {
            status: v.status.map(str::to_owned),
            delay_ms: v.delay_ms,
            checkpoint: v.checkpoint,
            error_message: v.error_message.map(str::to_owned),
        }
    }
}

/// The most distinct statuses shared; DTS has about fifteen, and anything
/// past this bound is stored unshared rather than growing the set.
const STATUSES_SHARED: usize = 64;

/// The shared statuses: each distinct one stored once.
#[derive(Debug, Default)]
struct Statuses(HashSet<Arc<str>>);

impl Statuses {
    fn pack(&mut self, view: DirectionView) -> Packed {
        let status = view.status.map(|s| match self.0.get(s.as_str()) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = s.into();
                if self.0.len() < STATUSES_SHARED {
                    self.0.insert(shared.clone());
                }
                shared
            }
        });
        let has = u8::from(view.delay_ms.is_some()) * HAS_DELAY + u8::from(view.checkpoint.is_some()) * HAS_CHECKPOINT;
        Packed {
            status,
            error_message: view.error_message.map(String::into_boxed_str),
            delay_ms: view.delay_ms.unwrap_or(0),
            checkpoint: view.checkpoint.unwrap_or(0),
            has,
        }
    }
}

/// One direction's entry: the latest read, and the view last passed on.
/// 80 bytes (jemalloc's 80-byte class): times as integers, the view packed.
#[derive(Debug, Clone)]
struct Entry {
    seen: Packed,
    /// When `seen` was read, in unix nanoseconds (the observer schedules
    /// reads by the millisecond, so the fraction is kept).
    read_at_ns: i64,
    /// The view last passed on when it differs from `seen`; `None` when it
    /// is the same, as it is for every job standing still (a stopped or
    /// suspended one), so most entries hold one view, not two.
    passed_on: Option<Box<Packed>>,
    /// When the view passed on was read, in unix seconds (the heartbeat
    /// counts whole seconds).
    passed_on_at_s: i64,
}

// The layout the memory figures rely on (docs/benchmarks.md).
const _: () = assert!(std::mem::size_of::<Entry>() == 80);
const _: () = assert!(std::mem::size_of::<JobEntry>() == 24);

fn nanos(t: &Time) -> i64 {
    i64::try_from(t.0.as_nanosecond()).unwrap_or(i64::MAX)
}

impl Entry {
    fn new(view: Packed, read_at: &Time) -> Self {
        Entry {
            seen: view,
            read_at_ns: nanos(read_at),
            passed_on: None,
            passed_on_at_s: read_at.0.as_second(),
        }
    }

    fn passed_on(&self) -> &Packed {
        self.passed_on.as_deref().unwrap_or(&self.seen)
    }

    fn read_at(&self) -> Time {
        Time(jiff::Timestamp::from_nanosecond(i128::from(self.read_at_ns)).unwrap_or_default())
    }

    /// Takes a read that is not passed on: `seen` becomes `view`, and the
    /// view passed on is kept apart only while it differs.
    fn update(&mut self, view: Packed, read_at: &Time) {
        if self.passed_on.as_deref() == Some(&view) {
            self.passed_on = None;
            self.seen = view;
        } else if self.passed_on.is_none() && self.seen != view {
            self.passed_on = Some(Box::new(std::mem::replace(&mut self.seen, view)));
        } else {
            self.seen = view;
        }
        self.read_at_ns = nanos(read_at);
    }
}

/// What is known of one DTS job: the type it was listed under, and each
/// direction's entry (boxed: most jobs have one direction, and an empty
/// slot is then one pointer, not a whole entry).
#[derive(Debug, Default)]
struct JobEntry {
    /// A reference to the `&'static str` (an element of a static list of
    /// job types), so the slot is one pointer rather than a string's two
    /// words: the table holds one of these per job.
    job_type: Option<&'static &'static str>,
    forward: Option<Box<Entry>>,
    reverse: Option<Box<Entry>>,
}

impl JobEntry {
    fn direction(&self, direction: Direction) -> Option<&Entry> {
        match direction {
            Direction::Forward => self.forward.as_deref(),
            Direction::Reverse => self.reverse.as_deref(),
        }
    }

    fn direction_mut(&mut self, direction: Direction) -> &mut Option<Box<Entry>> {
        match direction {
            Direction::Forward => &mut self.forward,
            Direction::Reverse => &mut self.reverse,
        }
    }
}

/// regionId → jobId → entry: looked up by `&str` without allocating, and
/// each region's name stored once rather than in every key.
type Jobs = HashMap<Box<str>, HashMap<Box<str>, JobEntry>>;

/// The jobs and the statuses they share, under one lock.
#[derive(Debug, Default)]
struct Inner {
    jobs: Jobs,
    statuses: Statuses,
}

/// The views of all jobs the operator has read.
#[derive(Debug, Default)]
pub struct DtsView {
    map: RwLock<Inner>,
    /// Rung when a reconcile meets a job DTS was never read for, so the
    /// observer reads it now instead of at its next cycle.
    wanted: tokio::sync::Notify,
}

impl DtsView {
    /// Asks the observer for a read soon: a DtsJob was never read.
    pub fn want_read(&self) {
        self.wanted.notify_one();
    }

    /// Resolves once a read was asked for (at once if one was asked for
    /// since the last call).
    pub async fn read_wanted(&self) {
        self.wanted.notified().await;
    }

    fn with_job<T>(&self, region_id: &str, job_id: &str, f: impl FnOnce(&JobEntry) -> Option<T>) -> Option<T> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.jobs.get(region_id).and_then(|jobs| jobs.get(job_id)).and_then(f)
    }

    fn with_job_mut<T>(&self, region_id: &str, job_id: &str, f: impl FnOnce(&mut JobEntry, &mut Statuses) -> T) -> T {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        // What is stored lives as long as the job (see crate::alloc).
        let _long_lived = crate::alloc::LongLived::enter();
        let Inner { jobs, statuses } = &mut *map;
        let jobs = match jobs.get_mut(region_id) {
            Some(jobs) => jobs,
            None => jobs.entry(region_id.into()).or_default(),
        };
        let job = match jobs.get_mut(job_id) {
            Some(job) => job,
            None => jobs.entry(job_id.into()).or_default(),
        };
        f(job, statuses)
    }

    /// The `JobType` DescribeDtsJobs last listed `job_id` under.
    pub fn job_type(&self, region_id: &str, job_id: &str) -> Option<&'static str> {
        self.with_job(region_id, job_id, |j| j.job_type.copied())
    }

    /// Remembers the `JobType` `job_id` was listed under.
    pub fn learn_type(&self, region_id: &str, job_id: &str, job_type: &'static &'static str) {
        self.with_job_mut(region_id, job_id, |j, _| j.job_type = Some(job_type));
    }

    /// The last view of `job_id`'s `direction` in `region_id`.
    pub fn get(&self, region_id: &str, job_id: &str, direction: Direction) -> Option<Seen> {
        self.with_job(region_id, job_id, |j| {
            j.direction(direction).map(|e| Seen {
                view: e.seen.unpack(),
                read_at: e.read_at(),
            })
        })
    }

    /// Stores a read; returns whether it is worth a reconcile: a first read,
    /// another state, or other progress once [`OBSERVATION_HEARTBEAT`] has
    /// passed since the last one passed on (the read time alone is never a
    /// change).
    pub fn put(&self, region_id: &str, job_id: &str, direction: Direction, view: DirectionView, read_at: Time) -> bool {
        self.with_job_mut(region_id, job_id, |job, statuses| {
            let view = statuses.pack(view);
            let slot = job.direction_mut(direction);
            match slot {
                Some(e)
                    if !e.passed_on().as_ref().worth_passing_on(
                        e.passed_on_at_s,
                        &view.as_ref(),
                        read_at.0.as_second(),
                    ) =>
                {
                    e.update(view, &read_at);
                    false
                }
                _ => {
                    *slot = Some(Box::new(Entry::new(view, &read_at)));
                    true
                }
            }
        })
    }

    /// Stores a DescribeDtsJobs entry: its own direction (Forward unless it
    /// says otherwise) and its nested `ReverseJob`. Returns whether anything
    /// changed.
    pub fn put_job(&self, region_id: &str, job: &JobView, read_at: &Time) -> bool {
        let direction = match job.direction.as_deref() {
            Some(d) if d.eq_ignore_ascii_case("Reverse") => Direction::Reverse,
            _ => Direction::Forward,
        };
        let mut changed = self.put(region_id, &job.job_id, direction, job.into(), read_at.clone());
        if let Some(reverse) = &job.reverse {
            changed |= self.put(
                region_id,
                &job.job_id,
                Direction::Reverse,
                (&**reverse).into(),
                read_at.clone(),
            );
        }
        changed
    }

    /// Drops what was read of `job_id` in `region_id`: the DtsJob is gone,
    /// or finished, when its status holds all that DTS will ever show (a
    /// reconcile then reads the status's `observed`, as after a restart).
    /// Without this a fleet that stops its jobs, or replaces them, would
    /// keep a view of every job it ever had. A region's table is given
    /// back once it is mostly empty.
    pub fn forget(&self, region_id: &str, job_id: &str) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let Some(jobs) = map.jobs.get_mut(region_id) else {
            return;
        };
        if jobs.remove(job_id).is_none() {
            return;
        }
        if jobs.is_empty() {
            map.jobs.remove(region_id);
        } else if jobs.len() * 4 < jobs.capacity() && jobs.capacity() > 64 {
            jobs.shrink_to_fit();
        }
    }

    /// How many direction views are held.
    pub fn len(&self) -> usize {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.jobs
            .values()
            .flat_map(HashMap::values)
            .map(|j| usize::from(j.forward.is_some()) + usize::from(j.reverse.is_some()))
            .sum()
    }

    /// Whether no view is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn job(status: &str, reverse: Option<&str>) -> JobView {
        JobView {
            job_id: "j1".into(),
            instance_id: None,
            status: Some(status.into()),
            delay_ms: Some(3),
            checkpoint: None,
            error_message: None,
            direction: reverse.map(|_| "Forward".into()),
            reverse: reverse.map(|r| {
                Box::new(JobView {
                    job_id: "j1-reverse".into(),
                    instance_id: None,
                    status: Some(r.into()),
                    delay_ms: None,
                    checkpoint: None,
                    error_message: None,
                    direction: Some("Reverse".into()),
                    reverse: None,
                })
            }),
        }
    }

    #[test]
    fn a_read_is_a_change_only_when_the_view_differs() {
        let v = DtsView::default();
        assert!(v.put_job(
            "cn-hangzhou",
            &job("Synchronizing", Some("Synchronizing")),
            &t("2026-12-01T00:00:00Z")
        ));
        assert_eq!(v.len(), 2, "Forward and the nested Reverse");
        assert!(
            !v.put_job(
                "cn-hangzhou",
                &job("Synchronizing", Some("Synchronizing")),
                &t("2026-12-01T00:05:00Z")
            ),
            "the same view read later is no change"
        );
        let seen = v.get("cn-hangzhou", "j1", Direction::Forward).unwrap();
        assert_eq!(seen.read_at, t("2026-12-01T00:05:00Z"), "the read time is kept");
        assert!(v.put_job(
            "cn-hangzhou",
            &job("Synchronizing", Some("Suspending")),
            &t("2026-12-01T00:10:00Z")
        ));
        assert!(v
            .get("cn-hangzhou", "j1", Direction::Reverse)
            .unwrap()
            .view
            .status_is("suspending"));
        assert_eq!(
            v.get("cn-shanghai", "j1", Direction::Forward),
            None,
            "regions are apart"
        );
    }

    fn progress(delay: i64) -> DirectionView {
        DirectionView {
            status: Some("Synchronizing".into()),
            delay_ms: Some(delay),
            ..DirectionView::default()
        }
    }

    #[test]
    fn progress_is_passed_on_against_the_view_last_passed_on_once_the_heartbeat_passed() {
        let v = DtsView::default();
        let put = |delay, at| v.put("cn-hangzhou", "j1", Direction::Forward, progress(delay), t(at));
        assert!(put(3, "2026-12-01T00:00:00Z"), "a first read");
        assert!(!put(5, "2026-12-01T00:01:00Z"), "progress within the heartbeat");
        assert_eq!(
            v.get("cn-hangzhou", "j1", Direction::Forward).unwrap().view,
            progress(5),
            "the latest read is seen"
        );
        assert!(!put(3, "2026-12-01T00:02:00Z"), "back to what was passed on");
        assert!(!put(5, "2026-12-01T00:03:00Z"));
        assert!(
            put(5, "2026-12-01T00:10:00Z"),
            "the heartbeat passed and 5 ms differs from the 3 ms passed on, though it is what was seen last"
        );
        assert!(!put(5, "2026-12-01T00:20:00Z"), "the same as the view now passed on");
        assert!(!put(8, "2026-12-01T00:15:00Z"), "progress within the heartbeat");
        assert!(put(9, "2026-12-01T00:21:00Z"), "differs from the 5 ms passed on");
    }

    #[test]
    fn a_stored_view_reads_back_as_it_was_put_and_shares_its_status() {
        let v = DtsView::default();
        let read_at = t("2026-12-01T00:00:00.123456789Z");
        let failed = DirectionView {
            status: Some("Failed".into()),
            delay_ms: None,
            checkpoint: Some(1_796_280_796),
            error_message: Some("the source database is gone".into()),
        };
        assert!(v.put("cn-hangzhou", "j1", Direction::Forward, failed.clone(), read_at.clone()));
        let seen = v.get("cn-hangzhou", "j1", Direction::Forward).unwrap();
        assert_eq!(seen.view, failed, "absent numbers stay absent");
        assert_eq!(seen.read_at, read_at, "the read time keeps its fraction");

        for job in ["j2", "j3"] {
            v.put("cn-hangzhou", job, Direction::Forward, progress(0), read_at.clone());
        }
        let map = v.map.read().unwrap();
        let status = |job: &str| {
            let jobs = &map.jobs["cn-hangzhou"];
            jobs[job].forward.as_ref().unwrap().seen.status.clone().unwrap()
        };
        assert!(Arc::ptr_eq(&status("j2"), &status("j3")), "one Synchronizing for both");
        assert_eq!(map.statuses.0.len(), 2, "Failed and Synchronizing");
    }

    #[test]
    fn statuses_past_the_bound_are_stored_unshared() {
        let v = DtsView::default();
        let at = t("2026-12-01T00:00:00Z");
        for i in 0..STATUSES_SHARED + 10 {
            let view = DirectionView {
                status: Some(format!("Odd{i}")),
                ..DirectionView::default()
            };
            v.put("cn-hangzhou", &format!("j{i}"), Direction::Forward, view, at.clone());
        }
        assert_eq!(v.map.read().unwrap().statuses.0.len(), STATUSES_SHARED);
        let last = v.get("cn-hangzhou", &format!("j{}", STATUSES_SHARED + 9), Direction::Forward);
        assert!(last.unwrap().view.status_is(&format!("odd{}", STATUSES_SHARED + 9)));
    }

    #[test]
    fn a_forgotten_job_is_read_afresh_and_its_table_given_back() {
        let v = DtsView::default();
        let at = t("2026-12-01T00:00:00Z");
        for i in 0..1000 {
            v.put_job(
                "cn-hangzhou",
                &JobView {
                    job_id: format!("j{i}"),
                    ..job("Finished", None)
                },
                &at,
            );
        }
        v.put_job("cn-beijing", &job("Synchronizing", Some("Synchronizing")), &at);
        let capacity = || v.map.read().unwrap().jobs["cn-hangzhou"].capacity();
        let full = capacity();
        for i in 1..1000 {
            v.forget("cn-hangzhou", &format!("j{i}"));
        }
        v.forget("cn-hangzhou", "never-read");
        v.forget("nowhere", "j0");
        assert_eq!(v.len(), 3, "j0 in cn-hangzhou, both directions of j1 in cn-beijing");
        assert!(
            capacity() * 4 < full,
            "the table shrank: {} of {full} slots",
            capacity()
        );
        assert!(v.get("cn-hangzhou", "j5", Direction::Forward).is_none());
        assert!(
            v.get("cn-beijing", "j1", Direction::Reverse).is_some(),
            "other regions untouched"
        );
        v.forget("cn-hangzhou", "j0");
        assert!(
            !v.map.read().unwrap().jobs.contains_key("cn-hangzhou"),
            "an empty region is dropped"
        );
        assert!(
            v.put_job("cn-hangzhou", &job("Finished", None), &at),
            "a read after forgetting is a first read"
        );
    }
}
