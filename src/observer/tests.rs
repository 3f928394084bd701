//! Unit tests of the observer: selection, grouping and chunking (pure), and
//! whole cycles against a fake DTS transport (no cluster: every job here
//! uses the default credentials, so no Secret is read).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::controller::{Context, Settings};
use crate::crd::{Direction, DtsJob, STOP_ON_DELETE_FINALIZER};
use crate::leader::LeaderState;
use crate::metrics::Metrics;
use crate::store::{JobKey, JobStore};
use crate::view::{DirectionView, DtsView};
use dts_api::sign::Credentials;
use dts_api::{ClientConfig, DtsClient, HttpRequest, HttpResponse, SignatureVersion, Transport, TransportError};

fn t(s: &str) -> Time {
    Time(s.parse().unwrap())
}

const NOW: &str = "2026-12-01T00:10:00Z";
const FIVE_MINUTES: Duration = Duration::from_secs(300);

/// A process that has led since long before `NOW`: every job's slot of the
/// interval before `NOW` has come.
fn led_long() -> Schedule {
    Schedule {
        epoch: t("2026-11-30T00:00:00Z"),
    }
}

/// A process that began to lead at `at`.
fn led_from(at: &str) -> Schedule {
    Schedule { epoch: t(at) }
}

fn job(name: &str, job_id: &str, region: &str, secret: Option<&str>, annotations: Value) -> Arc<CachedJob> {
    let mut spec = json!({"jobId": job_id, "regionId": region});
    if let Some(s) = secret {
        spec["credentialsSecretRef"] = json!({"name": s});
    }
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "annotations": annotations},
            "spec": spec
        }))
        .map(|j: DtsJob| j.into())
        .unwrap(),
    )
}

fn plain(name: &str) -> Arc<CachedJob> {
    job(name, &format!("dts{name}"), "cn-hangzhou", None, json!({}))
}

fn read_at(view: &DtsView, job_id: &str, at: &str) {
    view.put(
        "cn-hangzhou",
        job_id,
        Direction::Forward,
        DirectionView {
            status: Some("Synchronizing".into()),
            ..Default::default()
        },
        t(at),
    );
}

fn names(sel: &Selection) -> Vec<String> {
    sel.due.iter().map(|d| d.object.name().to_owned()).collect()
}

#[test]
fn poll_intervals_parse_with_units_and_zero_is_off() {
    let with = |v: &str| {
        poll_interval(
            job("a", "j", "cn-hangzhou", None, json!({POLL_INTERVAL: v})).annotations(),
            FIVE_MINUTES,
        )
    };
    assert_eq!(with("30s"), PollInterval::Every(Duration::from_secs(30)));
    assert_eq!(with("5m"), PollInterval::Every(FIVE_MINUTES));
    assert_eq!(with("1h"), PollInterval::Every(Duration::from_secs(3600)));
    assert_eq!(with("500ms"), PollInterval::Every(Duration::from_millis(500)));
    assert_eq!(with("0"), PollInterval::Off);
    assert_eq!(with("0s"), PollInterval::Off);
    assert_eq!(with("soon"), PollInterval::Unparsable("soon".into()));
    assert_eq!(with(""), PollInterval::Unparsable("".into()));
    assert_eq!(
        poll_interval(plain("a").annotations(), FIVE_MINUTES),
        PollInterval::Every(FIVE_MINUTES),
        "no annotation: the flag"
    );
}

/// `plain(name)` with one Forward record in status.
fn recorded(name: &str, state: &str, dts_status: &str, observed_at: &str) -> Arc<CachedJob> {
    let mut j: DtsJob = plain(name).job().unwrap();
    j.status = Some(
        serde_json::from_value(json!({"directions": [{
            "direction": "Forward", "state": state, "jobId": format!("dts{name}"),
            "observed": {"status": dts_status, "observedAt": observed_at}
        }]}))
        .unwrap(),
    );
    Arc::new(j.into())
}

