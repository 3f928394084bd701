//! `dts-operator run`: wires the watches, the DTS client, leader election,
//! the metrics/health server and the controller.
//!
//! Shutdown order matters: on SIGTERM the controller stops taking new work
//! and finishes in-flight reconciles (and so their DTS calls), and the
//! observer sends no further read and lets its calls on the wire end; only
//! then is the Lease released, so a standby can never call DTS while this
//! replica still has a call on the wire.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::cache::WatchedJob;
use crate::cli::RunArgs;
use crate::controller::backoff::Backoff;
use crate::controller::{self, credentials, Context, Gate, Settings};
use crate::http::{HttpServer, ReadySignal};
use crate::leader::{LeaderElector, LeaderState, LeaseConfig};
use crate::limits::{Limits, Member};
use crate::metrics::{LimitsCollector, Metrics, PhaseCollector, ProcessCollector};
use crate::observer::Observer;
use crate::runner::{self, Trigger};
use crate::scope::{self, Change, ScopedWriter};
use crate::store::{JobKey, JobStore};
use crate::triggers::Triggers;
use crate::view::DtsView;
use dts_api::{ClientConfig, DtsClient, StsClient};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn identity(args: &RunArgs) -> String {
    args.identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("dts-operator-{}", uuid::Uuid::new_v4().simple()))
}

