//! `dts-operator run`: wires the watches, the DTS client and the controller.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::controller::act::DtsCaller;
use crate::controller::backoff::Backoff;
use crate::controller::{self, credentials, Context};
use crate::crd::{DtsJob, RECONCILE_REQUESTED_AT};
use crate::dts::{ClientConfig, DtsClient};
use crate::metrics::Metrics;

/// What triggers a reconcile: a new generation, a new
/// reconcile-requested-at annotation, deletion or finalizer changes. The
/// operator's own status writes change none of these, so they never
/// trigger it.
fn trigger_hash(job: &DtsJob) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    job.metadata.generation.hash(&mut h);
    job.annotations().get(RECONCILE_REQUESTED_AT).hash(&mut h);
    job.metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut h);
    job.metadata.finalizers.hash(&mut h);
    Some(h.finish())
}

/// Runs the operator until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = Client::try_default().await?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));

    let dts = DtsClient::new(ClientConfig {
        endpoint_override: args.dts_endpoint.clone(),
        signature_version: args.signature_version,
        timeout: args.dts_timeout,
    });
    let default_credentials = credentials::from_env();
    info!(
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        endpoint = args.dts_endpoint.as_ref().map(|u| u.as_str()).unwrap_or("<by region>"),
        signature_version = ?args.signature_version,
        default_credentials = default_credentials.is_some(),
        "starting dts-operator"
    );

    let reporter = Reporter {
        controller: "dts-operator".into(),
        instance: args.identity.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        dts: DtsCaller::new(dts, args.dts_rate_limit, args.dts_max_concurrency, metrics.clone()),
        default_credentials,
        recorder: Recorder::new(client.clone(), reporter),
        backoff: Backoff::new(args.retry_base_delay, args.retry_max_delay),
        metrics: metrics.clone(),
        may_act: Arc::new(|| true),
    });

    // Secrets are read by metadata only: no secret value is cached.
    let (jobs_api, secrets_api): (Api<DtsJob>, Api<PartialObjectMeta<Secret>>) = match &args.namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };

    let (reader, writer) = reflector::store();
    let jobs = watcher(jobs_api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    let secrets = watcher(secrets_api, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let store = reader.clone();

    let controller = Controller::for_stream(jobs, reader)
        .watches_stream(secrets, move |secret| {
            let ns = secret.namespace();
            let name = secret.name_any();
            store
                .state()
                .into_iter()
                .filter(|j| {
                    j.namespace() == ns && j.spec.credentials_secret_ref.as_ref().is_some_and(|r| r.name == name)
                })
                .map(|j| ObjectRef::from_obj(&*j))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown_signal());

    controller
        .run(controller::reconcile, controller::error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "controller error");
            }
        })
        .await;
    info!("stopped");
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
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
