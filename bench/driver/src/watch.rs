//! The driver's own watch of a case's DtsJobs: the time each new generation
//! and each `Stopped` status was first seen, which the latency numbers are
//! made of, and "settled" (every job's Ready condition describes its current
//! generation and nothing has changed for a while).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::{self, Event};
use kube::Api;
use serde_json::Value;
use tokio::sync::Notify;

use crate::measure::now_ms;
use crate::Result;

/// What the watch saw of one DtsJob.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub generation: i64,
    /// First time each generation was seen (ms since epoch).
    pub generation_seen: HashMap<i64, f64>,
    /// Ready's `observedGeneration` equals the current generation.
    pub current: bool,
    /// Every direction in status carries DTS's view (`observed`).
    pub observed: bool,
    /// First time `phase: Stopped` with a current `Ready=True` was seen.
    pub stopped_ms: Option<f64>,
}

#[derive(Debug, Default)]
pub struct State {
    pub jobs: HashMap<String, Seen>,
    /// Watch events received (each is a change of some object).
    pub events: u64,
    pub last_event_ms: f64,
    pub synced: bool,
    /// The job whose statuses are kept ([`Tracker::record`]).
    record: Option<String>,
    /// Each status `record` showed, in order, every one once.
    pub recorded: Vec<Value>,
}

/// A running watch; aborted when dropped.
pub struct Tracker {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Tracker {
    pub fn start(api: Api<DynamicObject>) -> Tracker {
        let state: Arc<Mutex<State>> = Arc::default();
        let notify = Arc::new(Notify::new());
        let (s, n) = (state.clone(), notify.clone());
        let task = tokio::spawn(async move {
            // A fresh list+watch after errors; times come from the events
            // actually received, so a relist only delays, never invents.
            let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let t = now_ms();
                let mut st = s.lock().unwrap();
                match event {
                    Ok(Event::Apply(obj)) | Ok(Event::InitApply(obj)) => {
                        st.events += 1;
                        st.last_event_ms = t;
                        observe(&mut st, &obj, t);
                    }
                    Ok(Event::Delete(obj)) => {
                        st.events += 1;
                        st.last_event_ms = t;
                        st.jobs.remove(&obj.metadata.name.unwrap_or_default());
                    }
                    Ok(Event::InitDone) => st.synced = true,
                    Ok(Event::Init) => {}
                    Err(e) => eprintln!("dts-bench: watch error (retrying): {e}"),
                }
                drop(st);
                n.notify_waiters();
            }
        });
        Tracker { state, notify, task }
    }

    /// Keeps every status job `name` shows from now on (in
    /// [`State::recorded`]): the writes an operator made to it, in order.
    pub fn record(&self, name: &str) {
        let mut st = self.state.lock().unwrap();
        st.record = Some(name.to_owned());
        st.recorded.clear();
    }

    /// Runs `f` on the current state.
    pub fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap())
    }

    /// Waits until `pred` holds (checked on every watch event and every
    /// 50 ms), or fails naming `what` after `timeout`.
    pub async fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&State) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if self.with(&pred) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {timeout:?} waiting for {what}").into());
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn observe(st: &mut State, obj: &DynamicObject, t: f64) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let generation = obj.metadata.generation.unwrap_or(0);
    let seen = st.jobs.entry(name).or_default();
    seen.generation = generation;
    seen.generation_seen.entry(generation).or_insert(t);
    let (current, stopped) = judge(&obj.data, generation);
    seen.current = current;
    seen.observed = obj.data["status"]["directions"]
        .as_array()
        .is_some_and(|d| !d.is_empty() && d.iter().all(|d| d.get("observed").is_some()));
    if stopped && seen.stopped_ms.is_none() {
        seen.stopped_ms = Some(t);
    }
    if st.record.is_some() && st.record.as_deref() == obj.metadata.name.as_deref() {
        let status = &obj.data["status"];
        if st.recorded.last() != Some(status) {
            st.recorded.push(status.clone());
        }
    }
}

/// (Ready describes `generation`, the job is Stopped and Ready=True).
fn judge(data: &Value, generation: i64) -> (bool, bool) {
    let status = &data["status"];
    let ready = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
    let current = ready.is_some_and(|r| r["observedGeneration"].as_i64() == Some(generation));
    let stopped = current && status["phase"] == "Stopped" && ready.is_some_and(|r| r["status"] == "True");
    (current, stopped)
}

impl State {
    /// Every job in `names` is Stopped.
    pub fn all_stopped<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> bool {
        names.all(|n| self.jobs.get(n).is_some_and(|s| s.stopped_ms.is_some()))
    }

    /// At least `expected` jobs are known, each has a current Ready, and
    /// no event arrived for `quiet`.
    pub fn settled(&self, expected: usize, quiet: Duration) -> bool {
        self.synced
            && self.jobs.len() >= expected
            && self.jobs.values().all(|s| s.current)
            && now_ms() - self.last_event_ms >= quiet.as_millis() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stopped_needs_a_current_ready_true() {
        let status = |phase: &str, ready: &str, og: i64| {
            json!({"status": {"phase": phase, "conditions": [
                {"type": "Stalled", "status": "False", "observedGeneration": 2},
                {"type": "Ready", "status": ready, "observedGeneration": og},
            ]}})
        };
        assert_eq!(judge(&status("Stopped", "True", 2), 2), (true, true));
        assert_eq!(judge(&status("Stopped", "True", 1), 2), (false, false));
        assert_eq!(judge(&status("Stopping", "False", 2), 2), (true, false));
        assert_eq!(judge(&status("Running", "True", 1), 1), (true, false));
        assert_eq!(judge(&json!({"spec": {}}), 1), (false, false));
    }
}