/// Runs the operator until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> Result<(), BoxError> {
    let client = crate::kube_client::infer(args.max_concurrent_reconciles).await?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    // The DtsJob watch cache: the runner's store, and the source of the
    // by-phase gauge.
    let store = JobStore::default();
    PhaseCollector::register(&mut registry, store.clone());
    ProcessCollector::register(&mut registry);
    let ready = ReadySignal::new();
    let identity = identity(&args);
    let settings = Settings {
        rate_limit: args.dts_rate_limit,
        max_concurrency: args.dts_max_concurrency,
        circuit_failure_threshold: args.circuit_failure_threshold,
        circuit_cooloff: args.circuit_cooloff,
        retry_base_delay: args.retry_base_delay,
        retry_max_delay: args.retry_max_delay,
        write_timeout: controller::write::DEFAULT_WRITE_TIMEOUT,
        identity: Some(identity.clone()),
    };
    // The DTS call limits per (AccessKey, region), read by their collector
    // at scrape time.
    let limits = Arc::new(Limits::new(settings.limits_config(), metrics.clone()));
    LimitsCollector::register(&mut registry, limits.clone());
    let registry = Arc::new(registry);

    // One shutdown flag, observed by every part in its own time.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let http = HttpServer::bind(args.metrics_addr)
        .await
        .map_err(|e| format!("binding {}: {e}", args.metrics_addr))?;
    info!(addr = %http.local_addr()?, "serving /metrics, /livez and /readyz");
    let (http_stop_tx, http_stop_rx) = watch::channel(false);
    let http_task = tokio::spawn(http.serve(registry.clone(), ready.clone(), stopped(http_stop_rx)));

    // Leader election: the Lease is released only after the controller has
    // drained (see module docs).
    let (controller_done_tx, controller_done_rx) = watch::channel(false);
    let (leader, elector_task) = if args.leader_elect {
        let namespace = args
            .lease_namespace
            .clone()
            .ok_or("--leader-elect needs --lease-namespace (or POD_NAMESPACE)")?;
        let config = LeaseConfig {
            lease_duration: args.lease_duration,
            renew_deadline: args.lease_renew_deadline,
            retry_period: args.lease_retry_period,
            ..LeaseConfig::new(&args.lease_name, namespace, &identity)
        };
        let elector = LeaderElector::new(client.clone(), config)?;
        let state = elector.state();
        info!(identity = %identity, lease = %args.lease_name, "leader election enabled; waiting for the Lease");
        (state, Some(tokio::spawn(elector.run(stopped(controller_done_rx)))))
    } else {
        (LeaderState::always_leader(), None)
    };

    let dts = DtsClient::new(ClientConfig {
        endpoint_override: args.dts_endpoint.clone(),
        signature_version: args.signature_version,
        timeout: args.dts_timeout,
    });
    let sts = StsClient::new(
        ClientConfig {
            endpoint_override: args.sts_endpoint.clone(),
            signature_version: args.signature_version,
            timeout: args.dts_timeout,
        },
        std::env::var("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")),
    );
    let default_source = credentials::defaults::DefaultSource::choose(args.default_credentials_dir.clone());
    let secret_namespaces = args.secret_namespaces();
    info!(
        scope = %args.scope().describe(),
        endpoint = args.dts_endpoint.as_ref().map(|u| u.as_str()).unwrap_or("<by region>"),
        signature_version = %args.signature_version,
        rate_limit = args.dts_rate_limit.get(),
        max_concurrency = args.dts_max_concurrency,
        max_concurrent_reconciles = args.max_concurrent_reconciles,
        circuit_failure_threshold = args.circuit_failure_threshold,
        circuit_cooloff = ?args.circuit_cooloff,
        sts_endpoint = args.sts_endpoint.as_ref().map(|u| u.as_str()).unwrap_or("<by region>"),
        default_credentials = default_source.name(),
        secret_namespaces = secret_namespaces.as_ref().map(|n| n.join(",")).unwrap_or_else(|| "<scope>".into()),
        "starting dts-operator"
    );

    // The leader gauge follows the Lease (including a renewal that is overdue).
    let (leader_gauge, gauge_metrics) = (leader.clone(), metrics.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            gauge_metrics.set_leader(leader_gauge.is_leader());
        }
    });
    let gate = leader.clone();
    let may_act: Gate = Arc::new(move || gate.is_leader());
    // The DtsJobs a circuit breaker holds, to reconcile when it opens or closes.
    let mut wakeups = limits.take_wakeups().ok_or("the limits' wake-ups are taken once")?;
    let ctx = Arc::new(Context::with_limits(
        client.clone(),
        dts,
        credentials::Resolver::new(default_source, sts, secret_namespaces.clone()),
        settings,
        metrics.clone(),
        may_act,
        limits,
    ));
    let circuit_changed = futures::stream::poll_fn(move |cx| wakeups.poll_recv(cx))
        .map(|m: Member| Trigger::Job(JobKey::new(&m.namespace, &m.name)))
        .boxed();

    // One watch per namespace of the scope, applied to one store (a
    // namespace's relist replaces only its own objects; see scope.rs).
    let scope = args.scope();
    let mut jobs_config = watcher::Config::default();
    if let Some(selector) = &scope.selector {
        jobs_config = jobs_config.labels(selector);
    }

    // Ready once the first DtsJob list of every watch is in the store,
    // leader or not. Taken from the stream itself: a second
    // `Store::wait_until_ready` waiter beside the controller's is never
    // woken in kube-runtime 5 (its DelayedInit polls a oneshot that keeps
    // only the last waker), which left /readyz at 503 for good.
    let ready_flag = ready.clone();
    let (synced_tx, synced_rx) = watch::channel(false);
    let watch_ctx = ctx.clone();
    let triggers = Triggers::default();
    // Each object is decoded slim, then packed into its cache entry.
    let tagged = scope::watch::<WatchedJob>(&client, &scope, jobs_config);
    let jobs = scope::reflect(tagged, ScopedWriter::new(store.clone(), scope.watches().len()))
        .filter_map(move |change| {
            if matches!(change, Ok(Change::Synced)) && !ready_flag.is_ready() {
                ready_flag.set_ready();
                let _ = synced_tx.send(true);
                info!("DtsJob watch synced; ready");
            }
            std::future::ready(take(change, &triggers, &watch_ctx.backoff, &watch_ctx.view))
        })
        .boxed();
    // Secrets by metadata only: no value crosses the wire or sits in the
    // watch; the events keep the credentials cache (ctx.secrets) current.
    let secrets_ctx = ctx.clone();
    let secret_scope = match &secret_namespaces {
        None => Some(scope::Scope {
            selector: None,
            ..scope.clone()
        }),
        Some(list) if list.is_empty() => None,
        Some(list) => Some(scope::Scope {
            namespaces: list.clone(),
            selector: None,
        }),
    };
    let secret_watch = match &secret_scope {
        Some(s) => scope::watch::<PartialObjectMeta<Secret>>(&client, s, watcher::Config::default()).boxed(),
        None => {
            info!("--secret-namespaces is empty: no Secret is watched or read");
            futures::stream::pending().boxed()
        }
    };
    let secret_jobs = store.clone();
    let secrets = secret_watch
        .map(move |(ns, event)| {
            if let Ok(event) = &event {
                secrets_ctx.secrets.observe(ns.as_deref(), event);
            }
            event
        })
        .touched_objects()
        .filter_map(|secret| {
            if let Err(e) = &secret {
                warn!(error = %e, "Secret watch error; retrying");
            }
            std::future::ready(secret.ok())
        })
        // The DtsJobs that use the Secret.
        .flat_map(move |secret| {
            let ns = secret.namespace().unwrap_or_default();
            let name = secret.name_any();
            let jobs = secret_jobs
                .keys_where(|j| j.namespace() == ns && j.spec.credentials_secret.as_deref() == Some(name.as_str()));
            if !jobs.is_empty() {
                debug!(namespace = %ns, name = %name, jobs = jobs.len(), "Secret changed: reconciling the DtsJobs that use it");
            }
            futures::stream::iter(jobs.into_iter().map(Trigger::Job))
        })
        .boxed();
    let defaults_changed = defaults_changes(ctx.clone(), store.clone());

    // Gaining the Lease re-reconciles everything: work skipped while standby
    // (or left pending by a leader that died) is picked up at once.
    let mut leadership = leader.subscribe();
    let became_leader = async_stream(move |tx| async move {
        loop {
            if leadership.wait_for(|held| *held).await.is_err() {
                return;
            }
            info!("holding the Lease: reconciling all DtsJobs");
            if tx.send(()).await.is_err() {
                return;
            }
            if leadership.wait_for(|held| !*held).await.is_err() {
                return;
            }
            warn!("lost the Lease: no more DTS calls or status writes until it is regained");
        }
    })
    .map(|()| Trigger::All)
    .boxed();

    // The observer reads DTS in batches into ctx.view and asks for a
    // reconcile of each DtsJob whose view changed. It stops with the
    // controller, before the Lease is released.
    let (observed_tx, mut observed_rx) = tokio::sync::mpsc::channel(1024);
    let observer_task = if args.poll_interval.is_zero() {
        info!("--poll-interval 0: DTS is not observed");
        drop(observed_tx);
        None
    } else {
        info!(interval = ?args.poll_interval, "observing DTS (batched DescribeDtsJobs)");
        let observer = Observer::new(
            ctx.clone(),
            store.clone(),
            args.poll_interval,
            observed_tx,
            leader.clone(),
            synced_rx,
        );
        Some(tokio::spawn(observer.run(stopped(stop_rx.clone()))))
    };
    let observed = futures::stream::poll_fn(move |cx| observed_rx.poll_recv(cx))
        .map(Trigger::Job)
        .boxed();

    let reconcile_ctx = ctx.clone();
    runner::run(
        store,
        vec![
            jobs,
            secrets,
            became_leader,
            observed,
            circuit_changed,
            defaults_changed,
        ],
        usize::from(args.max_concurrent_reconciles),
        stopped(stop_rx),
        move |job| controller::run(job, reconcile_ctx.clone()),
    )
    .await;
    if let Some(task) = observer_task {
        let _ = task.await;
        info!("observer stopped");
    }
    info!("controller drained; no DTS call in flight");
    let _ = controller_done_tx.send(true);
    // The last reconciles' Events, while the Lease is released.
    if !ctx.events.flush(EVENTS_FLUSH).await {
        warn!("Events still queued at shutdown were not written");
    }
    if let Some(task) = elector_task {
        let _ = task.await;
        info!("Lease released");
    }
    let _ = http_stop_tx.send(true);
    let _ = http_task.await;
    info!("stopped");
    Ok(())
}

