//! Numbers from raw observations: latency summaries, the API server's
//! request counters and their deltas, and CPU sampling of the processes
//! under test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::procs;

/// Milliseconds since the Unix epoch, with sub-millisecond precision: the
/// clock the emulator's journal uses (RFC 3339 with milliseconds), so the
/// driver's and the emulator's times can be subtracted.
pub fn now_ms() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_secs_f64() * 1000.0
}

/// Percentiles of a sample (nearest rank), milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// `None` for an empty sample.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            n: v.len(),
            min: v[0],
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        })
    }
}

/// Nearest-rank percentile of an ascending, non-empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One series of `apiserver_request_total`, reduced to what the report
/// groups by. `code` is kept so that refused writes (409) show up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RequestKey {
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub code: String,
}

impl RequestKey {
    /// Whether the request changes state (counted as a write).
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION" | "CREATE" | "UPDATE"
        )
    }

    /// `VERB resource[/subresource]`, the label of the report's rows.
    pub fn label(&self) -> String {
        let mut s = format!("{} {}", self.verb, self.resource);
        if !self.subresource.is_empty() {
            s += "/";
            s += &self.subresource;
        }
        s
    }
}

/// Cumulative `apiserver_request_total`, summed over the labels the report
/// does not use (group, version, scope, component, dry_run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestCounts(pub BTreeMap<RequestKey, f64>);

impl RequestCounts {
    /// Reads the Prometheus text of kube-apiserver's `/metrics`.
    pub fn parse(text: &str) -> RequestCounts {
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let labels = parse_labels(labels);
            let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let key = RequestKey {
                verb: get("verb"),
                resource: get("resource"),
                subresource: get("subresource"),
                code: get("code"),
            };
            *out.entry(key).or_insert(0.0) += value;
        }
        RequestCounts(out)
    }

    /// What happened between `before` and `self`: every series that grew.
    pub fn since(&self, before: &RequestCounts) -> Requests {
        let mut rows = BTreeMap::new();
        for (k, v) in &self.0 {
            let d = v - before.0.get(k).copied().unwrap_or(0.0);
            if d > 0.0 {
                rows.insert(k.clone(), d);
            }
        }
        Requests(rows)
    }
}

/// The resources an operator of DtsJobs works with. Everything else the API
/// server counts in a quiet test cluster is its own doing: its identity
/// Lease renewed every 10 s (the driver never enables leader election),
/// its informers' re-WATCHes, the Service IP repair LIST, and the driver's
/// `/metrics` reads.
pub const OPERATOR_RESOURCES: [&str; 3] = ["dtsjobs", "secrets", "events"];

/// Request counts over an interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requests(pub BTreeMap<RequestKey, f64>);

impl Requests {
    /// Removes requests the driver itself made (its flips), so what is left
    /// is the operator's (and the API server's own, which is none here).
    pub fn minus(mut self, verb: &str, resource: &str, subresource: &str, n: f64) -> Requests {
        let mut left = n;
        for (k, v) in self.0.iter_mut() {
            if left <= 0.0 {
                break;
            }
            if k.verb == verb && k.resource == resource && k.subresource == subresource {
                let take = v.min(left);
                *v -= take;
                left -= take;
            }
        }
        self.0.retain(|_, v| *v > 0.0);
        self
    }

    /// (requests on [`OPERATOR_RESOURCES`], all others).
    pub fn split(self) -> (Requests, Requests) {
        let (ours, other) = self
            .0
            .into_iter()
            .partition(|(k, _)| OPERATOR_RESOURCES.contains(&k.resource.as_str()));
        (Requests(ours), Requests(other))
    }

    pub fn total(&self) -> f64 {
        self.0.values().fold(0.0, |a, b| a + b)
    }

    pub fn writes(&self) -> f64 {
        self.0.iter().filter(|(k, _)| k.is_write()).fold(0.0, |a, (_, v)| a + v)
    }

    /// Sum of the series matching `verb` (any when empty) on `resource`
    /// and `subresource`.
    pub fn count(&self, verbs: &[&str], resource: &str, subresource: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| {
                (verbs.is_empty() || verbs.contains(&k.verb.as_str()))
                    && k.resource == resource
                    && k.subresource == subresource
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Rows `VERB resource/sub (code)` → count, for the JSON report. Long
    /// watches and the API server's own discovery traffic are kept: the
    /// report shows what the server saw.
    pub fn rows(&self) -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        for (k, v) in &self.0 {
            *out.entry(format!("{} {}", k.label(), k.code)).or_insert(0.0) += v;
        }
        out
    }

    /// Rows `VERB resource/sub` → count per `per` (e.g. per job), without
    /// the code, rounded to two decimals.
    pub fn per(&self, per: f64) -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        for (k, v) in &self.0 {
            *out.entry(k.label()).or_insert(0.0) += v;
        }
        for v in out.values_mut() {
            *v = round2(*v / per.max(1.0));
        }
        out
    }
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `key="value",...` of a Prometheus series (values may hold escaped quotes).
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    out
}

