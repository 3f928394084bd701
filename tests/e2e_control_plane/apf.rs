//! 429s on demand: an API Priority and Fairness priority level that
//! throttles one ServiceAccount's DtsJob status writes (applied with
//! kubectl through `support::helm::run_tool`).

use std::process::Command;

use crate::support::{self, TestNamespace};

/// A FlowSchema + PriorityLevelConfiguration pair (cluster-scoped), deleted
/// again when dropped so that no later test runs under it.
pub struct ApfThrottle {
    /// The name of both objects, also the priority level's in metrics.
    pub name: String,
}

impl Drop for ApfThrottle {
    fn drop(&mut self) {
        let out = Command::new(support::tool("kubectl"))
            .args([
                "delete",
                "--ignore-not-found",
                "flowschema,prioritylevelconfiguration",
                &self.name,
            ])
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("deleting the APF objects {} failed: {out:?}", self.name);
        }
    }
}

/// Throttles the status PATCHes of ServiceAccount `namespace/sa` on DtsJobs
/// in `watched` to the smallest priority level the API server allows (one
/// concurrency share, nothing lent or borrowed, no queue: what does not fit
/// is rejected with 429 at once). Everything else that user sends (watches,
/// lists, Events) keeps its normal priority.
pub async fn throttle_status_writes(ns: &TestNamespace, namespace: &str, sa: &str, watched: &str) -> ApfThrottle {
    let name = format!("dts-e2e-{}", ns.name);
    let yaml = format!(
        "apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {{name: {name}}}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 1
    lendablePercent: 0
    borrowingLimitPercent: 0
    limitResponse: {{type: Reject}}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {{name: {name}}}
spec:
  priorityLevelConfiguration: {{name: {name}}}
  matchingPrecedence: 500
  distinguisherMethod: {{type: ByUser}}
  rules:
  - subjects:
    - kind: ServiceAccount
      serviceAccount: {{name: {sa}, namespace: {namespace}}}
    resourceRules:
    - verbs: [patch, update]
      apiGroups: [kubedts.io]
      resources: [dtsjobs/status]
      namespaces: [{watched}]
"
    );
    let guard = ApfThrottle { name };
    support::helm::run_tool(ns, "kubectl", &["apply", "-f", "-"], Some(&yaml)).await;
    guard
}

/// The API server's count of requests APF rejected (429) at `level`.
pub async fn apf_rejected(client: &kube::Client, level: &str) -> f64 {
    apf_metric(client, "apiserver_flowcontrol_rejected_requests_total", level).await
}

/// The concurrency (seats) the API server gives `level`.
pub async fn apf_seats(client: &kube::Client, level: &str) -> f64 {
    apf_metric(client, "apiserver_flowcontrol_nominal_limit_seats", level).await
}

async fn apf_metric(client: &kube::Client, name: &str, level: &str) -> f64 {
    let req = http::Request::get("/metrics").body(Vec::new()).expect("request");
    let text = client.request_text(req).await.expect("the API server's /metrics");
    support::stack::sum_samples(&text, name, &[("priority_level", level)])
}
