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

/// `--secret-ledger FILE`: the account secret and the signature of a call
/// are appended to FILE, and neither is printed on stdout or stderr.
#[tokio::test]
async fn secret_ledger_records_secrets_and_nothing_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("emu.json");
    std::fs::write(
        &cfg,
        r#"{"accounts":[{"accessKeyId":"id","accessKeySecret":"ledger-test-secret"}],
            "jobs":[{"jobId":"j","regionId":"cn-hangzhou"}]}"#,
    )
    .unwrap();
    let ledger = dir.path().join("ledger");
    let stderr = dir.path().join("stderr");
    let mut child = Child(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&cfg)
            .arg("--secret-ledger")
            .arg(&ledger)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap().to_owned();

    let c = Credentials::new("id", "ledger-test-secret");
    let ts = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let api = [("DtsJobId".to_owned(), "j".to_owned())].into_iter().collect();
    let p = rpc_v1::signed_parameters("StopDtsJob", "2020-01-01", &api, &c, &ts, "ledgertestnonce");
    let q = rpc_v1::signed_query("POST", &p, "ledger-test-secret");
    let signature = url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "Signature")
        .map(|(_, v)| v.into_owned())
        .expect("the query is signed");
    let body = reqwest::Client::new()
        .post(format!("http://{addr}/?{q}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("\"Success\":true"), "{body}");

    let recorded = std::fs::read_to_string(&ledger).unwrap();
    assert!(
        recorded.contains("emulator-account-secret\tledger-test-secret\n"),
        "{recorded}"
    );
    assert!(
        recorded.contains(&format!("signature-hmac-sha1\t{signature}\n")),
        "{recorded}"
    );
    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let printed = format!("{line}{rest}{}", std::fs::read_to_string(&stderr).unwrap());
    assert!(printed.contains("dts call"), "the call was logged: {printed}");
    for secret in ["ledger-test-secret", signature.as_str()] {
        assert!(!printed.contains(secret), "a secret on stdout/stderr: {printed}");
    }
}
