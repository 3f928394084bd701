//! Prometheus metrics of the operator (served on `/metrics`).
//!
//! Labels are bounded vocabularies, never text derived from `Debug` output
//! or taken from DTS unchecked: actions, outcomes, [`Reason`]s, phases, and
//! DTS error codes from a known set ([`dts_api::error::metric_code`];
//! anything else is `Other`). The raw code goes to status and Events.

mod process;

pub use process::{HeapStats, ProcStats, ProcessCollector};

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::crd::Phase;
use crate::limits::Limits;
use crate::reason::Reason;
use dts_api::DtsError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub action: &'static str,
    pub outcome: &'static str,
    pub reason: &'static str,
    pub error_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// How a status write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Ok,
    /// 409: the resourceVersion precondition failed.
    Conflict,
    Error,
    Timeout,
}

impl WriteOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOutcome::Ok => "ok",
            WriteOutcome::Conflict => "conflict",
            WriteOutcome::Error => "error",
            WriteOutcome::Timeout => "timeout",
        }
    }
}

/// How an Event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// Created, or its series patched.
    Recorded,
    /// Not queued: the writer's queue was full.
    Dropped,
    Error,
    Timeout,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Recorded => "recorded",
            EventOutcome::Dropped => "dropped",
            EventOutcome::Error => "error",
            EventOutcome::Timeout => "timeout",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub cause: &'static str,
}

/// A key of the DTS call limits: the hash of its AccessKeyId (never the
/// AccessKeyId, never anything secret) and the region.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub key: String,
    pub region: String,
}

