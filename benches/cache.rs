//! `make bench-micro`: the heap bytes each DtsJob costs in the operator's
//! long-lived state, counted by a counting allocator (requested bytes, not
//! the allocator's rounding): the watch cache as the operator held it
//! before (a deserialized `DtsJob` without managedFields and kubectl's
//! last-applied copy) and as it holds it now ([`CachedJob`]), the store
//! around it (key and `Arc`), and DTS's view of the job. Numbers, not
//! assertions; `docs/benchmarks.md` reads them beside the RSS the
//! end-to-end memory scenario measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use dts_operator::cache::CachedJob;
use dts_operator::crd::{Direction, DtsJob};
use dts_operator::view::{DirectionView, DtsView};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::{reflector, watcher};
use kube::ResourceExt;
use serde_json::{json, Value};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const JOBS: usize = 10_000;

/// A one-way DtsJob after the operator stopped it and the observer read
/// it, as the API server sends it (managedFields of the creator and of the
/// operator's status applies included).
fn stopped(i: usize) -> Value {
    json!({
        "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
        "metadata": {
            "name": format!("mem-{i:06}"), "namespace": "bench-memory",
            "uid": format!("6f1c2a8e-0000-4000-8000-{i:012}"), "resourceVersion": format!("{}", 100_000 + i),
            "generation": 2, "creationTimestamp": "2026-12-02T10:00:00Z",
            "managedFields": [
                {"manager": "dts-bench", "operation": "Update", "apiVersion": "kubedts.io/v1alpha1",
                 "time": "2026-12-02T10:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {".": {}, "f:credentialsSecretRef": {".": {}, "f:name": {}},
                              "f:desiredState": {}, "f:directions": {}, "f:jobId": {}, "f:regionId": {}}}},
                {"manager": "dts-operator", "operation": "Apply", "apiVersion": "kubedts.io/v1alpha1",
                 "time": "2026-12-02T10:01:00Z", "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:lastTransitionTime": {},
                   "f:message": {}, "f:observedGeneration": {}, "f:reason": {}, "f:status": {}, "f:type": {}}},
                   "f:directions": {"k:{\"direction\":\"Forward\"}": {".": {}, "f:attempts": {}, "f:direction": {},
                   "f:jobId": {}, "f:state": {}}}, "f:observedGeneration": {}, "f:phase": {}}}}
            ]
        },
        "spec": {
            "jobId": format!("mem{i:06}"), "regionId": "cn-hangzhou", "directions": ["Forward"],
            "desiredState": "Stopped", "credentialsSecretRef": {"name": "dts-credentials"}
        },
        "status": {
            "observedGeneration": 2, "phase": "Stopped", "credentialsSource": "Secret/dts-credentials",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Stopped", "observedGeneration": 2,
                 "lastTransitionTime": "2026-12-02T10:01:00Z", "message": "every listed direction is stopped"},
                {"type": "Reconciling", "status": "False", "reason": "Settled", "observedGeneration": 2,
                 "lastTransitionTime": "2026-12-02T10:01:00Z", "message": "no DTS call is pending"},
                {"type": "Stalled", "status": "False", "reason": "Stopped", "observedGeneration": 2,
                 "lastTransitionTime": "2026-12-02T10:00:00Z", "message": "nothing blocks the desired state"}
            ],
            "directions": [
                {"direction": "Forward", "state": "Stopped", "jobId": format!("mem{i:06}"),
                 "requestId": "4C6F1A52-0B8D-4F0B-9E57-1D2C3B4A5F60", "httpStatusCode": 200, "attempts": 1,
                 "lastAttemptTime": "2026-12-02T10:01:00Z",
                 "observed": {"status": "Finished", "delayMs": 0, "checkpoint": 1796205660,
                              "observedAt": "2026-12-02T10:01:01Z"}}
            ],
            "history": [
                {"time": "2026-12-02T10:01:00Z", "action": "StopDtsJob", "direction": "Forward",
                 "requestId": "4C6F1A52-0B8D-4F0B-9E57-1D2C3B4A5F60", "outcome": "Stopped"}
            ]
        }
    })
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Heap bytes per job that `build` keeps alive.
fn per_job<T>(name: &str, wire: &[Vec<u8>], build: impl FnOnce(&[Vec<u8>]) -> T) -> f64 {
    let before = live();
    let kept = build(wire);
    let per = (live() - before) as f64 / wire.len() as f64;
    println!("{name:<64} {per:>8.0} B/job");
    drop(kept);
    per
}

fn main() {
    let wire: Vec<Vec<u8>> = (0..JOBS).map(|i| serde_json::to_vec(&stopped(i)).unwrap()).collect();
    let avg_wire = wire.iter().map(Vec::len).sum::<usize>() / JOBS;
    println!("{JOBS} stopped one-way DtsJobs, {avg_wire} bytes of JSON each as the API server sends them\n");

    per_job("DtsJob, managedFields and last-applied dropped (before)", &wire, |w| {
        w.iter()
            .map(|b| {
                let mut j: DtsJob = serde_json::from_slice(b).unwrap();
                j.managed_fields_mut().clear();
                j.managed_fields_mut().shrink_to_fit();
                j
            })
            .collect::<Vec<_>>()
    });
    per_job("CachedJob (slim metadata, packed status)", &wire, |w| {
        w.iter()
            .map(|b| serde_json::from_slice::<CachedJob>(b).unwrap())
            .collect::<Vec<_>>()
    });
    per_job("store of DtsJob (entry, key, Arc) (before)", &wire, |w| {
        let (reader, mut writer) = reflector::store::<DtsJob>();
        for b in w {
            let mut j: DtsJob = serde_json::from_slice(b).unwrap();
            j.managed_fields_mut().clear();
            j.managed_fields_mut().shrink_to_fit();
            writer.apply_watcher_event(&watcher::Event::Apply(j));
        }
        (reader, writer)
    });
    per_job("store of CachedJob (entry, key, Arc)", &wire, |w| {
        let (reader, mut writer) = reflector::store::<CachedJob>();
        for b in w {
            writer.apply_watcher_event(&watcher::Event::Apply(serde_json::from_slice(b).unwrap()));
        }
        (reader, writer)
    });
    let now = Time("2026-12-02T10:01:01Z".parse().unwrap());
    per_job("DTS's view of the job (DtsView, one direction)", &wire, |_| {
        let view = DtsView::default();
        for i in 0..JOBS {
            let seen = DirectionView {
                status: Some("Finished".into()),
                delay_ms: Some(0),
                checkpoint: Some(1_796_205_660),
                error_message: None,
            };
            view.put(
                "cn-hangzhou",
                &format!("mem{i:06}"),
                Direction::Forward,
                seen,
                now.clone(),
            );
            view.learn_type("cn-hangzhou", &format!("mem{i:06}"), "SYNC");
        }
        view
    });
    let cached: Vec<CachedJob> = wire.iter().map(|b| serde_json::from_slice(b).unwrap()).collect();
    let packed = cached.iter().map(CachedJob::packed_status_len).sum::<usize>() / JOBS;
    println!("\npacked status: {packed} bytes per job");
}
