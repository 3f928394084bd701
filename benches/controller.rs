//! `make bench` (with crates/dts-api/benches/dts.rs): prints the cost of the
//! controller's pure steps, `decide` and `record`, and of packing and
//! unpacking a watch cache entry, per operation. Numbers, not
//! assertions: this machine is shared and noisy, so read them as orders of
//! magnitude and compare runs on one machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

use dts_api::{ApiSuccess, Credentials};
use dts_operator::cache::CachedJob;
use dts_operator::controller::act::{Answer, CallResult};
use dts_operator::controller::credentials::Resolved;
use dts_operator::controller::decide::{decide, Decision};
use dts_operator::controller::observe::{self, Observed};
use dts_operator::controller::record::{record, Acted};
use dts_operator::crd::{Direction, DtsJob};

/// Runs `f` for about `budget` and prints the mean time per call.
fn bench(name: &str, budget: Duration, mut f: impl FnMut()) {
    for _ in 0..1_000 {
        f(); // warm-up
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{name:<48} {per:>10.0} ns/op  ({n} iterations)");
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MILLIS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    let job: DtsJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
        "metadata": {"name": "orders", "namespace": "ns", "uid": "u1", "generation": 2, "resourceVersion": "9"},
        "spec": {"jobId": "j1", "regionId": "cn-hangzhou", "directions": ["Forward", "Reverse"], "desiredState": "Stopped"}
    }))
    .expect("a valid DtsJob");
    let mut obs = Observed::of(&job, true, None, observe::now()).expect("namespaced");
    obs.credentials = observe::Credentials::Ready(Resolved {
        credentials: Credentials::new("LTAIbench", "bench-secret"),
        secret_version: Some("1".into()),
        source: "Secret/bench".into(),
    });
    bench("decide (two directions to stop, with the mark)", budget, || {
        black_box(decide(black_box(&obs)));
    });
    let decision = decide(&obs);
    assert!(matches!(decision, Decision::Call(_)), "two stops are due");
    let answers = || {
        [Direction::Forward, Direction::Reverse]
            .into_iter()
            .map(|direction| CallResult {
                direction,
                answer: Answer::Stop(
                    Ok(ApiSuccess {
                        request_id: Some("0E2F-REQ".into()),
                        http_status: 200,
                        body: serde_json::Value::Null,
                    }),
                    None,
                ),
            })
            .collect::<Vec<_>>()
    };
    bench("record (two successful stops)", budget, || {
        black_box(record(&obs, &decision, Acted::Calls(answers())));
    });

    // The watch cache's entry of the job just stopped: what every
    // reconcile unpacks and every watch event packs.
    let mut stopped = job.clone();
    stopped.status = record(&obs, &decision, Acted::Calls(answers())).write.map(|w| w.status);
    let cached = CachedJob::from(stopped.clone());
    println!(
        "cache entry of a stopped two-way job: spec and status {} bytes of JSON, {} bytes packed",
        serde_json::to_vec(&(&stopped.spec, &stopped.status))
            .expect("serializes")
            .len(),
        cached.packed_len()
    );
    bench("cache: pack a stopped two-way job", budget, || {
        black_box(CachedJob::from(black_box(stopped.clone())));
    });
    bench("cache: unpack it for a reconcile", budget, || {
        black_box(black_box(&cached).job().expect("unpacks"));
    });
}