/// All metrics, registered in one registry.
pub struct Metrics {
    reconciles: Counter,
    failures: Family<ReasonLabels, Counter>,
    dts_calls: Family<CallLabels, Counter>,
    dts_latency: Family<ActionLabels, Histogram>,
    reconcile_duration: Histogram,
    status_writes: Family<OutcomeLabels, Counter>,
    events: Family<OutcomeLabels, Counter>,
    observe_cycles: Counter,
    observe_duration: Histogram,
    observe_calls: Gauge,
    observed_jobs: Gauge,
    observe_throttled: Counter,
    circuit_opens: Family<GroupLabels, Counter>,
    circuit_closes: Family<CauseLabels, Counter>,
    leader: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them under the `dts_operator` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Counter::default(),
            failures: Family::default(),
            dts_calls: Family::default(),
            dts_latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            status_writes: Family::default(),
            events: Family::default(),
            observe_cycles: Counter::default(),
            observe_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            observe_calls: Gauge::default(),
            observed_jobs: Gauge::default(),
            observe_throttled: Counter::default(),
            circuit_opens: Family::default(),
            circuit_closes: Family::default(),
            leader: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("dts_operator");
        r.register(
            "reconciles",
            "DtsJob reconciles by the Lease holder",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_failures",
            "DtsJob reconciles that ended in an error, by reason",
            m.failures.clone(),
        );
        r.register(
            "dts_calls",
            "DTS API calls by action, outcome, reason and (known) error code",
            m.dts_calls.clone(),
        );
        r.register(
            "dts_call_duration_seconds",
            "DTS API call latency",
            m.dts_latency.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time from the start of a reconcile to its end, calls and writes included",
            m.reconcile_duration.clone(),
        );
        r.register(
            "status_writes",
            "DtsJob status writes by outcome (ok, conflict, error, timeout)",
            m.status_writes.clone(),
        );
        r.register(
            "events",
            "Events by outcome (recorded, dropped: the queue was full, error, timeout)",
            m.events.clone(),
        );
        r.register(
            "observe_cycles",
            "Observe cycles run (batched DescribeDtsJobs reads by the Lease holder)",
            m.observe_cycles.clone(),
        );
        r.register(
            "observe_cycle_duration_seconds",
            "Time an observe cycle took, credentials and DTS calls included",
            m.observe_duration.clone(),
        );
        r.register(
            "observe_calls_per_cycle",
            "DTS calls of the last observe cycle",
            m.observe_calls.clone(),
        );
        r.register(
            "observed_jobs",
            "DTS jobs read in the last observe cycle",
            m.observed_jobs.clone(),
        );
        r.register(
            "observe_throttled",
            "Observe group reads that DTS answered with Throttling",
            m.observe_throttled.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader Lease (always 1 without leader election)",
            m.leader.clone(),
        );
        // No key label on the counters: keys come and go (STS credentials
        // get a new AccessKeyId with every token), a counter series stays.
        r.register(
            "dts_circuit_opens",
            "DTS call circuits opened, by failure group (credentials, permission, unavailable)",
            m.circuit_opens.clone(),
        );
        r.register(
            "dts_circuit_closes",
            "DTS call circuits closed, by cause (answered, credentials_changed, unused)",
            m.circuit_closes.clone(),
        );
        m
    }

    /// A metrics set that is not exported (tests, tools).
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }

    /// Whether this replica holds the Lease now.
    pub fn set_leader(&self, held: bool) {
        self.leader.set(i64::from(held));
    }

    pub fn reconciled(&self) {
        self.reconciles.inc();
    }

    pub fn reconcile_failed(&self, reason: Reason) {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn reconcile_finished(&self, elapsed: Duration) {
        self.reconcile_duration.observe(elapsed.as_secs_f64());
    }

    pub fn status_write(&self, outcome: WriteOutcome) {
        self.status_writes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// An Event ended so; the count of that outcome so far.
    pub fn event(&self, outcome: EventOutcome) -> u64 {
        self.events
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc()
            + 1
    }

    /// One observe cycle ended: how long it took, its DTS calls, the jobs read.
    pub fn observe_cycle(&self, elapsed: Duration, calls: u64, jobs_read: u64) {
        self.observe_cycles.inc();
        self.observe_duration.observe(elapsed.as_secs_f64());
        self.observe_calls.set(i64::try_from(calls).unwrap_or(i64::MAX));
        self.observed_jobs.set(i64::try_from(jobs_read).unwrap_or(i64::MAX));
    }

    /// An observe group read was answered with Throttling.
    pub fn observe_throttled(&self) {
        self.observe_throttled.inc();
    }

    /// A key's circuit opened after failures of `group`.
    pub fn circuit_opened(&self, group: &'static str) {
        self.circuit_opens.get_or_create(&GroupLabels { group }).inc();
    }

    /// A key's circuit closed, for `cause`.
    pub fn circuit_closed(&self, cause: &'static str) {
        self.circuit_closes.get_or_create(&CauseLabels { cause }).inc();
    }

    /// Counts one DTS call of `action` that ended with `error` (None: success).
    pub fn dts_call(&self, action: &'static str, error: Option<&DtsError>, elapsed: Duration) {
        self.dts_calls.get_or_create(&call_labels(action, error)).inc();
        self.dts_latency
            .get_or_create(&ActionLabels { action })
            .observe(elapsed.as_secs_f64());
    }
}

/// The labels of one DTS call: every value from a bounded set.
pub fn call_labels(action: &'static str, error: Option<&DtsError>) -> CallLabels {
    match error {
        None => CallLabels {
            action,
            outcome: "success",
            reason: "",
            error_code: "",
        },
        Some(e) => CallLabels {
            action,
            outcome: e.class.as_str(),
            reason: Reason::for_dts_error(e).as_str(),
            error_code: e.code.as_deref().map(dts_api::error::metric_code).unwrap_or(""),
        },
    }
}

/// `dts_operator_dtsjobs{phase}`: DtsJobs by `status.phase`, counted from the
/// watch cache at scrape time, so deleted objects drop out and nothing needs
/// bookkeeping in the reconcile path. Objects without a phase yet count as
/// `Unknown`.
pub struct PhaseCollector {
    store: crate::store::JobStore,
}

impl PhaseCollector {
    /// Registers the collector under the `dts_operator` prefix.
    pub fn register(registry: &mut Registry, store: crate::store::JobStore) {
        registry
            .sub_registry_with_prefix("dts_operator")
            .register_collector(Box::new(PhaseCollector { store }));
    }
}

impl std::fmt::Debug for PhaseCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhaseCollector").finish_non_exhaustive()
    }
}

