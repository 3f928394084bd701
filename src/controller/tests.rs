//! Controller scenarios against a mocked Kubernetes API (tower-test, in the
//! style of kube-rs/controller-rs fixtures) and a fake DTS transport.
//!
//! The mock API keeps one DtsJob and its Secrets and answers the requests a
//! reconcile makes (GET, status JSON patch with its resourceVersion precondition,
//! Secret GET, Event POST); any other request fails the test. The fake DTS
//! transport records every call and replays scripted answers in the shapes
//! DTS really uses (crates/dts-api/tests/data/sdk-http-behaviour-observations.json).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use super::act::DtsCaller;
use super::{reconcile, Context, Gate, Settings};
use crate::crd::{DirectionState, DtsJob, DtsJobStatus, Phase};
use crate::metrics::Metrics;
use dts_api::sign::Credentials;
use dts_api::{ClientConfig, DtsClient, HttpRequest, HttpResponse, SignatureVersion, Transport, TransportError};

// ---------- fake DTS ----------

/// One scripted DTS answer.
#[derive(Clone)]
enum Reply {
    Ok,
    Http(u16, Vec<(String, String)>, String),
    Transport(fn() -> TransportError),
    Status(&'static str),
}

#[derive(Clone, Debug)]
struct Call {
    action: String,
    params: BTreeMap<String, String>,
}

#[derive(Default)]
struct FakeDts {
    calls: Mutex<Vec<Call>>,
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    seq: Mutex<u32>,
}

impl FakeDts {
    fn script(&self, action: &str, replies: Vec<Reply>) {
        self.script
            .lock()
            .unwrap()
            .entry(action.into())
            .or_default()
            .extend(replies);
    }
    fn calls(&self, action: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.action == action)
            .cloned()
            .collect()
    }
    fn request_id(&self) -> String {
        let mut s = self.seq.lock().unwrap();
        *s += 1;
        format!("REQ-{:04}", *s)
    }
}

impl Transport for FakeDts {
    fn send(&self, req: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
        let url = url::Url::parse(&req.url).expect("client sends absolute URLs");
        let params: BTreeMap<String, String> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let action = params.get("Action").cloned().unwrap_or_default();
        self.calls.lock().unwrap().push(Call {
            action: action.clone(),
            params: params.clone(),
        });
        let reply = self
            .script
            .lock()
            .unwrap()
            .get_mut(&action)
            .and_then(|q| q.pop_front())
            .unwrap_or(Reply::Ok);
        let rid = self.request_id();
        let result = match reply {
            Reply::Ok if action == "DescribeDtsJobDetail" => Ok(json_response(
                200,
                json!({"RequestId": rid, "Success": true, "HttpStatusCode": 200, "Status": "Synchronizing"}),
            )),
            Reply::Ok => Ok(json_response(
                200,
                json!({"RequestId": rid, "Success": true, "HttpStatusCode": 200}),
            )),
            Reply::Status(s) => Ok(json_response(
                200,
                json!({"RequestId": rid, "Success": true, "HttpStatusCode": 200, "Status": s}),
            )),
            Reply::Http(status, headers, body) => Ok(HttpResponse {
                status,
                headers,
                body: body.replace("$RID", &rid).into_bytes(),
            }),
            Reply::Transport(f) => Err(f()),
        };
        Box::pin(async move { result })
    }
}

fn json_response(status: u16, body: Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), "application/json;charset=utf-8".into())],
        body: body.to_string().into_bytes(),
    }
}

fn business_error(code: &str, message: &str, dynamic: &str) -> Reply {
    Reply::Http(
        200,
        vec![("content-type".into(), "application/json".into())],
        json!({"RequestId": "$RID", "Success": false, "HttpStatusCode": 200, "ErrCode": code,
               "ErrMessage": message, "DynamicMessage": dynamic, "DynamicCode": ""})
        .to_string(),
    )
}

fn throttled() -> Reply {
    Reply::Http(
        400,
        vec![("content-type".into(), "application/json".into())],
        json!({"RequestId": "$RID", "HostId": "dts.aliyuncs.com", "Code": "Throttling.User",
               "Message": "Request was denied due to user flow control.", "Recommend": ""})
        .to_string(),
    )
}

// ---------- mocked Kubernetes API ----------

struct ApiState {
    job: Value,
    resource_version: u64,
    secrets: HashMap<String, Secret>,
    status_writes: Vec<Value>,
    events: Vec<Value>,
    unexpected: Vec<String>,
}

