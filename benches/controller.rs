//! `make bench` (with crates/dts-api/benches/dts.rs): prints the cost of the
//! controller's hot pure step, planning, per operation. Numbers, not
//! assertions: this machine is shared and noisy, so read them as orders of
//! magnitude and compare runs on one machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

use dts_operator::controller::plan;
use dts_operator::crd::{DesiredState, Direction, DtsJobSpec, DtsJobStatus};

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
    let spec = DtsJobSpec {
        job_id: "j1".into(),
        instance_id: None,
        region_id: "cn-hangzhou".into(),
        directions: vec![Direction::Forward, Direction::Reverse],
        desired_state: Some(DesiredState::Stopped),
        credentials_secret_ref: None,
    };
    let status = DtsJobStatus::default();
    bench("plan (two directions)", budget, || {
        black_box(plan::plan(&spec, &status, "generation=1;secret=-;requested=-"));
    });
}
