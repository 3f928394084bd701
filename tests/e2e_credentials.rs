//! End to end: where the operator's credentials come from, as ACK users run
//! it. The real `dts-operator` and `dts-emulator` (DTS and STS) binaries,
//! the real kube-apiserver as the OIDC issuer of RRSA:
//!
//! * RRSA: a ServiceAccount token from the test kube-apiserver (TokenRequest
//!   with audience `sts.aliyuncs.com`) in a file, as the kubelet projects
//!   it; the emulator's STS verifies it against the API server's JWKS and
//!   issuer, and the stops are signed with the temporary credentials. A
//!   token of the wrong audience gets a clear condition and no DTS call;
//! * temporary credentials that expire during a burst of 50 stops are
//!   refreshed: every job stops exactly once;
//! * a rotated file in the default credentials directory is used without a
//!   restart, and retries a job that failed terminally on the old key;
//! * a Secret naming a role is assumed with its keys (AssumeRole);
//! * bad Secrets and Secrets outside `--secret-namespaces` get their own
//!   reason, naming the Secret and key, and no DTS call;
//! * no secret, token or temporary credential reaches the debug log, the
//!   Events or the status.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dts_operator::crd::{DtsJob, Phase};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use serde_json::{json, Value};
use support::stack::{self, Emulator, Operator, OperatorOptions, ACCESS_KEY_ID, ACCESS_KEY_SECRET};
use support::{list_until, wait_for, TestNamespace};

const ROLE_ARN: &str = "acs:ram::1234567890:role/dts-operator";
const PROVIDER_ARN: &str = "acs:ram::1234567890:oidc-provider/ack-rrsa-e2e";
const AUDIENCE: &str = "sts.aliyuncs.com";
/// A secret the emulator does not know: signatures made with it fail.
use support::secrets::OLD_DIR_SECRET as WRONG_SECRET;
const TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);
const SETTLE: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------- helpers

/// The API server's OIDC issuer and signing keys (what an RRSA OIDC
/// provider is registered with).
async fn issuer_and_jwks(client: &kube::Client) -> (String, Value) {
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let req = http::Request::get(path).body(Vec::new()).expect("request");
            let text = client
                .request_text(req)
                .await
                .unwrap_or_else(|e| panic!("GET {path} from the API server: {e}"));
            serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
        }
    };
    let discovery = get("/.well-known/openid-configuration").await;
    let issuer = discovery["issuer"].as_str().expect("issuer").to_owned();
    (issuer, get("/openid/v1/jwks").await)
}

/// The emulator config: the test account, an RRSA role trusting the API
/// server's ServiceAccounts (and, for AssumeRole, the test account), the
/// OIDC provider, and `jobs`.
fn emulator_config(issuer: &str, jwks: &Value, lifetime: Option<u64>, jobs: Vec<Value>) -> Value {
    let mut sts = json!({
        "roles": [{
            "arn": ROLE_ARN,
            "trustedAccessKeyIds": [ACCESS_KEY_ID],
            "oidcProviderArns": [PROVIDER_ARN],
        }],
        "oidcProviders": [{"arn": PROVIDER_ARN, "issuer": issuer, "audiences": [AUDIENCE], "jwks": jwks}],
    });
    if let Some(l) = lifetime {
        sts["credentialLifetimeSeconds"] = json!(l);
    }
    json!({"accounts": [stack::account()], "jobs": jobs, "sts": sts, "describeQps": 0})
}

/// A token of ServiceAccount `name` in `ns` for `audience`, written to a
/// file as the kubelet projects it; returns the path and the token.
async fn projected_token(ns: &TestNamespace, name: &str, audience: &str) -> (PathBuf, String) {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let api = ns.api::<ServiceAccount>();
    if api.get_opt(name).await.expect("reading the ServiceAccount").is_none() {
        api.create(&PostParams::default(), &sa)
            .await
            .expect("creating the ServiceAccount");
    }
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": [audience], "expirationSeconds": 3600}
    }))
    .unwrap();
    let token = api
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("TokenRequest status")
        .token;
    support::secrets::record("service-account-token", &token);
    // Not in the log directory: the run's secret scan reads that.
    let dir = ns
        .input_dir()
        .join(format!("token-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, &token).unwrap();
    (path, token)
}

/// The RRSA variables of a Pod whose token sits at `token_file`.
fn rrsa_env(token_file: &Path) -> Vec<(String, String)> {
    vec![
        ("ALIBABA_CLOUD_ROLE_ARN".into(), ROLE_ARN.into()),
        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN".into(), PROVIDER_ARN.into()),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE".into(), token_file.display().to_string()),
        ("ALIBABA_CLOUD_ROLE_SESSION_NAME".into(), "dts-operator-e2e".into()),
    ]
}