struct Harness {
    ctx: Arc<Context>,
    dts: Arc<FakeDts>,
    api: Arc<Mutex<ApiState>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
        let unexpected = self.api.lock().map(|s| s.unexpected.clone()).unwrap_or_default();
        if !std::thread::panicking() {
            assert!(
                unexpected.is_empty(),
                "unexpected Kubernetes API requests: {unexpected:?}"
            );
        }
    }
}

/// The mocked DtsJob's UID (the backoff key).
const UID: &str = "uid-1";

fn job_json(spec: Value) -> Value {
    json!({
        "apiVersion": "kubedts.io/v1alpha1",
        "kind": "DtsJob",
        "metadata": {"name": "orders", "namespace": "ns", "uid": "uid-1", "generation": 1, "resourceVersion": "1"},
        "spec": spec,
    })
}

fn status_response(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

async fn serve(state: Arc<Mutex<ApiState>>, mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>) {
    while let Some((req, send)) = handle.next_request().await {
        let (parts, body) = req.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let path = parts.uri.path().to_owned();
        let method = parts.method.clone();
        let response = {
            let mut s = state.lock().unwrap();
            match (method.as_str(), path.as_str()) {
                ("GET", "/apis/kubedts.io/v1alpha1/namespaces/ns/dtsjobs/orders") => ok(&s.job),
                ("PATCH", "/apis/kubedts.io/v1alpha1/namespaces/ns/dtsjobs/orders/status") => {
                    assert_eq!(
                        parts.headers.get("content-type").and_then(|v| v.to_str().ok()),
                        Some("application/json-patch+json"),
                        "status is written by a JSON patch"
                    );
                    assert_eq!(
                        parts.uri.query().map(|q| q.contains("fieldManager=dts-operator")),
                        Some(true),
                        "with our field manager"
                    );
                    let ops: Value = serde_json::from_slice(&bytes).expect("status patch is JSON");
                    // A resourceVersion the patch sets is its precondition:
                    // kube-apiserver compares it with the stored one.
                    let precondition = ops
                        .as_array()
                        .and_then(|ops| ops.iter().find(|o| o["path"] == "/metadata/resourceVersion"))
                        .and_then(|o| o["value"].as_str())
                        .map(str::to_owned);
                    if precondition
                        .as_ref()
                        .is_some_and(|rv| *rv != s.resource_version.to_string())
                    {
                        status_response(409, "Conflict", "the object has been modified")
                    } else {
                        // Applied for real to the stored object.
                        let patch: json_patch::Patch = serde_json::from_value(ops).expect("a JSON patch");
                        let mut patched = s.job.clone();
                        json_patch::patch(&mut patched, &patch).expect("the patch applies");
                        s.resource_version += 1;
                        s.job["status"] = patched["status"].clone();
                        s.job["metadata"]["resourceVersion"] = json!(s.resource_version.to_string());
                        s.status_writes.push(json!({
                            "metadata": {"resourceVersion": precondition},
                            "status": patched["status"],
                        }));
                        ok(&s.job)
                    }
                }
                ("GET", p) if p.starts_with("/api/v1/namespaces/ns/secrets/") => {
                    let name = p.rsplit('/').next().unwrap_or_default();
                    match s.secrets.get(name) {
                        Some(secret) => ok(&serde_json::to_value(secret).unwrap()),
                        None => status_response(404, "NotFound", &format!("secrets \"{name}\" not found")),
                    }
                }
                ("POST", "/apis/events.k8s.io/v1/namespaces/ns/events") => {
                    let ev: Value = serde_json::from_slice(&bytes).unwrap();
                    s.events.push(ev.clone());
                    ok(&ev)
                }
                ("PATCH", p) if p.starts_with("/apis/events.k8s.io/v1/namespaces/ns/events/") => {
                    let ev: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    s.events.push(ev.clone());
                    ok(&ev)
                }
                (m, p) => {
                    // Answer rather than panic, so the reconcile ends; the
                    // harness fails the test on Drop.
                    s.unexpected.push(format!("{m} {p}"));
                    status_response(500, "InternalError", "unexpected request in this scenario")
                }
            }
        };
        send.send_response(response);
    }
}

fn harness(spec: Value) -> Harness {
    harness_with_gate(spec, Arc::new(|| true))
}

/// A harness whose "holds the Lease" gate is `gate`.
fn harness_with_gate(spec: Value, gate: Gate) -> Harness {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let state = Arc::new(Mutex::new(ApiState {
        job: job_json(spec),
        resource_version: 1,
        secrets: HashMap::new(),
        status_writes: Vec::new(),
        events: Vec::new(),
        unexpected: Vec::new(),
    }));
    let server = tokio::spawn(serve(state.clone(), handle));
    let dts = Arc::new(FakeDts::default());
    let metrics = Arc::new(Metrics::unregistered());
    let config = ClientConfig {
        endpoint_override: Some("http://127.0.0.1:9".parse().unwrap()),
        signature_version: SignatureVersion::HmacSha1,
        timeout: Duration::from_secs(5),
    };
    let client_dts = DtsClient::with_transport(config, dts.clone());
    let settings = Settings {
        circuit_failure_threshold: 5,
        circuit_cooloff: Duration::from_secs(30),
        rate_limit: std::num::NonZeroU32::new(1000).unwrap(),
        max_concurrency: 16,
        retry_base_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(100),
        write_timeout: Duration::from_secs(5),
        identity: None,
    };
    let ctx = Arc::new(Context::new(
        client,
        client_dts,
        Some(Credentials::new("LTAIdefault", "default-secret-value")),
        settings,
        metrics,
        gate,
    ));
    Harness {
        ctx,
        dts,
        api: state,
        server,
    }
}

impl Harness {
    fn job(&self) -> DtsJob {
        serde_json::from_value(self.api.lock().unwrap().job.clone()).unwrap()
    }
    fn status(&self) -> DtsJobStatus {
        self.job().status.unwrap_or_default()
    }
    async fn reconcile(&self) -> crate::runner::Action {
        // A bounded wait: a reconcile stuck on the mock fails instead of hanging.
        let action = tokio::time::timeout(
            Duration::from_secs(30),
            reconcile(Arc::new(self.job().into()), self.ctx.clone()),
        )
        .await
        .expect("reconcile finishes")
        .expect("reconcile succeeds");
        // Its Events are written in the background: wait for them.
        assert!(self.ctx.events.flush(Duration::from_secs(30)).await, "Events written");
        action
    }
    fn set_spec(&self, f: impl FnOnce(&mut Value)) {
        let mut s = self.api.lock().unwrap();
        f(&mut s.job["spec"]);
        let g = s.job["metadata"]["generation"].as_i64().unwrap() + 1;
        s.job["metadata"]["generation"] = json!(g);
        s.resource_version += 1;
        let rv = s.resource_version.to_string();
        s.job["metadata"]["resourceVersion"] = json!(rv);
    }
    fn writes(&self) -> usize {
        self.api.lock().unwrap().status_writes.len()
    }
    fn events(&self) -> Vec<Value> {
        self.api.lock().unwrap().events.clone()
    }
    fn direction(&self, d: &str) -> crate::crd::DirectionStatus {
        self.status()
            .directions
            .into_iter()
            .find(|r| r.direction.as_str() == d)
            .expect("direction recorded")
    }
}

fn two_way_stopped() -> Value {
    json!({"jobId": "dtsjob2way", "instanceId": "dtsinst2way", "regionId": "cn-hangzhou",
           "directions": ["Forward", "Reverse"], "desiredState": "Stopped"})
}

// ---------- scenarios ----------

#[tokio::test]
async fn stop_is_sent_once_per_direction_with_the_job_parameters() {
    let h = harness(two_way_stopped());
    h.reconcile().await;
    let stops = h.dts.calls("StopDtsJob");
    assert_eq!(stops.len(), 2, "one StopDtsJob per listed direction");
    let dirs: Vec<_> = stops
        .iter()
        .map(|c| c.params["SynchronizationDirection"].clone())
        .collect();
    assert_eq!(dirs, ["Forward", "Reverse"]);
    for c in &stops {
        assert_eq!(c.params["DtsJobId"], "dtsjob2way");
        assert_eq!(c.params["DtsInstanceId"], "dtsinst2way");
        assert_eq!(c.params["RegionId"], "cn-hangzhou");
    }
    let s = h.status();
    assert_eq!(s.phase, Some(Phase::Stopped));
    assert_eq!(s.observed_generation, Some(1));
    for (d, call_index) in [("Forward", 0), ("Reverse", 1)] {
        let r = h.direction(d);
        assert_eq!(r.state, DirectionState::Stopped);
        assert_eq!(r.attempts, 1);
        assert_eq!(r.http_status_code, Some(200));
        assert_eq!(
            r.request_id.as_deref(),
            Some(format!("REQ-{:04}", call_index + 1).as_str())
        );
    }
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str(), ready.observed_generation),
        ("True", "Stopped", Some(1))
    );
    // Stopping was written first, conditional on the resourceVersion read.
    let first = h.api.lock().unwrap().status_writes[0].clone();
    assert_eq!(first["metadata"]["resourceVersion"], "1");
    assert_eq!(first["status"]["directions"][0]["state"], "Stopping");
    let events = h.events();
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "Stopped" && e["note"].as_str().unwrap().contains("REQ-0001")),
        "{events:?}"
    );
}

