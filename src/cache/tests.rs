use super::*;
use crate::crd::{PAUSED, STOP_ON_DELETE_FINALIZER};
use serde_json::{json, Value};

/// A DtsJob as the API server sends it: managed fields, labels, foreign
/// annotations and owner references included.
fn wire(status: Value) -> Value {
    json!({
        "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
        "metadata": {"name": "orders", "namespace": "shop", "uid": "0b9c2f5e-1d2a-4f39-9f1e-0c7a1d2e3f40",
            "resourceVersion": "48213", "generation": 3, "creationTimestamp": "2026-12-01T00:00:00Z",
            "labels": {"app": "orders"}, "generateName": "orders-", "selfLink": "/x",
            "finalizers": [STOP_ON_DELETE_FINALIZER],
            "annotations": {PAUSED: "false", "argocd.argoproj.io/tracking-id": "shop:kubedts.io/DtsJob:shop/orders",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"kubedts.io/v1alpha1\"}"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "ou"}],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "kubedts.io/v1alpha1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:jobId": {}}}}]},
        "spec": {"jobId": "dtsorders01", "regionId": "cn-hangzhou", "directions": ["Forward", "Reverse"],
            "desiredState": "Stopped", "stopPolicy": {"maxDelaySeconds": 5, "deadline": "30m"},
            "credentialsSecretRef": {"name": "dts-credentials"}},
        "status": status
    })
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": "2026-12-01T00:05:00Z", "observedGeneration": 3})
}

/// The three kstatus conditions of a settled job: Ready with `message`.
fn settled(reason: &str, message: &str) -> Value {
    json!([
        condition("Ready", "True", reason, message),
        condition("Reconciling", "False", reason, ""),
        condition("Stalled", "False", reason, ""),
    ])
}

/// A stopped two-way job: both records, an observation, a full history.
fn stopped_status() -> Value {
    let history: Vec<Value> = (0..10)
        .map(|i| {
            json!({"time": format!("2026-12-01T00:0{i}:00Z"), "action": "StopDtsJob",
                "direction": if i % 2 == 0 { "Forward" } else { "Reverse" },
                "requestId": format!("7D3F1E2A-0C4B-4A5D-9E6F-{i:012}"), "outcome": "Succeeded"})
        })
        .collect();
    json!({
        "observedGeneration": 3, "phase": "Stopped",
        "conditions": settled("Stopped", "Forward and Reverse stopped"),
        "directions": [
            {"direction": "Forward", "state": "Stopped", "jobId": "dtsorders01",
             "requestId": "7D3F1E2A-0C4B-4A5D-9E6F-000000000008", "httpStatusCode": 200, "attempts": 1,
             "lastAttemptTime": "2026-12-01T00:08:00Z",
             "observed": {"status": "Finished", "delayMs": 0, "checkpoint": 1764547200,
                 "observedAt": "2026-12-01T00:09:30Z"}},
            {"direction": "Reverse", "state": "Stopped", "jobId": "dtsorders01",
             "requestId": "7D3F1E2A-0C4B-4A5D-9E6F-000000000009", "httpStatusCode": 200, "attempts": 2,
             "errorCode": "Throttling.User", "errorMessage": "Request was denied due to user flow control.",
             "observed": {"status": "Synchronizing", "delayMs": 1200, "observedAt": "2026-12-01T00:09:00Z"},
             "transition": {"target": "Stopped", "state": "Confirming", "since": "2026-12-01T00:08:00Z"}}
        ],
        "history": history,
        "stopGate": {"state": "Passed", "maxDelaySeconds": 5, "since": "2026-12-01T00:07:00Z",
            "delays": [{"direction": "Forward", "delayMs": 0}, {"direction": "Reverse", "delayMs": 1200}]},
        "credentialsSource": "Secret shop/dts-credentials"
    })
}