impl Collector for PhaseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<PhaseLabels, Gauge>::default();
        for p in [
            Phase::Pending,
            Phase::Running,
            Phase::Suspended,
            Phase::Stopping,
            Phase::Stopped,
            Phase::Failed,
        ] {
            // Every phase is exported, with 0 when no DtsJob is in it.
            let _ = family.get_or_create(&PhaseLabels {
                phase: format!("{p:?}"),
            });
        }
        for job in self.store.state() {
            let phase = job.glance().phase.map(|p| format!("{p:?}"));
            family
                .get_or_create(&PhaseLabels {
                    phase: phase.unwrap_or_else(|| "Unknown".into()),
                })
                .inc();
        }
        let metric = encoder.encode_descriptor("dtsjobs", "DtsJobs by phase", None, family.metric_type())?;
        family.encode(metric)
    }
}

/// `dts_operator_dts_rate_limit{key,region}` (the calls per second each
/// key's adaptive bucket allows now) and `dts_operator_dts_circuit_open{key,region}`
/// (1 while its breaker is open or half-open), read from the limits at
/// scrape time: a recovering rate shows without any call, and a dropped key
/// drops out.
pub struct LimitsCollector {
    limits: Arc<Limits>,
}

impl LimitsCollector {
    /// Registers the collector under the `dts_operator` prefix.
    pub fn register(registry: &mut Registry, limits: Arc<Limits>) {
        registry
            .sub_registry_with_prefix("dts_operator")
            .register_collector(Box::new(LimitsCollector { limits }));
    }
}

impl std::fmt::Debug for LimitsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitsCollector").finish_non_exhaustive()
    }
}

impl Collector for LimitsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rates = Family::<KeyLabels, Gauge<f64, AtomicU64>>::default();
        let open = Family::<KeyLabels, Gauge>::default();
        for k in self.limits.snapshot() {
            let labels = KeyLabels {
                key: k.key,
                region: k.region,
            };
            rates.get_or_create(&labels).set(k.rate);
            open.get_or_create(&labels).set(i64::from(k.open));
        }
        let metric = encoder.encode_descriptor(
            "dts_rate_limit",
            "DTS calls per second allowed now, per key (AccessKeyId hash) and region: --dts-rate-limit, lowered after throttling",
            None,
            rates.metric_type(),
        )?;
        rates.encode(metric)?;
        let metric = encoder.encode_descriptor(
            "dts_circuit_open",
            "1 while the circuit breaker of a key (AccessKeyId hash) and region is open or half-open",
            None,
            open.metric_type(),
        )?;
        open.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{JobKey, JobStore};
    use prometheus_client::encoding::text::encode;

    fn job(name: &str, phase: Option<Phase>) -> crate::crd::DtsJob {
        let mut j: crate::crd::DtsJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"jobId": "j", "regionId": "cn-hangzhou"}
        }))
        .unwrap();
        j.status = phase.map(|p| crate::crd::DtsJobStatus {
            phase: Some(p),
            ..Default::default()
        });
        j
    }

    #[test]
    fn jobs_are_counted_by_phase_from_the_cache() {
        let store = JobStore::default();
        for (n, p) in [
            ("a", Some(Phase::Stopped)),
            ("b", Some(Phase::Stopped)),
            ("c", Some(Phase::Failed)),
            ("d", None),
        ] {
            store.apply(job(n, p));
        }
        let mut registry = Registry::default();
        PhaseCollector::register(&mut registry, store.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains("dts_operator_dtsjobs{phase=\"Stopped\"} 2"), "{text}");
        assert!(text.contains("dts_operator_dtsjobs{phase=\"Failed\"} 1"), "{text}");
        assert!(text.contains("dts_operator_dtsjobs{phase=\"Running\"} 0"), "{text}");
        assert!(text.contains("dts_operator_dtsjobs{phase=\"Unknown\"} 1"), "{text}");

        store.remove(&JobKey::new("ns", "c"));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("dts_operator_dtsjobs{phase=\"Failed\"} 0"),
            "a deleted job drops out: {text}"
        );
    }
}