#[tokio::test]
async fn no_call_when_desired_state_is_running_or_unset() {
    for desired in [Some("Running"), None] {
        let mut spec = json!({"jobId": "j1", "regionId": "cn-hangzhou"});
        if let Some(d) = desired {
            spec["desiredState"] = json!(d);
        }
        let h = harness(spec);
        h.reconcile().await;
        assert!(
            h.dts.calls.lock().unwrap().is_empty(),
            "no DTS call for desiredState {desired:?}"
        );
        let s = h.status();
        assert_eq!(s.observed_generation, Some(1));
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "ObserveOnly"));
        // A second reconcile finds nothing new: no write.
        let writes = h.writes();
        h.reconcile().await;
        assert_eq!(h.writes(), writes, "a reconcile that changes nothing writes nothing");
    }
}

#[tokio::test]
async fn no_second_call_after_success() {
    let h = harness(two_way_stopped());
    h.reconcile().await;
    assert_eq!(h.dts.calls("StopDtsJob").len(), 2);
    let writes = h.writes();
    h.reconcile().await;
    h.reconcile().await;
    assert_eq!(
        h.dts.calls("StopDtsJob").len(),
        2,
        "a stopped direction is never called again"
    );
    assert!(h.dts.calls("DescribeDtsJobDetail").is_empty());
    assert_eq!(h.writes(), writes, "nothing changed, nothing written");
}

