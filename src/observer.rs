//! The batch observer: reads DTS's view of the DtsJobs periodically, in
//! batches, into [`Context::view`], and asks the controller to reconcile
//! the DtsJobs whose view changed.
//!
//! One cycle:
//! 1. [`select_due`] (pure): the DtsJobs of the watch cache that are due — not
//!    paused, not `kubedts.io/poll-interval: "0"`, not being deleted without
//!    the stop-on-delete finalizer, and either never read or at their slot
//!    of the [`Schedule`] (once per interval: the annotation, else
//!    `--poll-interval`);
//! 2. the credentials of the due jobs, each Secret read once per cycle (a
//!    job without usable credentials is left out: its reconcile reports why);
//! 3. [`group`] (pure): the due jobs by (AccessKeyId, regionId), the unit
//!    DTS's DescribeDtsJobs quota counts in (20 calls/s per account and
//!    region, docs/dts-api.md §6);
//! 4. per group, DescribeDtsJobs with the group's jobIds by `JobType`
//!    ([`JOB_TYPES`]) in chunks of [`MAX_PAGE_SIZE`] (one page each; one
//!    extra page per group at most if DTS says there is more), through
//!    [`DtsCaller::describe_jobs`] (the key's limits, the global concurrency
//!    limit and the Lease gate; a key whose circuit breaker is open is not
//!    read). A cycle therefore makes `ceil(N / 30) + groups` calls for N due
//!    jobs found under their known type, and at most three times the chunks
//!    when none is known or DTS does not list a job at all ([`call_bound`]);
//! 5. every entry is stored with [`DtsView::put_job`]; each DtsJob whose view
//!    changed is sent to the runner as a [`Trigger`](crate::runner::Trigger).
//!
//! Only the Lease holder polls. The first cycle runs once the DtsJob watch
//! has synced, and again at once on gaining the Lease: it reads only the
//! DtsJobs DTS was never read for (neither by this process nor, as their
//! status shows, by an earlier one). A job already observed is read at its
//! own slot of the interval, counted from when this process began to lead
//! (the [`Schedule`]), so a restart or a Lease handover with thousands of
//! observed jobs costs no DTS call and no write at once, and their reads
//! are spread evenly over the interval instead of coming in one wave every
//! interval. The next cycle comes at the next slot that has a job (at least
//! [`MIN_CYCLE`] later), and [`MIN_CYCLE`] after a reconcile met a DtsJob
//! DTS was never read for (a new one), so it does not wait for a slot. A
//! failed group is logged with its reason and read again at the next slot
//! of its jobs (or next cycle, for jobs never read).
//!
//! [`DtsCaller::describe_jobs`]: crate::controller::act::DtsCaller::describe_jobs

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::cache::CachedJob;
use crate::controller::act::NotSent;
use crate::controller::Context;
use crate::crd::{PAUSED, POLL_INTERVAL};
use crate::leader::LeaderState;
use crate::limits::CircuitInfo;
use crate::reason::Reason;
use crate::store::{JobKey, JobStore};
use crate::view::DtsView;
use dts_api::sign::Credentials;
use dts_api::{DtsError, ErrorReason, JobsQuery, MAX_PAGE_SIZE};

/// The shortest time between two cycles, whatever the intervals say.
pub const MIN_CYCLE: Duration = Duration::from_secs(1);

/// The least time between two DescribeDtsJobs calls of one group: DTS
/// documents 20 calls/s per account and region (docs/dts-api.md §6), so one
/// group never exceeds that, whatever `--dts-rate-limit` allows.
pub const GROUP_CALL_SPACING: Duration = Duration::from_millis(50);

/// The width of one slot of the [`Schedule`]: an interval of `I` has
/// `I / SLOT` slots (at least one), so the jobs of a fleet are read in
/// batches at most every 10 s rather than one cycle per job.
pub const SLOT: Duration = Duration::from_secs(10);

