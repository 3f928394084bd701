//! Writers that keep a fixed number of requests in flight: the load of the
//! `ceiling` and `writes` scenarios. Each of `concurrency` tasks takes the
//! next object round robin and the next generation (so every write is a
//! change), times the write, and counts what came back, until the window
//! ends.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Result;

/// What one window of writes came to.
#[derive(Debug, Default)]
pub struct Written {
    /// One per successful write, ms.
    pub latencies_ms: Vec<f64>,
    /// 409 answers (a precondition met a newer object).
    pub conflicts: usize,
    /// Every other failure.
    pub errors: usize,
    /// The window's length, s.
    pub seconds: f64,
}

/// Runs `write(object index, generation)` over `objects` objects round
/// robin, `concurrency` in flight, for `duration`; generations continue
/// from `generation`.
pub async fn round_robin<F, Fut>(
    objects: usize,
    concurrency: usize,
    duration: Duration,
    generation: &Arc<AtomicI64>,
    write: F,
) -> Result<Written>
where
    F: Fn(usize, i64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = kube::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, generation, write) = (next.clone(), generation.clone(), write.clone());
        workers.push(tokio::spawn(async move {
            let mut w = Written::default();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) % objects.max(1);
                let g = generation.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match write(i, g).await {
                    Ok(()) => w.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(kube::Error::Api(s)) if s.code == 409 => w.conflicts += 1,
                    Err(_) => w.errors += 1,
                }
            }
            w
        }));
    }
    let mut all = Written::default();
    for worker in workers {
        let w = worker.await?;
        all.latencies_ms.extend(w.latencies_ms);
        all.conflicts += w.conflicts;
        all.errors += w.errors;
    }
    all.seconds = start.elapsed().as_secs_f64();
    Ok(all)
}