#[tokio::test]
async fn retry_then_success() {
    let h = harness(json!({"jobId": "j1", "regionId": "cn-hangzhou", "desiredState": "Stopped"}));
    h.dts.script("StopDtsJob", vec![throttled(), throttled()]);
    let first = h.reconcile().await;
    assert_ne!(first, crate::runner::Action::await_change(), "a retry is scheduled");
    let r = h.direction("Forward");
    assert_eq!(r.state, DirectionState::Pending);
    assert_eq!(r.error_code.as_deref(), Some("Throttling.User"));
    for _ in 0..2 {
        while let Some(wait) = h.ctx.backoff.remaining(UID, None) {
            tokio::time::sleep(wait).await;
        }
        h.reconcile().await;
    }
    let r = h.direction("Forward");
    assert_eq!(r.state, DirectionState::Stopped);
    assert_eq!(r.attempts, 3);
    assert_eq!(r.error_code, None, "the success clears the earlier error");
    assert_eq!(h.dts.calls("StopDtsJob").len(), 3);
}

#[tokio::test]
async fn a_retry_is_not_sent_before_its_backoff() {
    let h = harness(json!({"jobId": "j1", "regionId": "cn-hangzhou", "desiredState": "Stopped"}));
    h.dts.script("StopDtsJob", vec![throttled()]);
    h.reconcile().await;
    // As if DTS had asked for a minute (x-acs-retry-after): some other
    // trigger (a Secret touch) arriving meanwhile makes no call.
    h.ctx.backoff.failed(UID, Some(Duration::from_secs(60)), None);
    h.reconcile().await;
    assert_eq!(h.dts.calls("StopDtsJob").len(), 1);
}

#[tokio::test]
async fn terminal_error_is_not_retried_until_the_spec_changes() {
    let h = harness(json!({"jobId": "j1", "regionId": "cn-hangzhou", "desiredState": "Stopped"}));
    h.dts.script(
        "StopDtsJob",
        vec![business_error(
            "Forbidden.InstanceNotFound",
            "The instance %s is not found.",
            "j1",
        )],
    );
    h.dts.script("DescribeDtsJobDetail", vec![Reply::Status("NotStarted")]);
    let action = h.reconcile().await;
    assert_eq!(action.requeue_after(), None, "settled: waits for a change");
    assert!(action.wrote().is_some(), "the failure was written");
    let r = h.direction("Forward");
    assert_eq!(r.state, DirectionState::Failed);
    assert_eq!(r.error_message.as_deref(), Some("The instance j1 is not found."));
    h.reconcile().await;
    h.reconcile().await;
    assert_eq!(
        h.dts.calls("StopDtsJob").len(),
        1,
        "terminal: no retry while inputs are unchanged"
    );
    let stalled = h
        .status()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "JobNotFound")
    );
    assert!(
        h.events()
            .iter()
            .any(|e| e["type"] == "Warning" && e["reason"] == "JobNotFound"),
        "the Warning Event has the Stalled condition's reason: {:?}",
        h.events()
    );

    h.set_spec(|s| s["instanceId"] = json!("dtsinst1"));
    h.reconcile().await;
    assert_eq!(h.dts.calls("StopDtsJob").len(), 2, "a spec change is a new stop intent");
    assert_eq!(h.direction("Forward").state, DirectionState::Stopped);
}