fn operator(ns: &TestNamespace, emu: &Emulator, env: Vec<(String, String)>, args: &[&str]) -> Operator {
    let mut extra_args = vec!["--sts-endpoint".to_owned(), emu.url.clone()];
    extra_args.extend(args.iter().map(|s| s.to_string()));
    Operator::start(
        ns,
        "operator",
        &emu.url,
        OperatorOptions {
            extra_args,
            env,
            ..Default::default()
        },
    )
}

async fn create_job(ns: &TestNamespace, name: &str, job_id: &str, directions: &[&str], secret: Option<&str>) {
    let mut spec = json!({
        "jobId": job_id, "regionId": "cn-hangzhou", "directions": directions, "desiredState": "Stopped",
    });
    if let Some(s) = secret {
        spec["credentialsSecretRef"] = json!({"name": s});
    }
    let job: DtsJob = support::dtsjob_object(name, spec);
    ns.api::<DtsJob>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap_or_else(|e| panic!("creating DtsJob {name}: {e}"));
}

async fn wait_job(ns: &TestNamespace, name: &str, what: &str, pred: impl Fn(&DtsJob) -> bool) -> DtsJob {
    let api = ns.api::<DtsJob>();
    wait_for(&format!("DtsJob {name}: {what}"), TIMEOUT, POLL, || {
        let api = api.clone();
        let pred = &pred;
        async move { api.get(name).await.ok().filter(|j| pred(j)) }
    })
    .await
}

fn phase(job: &DtsJob) -> Option<Phase> {
    job.status.as_ref()?.phase
}

fn source(job: &DtsJob) -> Option<&str> {
    job.status.as_ref()?.credentials_source.as_deref()
}

/// The Stalled condition's (reason, message) when it is True.
fn stalled(job: &DtsJob) -> Option<(String, String)> {
    let c = job
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled" && c.status == "True")?;
    Some((c.reason.clone(), c.message.clone()))
}

/// Accepted StopDtsJob calls for `job_id` (any direction).
fn accepted_stops<'a>(journal: &'a [Value], job_id: &str) -> Vec<&'a Value> {
    journal
        .iter()
        .filter(|e| e["action"] == "StopDtsJob" && e["params"]["DtsJobId"] == job_id && e["httpStatus"] == 200)
        .collect()
}

/// Every credential the emulator's STS issued: (AccessKeyId, secret,
/// token, issued by). Kept in memory only, to search for.
async fn issued(emu: &Emulator) -> Vec<(String, String, String, String)> {
    let body = reqwest::get(format!("{}/_emulator/sts/credentials", emu.url))
        .await
        .expect("STS credentials")
        .bytes()
        .await
        .expect("STS credentials body");
    let list: Vec<Value> = serde_json::from_slice(&body).expect("JSON");
    list.iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (
                s("accessKeyId"),
                s("accessKeySecret"),
                s("securityToken"),
                s("issuedBy"),
            )
        })
        .collect()
}

/// `secrets` and the temporary AccessKeySecret and SecurityToken of every
/// credential in `issued`, labelled for [`assert_no_leak`].
fn with_temporaries<'a>(
    mut secrets: Vec<(&'a str, &'a str)>,
    issued: &'a [(String, String, String, String)],
) -> Vec<(&'a str, &'a str)> {
    for (_, secret, token, _) in issued {
        secrets.push(("a temporary AccessKeySecret", secret));
        secrets.push(("a temporary SecurityToken", token));
    }
    secrets
}