#[test]
fn a_restart_reads_at_once_only_what_was_never_read_and_the_rest_at_their_slots() {
    let view = DtsView::default();
    let jobs = vec![
        recorded("recent", "Pending", "Synchronizing", "2026-12-01T00:08:00Z"),
        recorded("stale", "Pending", "Synchronizing", "2026-12-01T00:04:00Z"),
        plain("never"),
    ];
    let start = led_from(NOW);
    let sel = select_due(&jobs, &view, &t(NOW), &start, FIVE_MINUTES);
    assert_eq!(names(&sel), ["never"], "observed jobs wait for their slot");
    let next = sel.next.expect("a next slot");
    assert!(next.0 > t(NOW).0, "the first slot comes after the start, never at it");
    assert!(next.0 <= t("2026-12-01T00:15:00Z").0);
    // One interval after the start, every slot has come once.
    let sel = select_due(&jobs, &view, &t("2026-12-01T00:15:00Z"), &start, FIVE_MINUTES);
    assert_eq!(names(&sel), ["recent", "stale", "never"]);
}

/// `n` jobs whose status shows them observed at `observed_at`.
fn observed_fleet(n: usize, observed_at: &str) -> Vec<Arc<CachedJob>> {
    (0..n)
        .map(|i| recorded(&format!("j{i:04}"), "Pending", "Synchronizing", observed_at))
        .collect()
}

#[test]
fn an_observed_fleet_is_read_once_per_interval_spread_over_its_slots() {
    let view = DtsView::default();
    let jobs = observed_fleet(1000, "2026-12-01T00:00:00Z");
    let start = led_from(NOW);
    let epoch = t(NOW).0;
    let mut reads: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_cycle = Vec::new();
    // Cycles as the observer runs them: each at the next slot it was given,
    // two intervals long; every due job is read (stored in the view).
    let mut at = epoch;
    let end = epoch + jiff::SignedDuration::from_secs(600);
    while at <= end {
        let sel = select_due(&jobs, &view, &Time(at), &start, FIVE_MINUTES);
        for d in &sel.due {
            *reads.entry(d.job_id.clone()).or_default() += 1;
            read_at(&view, &d.job_id, &Time(at).0.to_string());
        }
        per_cycle.push(sel.due.len());
        let next = sel.next.expect("jobs are polled").0;
        assert!(next > at, "the next slot is after now");
        assert!(
            next.duration_since(at) <= jiff::SignedDuration::from_secs(10),
            "slots are 10 s apart"
        );
        at = next;
    }
    assert_eq!(per_cycle[0], 0, "nothing is read at the start");
    assert_eq!(reads.len(), 1000, "every job is read");
    assert!(
        reads.values().all(|n| *n == 2),
        "once in each of the two intervals: {reads:?}"
    );
    let busiest = per_cycle.iter().max().copied().unwrap_or(0);
    assert!(busiest <= 80, "about 1000 / 30 jobs a slot, not a wave: {busiest}");
    assert_eq!(per_cycle.len(), 61, "a cycle every 10 s: {per_cycle:?}");
}

#[test]
fn a_job_first_read_just_before_its_slot_waits_for_the_next() {
    let view = DtsView::default();
    let jobs = vec![plain("new")];
    let start = led_from(NOW);
    // Its first slot, whichever it is: read just before it.
    let slot = select_due(&jobs, &view, &t(NOW), &start, FIVE_MINUTES).next.unwrap();
    let before = Time(slot.0 - jiff::SignedDuration::from_secs(1));
    read_at(&view, "dtsnew", &before.0.to_string());
    let sel = select_due(&jobs, &view, &slot, &start, FIVE_MINUTES);
    assert!(sel.due.is_empty(), "read a second ago");
    let following = sel.next.unwrap();
    assert_eq!(
        following.0.duration_since(slot.0),
        jiff::SignedDuration::from_secs(300),
        "one interval on"
    );
    assert_eq!(
        names(&select_due(&jobs, &view, &following, &start, FIVE_MINUTES)),
        ["new"]
    );
}

