use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::crd::DtsJob;

fn job(ns: &str, name: &str) -> DtsJob {
    job_at(ns, name, "1")
}

/// A job at resourceVersion `rv`.
fn job_at(ns: &str, name: &str, rv: &str) -> DtsJob {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "resourceVersion": rv},
        "spec": {"jobId": "j", "regionId": "cn-hangzhou"}
    }))
    .unwrap()
}

/// A store of `names` in namespace `ns`.
fn store(names: &[&str]) -> JobStore {
    let store = JobStore::default();
    for n in names {
        store.apply(job("ns", n));
    }
    store
}

fn key(name: &str) -> JobKey {
    JobKey::new("ns", name)
}

/// What the reconciles did: each start (by name, in order), and the most
/// running at once overall and for one job.
#[derive(Default)]
struct Log {
    started: Mutex<Vec<String>>,
    /// Each start's time and the resourceVersion it ran on.
    runs: Mutex<Vec<(Instant, u64)>>,
    running: AtomicUsize,
    most: AtomicUsize,
    per_job: Mutex<HashMap<String, usize>>,
    most_per_job: AtomicUsize,
}

impl Log {
    fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }

    fn count(&self, name: &str) -> usize {
        self.started().iter().filter(|n| *n == name).count()
    }

    /// A reconcile that takes `hold` and then asks for `action`.
    async fn reconcile(self: Arc<Self>, job: Arc<CachedJob>, hold: Duration, action: Action) -> Action {
        let name = job.name().to_owned();
        self.started.lock().unwrap().push(name.clone());
        self.runs.lock().unwrap().push((Instant::now(), job.resource_version()));
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let mine = {
            let mut per = self.per_job.lock().unwrap();
            let n = per.entry(name.clone()).or_default();
            *n += 1;
            *n
        };
        self.most_per_job.fetch_max(mine, Ordering::SeqCst);
        tokio::time::sleep(hold).await;
        *self.per_job.lock().unwrap().get_mut(&name).unwrap() -= 1;
        self.running.fetch_sub(1, Ordering::SeqCst);
        action
    }
}

/// A trigger channel as one of the runner's streams.
fn channel() -> (mpsc::UnboundedSender<Trigger>, BoxStream<'static, Trigger>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    (tx, futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
}

struct Running {
    tx: mpsc::UnboundedSender<Trigger>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    log: Arc<Log>,
}

impl Running {
    fn trigger(&self, name: &str) {
        self.tx.send(Trigger::Job(key(name))).unwrap();
    }

    async fn stop(mut self) -> Arc<Log> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.done)
            .await
            .expect("the runner stops")
            .unwrap();
        self.log
    }
}

fn start(store: JobStore, concurrency: usize, hold: Duration, action: Action) -> Running {
    let (tx, stream) = channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let log = Arc::new(Log::default());
    let l = log.clone();
    let done = tokio::spawn(run(
        store,
        vec![stream],
        concurrency,
        async move {
            let _ = stop_rx.await;
        },
        move |job| l.clone().reconcile(job, hold, action),
    ));
    Running {
        tx,
        stop: Some(stop_tx),
        done,
        log,
    }
}

/// Lets the runner and its tasks run until nothing is left to do now.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn triggers_for_a_queued_job_run_it_once() {
    let r = start(store(&["a", "b"]), 1, Duration::from_secs(1), Action::await_change());
    r.trigger("a");
    r.trigger("b");
    r.trigger("b");
    r.trigger("b");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = r.stop().await;
    assert_eq!(log.started(), ["a", "b"], "b queued once while a ran");
}

#[tokio::test(start_paused = true)]
async fn triggers_that_arrive_together_run_the_job_once_even_with_room() {
    // The watch's event and gaining the Lease at start-up: without taking
    // every ready trigger first, the second would come while the first
    // reconcile runs and run the job again, on a cache that has not yet
    // seen its own write.
    let r = start(store(&["a", "b"]), 8, Duration::from_secs(1), Action::await_change());
    r.trigger("a");
    r.tx.send(Trigger::All).unwrap();
    r.trigger("a");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = r.stop().await;
    let mut started = log.started();
    started.sort();
    assert_eq!(started, ["a", "b"], "each job once");
}

#[tokio::test(start_paused = true)]
async fn a_job_run_again_after_its_own_write_waits_for_the_store_to_show_it() {
    let store = JobStore::default();
    store.apply(job_at("ns", "a", "1"));
    let t0 = Instant::now();
    // Each reconcile takes 1 s and writes resourceVersion 5.
    let r = start(
        store.clone(),
        8,
        Duration::from_secs(1),
        Action::await_change().after_write(5),
    );
    r.trigger("a");
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.trigger("a"); // mid-reconcile: runs again once the first is done
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(r.log.count("a"), 1, "the first is done, the store still shows rv 1");
    store.apply(job_at("ns", "a", "5")); // the write's watch event, at 1.5 s
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.log.count("a"), 2, "run again as soon as the store shows the write");
    let runs = r.log.runs.lock().unwrap().clone();
    assert!(runs[1].0 - t0 >= Duration::from_millis(1500), "{runs:?}");
    assert_eq!(runs[1].1, 5, "on the version it wrote");
    drop(r.stop().await);
}