/// When each observed DtsJob is read: once per interval, at a slot of that
/// interval chosen by a hash of its (regionId, jobId), counted from the
/// `epoch` (the time this process began to lead). Slot `k` of `n` is at
/// `epoch + (k + 1) × I / n + m × I` for m = 0, 1, ...: the first reads come
/// one slot after the epoch, never at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub epoch: Time,
}

/// Where one job's reads fall (relative to the epoch, in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slots {
    phase: i64,
    interval: i64,
}

impl Slots {
    fn of(region_id: &str, job_id: &str, interval: Duration) -> Self {
        use std::hash::{Hash, Hasher};
        let interval_ms = (interval.as_millis().min(i64::MAX as u128) as i64).max(1);
        let n = (interval.as_millis() / SLOT.as_millis()).max(1) as i64;
        // SipHash with fixed keys: the same slot for the same job every time.
        let mut h = std::hash::DefaultHasher::new();
        (region_id, job_id).hash(&mut h);
        let k = (h.finish() % n as u64) as i64;
        Self {
            phase: (k + 1) * (interval_ms / n),
            interval: interval_ms,
        }
    }

    /// The latest slot at or before `at`, if one has come.
    fn last(&self, at: i64) -> Option<i64> {
        (at >= self.phase).then(|| self.phase + (at - self.phase) / self.interval * self.interval)
    }

    /// The first slot after `at`.
    fn next(&self, at: i64) -> i64 {
        self.last(at).map_or(self.phase, |l| l + self.interval)
    }
}

/// Milliseconds from `from` to `to` (negative when `to` is earlier).
fn millis_between(from: &Time, to: &Time) -> i64 {
    to.0.duration_since(from.0)
        .as_millis()
        .clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// How often one DtsJob is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollInterval {
    /// `kubedts.io/poll-interval: "0"`: never.
    Off,
    Every(Duration),
    /// The annotation does not parse: the default applies (with a warning).
    Unparsable(String),
}

/// The poll interval of `job`: its annotation (`30s`, `5m`, `1h`, `500ms`,
/// a bare number of seconds; `0` is off), else `default`.
pub fn poll_interval(annotations: &BTreeMap<String, String>, default: Duration) -> PollInterval {
    match annotations.get(POLL_INTERVAL) {
        None => PollInterval::Every(default),
        Some(value) => match crate::cli::parse_duration(value) {
            Ok(d) if d.is_zero() => PollInterval::Off,
            Ok(d) => PollInterval::Every(d),
            Err(_) => PollInterval::Unparsable(value.clone()),
        },
    }
}

/// Where a due job's credentials come from: `Some((namespace, secret))` for
/// a `credentialsSecretRef`, `None` for the operator's default credentials.
pub type CredentialsKey = Option<(String, String)>;

/// One DtsJob to read this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub object: JobKey,
    pub credentials: CredentialsKey,
    pub region_id: String,
    pub job_id: String,
}

/// What [`select_due`] found.
#[derive(Debug, Default)]
pub struct Selection {
    pub due: Vec<Due>,
    /// DtsJobs whose poll-interval annotation does not parse, with the value.
    pub unparsable: Vec<(JobKey, String)>,
    /// The earliest slot after `now` of the jobs that are polled at all
    /// (due now or not): when the next cycle is wanted.
    pub next: Option<Time>,
}