/// How long shutdown waits for queued Events.
const EVENTS_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the default source's version is looked at.
const DEFAULTS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The DtsJobs that use the default credentials, each time the default
/// source changes (a rotated file in the credentials directory, a new OIDC
/// token or new RRSA credentials): a job that failed terminally on the old
/// credentials is then tried again (the version is in its fingerprint).
/// Reads a few small files every [`DEFAULTS_POLL`]; never calls STS.
fn defaults_changes(ctx: Arc<Context>, store: JobStore) -> BoxStream<'static, Trigger> {
    use credentials::defaults::DefaultSource;
    if !matches!(
        ctx.credentials.defaults(),
        DefaultSource::Dir(_) | DefaultSource::Rrsa(_)
    ) {
        return futures::stream::pending().boxed();
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<JobKey>(1024);
    tokio::spawn(async move {
        let mut last = ctx.credentials.defaults_version();
        let mut tick = tokio::time::interval(DEFAULTS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = ctx.credentials.defaults_version();
            if now == last {
                continue;
            }
            last = now;
            let jobs = store.keys_where(|j| j.spec.credentials_secret.is_none());
            info!(
                jobs = jobs.len(),
                "the default credentials changed; reconciling the DtsJobs that use them"
            );
            for job in jobs {
                if tx.send(job).await.is_err() {
                    return;
                }
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
        .map(Trigger::Job)
        .boxed()
}

/// What a change of the DtsJob watch asks of the runner: a reconcile of
/// a job added or changed in what a reconcile acts on (not the operator's
/// own status writes); for a job gone, its trigger hash and backoff are
/// forgotten. DTS's view of a job gone or finished is dropped (its status
/// then stands in). Watch errors are logged (the watch retries with its
/// backoff).
fn take(
    change: Result<Change, watcher::Error>,
    triggers: &Triggers,
    backoff: &Backoff,
    view: &DtsView,
) -> Option<Trigger> {
    match change {
        Ok(Change::Applied {
            key,
            identity,
            trigger,
            entry,
        }) => {
            if entry.finished() {
                view.forget(&entry.spec.region_id, &entry.spec.job_id);
            }
            triggers.changed(identity, trigger).then_some(Trigger::Job(key))
        }
        Ok(Change::Deleted {
            identity, uid, entry, ..
        }) => {
            triggers.forget(identity);
            if let Some(uid) = uid {
                backoff.forget(&uid);
            }
            if let Some(entry) = entry {
                view.forget(&entry.spec.region_id, &entry.spec.job_id);
            }
            None
        }
        Ok(Change::Synced) => None,
        Err(e) => {
            warn!(error = %e, "DtsJob watch error; retrying");
            None
        }
    }
}

/// A stream fed by a task through a small channel (a stand-in for
/// `async-stream`, which the project does not otherwise need).
fn async_stream<F, Fut>(f: F) -> impl futures::Stream<Item = ()> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<()>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(f(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    info!("shutdown requested; finishing in-flight reconciles");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Direction;
    use crate::view::DirectionView;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::time::Duration;

    fn job(name: &str, uid: &str, generation: i64, phase: &str) -> WatchedJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "generation": generation},
            "spec": {"jobId": "j", "regionId": "cn-hangzhou"},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn the_watch_triggers_on_changes_and_forgets_the_backoff_of_jobs_gone() {
        let backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(300));
        let triggers = Triggers::default();
        let view = DtsView::default();
        let mut writer = ScopedWriter::new(JobStore::default(), 1);
        let ns = Some("ns".to_owned());
        let mut feed = |event| {
            writer
                .apply(&ns, event)
                .into_iter()
                .filter_map(|c| take(Ok(c), &triggers, &backoff, &view))
                .collect::<Vec<_>>()
        };
        let a = Trigger::Job(JobKey::new("ns", "a"));
        assert_eq!(
            feed(watcher::Event::Apply(job("a", "uid-a", 1, "Running"))),
            vec![a.clone()]
        );
        assert_eq!(
            feed(watcher::Event::Apply(job("a", "uid-a", 1, "Stopped"))),
            [],
            "the operator's own status write"
        );
        assert_eq!(
            feed(watcher::Event::Apply(job("a", "uid-a", 2, "Stopped"))),
            vec![a.clone()]
        );
        for (name, uid) in [("b", "uid-b"), ("c", "uid-c")] {
            feed(watcher::Event::Apply(job(name, uid, 1, "Running")));
        }
        for uid in ["uid-a", "uid-b", "uid-c"] {
            backoff.failed(uid, None, None);
        }
        // A delete seen by the watch.
        assert_eq!(feed(watcher::Event::Delete(job("a", "uid-a", 2, "Stopped"))), []);
        assert_eq!(backoff.remaining("uid-a", None), None);
        assert!(backoff.remaining("uid-b", None).is_some());
        // A delete missed during a watch gap: the relist no longer has "b".
        for ev in [
            watcher::Event::Init,
            watcher::Event::InitApply(job("c", "uid-c", 1, "Running")),
            watcher::Event::InitDone,
        ] {
            assert_eq!(feed(ev), [], "nothing changed for c");
        }
        assert_eq!(backoff.remaining("uid-b", None), None, "relisted away");
        assert!(backoff.remaining("uid-c", None).is_some(), "still there, still waiting");
        assert_eq!(backoff.len(), 1);
        assert_eq!(
            feed(watcher::Event::Apply(job("a", "uid-a2", 1, "Running"))),
            [a],
            "created anew under the old name"
        );
    }

    /// `name` on DTS job `job_id`, with the Forward direction recorded in
    /// `state` as DTS last showed `dts_status`.
    fn recorded(name: &str, job_id: &str, state: &str, dts_status: &str) -> WatchedJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "generation": 1},
            "spec": {"jobId": job_id, "regionId": "cn-hangzhou"},
            "status": {"phase": if state == "Stopped" { "Stopped" } else { "Running" }, "directions": [{
                "direction": "Forward", "jobId": job_id, "state": state,
                "observed": {"status": dts_status, "observedAt": "2026-12-01T00:00:00Z"}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn the_dts_view_of_a_job_finished_or_gone_is_dropped() {
        let backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(300));
        let triggers = Triggers::default();
        let view = DtsView::default();
        let mut writer = ScopedWriter::new(JobStore::default(), 1);
        let ns = Some("ns".to_owned());
        let at = Time(jiff::Timestamp::from_second(1_796_083_200).unwrap());
        let read = |job_id: &str, status: &str| {
            let v = DirectionView {
                status: Some(status.into()),
                ..DirectionView::default()
            };
            view.put("cn-hangzhou", job_id, Direction::Forward, v, at.clone());
        };
        let mut feed = |event| {
            for c in writer.apply(&ns, event) {
                take(Ok(c), &triggers, &backoff, &view);
            }
        };
        let held = |job_id: &str| view.get("cn-hangzhou", job_id, Direction::Forward).is_some();
        for (name, job_id) in [("a", "ja"), ("b", "jb"), ("c", "jc")] {
            read(job_id, "Synchronizing");
            feed(watcher::Event::Apply(recorded(
                name,
                job_id,
                "Pending",
                "Synchronizing",
            )));
        }
        assert!(held("ja") && held("jb") && held("jc"), "running jobs keep their view");

        // Stopping, DTS not yet Finished: the view is still what is newest.
        read("ja", "Finished");
        feed(watcher::Event::Apply(recorded("a", "ja", "Stopped", "Suspending")));
        assert!(held("ja"), "stopped but not seen Finished");
        feed(watcher::Event::Apply(recorded("a", "ja", "Stopped", "Finished")));
        assert!(!held("ja"), "finished: the status holds all DTS will show");
        // Finished in DTS while the spec wants it running: not finished here.
        feed(watcher::Event::Apply(recorded("b", "jb", "Pending", "Finished")));
        assert!(held("jb"));

        feed(watcher::Event::Delete(recorded("b", "jb", "Pending", "Finished")));
        assert!(!held("jb"), "deleted");
        // Gone in a relist.
        for ev in [watcher::Event::Init, watcher::Event::InitDone] {
            feed(ev);
        }
        assert!(!held("jc"), "relisted away");
        assert!(view.is_empty());
    }
}