/// Asserts that none of `secrets` appears in the operator's log, the
/// namespace's Events or the DtsJobs (status included). The values are
/// never printed: a failure names only which kind leaked where.
async fn assert_no_leak(ns: &TestNamespace, op: &Operator, secrets: &[(&str, &str)]) {
    let log = op.process.log();
    assert!(log.contains("DEBUG"), "the operator ran at debug level");
    let events = serde_json::to_string(
        &ns.api::<Event>()
            .list(&ListParams::default())
            .await
            .expect("Events")
            .items,
    )
    .unwrap();
    let jobs = serde_json::to_string(
        &ns.api::<DtsJob>()
            .list(&ListParams::default())
            .await
            .expect("DtsJobs")
            .items,
    )
    .unwrap();
    for (what, value) in secrets {
        assert!(!value.is_empty(), "{what} is known");
        for (place, text) in [("operator log", &log), ("Events", &events), ("DtsJobs", &jobs)] {
            assert!(!text.contains(value), "{what} appears in the {place}");
        }
    }
}

async fn set_secret_data(ns: &TestNamespace, name: &str, data: Value) {
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------- tests

/// RRSA end to end: the operator assumes the role with the ServiceAccount
/// token (issuer and JWKS: the test kube-apiserver) and stops a two-way job
/// with the temporary credentials; the journal shows the STS call, then
/// both StopDtsJob calls signed by the temporary AccessKeyId.
#[tokio::test]
async fn rrsa_assumes_the_role_with_the_service_account_token_and_stops_with_it() {
    let ns = TestNamespace::new("creds-rrsa").await;
    let (issuer, jwks) = issuer_and_jwks(&ns.client).await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        emulator_config(&issuer, &jwks, None, vec![stack::job("dtsjRrsa01", None, true)]),
    )
    .await;
    let (token_file, token) = projected_token(&ns, "dts-operator", AUDIENCE).await;
    let op = operator(&ns, &emu, rrsa_env(&token_file), &[]);
    create_job(&ns, "orders", "dtsjRrsa01", &["Forward", "Reverse"], None).await;
    let job = wait_job(&ns, "orders", "phase Stopped", |j| phase(j) == Some(Phase::Stopped)).await;
    assert_eq!(source(&job), Some("RRSA"));

    let journal = emu.journal().await;
    let sts_at = journal
        .iter()
        .position(|e| e["action"] == "AssumeRoleWithOIDC" && e["httpStatus"] == 200)
        .expect("an accepted AssumeRoleWithOIDC");
    assert_eq!(journal[sts_at]["params"]["RoleArn"], ROLE_ARN);
    assert_eq!(journal[sts_at]["params"]["RoleSessionName"], "dts-operator-e2e");
    let issued = issued(&emu).await;
    let oidc: Vec<_> = issued.iter().filter(|c| c.3 == "AssumeRoleWithOIDC").collect();
    assert!(!oidc.is_empty(), "STS issued credentials by OIDC");
    let stops = accepted_stops(&journal, "dtsjRrsa01");
    assert_eq!(stops.len(), 2, "one stop per direction");
    for stop in &stops {
        let key = stop["accessKeyId"].as_str().expect("signed");
        assert!(key.starts_with("STS."), "signed with temporary credentials");
        assert!(oidc.iter().any(|c| c.0 == key), "signed by the AccessKeyId STS issued");
        assert_eq!(stop["authOk"], true);
        let at = journal.iter().position(|e| std::ptr::eq(e, *stop)).unwrap();
        assert!(at > sts_at, "the STS call came first");
    }
    assert!(
        journal.iter().all(|e| e["accessKeyId"] != ACCESS_KEY_ID),
        "no call with a long-term key"
    );
    let secrets = with_temporaries(vec![("the ServiceAccount token", token.as_str())], &issued);
    assert_no_leak(&ns, &op, &secrets).await;
}