/// The DtsJobs of `jobs` that are due at `now` under `schedule` (pure): a
/// job never read, or one whose latest slot came after its last read, if
/// that read is at least half an interval old (a job first read just before
/// its slot waits for the next one).
pub fn select_due(
    jobs: &[Arc<CachedJob>],
    view: &DtsView,
    now: &Time,
    schedule: &Schedule,
    default: Duration,
) -> Selection {
    let at = millis_between(&schedule.epoch, now);
    let mut next_slot: Option<i64> = None;
    let mut sel = Selection::default();
    for job in jobs {
        if job.annotations().get(PAUSED).is_some_and(|v| v.trim() == "true") {
            continue;
        }
        if job.deleting() && !job.stop_on_delete() {
            continue;
        }
        let namespace = job.namespace();
        let object = || job.key().clone();
        let interval = match poll_interval(job.annotations(), default) {
            PollInterval::Off => continue,
            PollInterval::Every(d) => d,
            PollInterval::Unparsable(value) => {
                sel.unparsable.push((object(), value));
                default
            }
        };
        // Nothing left to see, so a fleet of finished jobs costs no reads.
        if job.finished() {
            continue;
        }
        let spec = &job.spec;
        let recorded = |d| job.glance().direction(d);
        // The newest read of any listed direction (one DescribeDtsJobs entry
        // carries both directions); before this process read a job, the
        // status's observedAt stands in, so a restart reads at once only
        // what was never read, and the rest at their slots.
        let last_read = spec
            .directions()
            .filter_map(|d| {
                view.get(&spec.region_id, &spec.job_id, d)
                    .map(|seen| seen.read_at)
                    .or_else(|| recorded(d)?.observed_at())
            })
            .max_by_key(|t| t.0);
        let slots = Slots::of(&spec.region_id, &spec.job_id, interval);
        let slot_after = slots.next(at);
        next_slot = Some(next_slot.map_or(slot_after, |n| n.min(slot_after)));
        let due = last_read.is_none_or(|t| {
            let read = millis_between(&schedule.epoch, &t);
            slots.last(at).is_some_and(|slot| read < slot) && at - read >= slots.interval / 2
        });
        if due {
            sel.due.push(Due {
                object: object(),
                credentials: spec
                    .credentials_secret
                    .as_ref()
                    .map(|name| (namespace.to_owned(), name.to_string())),
                region_id: spec.region_id.to_string(),
                job_id: spec.job_id.to_string(),
            });
        }
    }
    sel.next = next_slot.and_then(|ms| {
        let ts = schedule
            .epoch
            .0
            .checked_add(jiff::SignedDuration::from_millis(ms))
            .ok()?;
        Some(Time(ts))
    });
    sel
}