#[tokio::test]
async fn reverse_on_one_way_job_records_rendered_error() {
    let h = harness(
        json!({"jobId": "j1", "regionId": "cn-hangzhou", "directions": ["Reverse"], "desiredState": "Stopped"}),
    );
    h.dts.script(
        "StopDtsJob",
        vec![business_error(
            "InvalidParameter",
            "The Value of Input Parameter %s is not valid.",
            "SynchronizationDirection",
        )],
    );
    h.reconcile().await;
    let r = h.direction("Reverse");
    assert_eq!(r.state, DirectionState::Failed);
    assert_eq!(r.error_code.as_deref(), Some("InvalidParameter"));
    assert_eq!(
        r.error_message.as_deref(),
        Some("The Value of Input Parameter SynchronizationDirection is not valid.")
    );
    assert_eq!(r.dynamic_message.as_deref(), Some("SynchronizationDirection"));
    assert_eq!(r.http_status_code, Some(200));
    let s = h.status();
    assert_eq!(s.phase, Some(Phase::Failed));
    let stalled = s.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(stalled.reason, "InvalidParameter");
    assert_eq!(
        stalled.message,
        format!(
            "Reverse: The Value of Input Parameter SynchronizationDirection is not valid. (RequestId {})",
            r.request_id.clone().unwrap()
        )
    );
}

#[tokio::test]
async fn ambiguous_failure_leads_to_a_describe_not_a_second_stop() {
    let h = harness(json!({"jobId": "j1", "regionId": "cn-hangzhou", "desiredState": "Stopped"}));
    h.dts
        .script("StopDtsJob", vec![Reply::Transport(|| TransportError::Timeout)]);
    h.dts.script("DescribeDtsJobDetail", vec![Reply::Status("Finished")]);
    h.reconcile().await;
    assert_eq!(
        h.direction("Forward").state,
        DirectionState::Stopping,
        "outcome unknown: stays Stopping"
    );
    while let Some(wait) = h.ctx.backoff.remaining(UID, None) {
        tokio::time::sleep(wait).await;
    }
    h.reconcile().await;
    assert_eq!(h.dts.calls("StopDtsJob").len(), 1, "no blind second stop");
    let describes = h.dts.calls("DescribeDtsJobDetail");
    assert_eq!(describes.len(), 1);
    assert_eq!(describes[0].params["DtsJobId"], "j1");
    assert_eq!(describes[0].params["SynchronizationDirection"], "Forward");
    assert_eq!(h.direction("Forward").state, DirectionState::Stopped);
    assert_eq!(h.status().phase, Some(Phase::Stopped));
}

#[tokio::test]
async fn stopping_direction_is_described_before_any_new_call() {
    // As after a crash between the call and the status write.
    let h =
        harness(json!({"jobId": "j1", "instanceId": "inst1", "regionId": "cn-hangzhou", "desiredState": "Stopped"}));
    {
        let mut s = h.api.lock().unwrap();
        s.job["status"] = json!({"observedGeneration": 1, "directions": [
            {"direction": "Forward", "state": "Stopping", "jobId": "j1", "attempts": 1}]});
    }
    h.dts
        .script("DescribeDtsJobDetail", vec![Reply::Status("Synchronizing")]);
    h.reconcile().await;
    {
        let calls = h.dts.calls.lock().unwrap();
        assert_eq!(calls[0].action, "DescribeDtsJobDetail", "look before calling again");
        assert_eq!(
            calls[0].params["DtsInstanceID"], "inst1",
            "DescribeDtsJobDetail spells it DtsInstanceID"
        );
        assert_eq!(calls.len(), 1, "no stop in the same pass: it is marked Stopping first");
    }
    h.reconcile().await;
    assert_eq!(h.dts.calls("StopDtsJob").len(), 1);
    let r = h.direction("Forward");
    assert_eq!(r.state, DirectionState::Stopped);
    assert_eq!(r.attempts, 2);
}

#[tokio::test]
async fn a_conflicting_write_prevents_the_call() {
    let h = harness(json!({"jobId": "j1", "regionId": "cn-hangzhou", "desiredState": "Stopped"}));
    // Somebody else wrote after our read: the apply precondition fails.
    let job = h.job();
    h.api.lock().unwrap().resource_version += 1;
    let mut stale = job.clone();
    stale.metadata.resource_version = Some("1".into());
    // The fresh GET returns resourceVersion "1" in the body but the server is at 2.
    reconcile(Arc::new(stale.into()), h.ctx.clone()).await.unwrap();
    assert!(
        h.dts.calls("StopDtsJob").is_empty(),
        "no call unless Stopping was recorded first"
    );
}