#[test]
fn an_interval_shorter_than_a_slot_is_one_slot_of_its_own_length() {
    let slots = Slots::of("cn-hangzhou", "dtsx", Duration::from_secs(2));
    assert_eq!(
        slots,
        Slots {
            phase: 2000,
            interval: 2000
        }
    );
    assert_eq!(slots.last(1999), None);
    assert_eq!(slots.last(2000), Some(2000));
    assert_eq!(slots.last(5999), Some(4000));
    assert_eq!(slots.next(5999), 6000);
    let slots = Slots::of("cn-hangzhou", "dtsx", FIVE_MINUTES);
    assert_eq!(slots.interval, 300_000);
    assert!((10_000..=300_000).contains(&slots.phase) && slots.phase % 10_000 == 0);
}

#[test]
fn a_job_stopped_and_shown_finished_is_not_read_again() {
    let view = DtsView::default();
    let jobs = vec![
        recorded("finished", "Stopped", "Finished", "2026-12-01T00:00:00Z"),
        recorded("stopping", "Stopped", "Synchronizing", "2026-12-01T00:00:00Z"),
        recorded("ended-outside", "Pending", "Finished", "2026-12-01T00:00:00Z"),
    ];
    let sel = select_due(&jobs, &view, &t(NOW), &led_long(), FIVE_MINUTES);
    assert_eq!(
        names(&sel),
        ["stopping", "ended-outside"],
        "read until DTS shows the stop done, and a job finished outside the operator is still reported"
    );
}

#[test]
fn paused_off_and_deleted_jobs_are_left_out() {
    let view = DtsView::default();
    let mut deleting: DtsJob = plain("deleting").job().unwrap();
    deleting.metadata.deletion_timestamp = Some(t("2026-12-01T00:00:00Z"));
    let mut finalized = deleting.clone();
    finalized.metadata.name = Some("finalized".into());
    finalized.metadata.finalizers = Some(vec![STOP_ON_DELETE_FINALIZER.into()]);
    let (deleting, finalized): (CachedJob, CachedJob) = (deleting.into(), finalized.into());
    let jobs = vec![
        plain("plain"),
        job("paused", "dtsp", "cn-hangzhou", None, json!({PAUSED: "true"})),
        job("unpaused", "dtsu", "cn-hangzhou", None, json!({PAUSED: "false"})),
        job("off", "dtso", "cn-hangzhou", None, json!({POLL_INTERVAL: "0"})),
        Arc::new(deleting),
        Arc::new(finalized),
    ];
    let sel = select_due(&jobs, &view, &t(NOW), &led_long(), FIVE_MINUTES);
    assert_eq!(names(&sel), ["plain", "unpaused", "finalized"]);
    assert!(sel.unparsable.is_empty());
}

#[test]
fn a_job_is_due_once_its_own_interval_has_passed_since_its_last_read() {
    let view = DtsView::default();
    read_at(&view, "dtsfresh", "2026-12-01T00:09:00Z"); // 1 min ago
    read_at(&view, "dtsstale", "2026-12-01T00:05:00Z"); // 5 min ago
    read_at(&view, "dtsfast", "2026-12-01T00:09:45Z"); // 15 s ago
    read_at(&view, "dtsslow", "2026-12-01T00:00:00Z"); // 10 min ago
    read_at(&view, "dtsbad", "2026-12-01T00:09:00Z"); // 1 min ago
    read_at(&view, "dtsfuture", "2026-12-01T00:11:00Z"); // clock skew
    let jobs = vec![
        plain("fresh"),
        plain("stale"),
        plain("never"),
        job("fast", "dtsfast", "cn-hangzhou", None, json!({POLL_INTERVAL: "10s"})),
        job("slow", "dtsslow", "cn-hangzhou", None, json!({POLL_INTERVAL: "1h"})),
        job(
            "bad",
            "dtsbad",
            "cn-hangzhou",
            None,
            json!({POLL_INTERVAL: "sometimes"}),
        ),
        plain("future"),
    ];
    let sel = select_due(&jobs, &view, &t(NOW), &led_long(), FIVE_MINUTES);
    assert_eq!(names(&sel), ["stale", "never", "fast"]);
    let next = sel.next.expect("a next slot").0;
    assert!(
        next > t(NOW).0 && next <= t("2026-12-01T00:10:10Z").0,
        "the 10 s job's next slot: {next}"
    );
    assert_eq!(sel.unparsable.len(), 1, "the unparsable value is reported");
    assert_eq!(sel.unparsable[0].1, "sometimes");

    // Unparsable means the default: due after 5 minutes.
    let later = select_due(&jobs, &view, &t("2026-12-01T00:14:00Z"), &led_long(), FIVE_MINUTES);
    assert!(names(&later).contains(&"bad".to_owned()));
}