fn running_status() -> Value {
    json!({
        "observedGeneration": 1, "phase": "Running",
        "conditions": settled("Running", "Forward: DTS shows Synchronizing"),
        "directions": [{"direction": "Forward", "state": "Pending", "jobId": "dtsorders01", "attempts": 0,
            "observed": {"status": "Synchronizing", "delayMs": 0, "checkpoint": 1764547200,
                "observedAt": "2026-12-01T00:09:30Z"}}],
        "credentialsSource": "Secret shop/dts-credentials"
    })
}

fn decoded(v: &Value) -> DtsJob {
    serde_json::from_value(v.clone()).unwrap()
}

/// The entry the watch makes of `v`.
fn entry(v: Value) -> CachedJob {
    CachedJob::from(serde_json::from_value::<WatchedJob>(v).unwrap())
}

#[test]
fn an_entry_unpacks_to_the_whole_job_but_what_the_operator_never_reads() {
    for status in [stopped_status(), running_status(), json!({})] {
        let v = wire(status);
        let cached = entry(v.clone());
        let job = cached.job().unwrap();
        let original = decoded(&v);
        assert_eq!(job.spec, original.spec);
        assert_eq!(job.status, original.status, "the status comes back exactly");
        let m = &job.metadata;
        let o = &original.metadata;
        assert_eq!(
            (&m.name, &m.namespace, &m.uid, &m.resource_version, m.generation),
            (&o.name, &o.namespace, &o.uid, &o.resource_version, o.generation)
        );
        assert_eq!(m.finalizers, o.finalizers);
        assert_eq!(m.creation_timestamp, o.creation_timestamp);
        assert_eq!(
            m.annotations.as_ref().map(|a| a.keys().cloned().collect::<Vec<_>>()),
            Some(vec![PAUSED.to_owned()]),
            "only kubedts.io/ annotations are kept"
        );
        assert!(m.managed_fields.is_none() && m.labels.is_none() && m.owner_references.is_none());
        assert!(m.generate_name.is_none() && m.self_link.is_none());
    }
}

#[test]
fn the_same_entry_comes_from_the_wire_and_from_a_decoded_job() {
    let v = wire(stopped_status());
    let from_wire = entry(v.clone());
    let from_job = CachedJob::from(decoded(&v));
    assert_eq!(from_wire.key(), from_job.key());
    assert_eq!(from_wire.identity(), from_job.identity());
    let (a, b) = (from_wire.job().unwrap(), from_job.job().unwrap());
    assert_eq!((a.metadata, a.spec, a.status), (b.metadata, b.spec, b.status));
    assert_eq!(from_wire.glance(), from_job.glance());
}

#[test]
fn a_job_without_a_status_has_none_and_an_empty_glance() {
    let mut v = wire(json!(null));
    v.as_object_mut().unwrap().remove("status");
    let cached = entry(v);
    assert_eq!(cached.job().unwrap().status, None);
    assert_eq!(cached.glance(), &Glance::default());
}

#[test]
fn the_glance_shows_each_directions_record_for_the_specs_job_id() {
    let cached = entry(wire(stopped_status()));
    let g = cached.glance();
    assert_eq!(g.phase, Some(Phase::Stopped));
    let forward = g.direction(Direction::Forward).expect("a Forward record");
    assert_eq!(forward.state, DirectionState::Stopped);
    assert!(forward.dts_finished, "DTS showed Forward Finished");
    assert_eq!(
        forward.observed_at(),
        Some(Time("2026-12-01T00:09:30Z".parse().unwrap()))
    );
    let reverse = g.direction(Direction::Reverse).expect("a Reverse record");
    assert!(!reverse.dts_finished, "Reverse was still Synchronizing");

    // A record left from another jobId (the spec's jobId changed) is not this job's.
    let mut v = wire(stopped_status());
    v["spec"]["jobId"] = json!("dtsother02");
    let cached = entry(v);
    assert_eq!(cached.glance().direction(Direction::Forward), None);
    assert_eq!(cached.glance().phase, Some(Phase::Stopped));
}