/// The due jobs of one account in one region.
#[derive(Clone)]
pub struct Group {
    pub access_key_id: String,
    pub region_id: String,
    pub credentials: Credentials,
    pub jobs: Vec<Due>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("access_key_id", &self.access_key_id)
            .field("region_id", &self.region_id)
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

impl Group {
    /// The distinct jobIds, sorted, in chunks of at most [`MAX_PAGE_SIZE`]:
    /// one DescribeDtsJobs call each.
    pub fn chunks(&self) -> Vec<Vec<String>> {
        let ids: std::collections::BTreeSet<&str> = self.jobs.iter().map(|d| d.job_id.as_str()).collect();
        let ids: Vec<String> = ids.into_iter().map(str::to_owned).collect();
        ids.chunks(MAX_PAGE_SIZE as usize).map(<[String]>::to_vec).collect()
    }
}

/// Groups `due` by (AccessKeyId, regionId) (pure). Jobs whose credentials
/// are not in `credentials` (they could not be resolved) are left out.
pub fn group(due: Vec<Due>, credentials: &HashMap<CredentialsKey, Credentials>) -> Vec<Group> {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for d in due {
        let Some(creds) = credentials.get(&d.credentials) else {
            continue;
        };
        groups
            .entry((creds.access_key_id.clone(), d.region_id.clone()))
            .or_insert_with(|| Group {
                access_key_id: creds.access_key_id.clone(),
                region_id: d.region_id.clone(),
                credentials: creds.clone(),
                jobs: Vec::new(),
            })
            .jobs
            .push(d);
    }
    groups.into_values().collect()
}

/// The most calls a cycle makes for `groups`: a call per chunk and
/// `JobType` (a job DTS does not list under its first type is asked for
/// under the others), and one extra page per group at most. Jobs found
/// under their first type cost a call per chunk.
pub fn call_bound(groups: &[Group]) -> usize {
    groups.iter().map(|g| g.chunks().len() * JOB_TYPES.len() + 1).sum()
}

/// What reading one group gave.
#[derive(Debug, Default)]
pub struct GroupRead {
    /// DescribeDtsJobs calls sent.
    pub calls: u64,
    /// Entries DTS returned.
    pub jobs_read: u64,
    /// DtsJobs whose view changed.
    pub changed: Vec<JobKey>,
    /// The call that ended the group early.
    pub error: Option<DtsError>,
    /// The Lease was lost (or shutdown began) before every call was sent.
    pub interrupted: bool,
    /// The circuit breaker of the group's credentials is open: the rest of
    /// the group was not read (its DtsJobs show why).
    pub circuit_open: Option<CircuitInfo>,
}

/// The `JobType`s DescribeDtsJobs lists, one per call (DTS lists only
/// MIGRATION jobs when none is sent, so a synchronization job is found only
/// when SYNC is asked for). A job is asked for under the type it was last
/// found with, first SYNC for a job never found (the DtsJob's directions
/// are synchronization directions), then under the types not tried yet.
pub const JOB_TYPES: [&str; 3] = ["SYNC", "MIGRATION", "SUBSCRIBE"];

/// Reads one group: its jobs by `JobType` (see [`JOB_TYPES`]) in chunks of
/// [`MAX_PAGE_SIZE`], each one page (one extra page per group at most when
/// `TotalRecordCount` says there is more), at most one call per
/// [`GROUP_CALL_SPACING`], stopping at the first failure; a job missing from
/// its type's answer is asked for under the next type, in the same cycle.
/// Stores every entry in `ctx.view` with `now`, and the type it was found
/// with.
pub async fn read_group(ctx: &Context, group: &Group, now: &Time, stopping: &watch::Receiver<bool>) -> GroupRead {
    let mut out = GroupRead::default();
    let mut extra_pages = 1u32;
    let mut changed_ids = HashSet::new();
    let mut last_call: Option<tokio::time::Instant> = None;
    let ids: std::collections::BTreeSet<&str> = group.jobs.iter().map(|d| d.job_id.as_str()).collect();
    // (jobId, the types tried so far, in order)
    let mut todo: Vec<(String, Vec<usize>)> = ids
        .into_iter()
        .map(|id| {
            let first = ctx
                .view
                .job_type(&group.region_id, id)
                .and_then(|t| JOB_TYPES.iter().position(|k| *k == t))
                .unwrap_or(0);
            (id.to_owned(), vec![first])
        })
        .collect();
    'rounds: while !todo.is_empty() {
        let mut by_type: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (id, tried) in &todo {
            by_type.entry(*tried.last().unwrap_or(&0)).or_default().push(id.clone());
        }
        let mut found: HashSet<String> = HashSet::new();
        for (t, ids) in by_type {
            for chunk in ids.chunks(MAX_PAGE_SIZE as usize) {
                let mut page_number = 1;
                let mut received = 0u64;
                loop {
                    if *stopping.borrow() {
                        out.interrupted = true;
                        break 'rounds;
                    }
                    let query = JobsQuery {
                        region_id: group.region_id.clone(),
                        job_type: Some(JOB_TYPES[t].to_owned()),
                        job_ids: chunk.to_vec(),
                        page_number,
                        page_size: MAX_PAGE_SIZE,
                    };
                    if let Some(last) = last_call {
                        tokio::time::sleep_until(last + GROUP_CALL_SPACING).await;
                    }
                    last_call = Some(tokio::time::Instant::now());
                    let answer = match ctx.dts.describe_jobs(&group.credentials, &query).await {
                        Ok(answer) => answer,
                        Err(NotSent::LeaseLost) => {
                            out.interrupted = true;
                            break 'rounds;
                        }
                        Err(NotSent::CircuitOpen(info)) => {
                            out.circuit_open = Some(info);
                            break 'rounds;
                        }
                    };
                    out.calls += 1;
                    let page = match answer {
                        Ok(page) => page,
                        Err(e) => {
                            out.error = Some(e);
                            break 'rounds;
                        }
                    };
                    received += page.jobs.len() as u64;
                    out.jobs_read += page.jobs.len() as u64;
                    for entry in &page.jobs {
                        ctx.view.learn_type(&group.region_id, &entry.job_id, &JOB_TYPES[t]);
                        found.insert(entry.job_id.clone());
                        if ctx.view.put_job(&group.region_id, entry, now) {
                            changed_ids.insert(entry.job_id.clone());
                        }
                    }
                    let more = !page.jobs.is_empty() && page.total_record_count.is_some_and(|total| total > received);
                    if more && extra_pages > 0 {
                        extra_pages -= 1;
                        page_number += 1;
                        continue;
                    }
                    if more {
                        debug!(region = %group.region_id, "DescribeDtsJobs has more pages than one cycle reads; the rest next cycle");
                    }
                    break;
                }
            }
        }
        todo = todo
            .into_iter()
            .filter(|(id, _)| !found.contains(id))
            .filter_map(|(id, mut tried)| {
                let next = (0..JOB_TYPES.len()).find(|t| !tried.contains(t))?;
                tried.push(next);
                Some((id, tried))
            })
            .collect();
    }
    out.changed = group
        .jobs
        .iter()
        .filter(|d| changed_ids.contains(&d.job_id))
        .map(|d| d.object.clone())
        .collect();
    out
}