#[test]
fn the_newest_read_of_any_direction_counts() {
    let view = DtsView::default();
    let two_way: DtsJob = serde_json::from_value(json!({
        "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
        "metadata": {"name": "two", "namespace": "ns"},
        "spec": {"jobId": "dtstwo", "regionId": "cn-hangzhou", "directions": ["Forward", "Reverse"]}
    }))
    .unwrap();
    read_at(&view, "dtstwo", "2026-12-01T00:09:00Z");
    let sel = select_due(&[Arc::new(two_way.into())], &view, &t(NOW), &led_long(), FIVE_MINUTES);
    assert!(sel.due.is_empty(), "read a minute ago (Forward), Reverse unseen");
}

fn due(name: &str, secret: Option<&str>, region: &str) -> Due {
    Due {
        object: JobKey::new("ns", name),
        credentials: secret.map(|s| ("ns".to_owned(), s.to_owned())),
        region_id: region.into(),
        job_id: format!("dts{name}"),
    }
}

#[test]
fn sixty_five_jobs_of_one_account_and_region_are_three_calls() {
    let creds = HashMap::from([(None, Credentials::new("LTAIa", "secret-a"))]);
    let jobs: Vec<Due> = (0..65).map(|i| due(&format!("j{i:02}"), None, "cn-hangzhou")).collect();
    let groups = group(jobs, &creds);
    assert_eq!(groups.len(), 1);
    let chunks = groups[0].chunks();
    assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [30, 30, 5]);
    assert_eq!(
        call_bound(&groups),
        10,
        "ceil(65/30) chunks × 3 job types + 1 extra page"
    );
}

#[test]
fn jobs_are_grouped_by_access_key_and_region() {
    // Two Secrets with the same AccessKeyId are one account.
    let creds = HashMap::from([
        (None, Credentials::new("LTAIa", "secret-a")),
        (Some(("ns".into(), "a2".into())), Credentials::new("LTAIa", "secret-a")),
        (Some(("ns".into(), "b".into())), Credentials::new("LTAIb", "secret-b")),
    ]);
    let jobs = vec![
        due("1", None, "cn-hangzhou"),
        due("2", Some("a2"), "cn-hangzhou"),
        due("3", None, "cn-shanghai"),
        due("4", Some("b"), "cn-hangzhou"),
        due("5", Some("b"), "cn-shanghai"),
        due("6", Some("b"), "cn-shanghai"),
        due("7", Some("missing"), "cn-hangzhou"),
    ];
    let groups = group(jobs, &creds);
    let keys: Vec<(&str, &str, usize)> = groups
        .iter()
        .map(|g| (g.access_key_id.as_str(), g.region_id.as_str(), g.jobs.len()))
        .collect();
    assert_eq!(
        keys,
        [
            ("LTAIa", "cn-hangzhou", 2),
            ("LTAIa", "cn-shanghai", 1),
            ("LTAIb", "cn-hangzhou", 1),
            ("LTAIb", "cn-shanghai", 2),
        ],
        "a job without credentials is left out"
    );
    assert_eq!(call_bound(&groups), 16, "4 groups × (1 chunk × 3 job types + 1)");
    assert!(!format!("{groups:?}").contains("secret-"), "Debug shows no secret");
}

