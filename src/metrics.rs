//! Prometheus metrics of the operator (served on `/metrics`).
//!
//! Labels are fixed vocabularies (actions, outcomes, reasons, DTS error
//! codes, phases), never text derived from `Debug` output.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::crd::Phase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub action: String,
    pub outcome: String,
    pub error_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

/// All metrics, registered in one registry.
pub struct Metrics {
    reconciles: Counter,
    failures: Family<ReasonLabels, Counter>,
    dts_calls: Family<CallLabels, Counter>,
    dts_latency: Family<ActionLabels, Histogram>,
    jobs_by_phase: Family<PhaseLabels, Gauge>,
    phases: Mutex<HashMap<String, Phase>>,
}

impl Metrics {
    /// Creates the metrics and registers them under the `dts_operator` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Counter::default(),
            failures: Family::default(),
            dts_calls: Family::default(),
            dts_latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
            jobs_by_phase: Family::default(),
            phases: Mutex::new(HashMap::new()),
        };
        let r = registry.sub_registry_with_prefix("dts_operator");
        r.register("reconciles", "DtsJob reconciles started", m.reconciles.clone());
        r.register(
            "reconcile_failures",
            "DtsJob reconciles that ended in an error, by reason",
            m.failures.clone(),
        );
        r.register(
            "dts_calls",
            "DTS API calls by action, outcome and error code",
            m.dts_calls.clone(),
        );
        r.register(
            "dts_call_duration_seconds",
            "DTS API call latency",
            m.dts_latency.clone(),
        );
        r.register(
            "dtsjobs",
            "DtsJobs by phase, as last reconciled by this replica",
            m.jobs_by_phase.clone(),
        );
        m
    }

    /// A metrics set that is not exported (tests, tools).
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }

    pub fn reconciled(&self) {
        self.reconciles.inc();
    }

    pub fn reconcile_failed(&self, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn dts_call(&self, action: &str, outcome: &str, error_code: &str, elapsed: Duration) {
        let labels = CallLabels {
            action: action.to_owned(),
            outcome: outcome.to_owned(),
            error_code: error_code.to_owned(),
        };
        self.dts_calls.get_or_create(&labels).inc();
        self.dts_latency
            .get_or_create(&ActionLabels {
                action: action.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts of DTS calls so far, by (action, outcome): for tests and tools.
    pub fn dts_call_count(&self, action: &str, outcome: &str, error_code: &str) -> u64 {
        let labels = CallLabels {
            action: action.to_owned(),
            outcome: outcome.to_owned(),
            error_code: error_code.to_owned(),
        };
        self.dts_calls.get_or_create(&labels).get()
    }

    /// Records the phase of object `key` and refreshes the by-phase gauge.
    pub fn observe_phase(&self, key: &str, phase: Option<Phase>) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        match phase {
            Some(p) => phases.insert(key.to_owned(), p),
            None => phases.remove(key),
        };
        for p in [
            Phase::Pending,
            Phase::Running,
            Phase::Stopping,
            Phase::Stopped,
            Phase::Failed,
        ] {
            let n = phases.values().filter(|v| **v == p).count();
            self.jobs_by_phase
                .get_or_create(&PhaseLabels {
                    phase: format!("{p:?}"),
                })
                .set(n as i64);
        }
    }

    /// Forgets a deleted object.
    pub fn forget(&self, key: &str) {
        self.observe_phase(key, None);
    }
}
