//! Runs the reconciles: what kube-runtime's controller runner does, over
//! the operator's own store ([`JobStore`]) so that it needs no
//! `ObjectRef` per job and no whole `ObjectMeta` per cache entry.
//!
//! The guarantees are the ones kube-runtime gives:
//! * a job is queued at most once: a trigger for a queued job keeps the
//!   earlier of the two times (so a requeue never delays a change);
//! * a job is never reconciled twice at once: a trigger for a job in
//!   reconcile runs it again right after;
//! * at most `concurrency` reconciles run at once (a burst of thousands of
//!   flips is worked off at that width);
//! * each reconcile runs the job's latest version from the store when its
//!   turn comes; a job deleted meanwhile is not reconciled;
//! * a job run again soon after a reconcile that wrote it waits (up to
//!   [`CATCH_UP`]) until the store shows that write, so it never decides
//!   on the version before its own last write (kube-runtime does not
//!   wait: such a run then makes a needless DTS read and ends in a 409);
//! * on shutdown no new reconcile starts and the ones running finish.
//!
//! Each reconcile is its own task, so both cores work on a burst and a
//! reconcile that panics (a defect) is logged and retried later instead of
//! taking the operator down. The queue gives back its room after a burst.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use futures::FutureExt;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error};

use crate::cache::CachedJob;
use crate::store::{JobKey, JobStore};

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
    /// The resourceVersion the reconcile's last write made (0: none).
    wrote: u64,
}

impl Action {
    /// Reconcile again after `duration`, or sooner on a trigger.
    pub const fn requeue(duration: Duration) -> Self {
        Self {
            requeue_after: Some(duration),
            wrote: 0,
        }
    }

    /// Reconcile again only on a trigger.
    pub const fn await_change() -> Self {
        Self {
            requeue_after: None,
            wrote: 0,
        }
    }

    /// The reconcile wrote the object, making `resource_version` (0: it
    /// wrote nothing, or the version is not a number): a run of the job
    /// soon after waits until the store has that version (see [`CATCH_UP`]).
    pub const fn after_write(self, resource_version: u64) -> Self {
        Self {
            wrote: resource_version,
            ..self
        }
    }

    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }

    /// What [`Action::after_write`] set.
    pub fn wrote(&self) -> Option<u64> {
        (self.wrote != 0).then_some(self.wrote)
    }
}

/// Why reconciles are wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// One job, now.
    Job(JobKey),
    /// Every job in the store, now (leadership gained).
    All,
}

/// How long a job whose reconcile just wrote it waits, at most, for the
/// store to show that write before it runs again. The watch delivers a
/// write within milliseconds; a run on the version before would decide on
/// a status without its own last write (a DescribeDtsJobDetail for a
/// direction it sees still `Stopping`, then a 409).
pub const CATCH_UP: Duration = Duration::from_secs(2);

/// How often a job waiting for its write to reach the store looks again.
const CATCH_UP_TICK: Duration = Duration::from_millis(10);

/// After a reconcile panicked: when to try the job again.
const PANIC_RETRY: Duration = Duration::from_secs(300);

/// Far enough to be never: a requeue the clock cannot represent.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The jobs waiting for their turn, each once, by time.
#[derive(Default)]
struct Queue {
    by_time: BTreeMap<(Instant, u64), JobKey>,
    at: HashMap<JobKey, (Instant, u64)>,
    seq: u64,
}

impl Queue {
    /// Queues `key` at `at`, or keeps it at its earlier time.
    fn schedule(&mut self, key: JobKey, at: Instant) {
        if let Some(&current) = self.at.get(&key) {
            if current.0 <= at {
                return;
            }
            self.by_time.remove(&current);
        }
        self.seq += 1;
        let slot = (at, self.seq);
        self.by_time.insert(slot, key.clone());
        self.at.insert(key, slot);
    }

    fn next_at(&self) -> Option<Instant> {
        self.by_time.first_key_value().map(|((at, _), _)| *at)
    }

    /// The first job due at `now`, taken off the queue.
    fn pop_due(&mut self, now: Instant) -> Option<JobKey> {
        let (&slot, _) = self.by_time.first_key_value()?;
        if slot.0 > now {
            return None;
        }
        let key = self.by_time.remove(&slot)?;
        self.at.remove(&key);
        if self.at.capacity() > 1024 && self.at.len() < self.at.capacity() / 4 {
            self.at.shrink_to_fit();
        }
        Some(key)
    }

    fn len(&self) -> usize {
        self.at.len()
    }
}

/// The queue and the jobs in reconcile.
#[derive(Default)]
struct Work {
    queue: Queue,
    running: HashSet<JobKey>,
    /// Jobs triggered while in reconcile, and when they are wanted again.
    again: HashMap<JobKey, Instant>,
    /// Jobs to run again soon after a reconcile that wrote them: the
    /// resourceVersion it wrote, and until when to wait for the store to
    /// show it.
    catch_up: HashMap<JobKey, (u64, Instant)>,
}