#[tokio::test(start_paused = true)]
async fn a_write_whose_event_never_comes_holds_the_next_run_only_for_the_catch_up() {
    let t0 = Instant::now();
    let r = start(
        store(&["a"]),
        8,
        Duration::from_secs(1),
        Action::await_change().after_write(9),
    );
    r.trigger("a");
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.trigger("a");
    tokio::time::sleep(CATCH_UP + Duration::from_secs(2)).await;
    let log = r.stop().await;
    let runs = log.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1].1, 1, "on the version the store has");
    assert!(
        runs[1].0 - t0 >= Duration::from_secs(1) + CATCH_UP,
        "ran at {:?}",
        runs[1].0 - t0
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_triggered_in_reconcile_runs_again_after_never_alongside() {
    let r = start(store(&["a"]), 8, Duration::from_secs(10), Action::await_change());
    r.trigger("a");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(r.log.count("a"), 1, "running");
    r.trigger("a");
    r.trigger("a");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(r.log.count("a"), 1, "not a second one at once");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(r.log.count("a"), 2, "once more after the first finished");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let log = r.stop().await;
    assert_eq!(log.count("a"), 2, "the two triggers meanwhile were one");
    assert_eq!(log.most_per_job.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn at_most_concurrency_reconciles_run_at_once_and_all_run() {
    let names: Vec<String> = (0..20).map(|i| format!("j{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let r = start(store(&refs), 3, Duration::from_secs(1), Action::await_change());
    for n in &names {
        r.trigger(n);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.log.started().len(), 6, "three a second");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let log = r.stop().await;
    assert_eq!(log.most.load(Ordering::SeqCst), 3);
    let mut started = log.started();
    assert_eq!(started[..3], ["j00", "j01", "j02"], "in the order triggered");
    started.sort();
    assert_eq!(started, names, "each once");
}

#[tokio::test(start_paused = true)]
async fn a_requeue_runs_the_job_again_after_its_delay_and_a_trigger_runs_it_sooner() {
    let r = start(
        store(&["a"]),
        1,
        Duration::ZERO,
        Action::requeue(Duration::from_secs(60)),
    );
    r.trigger("a");
    settle().await;
    assert_eq!(r.log.count("a"), 1);
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(r.log.count("a"), 1, "not before the requeue's 60 s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.log.count("a"), 2, "requeued after 60 s");
    tokio::time::sleep(Duration::from_secs(10)).await;
    r.trigger("a");
    settle().await;
    assert_eq!(r.log.count("a"), 3, "a trigger does not wait for the requeue");
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(r.log.count("a"), 3, "and the requeue counts from the last run");
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn all_runs_every_stored_job_and_deleted_jobs_are_not_reconciled() {
    let s = store(&["a", "b", "c"]);
    let r = start(s.clone(), 1, Duration::from_secs(1), Action::await_change());
    r.tx.send(Trigger::All).unwrap();
    settle().await;
    // One is running; the other two are queued. Delete one of those.
    let first = r.log.started()[0].clone();
    let queued = ["a", "b", "c"].into_iter().find(|n| *n != first).unwrap();
    assert!(s.remove(&key(queued)).is_some());
    r.trigger("ghost");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let log = r.stop().await;
    let mut started = log.started();
    started.sort();
    let mut want: Vec<&str> = ["a", "b", "c"].into_iter().filter(|n| *n != queued).collect();
    want.sort();
    assert_eq!(
        started, want,
        "{queued} was deleted while queued; ghost was never stored"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_running_reconciles_finish_and_starts_no_more() {
    let r = start(store(&["a", "b"]), 1, Duration::from_secs(5), Action::await_change());
    r.trigger("a");
    r.trigger("b");
    settle().await;
    let (log, stop) = (r.log.clone(), r.stop.as_ref().is_some());
    assert!(stop);
    let started = tokio::time::Instant::now();
    let log_after = r.stop().await;
    assert!(started.elapsed() >= Duration::from_secs(5), "waited for a's reconcile");
    assert_eq!(log.running.load(Ordering::SeqCst), 0, "a finished");
    assert_eq!(log_after.started(), ["a"], "b was never started");
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_that_panics_is_retried_later_and_the_others_go_on() {
    let s = store(&["bad", "good"]);
    let (tx, stream) = channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let runs = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let r = runs.clone();
    let done = tokio::spawn(run(
        s,
        vec![stream],
        2,
        async move {
            let _ = stop_rx.await;
        },
        move |job| {
            let r = r.clone();
            async move {
                r.lock().unwrap().push((job.name().to_owned(), Instant::now()));
                if job.name() == "bad" {
                    panic!("a defect");
                }
                Action::await_change()
            }
        },
    ));
    let t0 = Instant::now();
    tx.send(Trigger::Job(key("bad"))).unwrap();
    tx.send(Trigger::Job(key("good"))).unwrap();
    tokio::time::sleep(PANIC_RETRY + Duration::from_secs(1)).await;
    let _ = stop_tx.send(());
    done.await.expect("the runner survives");
    let runs = runs.lock().unwrap().clone();
    let bad: Vec<Duration> = runs.iter().filter(|(n, _)| n == "bad").map(|(_, t)| *t - t0).collect();
    assert_eq!(runs.iter().filter(|(n, _)| n == "good").count(), 1);
    assert_eq!(bad.len(), 2, "tried again: {bad:?}");
    assert!(bad[1] >= PANIC_RETRY, "not in a hot loop: {bad:?}");
}