/// A token for another audience is refused by STS: the DtsJob shows
/// `AssumeRoleFailed` (Stalled, with STS's code) and a Warning Event, STS
/// is asked once for that token, and DTS never.
#[tokio::test]
async fn a_token_of_the_wrong_audience_stalls_with_no_dts_call() {
    let ns = TestNamespace::new("creds-rrsa-audience").await;
    let (issuer, jwks) = issuer_and_jwks(&ns.client).await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        emulator_config(&issuer, &jwks, None, vec![stack::job("dtsjAud01", None, false)]),
    )
    .await;
    let (token_file, token) = projected_token(&ns, "dts-operator", "https://not-sts.example.com").await;
    let op = operator(&ns, &emu, rrsa_env(&token_file), &[]);
    create_job(&ns, "orders", "dtsjAud01", &["Forward"], None).await;
    let job = wait_job(&ns, "orders", "Stalled by AssumeRoleFailed", |j| {
        stalled(j).is_some_and(|(r, _)| r == "AssumeRoleFailed")
    })
    .await;
    let (_, message) = stalled(&job).unwrap();
    assert!(
        message.contains("AudienceNotMatch") && message.contains("AssumeRoleWithOIDC") && message.contains(ROLE_ARN),
        "{message}"
    );
    assert_eq!(phase(&job), Some(Phase::Pending));
    wait_for("the Warning Event", TIMEOUT, POLL, || async {
        let events = ns.api::<Event>().list(&ListParams::default()).await.ok()?;
        events
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("AssumeRoleFailed") && e.type_.as_deref() == Some("Warning"))
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let journal = emu.journal().await;
    let dts: Vec<_> = journal.iter().filter(|e| e["action"] != "AssumeRoleWithOIDC").collect();
    assert!(dts.is_empty(), "no DTS call: {dts:?}");
    let sts = journal.iter().filter(|e| e["action"] == "AssumeRoleWithOIDC").count();
    assert_eq!(sts, 1, "the refusal is remembered for this token");
    assert_no_leak(&ns, &op, &[("the ServiceAccount token", token.as_str())]).await;
}

/// Temporary credentials living 3 s, 50 stops at the default 10 calls/s
/// (5 s at least): the credentials expire during the burst and are
/// refreshed; every job stops, each with exactly one accepted StopDtsJob.
#[tokio::test]
async fn credentials_expiring_during_a_burst_of_fifty_stops_are_refreshed() {
    let ns = TestNamespace::new("creds-rrsa-burst").await;
    let (issuer, jwks) = issuer_and_jwks(&ns.client).await;
    let ids: Vec<String> = (0..50).map(|i| format!("dtsjBurst{i:02}")).collect();
    let jobs = ids.iter().map(|id| stack::job(id, None, false)).collect();
    let emu = Emulator::start(&ns, "emulator", emulator_config(&issuer, &jwks, Some(3), jobs)).await;
    let (token_file, token) = projected_token(&ns, "dts-operator", AUDIENCE).await;
    let op = operator(&ns, &emu, rrsa_env(&token_file), &[]);
    let start = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        create_job(&ns, &format!("burst-{i:02}"), id, &["Forward"], None).await;
    }
    let api = ns.api::<DtsJob>();
    wait_for(
        "all 50 DtsJobs Stopped",
        Duration::from_secs(180),
        Duration::from_millis(250),
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            (list.items.len() == 50 && list.items.iter().all(|j| phase(j) == Some(Phase::Stopped))).then_some(())
        },
    )
    .await;
    let elapsed = start.elapsed();
    let journal = emu.journal().await;
    for id in &ids {
        assert_eq!(
            accepted_stops(&journal, id).len(),
            1,
            "exactly one accepted stop for {id}"
        );
    }
    let stops: Vec<&Value> = journal.iter().filter(|e| e["action"] == "StopDtsJob").collect();
    let expired = stops
        .iter()
        .filter(|e| e["errorCode"].as_str().is_some_and(|c| c.contains("Expired")))
        .count();
    let other_refusals = stops
        .iter()
        .filter(|e| e["httpStatus"] != 200 && !e["errorCode"].as_str().is_some_and(|c| c.contains("Expired")))
        .count();
    assert_eq!(other_refusals, 0, "no stop refused for another reason");
    let sts = journal
        .iter()
        .filter(|e| e["action"] == "AssumeRoleWithOIDC" && e["httpStatus"] == 200)
        .count();
    let keys: std::collections::BTreeSet<&str> = stops
        .iter()
        .filter(|e| e["httpStatus"] == 200)
        .filter_map(|e| e["accessKeyId"].as_str())
        .collect();
    assert!(
        sts >= 2,
        "the 3 s credentials were refreshed during the burst ({sts} STS calls)"
    );
    assert!(
        keys.len() >= 2,
        "accepted stops were signed by more than one temporary key"
    );
    println!(
        "burst of 50 stops with 3 s credentials: {elapsed:?}, {sts} AssumeRoleWithOIDC calls, \
         {} temporary keys used, {expired} stops refused as expired and retried",
        keys.len()
    );
    let issued = issued(&emu).await;
    let secrets = with_temporaries(vec![("the ServiceAccount token", token.as_str())], &issued);
    assert_no_leak(&ns, &op, &secrets).await;
}

