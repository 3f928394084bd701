//! The `dts-emulator` binary as the DTS side of a case: started with the
//! case's jobs in its config, read back through its journal (the count and
//! arrival time of every DTS call) and slowed down with its `latencyMs`
//! fault (an answer delay after the call took effect, as a slow DTS would).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::procs::Child;
use crate::Result;

/// The account every case uses; its secret goes into the case's Secret.
pub const ACCESS_KEY_ID: &str = "LTAIbenchAccessKey";
pub const ACCESS_KEY_SECRET: &str = "bench-secret-value";

/// The region of every benchmark job.
pub const REGION: &str = "cn-hangzhou";

/// One journal entry (the fields the driver uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub time: String,
    pub action: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

impl Call {
    /// Arrival time, milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> Option<f64> {
        let ts: jiff::Timestamp = self.time.parse().ok()?;
        Some(ts.as_millisecond() as f64)
    }

    pub fn action(&self) -> &str {
        self.action.as_deref().unwrap_or("")
    }

    pub fn job_id(&self) -> &str {
        self.params.get("DtsJobId").map(String::as_str).unwrap_or("")
    }

    pub fn direction(&self) -> &str {
        self.params
            .get("SynchronizationDirection")
            .map(String::as_str)
            .unwrap_or("Forward")
    }

    /// The jobIds this call reads: `DtsJobId` of a detail call, the
    /// comma-separated list of a DescribeDtsJobs.
    pub fn described_ids(&self) -> Vec<&str> {
        match self.action() {
            "DescribeDtsJobDetail" => vec![self.job_id()],
            "DescribeDtsJobs" => self
                .params
                .get("DtsJobId")
                .map(|s| s.split(',').collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// Calls by action.
pub fn by_action(calls: &[Call]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in calls {
        *out.entry(c.action().to_owned()).or_insert(0) += 1;
    }
    out
}

/// A running emulator.
pub struct Emulator {
    pub process: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Emulator {
    /// Starts `bin` with `jobs` (emulator config entries) in `dir`. The
    /// Describe* quota stays at DTS's documented 20 calls/s per account and
    /// region, so the operator's observer meets the limit it would meet.
    pub async fn start(bin: &Path, dir: &Path, name: &str, jobs: Vec<Value>) -> Result<Emulator> {
        let config = json!({
            "accounts": [{"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}],
            "jobs": jobs,
        });
        let path = dir.join(format!("{name}-emulator.json"));
        std::fs::write(&path, serde_json::to_vec(&config)?)?;
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--config")
            .arg(&path);
        let mut process = Child::spawn(
            &format!("{name} emulator"),
            cmd,
            &dir.join(format!("{name}-emulator.log")),
        )?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            process.check_alive()?;
            let ok = http
                .get(format!("{url}/_emulator/faults"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("the emulator did not answer on {url} within 30 s").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Emulator { process, url, http })
    }

    /// Every call since the last [`Emulator::clear`] (at most the
    /// emulator's journal capacity, 10,000 entries).
    pub async fn journal(&self) -> Result<Vec<Call>> {
        let resp = self.http.get(format!("{}/_emulator/journal", self.url)).send().await?;
        Ok(resp.error_for_status()?.json().await?)
    }

    pub async fn clear(&self) -> Result<()> {
        self.http
            .delete(format!("{}/_emulator/journal", self.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// `POST /_emulator/faults` (e.g. `{"latencyMs": 100}`).
    pub async fn faults(&self, faults: Value) -> Result<()> {
        self.http
            .post(format!("{}/_emulator/faults", self.url))
            .json(&faults)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

/// An emulator config entry for one job.
pub fn job_entry(job_id: &str, two_way: bool) -> Value {
    json!({"jobId": job_id, "regionId": REGION, "twoWay": two_way, "status": "Synchronizing"})
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_journal_entries() {
        let calls: Vec<Call> = serde_json::from_value(json!([
            {"time": "2026-01-02T03:04:05.678Z", "action": "StopDtsJob", "params": {"DtsJobId": "j1", "SynchronizationDirection": "Reverse"}, "errorCode": null, "authOk": true},
            {"time": "2026-01-02T03:04:05.700Z", "action": "DescribeDtsJobs", "params": {"DtsJobId": "j1,j2"}, "errorCode": null},
        ]))
        .unwrap();
        assert_eq!(calls[0].direction(), "Reverse");
        assert_eq!(calls[0].time_ms().unwrap() % 1000.0, 678.0);
        assert_eq!(calls[1].described_ids(), vec!["j1", "j2"]);
        assert_eq!(by_action(&calls)["StopDtsJob"], 1);
    }
}