#[tokio::test]
async fn missing_secret_is_a_clear_condition_and_no_call() {
    let h = harness(
        json!({"jobId": "j1", "regionId": "cn-hangzhou", "desiredState": "Stopped",
                           "credentialsSecretRef": {"name": "aliyun"}}),
    );
    h.reconcile().await;
    assert!(h.dts.calls.lock().unwrap().is_empty());
    let s = h.status();
    assert_eq!(s.phase, Some(Phase::Pending));
    let stalled = s.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(stalled.reason, "CredentialsSecretNotFound");
    assert!(stalled.message.contains("aliyun"));

    // Fixing the Secret lets the stop through, signed with its credentials.
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "aliyun", "namespace": "ns", "resourceVersion": "77"},
        "data": {"accessKeyId": "TFRBSXNlY3JldA==", "accessKeySecret": "c3VwZXItc2VjcmV0LXZhbHVl"}}),
    )
    .unwrap();
    h.api.lock().unwrap().secrets.insert("aliyun".into(), secret);
    h.reconcile().await;
    let stops = h.dts.calls("StopDtsJob");
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].params["AccessKeyId"], "LTAIsecret");
    // The secret value appears nowhere in status or Events.
    let job = h.api.lock().unwrap().job.clone();
    let all = format!("{job}{:?}", h.events());
    assert!(!all.contains("super-secret-value"));
}

#[tokio::test]
async fn a_replica_without_the_lease_neither_calls_nor_writes() {
    let h = harness_with_gate(two_way_stopped(), Arc::new(|| false));
    h.reconcile().await;
    assert!(h.dts.calls.lock().unwrap().is_empty(), "no DTS call without the Lease");
    assert_eq!(h.writes(), 0, "no status write without the Lease");
    assert!(h.events().is_empty());
}

#[tokio::test]
async fn losing_the_lease_after_the_stopping_mark_stops_before_the_call() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The gate is asked on entry and before the Stopping write; the Lease is
    // lost right after that, before any DTS call.
    let checks = Arc::new(AtomicUsize::new(0));
    let gate = {
        let checks = checks.clone();
        Arc::new(move || checks.fetch_add(1, Ordering::SeqCst) < 2)
    };
    let h = harness_with_gate(two_way_stopped(), gate);
    h.reconcile().await;
    assert!(
        checks.load(Ordering::SeqCst) >= 3,
        "the gate was asked again before calling"
    );
    assert!(
        h.dts.calls.lock().unwrap().is_empty(),
        "no DTS call once the Lease is lost"
    );
    assert_eq!(h.writes(), 1, "only the Stopping mark was written");
    assert_eq!(
        h.direction("Forward").state,
        DirectionState::Stopping,
        "the next leader describes first"
    );
}

#[tokio::test]
async fn a_call_waiting_for_the_rate_limit_is_not_sent_once_the_lease_is_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dts = Arc::new(FakeDts::default());
    let config = ClientConfig {
        endpoint_override: Some("http://127.0.0.1:9".parse().unwrap()),
        signature_version: SignatureVersion::HmacSha1,
        timeout: Duration::from_secs(5),
    };
    let leading = Arc::new(AtomicBool::new(true));
    let gate: Gate = {
        let leading = leading.clone();
        Arc::new(move || leading.load(Ordering::SeqCst))
    };
    // One call per second: the second waits about a second for its turn.
    let metrics = Arc::new(Metrics::unregistered());
    let limits = crate::limits::Limits::new(
        crate::limits::LimitsConfig {
            rate: std::num::NonZeroU32::MIN,
            max_concurrency: 16,
            failure_threshold: 5,
            cooloff: Duration::from_secs(30),
        },
        metrics.clone(),
    );
    let caller = DtsCaller::new(
        DtsClient::with_transport(config, dts.clone()),
        Arc::new(limits),
        metrics,
        gate,
    );
    let creds = Credentials::new("LTAIdefault", "default-secret-value");
    let job = |d: &str| dts_api::JobRef {
        job_id: "dtsjob1".into(),
        instance_id: None,
        region_id: "cn-hangzhou".into(),
        direction: Some(d.into()),
    };
    let first = caller.stop(&creds, &job("Forward")).await;
    assert!(matches!(first, Ok(Ok(_))), "the leader's first call is sent");

    let reverse = job("Reverse");
    let second = caller.stop(&creds, &reverse);
    let lose = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        leading.store(false, Ordering::SeqCst);
    };
    let (second, ()) = tokio::join!(second, lose);
    assert_eq!(
        second.err(),
        Some(crate::controller::act::NotSent::LeaseLost),
        "a call queued behind the limit is dropped once the Lease is lost"
    );
    let stops = dts.calls("StopDtsJob");
    assert_eq!(
        stops.len(),
        1,
        "only the call made while leading reached DTS: {stops:?}"
    );
    assert_eq!(stops[0].params["SynchronizationDirection"], "Forward");
}