/// Writes `files` into `dir` the way the kubelet updates a Secret volume:
/// a new directory, then an atomic rename of the `..data` link.
fn write_credentials_dir(dir: &Path, files: &[(&str, &str)]) {
    let version = dir.join(format!("..{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&version).unwrap();
    for (k, v) in files {
        std::fs::write(version.join(k), v).unwrap();
        let link = dir.join(k);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(k), &link).unwrap();
        }
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

/// The default credentials directory holds a wrong secret: the stop fails
/// terminally (`AuthenticationFailed`). The file is rotated as the kubelet
/// does: the same operator process uses the new key, retries the failed
/// job by itself and stops it, with one accepted StopDtsJob.
#[tokio::test]
async fn a_rotated_default_credentials_file_is_used_without_a_restart() {
    let ns = TestNamespace::new("creds-dir-rotate").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        json!({"accounts": [stack::account()], "jobs": [stack::job("dtsjDir01", None, false)]}),
    )
    .await;
    let dir = ns.input_dir().join("default-credentials");
    std::fs::create_dir_all(&dir).unwrap();
    write_credentials_dir(
        &dir,
        &[("accessKeyId", ACCESS_KEY_ID), ("accessKeySecret", WRONG_SECRET)],
    );
    let dir_arg = dir.display().to_string();
    let mut op = operator(&ns, &emu, Vec::new(), &["--default-credentials-dir", &dir_arg]);
    create_job(&ns, "orders", "dtsjDir01", &["Forward"], None).await;
    let job = wait_job(&ns, "orders", "Stalled by AuthenticationFailed", |j| {
        stalled(j).is_some_and(|(r, _)| r == "AuthenticationFailed")
    })
    .await;
    assert_eq!(source(&job), Some("DefaultCredentialsDir"));
    let refused = emu.calls("StopDtsJob").await;
    assert_eq!(refused.len(), 1, "one refused stop");
    assert_eq!(refused[0]["authOk"], false);

    write_credentials_dir(
        &dir,
        &[("accessKeyId", ACCESS_KEY_ID), ("accessKeySecret", ACCESS_KEY_SECRET)],
    );
    let job = wait_job(&ns, "orders", "phase Stopped after the rotation", |j| {
        phase(j) == Some(Phase::Stopped)
    })
    .await;
    assert_eq!(source(&job), Some("DefaultCredentialsDir"));
    assert!(
        op.process.try_status().is_none(),
        "the same operator process, not restarted"
    );
    let journal = emu.journal().await;
    assert_eq!(accepted_stops(&journal, "dtsjDir01").len(), 1);
    assert_no_leak(
        &ns,
        &op,
        &[
            ("the AccessKeySecret", ACCESS_KEY_SECRET),
            ("the old secret", WRONG_SECRET),
        ],
    )
    .await;
}

/// A Secret with `roleArn` is assumed with its keys (AssumeRole, signed by
/// the Secret's AccessKey): the stop is signed by the temporary key and the
/// status says `Secret/<name> (AssumeRole)`.
#[tokio::test]
async fn a_secret_naming_a_role_is_assumed_with_its_keys() {
    let ns = TestNamespace::new("creds-secret-role").await;
    let (issuer, jwks) = issuer_and_jwks(&ns.client).await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        emulator_config(&issuer, &jwks, None, vec![stack::job("dtsjRole01", None, false)]),
    )
    .await;
    let data = json!({
        "accessKeyId": b64(ACCESS_KEY_ID.as_bytes()),
        "accessKeySecret": b64(ACCESS_KEY_SECRET.as_bytes()),
        "roleArn": b64(ROLE_ARN.as_bytes()),
        "roleSessionName": b64(b"orders-stop"),
    });
    set_secret_data(&ns, "assume-role", data).await;
    let op = operator(&ns, &emu, Vec::new(), &[]);
    create_job(&ns, "orders", "dtsjRole01", &["Forward"], Some("assume-role")).await;
    let job = wait_job(&ns, "orders", "phase Stopped", |j| phase(j) == Some(Phase::Stopped)).await;
    assert_eq!(source(&job), Some("Secret/assume-role (AssumeRole)"));
    let journal = emu.journal().await;
    let sts_at = journal
        .iter()
        .position(|e| e["action"] == "AssumeRole" && e["httpStatus"] == 200)
        .expect("an accepted AssumeRole");
    assert_eq!(
        journal[sts_at]["accessKeyId"], ACCESS_KEY_ID,
        "signed by the Secret's key"
    );
    assert_eq!(journal[sts_at]["params"]["RoleSessionName"], "orders-stop");
    let stops = accepted_stops(&journal, "dtsjRole01");
    assert_eq!(stops.len(), 1);
    assert!(stops[0]["accessKeyId"].as_str().unwrap().starts_with("STS."));
    let issued = issued(&emu).await;
    let secrets = with_temporaries(vec![("the AccessKeySecret", ACCESS_KEY_SECRET)], &issued);
    assert_no_leak(&ns, &op, &secrets).await;
}