/// CPU use of one process over a sampled interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuUse {
    pub process: String,
    pub cpu_seconds: f64,
    /// Average over the interval, percent of one core.
    pub avg_percent: f64,
    /// Highest 1-second average, percent of one core.
    pub peak_percent: f64,
}

type Series = Vec<(f64, Vec<Option<f64>>, Option<(f64, f64)>)>;

/// Samples the CPU time of named processes (and of the machine) every
/// `every` in a background task until [`CpuSampler::finish`].
pub struct CpuSampler {
    names: Vec<String>,
    series: Arc<Mutex<Series>>,
    task: tokio::task::JoinHandle<()>,
}

impl CpuSampler {
    pub fn start(procs: Vec<(String, i32)>, every: Duration) -> CpuSampler {
        let series: Arc<Mutex<Series>> = Arc::default();
        let names = procs.iter().map(|(n, _)| n.clone()).collect();
        let s = series.clone();
        let take = move || {
            let cpu = procs
                .iter()
                .map(|(_, pid)| procs::sample(*pid).map(|x| x.cpu_s))
                .collect();
            s.lock().unwrap().push((now_ms(), cpu, procs::machine_cpu()));
        };
        take();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                take();
            }
        });
        CpuSampler { names, series, task }
    }

    /// Stops sampling; returns per-process use (highest first) and the
    /// machine's busy share of all its cores (percent, other users included).
    pub fn finish(self) -> (Vec<CpuUse>, Option<f64>) {
        self.task.abort();
        let series = self.series.lock().unwrap().clone();
        let mut out = Vec::new();
        let (Some(first), Some(last)) = (series.first(), series.last()) else {
            return (out, None);
        };
        let wall_s = ((last.0 - first.0) / 1000.0).max(1e-3);
        for (i, name) in self.names.iter().enumerate() {
            let (Some(a), Some(b)) = (first.1[i], last_known(&series, i)) else {
                continue;
            };
            out.push(CpuUse {
                process: name.clone(),
                cpu_seconds: round2(b - a),
                avg_percent: round2((b - a) / wall_s * 100.0),
                peak_percent: round2(peak(&series, i)),
            });
        }
        out.sort_by(|a, b| b.avg_percent.total_cmp(&a.avg_percent));
        let machine = match (first.2, last.2) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some(round2((b1 - b0) / (t1 - t0) * 100.0)),
            _ => None,
        };
        (out, machine)
    }
}

fn last_known(series: &Series, i: usize) -> Option<f64> {
    series.iter().rev().find_map(|s| s.1[i])
}

/// The highest CPU share of process `i` over any window of about a second.
fn peak(series: &Series, i: usize) -> f64 {
    let mut best: f64 = 0.0;
    let mut j = 0;
    for k in 0..series.len() {
        while j < k && series[k].0 - series[j].0 > 1000.0 {
            j += 1;
        }
        let j0 = j.saturating_sub(1);
        if let (Some(a), Some(b)) = (series[j0].1[i], series[k].1[i]) {
            let dt = (series[k].0 - series[j0].0) / 1000.0;
            if dt >= 0.5 {
                best = best.max((b - a) / dt * 100.0);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.max), (100.0, 180.0, 198.0, 200.0));
        assert_eq!(Summary::of(&[7.0]).unwrap().p99, 7.0);
        assert!(Summary::of(&[]).is_none());
    }

    const METRICS: &str = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="kubedts.io",resource="dtsjobs",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="kubedts.io",resource="dtsjobs",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="kubedts.io",resource="dtsjobs",scope="resource",subresource="",verb="PATCH",version="v1alpha1"} 5
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="GET",version="v1"} 2
apiserver_request_total_other{code="200"} 99
"#;

    #[test]
    fn parses_and_subtracts_request_counters() {
        let before = RequestCounts::parse(METRICS);
        assert_eq!(before.0.len(), 4);
        let after = RequestCounts::parse(
            &METRICS
                .replace("} 10\n", "} 14\n")
                .replace("} 5\n", "} 9\n")
                .replace("} 2\n", "} 3\n"),
        );
        let d = after.since(&before);
        assert_eq!(d.total(), 9.0);
        assert_eq!(d.writes(), 8.0);
        // The driver's own 4 flips are not the operator's.
        let op = d.minus("PATCH", "dtsjobs", "", 4.0);
        assert_eq!(op.total(), 5.0);
        assert_eq!(op.count(&["APPLY"], "dtsjobs", "status"), 4.0);
        assert_eq!(op.per(2.0).get("APPLY dtsjobs/status"), Some(&2.0));
        assert_eq!(op.rows().get("GET secrets 200"), Some(&1.0));
        let (ours, other) = op.split();
        assert_eq!((ours.total(), other.total()), (5.0, 0.0));
    }

    #[test]
    fn labels_with_escapes() {
        let l = parse_labels(r#"a="x\"y",b="",c="z""#);
        assert_eq!(l["a"], "x\"y");
        assert_eq!(l["b"], "");
        assert_eq!(l["c"], "z");
    }
}