impl Harness {
    /// Sets an annotation, as `kubectl annotate --overwrite` does (a new
    /// resourceVersion, the same generation).
    fn annotate(&self, key: &str, value: &str) {
        let mut s = self.api.lock().unwrap();
        s.job["metadata"]["annotations"][key] = json!(value);
        s.resource_version += 1;
        let rv = s.resource_version.to_string();
        s.job["metadata"]["resourceVersion"] = json!(rv);
    }
}

#[tokio::test]
async fn a_paused_job_gets_one_paused_condition_and_nothing_else() {
    let h = harness(two_way_stopped());
    h.annotate(crate::crd::PAUSED, "true");
    h.reconcile().await;
    assert!(h.dts.calls.lock().unwrap().is_empty(), "no DTS call while paused");
    assert_eq!(h.writes(), 1, "the Paused condition is the one write");
    let paused = h.status().conditions.into_iter().find(|c| c.type_ == "Paused").unwrap();
    assert_eq!((paused.status.as_str(), paused.reason.as_str()), ("True", "Paused"));
    assert!(h.status().directions.is_empty(), "nothing else changed");
    // The operator saw the annotation (the condition above); now, nothing.
    h.reconcile().await;
    h.reconcile().await;
    assert_eq!(h.writes(), 1, "no further write while paused");
    assert!(h.dts.calls.lock().unwrap().is_empty());

    // Unpaused: the stop goes ahead and the condition goes away.
    h.annotate(crate::crd::PAUSED, "false");
    h.reconcile().await;
    assert_eq!(h.dts.calls("StopDtsJob").len(), 2);
    assert!(h.status().conditions.iter().all(|c| c.type_ != "Paused"));
    assert_eq!(h.status().phase, Some(Phase::Stopped));
}

#[tokio::test]
async fn a_new_reconcile_request_cuts_the_backoff_short() {
    let h = harness(json!({"jobId": "j1", "regionId": "cn-hangzhou", "desiredState": "Stopped"}));
    h.dts.script("StopDtsJob", vec![throttled()]);
    h.reconcile().await;
    // As if DTS had asked for a minute.
    h.ctx.backoff.failed(UID, Some(Duration::from_secs(60)), None);
    h.reconcile().await;
    assert_eq!(h.dts.calls("StopDtsJob").len(), 1, "the retry waits");
    h.annotate(crate::crd::RECONCILE_REQUESTED_AT, "2026-12-01T00:00:00Z");
    h.reconcile().await;
    assert_eq!(h.dts.calls("StopDtsJob").len(), 2, "a new request does not wait");
    assert_eq!(h.direction("Forward").state, DirectionState::Stopped);
}