#[test]
fn two_dtsjobs_of_one_dts_job_are_one_id() {
    let creds = HashMap::from([(None, Credentials::new("LTAIa", "secret-a"))]);
    let mut twin = due("x", None, "cn-hangzhou");
    twin.object = JobKey::new("ns", "twin");
    let groups = group(vec![due("x", None, "cn-hangzhou"), twin], &creds);
    assert_eq!(groups[0].chunks(), [vec!["dtsx".to_owned()]]);
}

// ----- Cycles against a fake DTS -----

/// DescribeDtsJobs over a table of jobId → Status; lists a job only under
/// its `JobType` (SYNC unless `types` says otherwise; MIGRATION when the
/// request has none, as DTS does); optionally throttles.
#[derive(Default)]
struct FakeDts {
    statuses: Mutex<BTreeMap<String, String>>,
    types: Mutex<BTreeMap<String, String>>,
    calls: Mutex<Vec<BTreeMap<String, String>>>,
    throttle: Mutex<u32>,
}

impl Transport for FakeDts {
    fn send(&self, req: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
        let url = url::Url::parse(&req.url).expect("absolute URL");
        let params: BTreeMap<String, String> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        self.calls.lock().unwrap().push(params.clone());
        let body = {
            let mut throttle = self.throttle.lock().unwrap();
            if *throttle > 0 {
                *throttle -= 1;
                (
                    400,
                    json!({"RequestId": "R", "Code": "Throttling.User", "Message": "Request was denied due to user flow control."}),
                )
            } else {
                let statuses = self.statuses.lock().unwrap();
                let types = self.types.lock().unwrap();
                let asked = params.get("JobType").map(String::as_str).unwrap_or("MIGRATION");
                let ids: Vec<&str> = params
                    .get("DtsJobId")
                    .map(|s| s.split(',').collect())
                    .unwrap_or_default();
                let list: Vec<Value> = ids
                    .iter()
                    .filter(|id| types.get(**id).map(String::as_str).unwrap_or("SYNC") == asked)
                    .filter_map(|id| {
                        statuses
                            .get(*id)
                            .map(|s| json!({"DtsJobId": id, "Status": s, "Delay": 0}))
                    })
                    .collect();
                (
                    200,
                    json!({"RequestId": "R", "Success": true, "HttpStatusCode": 200,
                       "TotalRecordCount": list.len(), "PageNumber": 1, "PageRecordCount": list.len(), "DtsJobList": list}),
                )
            }
        };
        Box::pin(async move {
            Ok(HttpResponse {
                status: body.0,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.1.to_string().into_bytes(),
            })
        })
    }
}

struct Fixture {
    ctx: Arc<Context>,
    dts: Arc<FakeDts>,
    observer: Observer,
    triggered: mpsc::Receiver<JobKey>,
    _api: tower_test::mock::Handle<Request<Body>, Response<Body>>,
}

fn fixture(jobs: &[Arc<CachedJob>], interval: Duration) -> Fixture {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let dts = Arc::new(FakeDts::default());
    let config = ClientConfig {
        endpoint_override: Some("http://127.0.0.1:9".parse().unwrap()),
        signature_version: SignatureVersion::HmacSha1,
        timeout: Duration::from_secs(5),
    };
    let settings = Settings {
        circuit_failure_threshold: 5,
        circuit_cooloff: Duration::from_secs(30),
        rate_limit: std::num::NonZeroU32::new(1000).unwrap(),
        max_concurrency: 4,
        retry_base_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(100),
        write_timeout: Duration::from_secs(5),
        identity: None,
    };
    let ctx = Arc::new(Context::new(
        client,
        DtsClient::with_transport(config, dts.clone()),
        Some(Credentials::new("LTAIdefault", "default-secret-value")),
        settings,
        Arc::new(Metrics::unregistered()),
        Arc::new(|| true),
    ));
    let store = JobStore::default();
    for j in jobs {
        store.apply(j.job().unwrap());
        dts.statuses
            .lock()
            .unwrap()
            .insert(j.spec.job_id.to_string(), "Synchronizing".into());
    }
    let (tx, rx) = mpsc::channel(1024);
    let (_synced_tx, synced) = watch::channel(true);
    let observer = Observer::new(ctx.clone(), store, interval, tx, LeaderState::always_leader(), synced);
    Fixture {
        ctx,
        dts,
        observer,
        triggered: rx,
        _api: handle,
    }
}

