//! `dts-operator run`: wires the watches, the DTS client, leader election,
//! the metrics/health server and the controller.
//!
//! Shutdown order matters: on SIGTERM the controller stops taking new work
//! and finishes in-flight reconciles (and so their DTS calls), and the
//! observer sends no further read and lets its calls on the wire end; only
//! then is the Lease released, so a standby can never call DTS while this
//! replica still has a call on the wire.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cache::CachedJob;
use crate::cli::RunArgs;
use crate::controller::backoff::Backoff;
use crate::controller::{self, credentials, Context, Gate, Settings};
use crate::http::{HttpServer, ReadySignal};
use crate::leader::{LeaderElector, LeaderState, LeaseConfig};
use crate::limits::{Limits, Member};
use crate::metrics::{LimitsCollector, Metrics, PhaseCollector};
use crate::observer::Observer;
use crate::scope::{self, ScopedWriter};
use crate::triggers::Triggers;
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
    let client = Client::try_default().await?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    // The DtsJob watch cache: the controller's store, and the source of the
    // by-phase gauge.
    let (reader, writer) = reflector::store();
    PhaseCollector::register(&mut registry, reader.clone());
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
        .map(|m: Member| ObjectRef::<CachedJob>::new(&m.name).within(&m.namespace));

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
    let watch_store = reader.clone();
    let triggers = Arc::new(Triggers::default());
    let watch_triggers = triggers.clone();
    // Each object is decoded straight into its compact cache entry.
    let tagged = scope::watch::<CachedJob>(&client, &scope, jobs_config);
    let jobs = scope::reflect(tagged, ScopedWriter::new(writer, scope.watches().len()))
        .inspect(move |event| {
            if let Ok(event) = event {
                forget_deleted(&watch_ctx.backoff, event, &watch_store);
                match event {
                    watcher::Event::Delete(job) => watch_triggers.forget(job),
                    watcher::Event::InitDone => watch_triggers.retain(watch_store.state().iter().map(|j| &**j)),
                    _ => {}
                }
            }
            if matches!(event, Ok(watcher::Event::InitDone)) && !ready_flag.is_ready() {
                ready_flag.set_ready();
                let _ = synced_tx.send(true);
                info!("DtsJob watch synced; ready");
            }
        })
        .applied_objects()
        .try_filter(move |job| std::future::ready(triggers.changed(job)));
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
    let secrets = secret_watch
        .map(move |(ns, event)| {
            if let Ok(event) = &event {
                secrets_ctx.secrets.observe(ns.as_deref(), event);
            }
            event
        })
        .touched_objects();
    let store = reader.clone();
    let defaults_changed = defaults_changes(ctx.clone(), reader.clone());

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
    });

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
            reader.clone(),
            args.poll_interval,
            observed_tx,
            leader.clone(),
            synced_rx,
        );
        Some(tokio::spawn(observer.run(stopped(stop_rx.clone()))))
    };
    let observed = futures::stream::poll_fn(move |cx| observed_rx.poll_recv(cx));

    let config = kube::runtime::controller::Config::default().concurrency(args.max_concurrent_reconciles);
    let controller = Controller::for_stream(jobs, reader)
        .with_config(config)
        .watches_stream(secrets, move |secret| {
            let ns = secret.namespace();
            let name = secret.name_any();
            store
                .state()
                .into_iter()
                .filter(|j| j.namespace() == ns && j.spec.credentials_secret.as_deref() == Some(name.as_str()))
                .map(|j| ObjectRef::from_obj(&*j))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(became_leader)
        .reconcile_on(observed)
        .reconcile_on(circuit_changed)
        .reconcile_on(defaults_changed)
        .graceful_shutdown_on(stopped(stop_rx));

    controller
        .run(controller::reconcile, controller::error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "controller error");
            }
        })
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
fn defaults_changes(
    ctx: Arc<Context>,
    store: reflector::Store<CachedJob>,
) -> futures::stream::BoxStream<'static, ObjectRef<CachedJob>> {
    use credentials::defaults::DefaultSource;
    if !matches!(
        ctx.credentials.defaults(),
        DefaultSource::Dir(_) | DefaultSource::Rrsa(_)
    ) {
        return futures::stream::pending().boxed();
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ObjectRef<CachedJob>>(1024);
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
            let jobs: Vec<_> = store
                .state()
                .iter()
                .filter(|j| j.spec.credentials_secret.is_none())
                .map(|j| ObjectRef::from_obj(&**j))
                .collect();
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
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// Drops the backoff entry of a deleted DtsJob, and after a relist (which
/// reports no deletions) every entry whose object is gone from the cache.
fn forget_deleted(backoff: &Backoff, event: &watcher::Event<CachedJob>, store: &reflector::Store<CachedJob>) {
    match event {
        watcher::Event::Delete(job) => {
            if let Some(uid) = job.uid() {
                backoff.forget(&uid);
            }
        }
        watcher::Event::InitDone => {
            let live = store.state().iter().filter_map(|j| j.uid()).collect();
            backoff.retain(&live);
        }
        _ => {}
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
    use std::time::Duration;

    fn job(name: &str, uid: &str) -> CachedJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"jobId": "j", "regionId": "cn-hangzhou"}
        }))
        .unwrap()
    }

    #[test]
    fn the_watch_drops_the_backoff_of_deleted_jobs() {
        let backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(300));
        let (reader, mut writer) = reflector::store::<CachedJob>();
        for (name, uid) in [("a", "uid-a"), ("b", "uid-b"), ("c", "uid-c")] {
            let ev = watcher::Event::Apply(job(name, uid));
            writer.apply_watcher_event(&ev);
            backoff.failed(uid, None, None);
        }
        // A delete seen by the watch.
        let gone = watcher::Event::Delete(job("a", "uid-a"));
        writer.apply_watcher_event(&gone);
        forget_deleted(&backoff, &gone, &reader);
        assert_eq!(backoff.remaining("uid-a", None), None);
        assert!(backoff.remaining("uid-b", None).is_some());

        // A delete missed during a watch gap: the relist no longer has "b".
        for ev in [
            watcher::Event::Init,
            watcher::Event::InitApply(job("c", "uid-c")),
            watcher::Event::InitDone,
        ] {
            writer.apply_watcher_event(&ev);
            forget_deleted(&backoff, &ev, &reader);
        }
        assert_eq!(backoff.remaining("uid-b", None), None, "relisted away");
        assert!(backoff.remaining("uid-c", None).is_some(), "still there, still waiting");
        assert_eq!(backoff.len(), 1);
    }
}