/// Bad Secrets, one DtsJob each: a missing key, an empty value, bytes that
/// are not UTF-8, a value over 4 KiB. Each job stalls with its reason and a
/// message naming the Secret and the key, gets a Warning Event, and no DTS
/// call is made; the operator keeps running.
#[tokio::test]
async fn bad_secrets_each_get_a_clear_condition_and_no_call() {
    let ns = TestNamespace::new("creds-bad-secrets").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        json!({"accounts": [stack::account()], "jobs": [stack::job("dtsjBad01", None, false)]}),
    )
    .await;
    let id = b64(ACCESS_KEY_ID.as_bytes());
    let huge = "Z".repeat(5000);
    let table: Vec<(&str, Value, &str, &str, &str)> = vec![
        (
            "missing-key",
            json!({"accessKeyId": id}),
            "CredentialsKeyMissing",
            "accessKeySecret",
            "is missing",
        ),
        (
            "empty-value",
            json!({"accessKeyId": id, "accessKeySecret": b64(b"  ")}),
            "CredentialsKeyMissing",
            "accessKeySecret",
            "is empty",
        ),
        (
            "not-utf8",
            json!({"accessKeyId": id, "accessKeySecret": b64(&[0xc3, 0x28, 0xff])}),
            "CredentialsKeyInvalid",
            "accessKeySecret",
            "UTF-8",
        ),
        (
            "huge-value",
            json!({"accessKeyId": id, "accessKeySecret": b64(huge.as_bytes())}),
            "CredentialsKeyInvalid",
            "accessKeySecret",
            "4096 bytes",
        ),
    ];
    for (name, data, ..) in &table {
        set_secret_data(&ns, name, data.clone()).await;
        create_job(&ns, name, "dtsjBad01", &["Forward"], Some(name)).await;
    }
    let mut op = operator(&ns, &emu, Vec::new(), &[]);
    for (name, _, reason, key, problem) in &table {
        let job = wait_job(&ns, name, &format!("Stalled by {reason}"), |j| {
            stalled(j).is_some_and(|(r, _)| r == *reason)
        })
        .await;
        let (_, message) = stalled(&job).unwrap();
        assert!(
            message.contains(&format!("Secret {name}")) && message.contains(key) && message.contains(problem),
            "{name}: {message}"
        );
        assert_eq!(phase(&job), Some(Phase::Pending), "{name}");
    }
    let has = |events: &[Event], name: &str, reason: &str| {
        events.iter().any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
    };
    let events = list_until(&ns, Duration::from_secs(30), |events: &[Event]| {
        table.iter().all(|(name, _, reason, ..)| has(events, name, reason))
    })
    .await;
    for (name, _, reason, ..) in &table {
        assert!(has(&events, name, reason), "a Warning Event {reason} for {name}");
    }
    tokio::time::sleep(SETTLE).await;
    assert!(emu.calls("StopDtsJob").await.is_empty(), "no stop was sent");
    assert!(op.process.try_status().is_none(), "the operator is still running");
    assert_no_leak(&ns, &op, &[("the huge value", huge.as_str())]).await;
}