impl Work {
    /// `key` is wanted at `at`: queued, or run again after its reconcile.
    fn want(&mut self, key: JobKey, at: Instant) {
        if self.running.contains(&key) {
            let when = self.again.entry(key).or_insert(at);
            *when = (*when).min(at);
        } else {
            self.queue.schedule(key, at);
        }
    }

    /// The reconcile of `key` finished asking for `action`.
    fn finished(&mut self, key: JobKey, action: Action) {
        self.running.remove(&key);
        let now = Instant::now();
        let again = self.again.remove(&key);
        let soon = again.is_some() || action.requeue_after().is_some_and(|after| after < CATCH_UP);
        if let Some(rv) = action.wrote().filter(|_| soon) {
            self.catch_up.insert(key.clone(), (rv, now + CATCH_UP));
        }
        if let Some(at) = again {
            debug!(namespace = %key.namespace(), name = %key.name(), "triggered during its reconcile: queued again");
            self.queue.schedule(key.clone(), at);
        }
        if let Some(after) = action.requeue_after() {
            self.queue.schedule(key, now.checked_add(after).unwrap_or(now + NEVER));
        }
        if self.running.is_empty() {
            self.running.shrink_to(64);
            self.again.shrink_to(64);
        }
    }

    /// Whether `job`, due now, still waits for its last write to reach the
    /// store (then it is queued to look again shortly).
    fn behind(&mut self, job: &CachedJob, now: Instant) -> bool {
        let Some(&(rv, until)) = self.catch_up.get(job.key()) else {
            return false;
        };
        if job.resource_version() < rv && now < until {
            self.queue.schedule(job.key().clone(), now + CATCH_UP_TICK);
            return true;
        }
        self.catch_up.remove(job.key());
        if self.catch_up.is_empty() {
            self.catch_up.shrink_to(64);
        }
        false
    }
}

/// Runs reconciles of the jobs in `store` as `triggers` ask, at most
/// `concurrency` at once, until `shutdown` resolves and the reconciles
/// running then have finished. `reconcile` turns a job into its reconcile
/// (errors already turned into an [`Action`]).
pub async fn run<F, Fut>(
    store: JobStore,
    triggers: Vec<BoxStream<'static, Trigger>>,
    concurrency: usize,
    shutdown: impl Future<Output = ()>,
    reconcile: F,
) where
    F: Fn(Arc<CachedJob>) -> Fut,
    Fut: Future<Output = Action> + Send + 'static,
{
    let concurrency = concurrency.max(1);
    let mut triggers = futures::stream::select_all(triggers);
    let mut triggers_open = true;
    let mut work = Work::default();
    let mut tasks: JoinSet<(JobKey, Action)> = JoinSet::new();
    let mut task_keys: HashMap<tokio::task::Id, JobKey> = HashMap::new();
    let mut stopping = false;
    tokio::pin!(shutdown);

    loop {
        if stopping {
            if tasks.is_empty() {
                break;
            }
        } else {
            let now = Instant::now();
            while tasks.len() < concurrency {
                // A queued job is never running: a trigger for a running
                // job waits in `again` until its reconcile is done.
                let Some(key) = work.queue.pop_due(now) else { break };
                let Some(job) = store.get(&key) else {
                    work.catch_up.remove(&key);
                    continue; // deleted since it was queued
                };
                if work.behind(&job, now) {
                    continue;
                }
                work.running.insert(key.clone());
                let reconciling = reconcile(job);
                let task_key = key.clone();
                let handle = tasks.spawn(async move { (task_key, reconciling.await) });
                task_keys.insert(handle.id(), key);
            }
        }
        let next = work.queue.next_at().filter(|_| !stopping && tasks.len() < concurrency);
        tokio::select! {
            biased;
            _ = &mut shutdown, if !stopping => stopping = true,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let (key, action) = match done {
                    Ok((id, (key, action))) => {
                        task_keys.remove(&id);
                        (key, action)
                    }
                    Err(e) => {
                        let Some(key) = task_keys.remove(&e.id()) else { continue };
                        error!(namespace = %key.namespace(), name = %key.name(), error = %e,
                               "reconcile panicked (a defect); trying again later");
                        (key, Action::requeue(PANIC_RETRY))
                    }
                };
                work.finished(key, action);
                if tasks.is_empty() {
                    task_keys.shrink_to(64);
                }
            }
            trigger = triggers.next(), if triggers_open && !stopping => {
                // Every trigger ready now is taken before the next job
                // starts, as kube-runtime's scheduler does: two triggers of
                // one job that arrive together run it once.
                let now = Instant::now();
                let mut next = Some(trigger);
                while let Some(trigger) = next {
                    match trigger {
                        None => {
                            triggers_open = false;
                            break;
                        }
                        Some(Trigger::Job(key)) => work.want(key, now),
                        Some(Trigger::All) => {
                            for key in store.keys_where(|_| true) {
                                work.want(key, now);
                            }
                        }
                    }
                    next = triggers.next().now_or_never();
                }
            }
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
        }
    }
    debug!(queued = work.queue.len(), "runner stopped");
}

#[cfg(test)]
mod tests;