fn drain(rx: &mut mpsc::Receiver<JobKey>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(o) = rx.try_recv() {
        out.push(o.name().to_owned());
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_cycle_triggers_only_the_jobs_whose_view_changed() {
    let jobs: Vec<Arc<CachedJob>> = ["a", "b", "c"].into_iter().map(plain).collect();
    let mut f = fixture(&jobs, Duration::from_millis(1));
    let (_stop_tx, stopping) = watch::channel(false);

    f.observer.cycle(&stopping).await;
    assert_eq!(drain(&mut f.triggered), ["a", "b", "c"], "first read: all new");
    assert_eq!(
        f.dts.calls.lock().unwrap().len(),
        1,
        "one account, one region, one chunk"
    );
    assert_eq!(f.ctx.view.len(), 3);

    tokio::time::sleep(Duration::from_millis(5)).await;
    f.observer.cycle(&stopping).await;
    assert!(drain(&mut f.triggered).is_empty(), "read again, nothing changed");
    assert_eq!(f.dts.calls.lock().unwrap().len(), 2);

    f.dts
        .statuses
        .lock()
        .unwrap()
        .insert("dtsb".into(), "Suspending".into());
    tokio::time::sleep(Duration::from_millis(5)).await;
    f.observer.cycle(&stopping).await;
    assert_eq!(drain(&mut f.triggered), ["b"]);
    let seen = f.ctx.view.get("cn-hangzhou", "dtsb", Direction::Forward).unwrap();
    assert!(seen.view.status_is("suspending"));
}

#[tokio::test]
async fn a_job_of_another_type_is_found_under_it_and_asked_for_under_it_next_time() {
    let jobs: Vec<Arc<CachedJob>> = ["sync", "migration", "gone"].into_iter().map(plain).collect();
    let mut f = fixture(&jobs, Duration::from_millis(1));
    f.dts
        .types
        .lock()
        .unwrap()
        .insert("dtsmigration".into(), "MIGRATION".into());
    f.dts.statuses.lock().unwrap().remove("dtsgone");
    let (_stop_tx, stopping) = watch::channel(false);
    f.observer.cycle(&stopping).await;
    let asked = |f: &Fixture| -> Vec<(String, String)> {
        f.dts
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| (c["JobType"].clone(), c["DtsJobId"].clone()))
            .collect()
    };
    assert_eq!(
        asked(&f),
        [
            ("SYNC".to_owned(), "dtsgone,dtsmigration,dtssync".to_owned()),
            ("MIGRATION".to_owned(), "dtsgone,dtsmigration".to_owned()),
            ("SUBSCRIBE".to_owned(), "dtsgone".to_owned()),
        ],
        "every type once for what is still missing"
    );
    assert!(f
        .ctx
        .view
        .get("cn-hangzhou", "dtsmigration", Direction::Forward)
        .is_some());
    assert_eq!(f.ctx.view.job_type("cn-hangzhou", "dtsmigration"), Some("MIGRATION"));

    f.dts.calls.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_millis(5)).await;
    f.observer.cycle(&stopping).await;
    let second = asked(&f);
    assert_eq!(second[0], ("SYNC".to_owned(), "dtsgone,dtssync".to_owned()));
    assert_eq!(
        second[1],
        ("MIGRATION".to_owned(), "dtsmigration".to_owned()),
        "its own type, first try"
    );
}