/// With `--secret-namespaces` naming another namespace, a DtsJob here
/// referencing a Secret gets `CredentialsNamespaceNotAllowed`, no Secret is
/// read and no DTS call is made; a DtsJob on the default credentials in the
/// same namespace still stops.
#[tokio::test]
async fn a_secret_outside_secret_namespaces_is_not_read() {
    let ns = TestNamespace::new("creds-ns-not-allowed").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        json!({"accounts": [stack::account()], "jobs": [
            stack::job("dtsjNs01", None, false), stack::job("dtsjNs02", None, false)
        ]}),
    )
    .await;
    stack::create_credentials_secret(&ns, "team-creds").await;
    let env = stack::default_credentials_env();
    let op = operator(&ns, &emu, env, &["--secret-namespaces", "some-other-namespace"]);
    create_job(&ns, "with-secret", "dtsjNs01", &["Forward"], Some("team-creds")).await;
    create_job(&ns, "with-defaults", "dtsjNs02", &["Forward"], None).await;
    let job = wait_job(&ns, "with-secret", "Stalled by CredentialsNamespaceNotAllowed", |j| {
        stalled(j).is_some_and(|(r, _)| r == "CredentialsNamespaceNotAllowed")
    })
    .await;
    let (_, message) = stalled(&job).unwrap();
    assert!(
        message.contains(&ns.name) && message.contains("team-creds"),
        "{message}"
    );
    let job = wait_job(&ns, "with-defaults", "phase Stopped", |j| {
        phase(j) == Some(Phase::Stopped)
    })
    .await;
    assert_eq!(source(&job), Some("Environment"));
    tokio::time::sleep(SETTLE).await;
    let journal = emu.journal().await;
    assert!(
        accepted_stops(&journal, "dtsjNs01").is_empty(),
        "no call for the refused Secret"
    );
    assert_eq!(accepted_stops(&journal, "dtsjNs02").len(), 1);
    assert_no_leak(&ns, &op, &[("the AccessKeySecret", ACCESS_KEY_SECRET)]).await;
}

/// STS revokes the temporary credentials before their expiry (the
/// emulator's `POST /_emulator/sts/expire`): DTS refuses the next stop as
/// expired (`CredentialsExpired`, retryable), the operator drops the
/// cached credentials, assumes the role again and the retry is accepted,
/// with no human step.
#[tokio::test]
async fn revoked_temporary_credentials_recover_by_themselves() {
    let ns = TestNamespace::new("creds-rrsa-revoked").await;
    let (issuer, jwks) = issuer_and_jwks(&ns.client).await;
    let jobs = vec![
        stack::job("dtsjRev01", None, false),
        stack::job("dtsjRev02", None, false),
    ];
    let emu = Emulator::start(&ns, "emulator", emulator_config(&issuer, &jwks, None, jobs)).await;
    let (token_file, token) = projected_token(&ns, "dts-operator", AUDIENCE).await;
    let op = operator(&ns, &emu, rrsa_env(&token_file), &[]);
    create_job(&ns, "first", "dtsjRev01", &["Forward"], None).await;
    wait_job(&ns, "first", "phase Stopped", |j| phase(j) == Some(Phase::Stopped)).await;
    let first_key = accepted_stops(&emu.journal().await, "dtsjRev01")[0]["accessKeyId"]
        .as_str()
        .unwrap()
        .to_owned();

    let resp = reqwest::Client::new()
        .post(format!("{}/_emulator/sts/expire", emu.url))
        .send()
        .await
        .expect("expiring the issued credentials");
    assert!(resp.status().is_success());
    create_job(&ns, "second", "dtsjRev02", &["Forward"], None).await;
    let job = wait_job(&ns, "second", "phase Stopped", |j| phase(j) == Some(Phase::Stopped)).await;
    assert_eq!(source(&job), Some("RRSA"));

    let journal = emu.journal().await;
    let stops: Vec<&Value> = journal
        .iter()
        .filter(|e| e["action"] == "StopDtsJob" && e["params"]["DtsJobId"] == "dtsjRev02")
        .collect();
    assert!(
        stops[0]["errorCode"].as_str().is_some_and(|c| c.contains("Expired")),
        "the first attempt was refused as expired: {}",
        stops[0]["errorCode"]
    );
    assert_eq!(stops[0]["accessKeyId"], first_key.as_str());
    let accepted = accepted_stops(&journal, "dtsjRev02");
    assert_eq!(accepted.len(), 1, "exactly one accepted stop");
    assert_ne!(
        accepted[0]["accessKeyId"],
        first_key.as_str(),
        "signed by new credentials"
    );
    let sts = journal
        .iter()
        .filter(|e| e["action"] == "AssumeRoleWithOIDC" && e["httpStatus"] == 200)
        .count();
    assert_eq!(sts, 2, "the role was assumed again once");
    let issued = issued(&emu).await;
    let secrets = with_temporaries(vec![("the ServiceAccount token", token.as_str())], &issued);
    assert_no_leak(&ns, &op, &secrets).await;
}