/// The observer task (see the module docs).
pub struct Observer {
    ctx: Arc<Context>,
    store: JobStore,
    interval: Duration,
    trigger: mpsc::Sender<JobKey>,
    leader: LeaderState,
    synced: watch::Receiver<bool>,
    /// (object, value) pairs already warned about.
    warned: HashSet<(JobKey, String)>,
    /// Its epoch is reset whenever this process begins to lead.
    schedule: Schedule,
}

impl Observer {
    /// `interval` is `--poll-interval` (non-zero); `synced` turns true once
    /// the DtsJob watch has listed everything into `store`.
    pub fn new(
        ctx: Arc<Context>,
        store: JobStore,
        interval: Duration,
        trigger: mpsc::Sender<JobKey>,
        leader: LeaderState,
        synced: watch::Receiver<bool>,
    ) -> Self {
        Self {
            ctx,
            store,
            interval,
            trigger,
            leader,
            synced,
            warned: HashSet::new(),
            schedule: Schedule {
                epoch: Time(jiff::Timestamp::now()),
            },
        }
    }

    /// Runs cycles until `stop` resolves. A cycle in progress then sends no
    /// further call and is awaited (its calls on the wire end), so the
    /// caller may release the Lease once this returns.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let (stopping_tx, stopping) = watch::channel(false);
        let mut synced = self.synced.clone();
        tokio::select! {
            _ = &mut stop => return,
            r = synced.wait_for(|s| *s) => if r.is_err() { return },
        }
        // Whether the previous pass of the loop led: the schedule's epoch is
        // the start of each term of leadership.
        let mut leading = false;
        loop {
            if !(self.ctx.may_act)() {
                leading = false;
                let leader = self.leader.clone();
                tokio::select! {
                    _ = &mut stop => return,
                    _ = leader.wait_leader() => {},
                }
                if !(self.ctx.may_act)() {
                    // Leading by the flag but the renewal is overdue: look again soon.
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(MIN_CYCLE) => {},
                    }
                }
                continue;
            }
            if !leading {
                leading = true;
                self.schedule.epoch = Time(jiff::Timestamp::now());
            }
            let wait = {
                let cycle = self.cycle(&stopping);
                tokio::pin!(cycle);
                tokio::select! {
                    next = &mut cycle => next,
                    _ = &mut stop => {
                        let _ = stopping_tx.send(true);
                        cycle.await;
                        return;
                    }
                }
            };
            let leader = self.leader.clone();
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {},
                // Losing the Lease: wait for it, then a cycle at once.
                _ = leader.wait_lost() => {},
                // A DtsJob never read (just created): a cycle soon, which
                // reads only what is due. The pause gathers a burst of new
                // jobs into one batch.
                _ = self.ctx.view.read_wanted() => {
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(MIN_CYCLE) => {},
                    }
                }
            }
        }
    }

    /// One cycle; returns the time to the next one.
    async fn cycle(&mut self, stopping: &watch::Receiver<bool>) -> Duration {
        let start = Instant::now();
        let now = Time(jiff::Timestamp::now());
        let jobs = self.store.state();
        let sel = select_due(&jobs, &self.ctx.view, &now, &self.schedule, self.interval);
        for (object, value) in sel.unparsable {
            if self.warned.insert((object.clone(), value.clone())) {
                warn!(namespace = %object.namespace(), name = %object.name(), value = %value,
                      default = ?self.interval, "unparsable kubedts.io/poll-interval; using the default");
            }
        }
        let next = sel
            .next
            .as_ref()
            .map_or(self.interval, |t| {
                Duration::from_millis(millis_between(&now, t).max(0) as u64)
            })
            .max(MIN_CYCLE);

        // Credentials: each Secret resolved once per cycle (from the cache when unchanged).
        let mut creds: HashMap<CredentialsKey, Credentials> = HashMap::new();
        let mut tried: HashSet<CredentialsKey> = HashSet::new();
        for d in &sel.due {
            if !tried.insert(d.credentials.clone()) {
                continue;
            }
            let Some(job) = self.store.get(&d.object) else { continue };
            let namespace = job.namespace().to_owned();
            // The whole spec (the role to assume, the Secret's keys).
            let Ok(job) = job.job() else { continue };
            match self
                .ctx
                .credentials
                .resolve(&self.ctx.client, &self.ctx.secrets, &namespace, &job.spec)
                .await
            {
                Ok(resolved) => {
                    creds.insert(d.credentials.clone(), resolved.credentials);
                }
                Err(e) => {
                    debug!(namespace = %namespace, reason = %e.reason(), error = %e,
                           "no credentials; leaving these DtsJobs to their reconcile");
                }
            }
        }
        let groups = group(sel.due, &creds);

        let concurrency = self.ctx.settings.max_concurrency.max(1);
        // Owned futures: the stream must not borrow (a higher-ranked
        // lifetime bound that a spawned task cannot meet otherwise).
        let reads: Vec<(usize, GroupRead)> = futures::stream::iter(
            groups
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, g)| {
                    let ctx = self.ctx.clone();
                    let now = now.clone();
                    let stopping = stopping.clone();
                    async move { (i, read_group(&ctx, &g, &now, &stopping).await) }
                })
                .collect::<Vec<_>>(),
        )
        .buffer_unordered(concurrency)
        .collect()
        .await;

        let mut calls = 0u64;
        let mut jobs_read = 0u64;
        let mut changed = Vec::new();
        for (i, read) in reads {
            let g = &groups[i];
            calls += read.calls;
            jobs_read += read.jobs_read;
            changed.extend(read.changed);
            if let Some(info) = &read.circuit_open {
                debug!(region = %g.region_id, key = %info.key, code = %info.code, jobs = g.jobs.len(),
                       "circuit open for these credentials; not read this cycle");
            }
            if let Some(e) = &read.error {
                let throttled = e.reason() == ErrorReason::Throttled;
                if throttled {
                    self.ctx.metrics.observe_throttled();
                }
                warn!(region = %g.region_id, access_key_id = %g.access_key_id, jobs = g.jobs.len(),
                      reason = %Reason::for_dts_error(e), error = %e,
                      "DescribeDtsJobs failed; reading this group again next cycle");
            }
        }
        let elapsed = start.elapsed();
        self.ctx.metrics.observe_cycle(elapsed, calls, jobs_read);
        if changed.is_empty() {
            debug!(
                groups = groups.len(),
                calls,
                jobs_read,
                ?elapsed,
                "observe cycle: no change"
            );
        } else {
            info!(
                groups = groups.len(),
                calls,
                jobs_read,
                changed = changed.len(),
                ?elapsed,
                "observe cycle"
            );
        }
        let mut stopping = stopping.clone();
        for object in changed {
            tokio::select! {
                r = self.trigger.send(object) => if r.is_err() { break },
                _ = stopping.wait_for(|s| *s) => break,
            }
        }
        next
    }
}

#[cfg(test)]
mod tests;