#[test]
fn the_spec_glance_shows_what_the_observer_and_the_secret_watch_read() {
    let cached = entry(wire(running_status()));
    assert_eq!(&*cached.spec.job_id, "dtsorders01");
    assert_eq!(&*cached.spec.region_id, "cn-hangzhou");
    assert_eq!(cached.spec.credentials_secret.as_deref(), Some("dts-credentials"));
    assert_eq!(
        cached.spec.directions().collect::<Vec<_>>(),
        [Direction::Forward, Direction::Reverse]
    );
    let mut v = wire(running_status());
    v["spec"]["directions"] = json!(["Reverse"]);
    v["spec"].as_object_mut().unwrap().remove("credentialsSecretRef");
    let cached = entry(v);
    assert_eq!(cached.spec.directions().collect::<Vec<_>>(), [Direction::Reverse]);
    assert_eq!(cached.spec.credentials_secret, None);
}

#[test]
fn the_spec_and_status_pack_to_a_fraction_of_their_json() {
    for status in [running_status(), stopped_status()] {
        let v = wire(status);
        let json_len = serde_json::to_vec(&json!({"spec": v["spec"], "status": v["status"]}))
            .unwrap()
            .len();
        let cached = entry(v);
        assert!(
            cached.packed_len() * 3 < json_len,
            "{} packed bytes for {json_len} bytes of JSON",
            cached.packed_len()
        );
    }
}

#[test]
fn an_entry_that_does_not_unpack_is_an_error_not_a_panic() {
    let mut cached = entry(wire(running_status()));
    for bytes in [&b"\x28\xb5\x2f\xfd garbage"[..], b"{not json", b"", b"\x00"] {
        cached.body = Packed(bytes.to_vec().into_boxed_slice());
        let e = cached.job().expect_err("corrupt bytes are refused");
        assert!(
            e.to_string().starts_with("the cached spec and status do not unpack"),
            "{e}"
        );
    }
    // Plain JSON (kept when no compressor could be made) unpacks as such.
    let v = wire(running_status());
    let json = serde_json::to_vec(&json!({"spec": v["spec"], "status": v["status"]})).unwrap();
    cached.body = Packed(json.into_boxed_slice());
    let job = cached.job().unwrap();
    assert_eq!((job.spec, job.status), (decoded(&v).spec, decoded(&v).status));
}

#[test]
fn entries_pack_and_unpack_on_many_threads_at_once() {
    let v = wire(stopped_status());
    let want = decoded(&v).status;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let v = v.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| entry(v.clone()).job().unwrap().status)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap().iter().all(|s| *s == want));
    }
}

#[test]
fn an_entry_with_its_reference_counts_fits_a_224_byte_allocation() {
    // Arc's two counts are 16 bytes; jemalloc's classes step 192, 224, 256.
    let size = std::mem::size_of::<CachedJob>() + 16;
    println!("an Arc<CachedJob> takes {size} bytes");
    assert!(
        size <= 224,
        "an Arc<CachedJob> takes {size} bytes: 256 a job in jemalloc"
    );
}

/// Rewrites `src/cache/dictionary.json` from the DtsJobs in the file
/// `CACHE_DICTIONARY_SAMPLES` names (one a line, as `kubectl get dtsjobs
/// -A -o json | jq -c '.items[] | {spec, status, metadata: (.metadata |
/// {creationTimestamp, finalizers, generation, resourceVersion, uid})}'`
/// prints them), each
/// re-serialized as the cache packs it (field order matters to zstd):
/// `CACHE_DICTIONARY_SAMPLES=FILE cargo test -p dts-operator --lib -- --ignored write_the_dictionary`
#[test]
#[ignore = "regenerates the dictionary; run by hand"]
fn write_the_dictionary() {
    let samples = std::env::var("CACHE_DICTIONARY_SAMPLES").expect("CACHE_DICTIONARY_SAMPLES=FILE");
    let text = std::fs::read_to_string(samples).unwrap();
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let body: Body = serde_json::from_str(line).unwrap();
        out.push_str(&serde_json::to_string(&body).unwrap());
        out.push('\n');
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cache/dictionary.json");
    std::fs::write(path, out).unwrap();
}