#[tokio::test]
async fn a_cycle_sends_one_call_per_thirty_jobs_with_the_ids() {
    let jobs: Vec<Arc<CachedJob>> = (0..65).map(|i| plain(&format!("j{i:02}"))).collect();
    let mut f = fixture(&jobs, FIVE_MINUTES);
    let (_stop_tx, stopping) = watch::channel(false);
    let next = f.observer.cycle(&stopping).await;
    assert!(
        next >= MIN_CYCLE && next <= SLOT * 30,
        "the next cycle at the next slot with a job, within one interval: {next:?}"
    );
    let calls = f.dts.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    for c in &calls {
        assert_eq!(c["Action"], "DescribeDtsJobs");
        assert_eq!(c["Region"], "cn-hangzhou");
        assert_eq!(c["PageSize"], "30");
        assert_eq!(c["PageNumber"], "1");
    }
    let ids: usize = calls.iter().map(|c| c["DtsJobId"].split(',').count()).sum();
    assert_eq!(ids, 65);
    assert_eq!(drain(&mut f.triggered).len(), 65);

    // Just read: nothing is due, no call.
    f.observer.cycle(&stopping).await;
    assert_eq!(f.dts.calls.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_throttled_group_is_counted_and_read_again_next_cycle() {
    let jobs: Vec<Arc<CachedJob>> = (0..40).map(|i| plain(&format!("j{i:02}"))).collect();
    let mut f = fixture(&jobs, Duration::from_millis(1));
    let (_stop_tx, stopping) = watch::channel(false);
    *f.dts.throttle.lock().unwrap() = 1;
    f.observer.cycle(&stopping).await;
    assert_eq!(
        f.dts.calls.lock().unwrap().len(),
        1,
        "the group stops at the throttled call"
    );
    assert!(drain(&mut f.triggered).is_empty());
    assert!(f.ctx.view.is_empty());

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry);
    metrics.observe_throttled();
    metrics.observe_cycle(Duration::from_millis(3), 2, 40);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "dts_operator_observe_throttled_total 1",
        "dts_operator_observe_cycles_total 1",
        "dts_operator_observe_calls_per_cycle 2",
        "dts_operator_observed_jobs 40",
        "dts_operator_observe_cycle_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }

    tokio::time::sleep(Duration::from_millis(5)).await;
    f.observer.cycle(&stopping).await;
    assert_eq!(f.dts.calls.lock().unwrap().len(), 3, "both chunks next cycle");
    assert_eq!(drain(&mut f.triggered).len(), 40);
}

#[tokio::test]
async fn no_call_once_stopping() {
    let jobs = vec![plain("a")];
    let mut f = fixture(&jobs, FIVE_MINUTES);
    let (_stop_tx, stopping) = watch::channel(true);
    f.observer.cycle(&stopping).await;
    assert!(f.dts.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn run_polls_at_once_and_stops_on_request() {
    let jobs = vec![plain("a")];
    let f = fixture(&jobs, Duration::from_secs(3600));
    let (stop_tx, stop_rx) = watch::channel(false);
    let dts = f.dts.clone();
    let mut triggered = f.triggered;
    let task = tokio::spawn(f.observer.run(async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    }));
    let first = tokio::time::timeout(Duration::from_secs(5), triggered.recv()).await;
    assert_eq!(first.unwrap().unwrap().name(), "a", "the first cycle runs at start");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dts.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn one_group_stays_under_twenty_calls_a_second() {
    let jobs: Vec<Arc<CachedJob>> = (0..95).map(|i| plain(&format!("j{i:02}"))).collect();
    let mut f = fixture(&jobs, FIVE_MINUTES);
    let (_stop_tx, stopping) = watch::channel(false);
    let start = std::time::Instant::now();
    f.observer.cycle(&stopping).await;
    assert_eq!(f.dts.calls.lock().unwrap().len(), 4);
    assert!(
        start.elapsed() >= GROUP_CALL_SPACING * 3,
        "4 calls of one group are spaced: {:?}",
        start.elapsed()
    );
}