#[tokio::test]
async fn the_history_keeps_every_request_id_across_retries() {
    let h = harness(json!({"jobId": "j1", "regionId": "cn-hangzhou", "desiredState": "Stopped"}));
    h.dts.script("StopDtsJob", vec![throttled()]);
    h.reconcile().await;
    while let Some(wait) = h.ctx.backoff.remaining(UID, None) {
        tokio::time::sleep(wait).await;
    }
    h.reconcile().await;
    let history = h.status().history;
    let seen: Vec<_> = history
        .iter()
        .map(|c| {
            (
                c.action.as_str(),
                c.outcome.as_str(),
                c.code.as_deref(),
                c.request_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("StopDtsJob", "retryable", Some("Throttling.User"), Some("REQ-0001")),
            ("StopDtsJob", "success", None, Some("REQ-0002")),
        ],
        "{history:#?}"
    );
    // The direction shows only the last answer; the history has both.
    assert_eq!(h.direction("Forward").request_id.as_deref(), Some("REQ-0002"));
}

/// Opens the breaker of `creds` in cn-hangzhou, as the answers of other
/// DtsJobs' calls would (the harness's threshold is 5).
async fn trip_the_breaker(ctx: &Context, creds: &Credentials, code: &str) {
    let e = dts_api::DtsError {
        kind: dts_api::ErrorKind::Api,
        http_status: Some(404),
        code: Some(code.into()),
        ..dts_api::DtsError::invalid_request("")
    };
    for _ in 0..5 {
        let pass = ctx.dts.limits().acquire(creds, "cn-hangzhou", true).await.unwrap();
        ctx.dts.limits().answered(pass, &Err::<(), _>(e.clone()));
    }
}

fn secret(version: &str, secret_b64: &str) -> Secret {
    serde_json::from_value(
        json!({"metadata": {"name": "aliyun", "namespace": "ns", "resourceVersion": version},
        "data": {"accessKeyId": "TFRBSXNlY3JldA==", "accessKeySecret": secret_b64}}),
    )
    .unwrap()
}

#[tokio::test]
async fn an_open_circuit_holds_the_job_without_a_call_until_the_secret_is_fixed() {
    let h = harness(
        json!({"jobId": "j1", "regionId": "cn-hangzhou", "desiredState": "Stopped",
                           "credentialsSecretRef": {"name": "aliyun"}}),
    );
    // super-secret-value: refused by DTS for other DtsJobs already.
    h.api
        .lock()
        .unwrap()
        .secrets
        .insert("aliyun".into(), secret("77", "c3VwZXItc2VjcmV0LXZhbHVl"));
    let wrong = Credentials::new("LTAIsecret", "super-secret-value");
    trip_the_breaker(&h.ctx, &wrong, "SignatureDoesNotMatch").await;

    let action = h.reconcile().await;
    assert!(
        h.dts.calls.lock().unwrap().is_empty(),
        "no call while the circuit is open"
    );
    assert_eq!(h.writes(), 1, "one status write, no Stopping mark");
    let s = h.status();
    assert_eq!(s.phase, Some(Phase::Pending));
    let stalled = s.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "CircuitOpen")
    );
    assert!(stalled.message.contains("SignatureDoesNotMatch") && stalled.message.contains("Secret aliyun"));
    assert!(!stalled.message.contains("LTAIsecret"), "the key is named by its hash");
    let requeue = format!("{action:?}");
    assert!(
        requeue.contains("requeue_after: Some(") && !requeue.contains("requeue_after: Some(0ns)"),
        "{requeue}"
    );
    let warnings = h.events().into_iter().filter(|e| e["reason"] == "CircuitOpen").count();
    assert_eq!(warnings, 1);

    // Looked at again: still open, nothing written, no new Event.
    h.reconcile().await;
    assert_eq!(h.writes(), 1);
    assert!(h.dts.calls.lock().unwrap().is_empty());

    // The same AccessKeyId with the fixed secret: closed at once, one stop.
    h.api
        .lock()
        .unwrap()
        .secrets
        .insert("aliyun".into(), secret("78", "Zml4ZWQtc2VjcmV0LXZhbHVl"));
    h.reconcile().await;
    let stops = h.dts.calls("StopDtsJob");
    assert_eq!(stops.len(), 1);
    assert_eq!(h.status().phase, Some(Phase::Stopped));
    let closed = h
        .events()
        .into_iter()
        .filter(|e| e["reason"] == "CircuitClosed")
        .count();
    assert_eq!(closed, 1, "{:?}", h.events());
    let job = h.api.lock().unwrap().job.clone();
    let all = format!("{job}{:?}", h.events());
    assert!(!all.contains("super-secret-value") && !all.contains("fixed-secret-value"));
}

#[tokio::test]
async fn the_call_that_opens_the_circuit_holds_its_job_instead_of_failing_it() {
    let h = harness(json!({"jobId": "j1", "regionId": "cn-hangzhou", "desiredState": "Stopped"}));
    let creds = Credentials::new("LTAIdefault", "default-secret-value");
    // Four failures of other jobs; this job's is the fifth.
    let e = dts_api::DtsError {
        kind: dts_api::ErrorKind::Api,
        http_status: Some(404),
        code: Some("InvalidAccessKeyId.NotFound".into()),
        ..dts_api::DtsError::invalid_request("")
    };
    for _ in 0..4 {
        let pass = h.ctx.dts.limits().acquire(&creds, "cn-hangzhou", true).await.unwrap();
        h.ctx.dts.limits().answered(pass, &Err::<(), _>(e.clone()));
    }
    h.dts.script(
        "StopDtsJob",
        vec![Reply::Http(
            404,
            vec![("content-type".into(), "application/json".into())],
            json!({"RequestId": "$RID", "HostId": "dts.aliyuncs.com", "Code": "InvalidAccessKeyId.NotFound",
                   "Message": "Specified access key is not found."})
            .to_string(),
        )],
    );
    h.reconcile().await;
    assert_eq!(h.dts.calls("StopDtsJob").len(), 1);
    let r = h.direction("Forward");
    assert_eq!(r.state, DirectionState::Pending, "held by the circuit, not Failed");
    assert_eq!(r.error_code.as_deref(), Some("InvalidAccessKeyId.NotFound"));
    let ready = h.status().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "CircuitOpen");
    // Again: held, no call.
    h.reconcile().await;
    assert_eq!(h.dts.calls("StopDtsJob").len(), 1);
}
