//! The real `dts-emulator` binary: first stdout line, a signed call, and the
//! exit status and one-line message of each kind of bad config file.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use dts_api::sign::{rpc_v1, Credentials};

const BIN: &str = env!("CARGO_BIN_EXE_dts-emulator");

/// Kills the child when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_prints_its_address_and_serves_signed_calls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("emu.json");
    std::fs::write(
        &cfg,
        r#"{"accounts":[{"accessKeyId":"id","accessKeySecret":"secret"}],
            "jobs":[{"jobId":"j","regionId":"cn-hangzhou","twoWay":false,"status":"Synchronizing"}]}"#,
    )
    .unwrap();
    let mut child = Child(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {line:?}"));
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);

    let c = Credentials::new("id", "secret");
    let ts = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let api = [("DtsJobId".to_owned(), "j".to_owned())].into_iter().collect();
    let p = rpc_v1::signed_parameters("StopDtsJob", "2020-01-01", &api, &c, &ts, "binarytestnonce");
    let q = rpc_v1::signed_query("POST", &p, "secret");
    let body = reqwest::Client::new()
        .post(format!("http://{addr}/?{q}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("\"Success\":true"), "{body}");
    let jobs = reqwest::get(format!("http://{addr}/_emulator/jobs"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(jobs.contains("\"Forward\":\"Finished\""), "{jobs}");
}

#[test]
fn bad_config_files_exit_2_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("missing.yaml", None, "cannot read it"),
        ("bad.yaml", Some("accounts: [\n"), "invalid YAML/JSON"),
        (
            "unknown.yaml",
            Some("jobs:\n  - {jobId: j, regionId: r, twoway: true}\n"),
            "unknown field `twoway`",
        ),
        (
            "dup.yaml",
            Some("jobs:\n  - {jobId: j, regionId: r}\n  - {jobId: j, regionId: r}\n"),
            "duplicate jobId",
        ),
        (
            "emptyak.json",
            Some(r#"{"accounts":[{"accessKeyId":"","accessKeySecret":"s"}]}"#),
            "accessKeyId is empty",
        ),
    ];
    for (name, content, needle) in cases {
        let path = dir.path().join(name);
        if let Some(c) = content {
            std::fs::write(&path, c).unwrap();
        }
        let out = Command::new(BIN).arg("--config").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()) && stderr.contains(needle),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}
