//! The lifecycle calls through a capturing transport: the parameters each
//! one sends (note `DtsInstanceID` for DescribeDtsJobDetail, and `Region`
//! beside `RegionId` for DescribeDtsJobs) under both signature versions, and
//! how the describe answers are read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dts_api::{
    ClientConfig, Credentials, DtsClient, ErrorClass, ErrorReason, HttpRequest, HttpResponse, JobRef, JobsQuery,
    SignatureVersion, Transport, TransportError,
};
use futures::future::BoxFuture;

/// Answers every request with one fixed body and keeps the requests.
struct Fixed {
    status: u16,
    body: &'static str,
    seen: Mutex<Vec<HttpRequest>>,
}

impl Fixed {
    fn new(status: u16, body: &'static str) -> Arc<Self> {
        Arc::new(Self {
            status,
            body,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn queries(&self) -> Vec<BTreeMap<String, String>> {
        self.seen
            .lock()
            .map(|seen| {
                seen.iter()
                    .map(|r| {
                        url::Url::parse(&r.url)
                            .expect("url")
                            .query_pairs()
                            .into_owned()
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Transport for Fixed {
    fn send(&self, req: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(req);
        }
        let resp = HttpResponse {
            status: self.status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: self.body.as_bytes().to_vec(),
        };
        Box::pin(async move { Ok(resp) })
    }
}

fn job(direction: Option<&str>) -> JobRef {
    JobRef {
        job_id: "l3m1213ye7l1234".into(),
        instance_id: Some("dtsl3m1213ye7l1234".into()),
        region_id: "ap-northeast-1".into(),
        direction: direction.map(str::to_owned),
    }
}

fn creds() -> Credentials {
    Credentials::new("id", "secret")
}

#[tokio::test]
async fn stop_sends_job_instance_direction_and_region() {
    for version in [SignatureVersion::HmacSha1, SignatureVersion::Acs3HmacSha256] {
        let t = Fixed::new(200, r#"{"RequestId":"R","HttpStatusCode":200,"Success":true}"#);
        let cfg = ClientConfig {
            signature_version: version,
            ..ClientConfig::default()
        };
        let client = DtsClient::with_transport(cfg, t.clone());
        let ok = client.stop_dts_job(&creds(), &job(Some("Reverse"))).await.expect("ok");
        assert_eq!(ok.request_id.as_deref(), Some("R"));
        let q = t.queries().pop().expect("one request");
        assert_eq!(q.get("DtsJobId").map(String::as_str), Some("l3m1213ye7l1234"));
        assert_eq!(q.get("DtsInstanceId").map(String::as_str), Some("dtsl3m1213ye7l1234"));
        assert_eq!(q.get("SynchronizationDirection").map(String::as_str), Some("Reverse"));
        assert_eq!(q.get("RegionId").map(String::as_str), Some("ap-northeast-1"));
        let seen = t.seen.lock().map(|s| s[0].clone()).expect("request");
        assert!(
            seen.url.starts_with("https://dts.ap-northeast-1.aliyuncs.com/?"),
            "{}",
            seen.url
        );
        assert_eq!(seen.header("x-acs-action"), Some("StopDtsJob"));
    }
}

#[tokio::test]
async fn describe_uses_the_uppercase_id_spelling_and_reads_status() {
    let t = Fixed::new(
        200,
        r#"{"RequestId":"D","HttpStatusCode":200,"Success":true,"Status":"finished","DtsJobId":"l3m1213ye7l1234"}"#,
    );
    let client = DtsClient::with_transport(ClientConfig::default(), t.clone());
    let detail = client
        .describe_dts_job_detail(&creds(), &job(None))
        .await
        .expect("detail");
    assert_eq!(detail.request_id.as_deref(), Some("D"));
    assert_eq!(detail.status.as_deref(), Some("finished"));
    assert!(detail.is_finished());
    let q = t.queries().pop().expect("one request");
    assert_eq!(q.get("Action").map(String::as_str), Some("DescribeDtsJobDetail"));
    assert_eq!(q.get("DtsInstanceID").map(String::as_str), Some("dtsl3m1213ye7l1234"));
    assert!(!q.contains_key("DtsInstanceId"));
    assert!(!q.contains_key("SynchronizationDirection"));
}

#[tokio::test]
async fn describe_of_a_missing_job_is_job_not_found() {
    let t = Fixed::new(
        200,
        r#"{"RequestId":"D","HttpStatusCode":403,"Success":false,"ErrCode":"Forbidden.InstanceNotFound","ErrMessage":"The specified instance %s is not found.","DynamicMessage":"l3m1213ye7l1234"}"#,
    );
    let client = DtsClient::with_transport(ClientConfig::default(), t);
    let err = client
        .describe_dts_job_detail(&creds(), &job(None))
        .await
        .expect_err("missing");
    assert_eq!(
        (err.class, err.reason()),
        (ErrorClass::Terminal, ErrorReason::JobNotFound)
    );
    assert_eq!(
        err.message.as_deref(),
        Some("The specified instance l3m1213ye7l1234 is not found.")
    );
    assert_eq!(err.dynamic_message.as_deref(), Some("l3m1213ye7l1234"));
}

#[tokio::test]
async fn an_injected_region_never_reaches_the_transport() {
    let t = Fixed::new(200, r#"{"Success":true}"#);
    let client = DtsClient::with_transport(ClientConfig::default(), t.clone());
    let mut bad = job(None);
    bad.region_id = "evil.example.com/x".into();
    let err = client.stop_dts_job(&creds(), &bad).await.expect_err("refused");
    assert_eq!(
        (err.class, err.reason()),
        (ErrorClass::Terminal, ErrorReason::InvalidParameter)
    );
    assert!(t.queries().is_empty());
}

const VERSIONS: [SignatureVersion; 2] = [SignatureVersion::HmacSha1, SignatureVersion::Acs3HmacSha256];

fn client_for(version: SignatureVersion, t: &Arc<Fixed>) -> DtsClient {
    let cfg = ClientConfig {
        signature_version: version,
        // The emulator's form of endpoint, so the test says nothing about Alibaba's hosts.
        endpoint_override: Some(url::Url::parse("http://127.0.0.1:18080").expect("url")),
        ..ClientConfig::default()
    };
    DtsClient::with_transport(cfg, t.clone())
}

/// The API parameters of the one request `t` saw, with the action checked
/// and the signature scheme's own parameters taken out: for HMAC-SHA1 the
/// action and the signing parameters travel in the query; for
/// ACS3-HMAC-SHA256 the query holds the API parameters alone and the action
/// is the `x-acs-action` header.
fn api_params(t: &Fixed, version: SignatureVersion, action: &str) -> BTreeMap<String, String> {
    let seen = t.seen.lock().map(|s| s.clone()).expect("requests");
    assert_eq!(seen.len(), 1, "one call is one attempt");
    assert_eq!(seen[0].header("x-acs-action"), Some(action));
    let mut q = t.queries().pop().expect("one request");
    match version {
        SignatureVersion::HmacSha1 => {
            assert_eq!(q.remove("Action").as_deref(), Some(action));
            for common in [
                "AccessKeyId",
                "Format",
                "Signature",
                "SignatureMethod",
                "SignatureNonce",
                "SignatureVersion",
                "Timestamp",
                "Version",
            ] {
                assert!(q.remove(common).is_some(), "{common} missing");
            }
        }
        SignatureVersion::Acs3HmacSha256 => {
            assert!(!q.contains_key("Action"), "{q:?}");
            assert!(seen[0].header("authorization").is_some());
        }
    }
    q
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

const OK: &str = r#"{"RequestId":"R","HttpStatusCode":200,"Success":true}"#;

#[tokio::test]
async fn start_and_suspend_send_exactly_the_stop_parameters() {
    for version in VERSIONS {
        for action in ["StartDtsJob", "SuspendDtsJob"] {
            let t = Fixed::new(200, OK);
            let client = client_for(version, &t);
            let ok = match action {
                "StartDtsJob" => client.start_dts_job(&creds(), &job(Some("Reverse"))).await,
                _ => client.suspend_dts_job(&creds(), &job(Some("Reverse"))).await,
            }
            .expect("ok");
            assert_eq!(ok.request_id.as_deref(), Some("R"));
            assert_eq!(
                api_params(&t, version, action),
                map(&[
                    ("DtsInstanceId", "dtsl3m1213ye7l1234"),
                    ("DtsJobId", "l3m1213ye7l1234"),
                    ("RegionId", "ap-northeast-1"),
                    ("SynchronizationDirection", "Reverse"),
                ]),
                "{action} {version}"
            );

            // Without an instance or a direction, neither is sent.
            let t = Fixed::new(200, OK);
            let client = client_for(version, &t);
            let mut bare = job(None);
            bare.instance_id = None;
            match action {
                "StartDtsJob" => client.start_dts_job(&creds(), &bare).await,
                _ => client.suspend_dts_job(&creds(), &bare).await,
            }
            .expect("ok");
            assert_eq!(
                api_params(&t, version, action),
                map(&[("DtsJobId", "l3m1213ye7l1234"), ("RegionId", "ap-northeast-1")]),
                "{action} {version}"
            );
        }
    }
}

#[tokio::test]
async fn a_refused_start_is_classified_like_any_call() {
    let t = Fixed::new(
        200,
        r#"{"RequestId":"S","HttpStatusCode":403,"Success":false,"ErrCode":"InvalidJobStatus","ErrMessage":"The job status %s does not allow this operation","DynamicMessage":"Finished"}"#,
    );
    let err = client_for(SignatureVersion::HmacSha1, &t)
        .start_dts_job(&creds(), &job(None))
        .await
        .expect_err("refused");
    assert_eq!(
        (err.class, err.reason()),
        (ErrorClass::Terminal, ErrorReason::InvalidJobStatus)
    );
    assert_eq!(err.request_id.as_deref(), Some("S"));
}

const JOBS_PAGE: &str = r#"{
  "RequestId": "L", "HttpStatusCode": 200, "Success": true,
  "TotalRecordCount": "3", "PageNumber": 2, "PageRecordCount": 1,
  "DtsJobList": [
    {"DtsJobId": "j1", "DtsInstanceID": "dtsj1", "Status": "Synchronizing", "Delay": 40, "Checkpoint": "1764633600",
     "DtsJobDirection": "Forward", "ErrorMessage": "",
     "ReverseJob": {"DtsJobId": "j1r", "Status": "Failed", "Delay": "7", "DtsJobDirection": "Reverse",
                    "ErrorMessage": "DTS-1: source gone"}},
    {"Status": "Finished"}
  ]
}"#;

#[tokio::test]
async fn describe_jobs_sends_region_twice_the_id_list_and_the_page() {
    for version in VERSIONS {
        let t = Fixed::new(200, JOBS_PAGE);
        let query = JobsQuery {
            region_id: "ap-northeast-1".into(),
            job_type: Some("SYNC".into()),
            job_ids: vec!["j1".into(), "j2".into(), "j3".into()],
            page_number: 2,
            page_size: 500,
        };
        let page = client_for(version, &t)
            .describe_dts_jobs(&creds(), &query)
            .await
            .expect("page");
        assert_eq!(
            api_params(&t, version, "DescribeDtsJobs"),
            map(&[
                ("DtsJobId", "j1,j2,j3"),
                ("JobType", "SYNC"),
                ("PageNumber", "2"),
                ("PageSize", "30"),
                ("Region", "ap-northeast-1"),
                ("RegionId", "ap-northeast-1"),
            ]),
            "{version}"
        );

        assert_eq!(page.request_id.as_deref(), Some("L"));
        assert_eq!(page.http_status, 200);
        assert_eq!(
            (page.total_record_count, page.page_number, page.page_record_count),
            (Some(3), Some(2), Some(1))
        );
        assert_eq!(page.jobs.len(), 1, "the entry without a DtsJobId is skipped");
        let j = &page.jobs[0];
        assert_eq!(j.job_id, "j1");
        assert_eq!(j.instance_id.as_deref(), Some("dtsj1"));
        assert!(j.status_is("SYNCHRONIZING"));
        assert_eq!((j.delay_ms, j.checkpoint), (Some(40), Some(1_764_633_600)));
        assert_eq!(j.error_message, None);
        let r = j.reverse.as_deref().expect("reverse");
        assert_eq!(r.job_id, "j1r");
        assert!(r.status_is("failed"));
        assert_eq!(r.delay_ms, Some(7));
        assert_eq!(r.direction.as_deref(), Some("Reverse"));
        assert_eq!(r.error_message.as_deref(), Some("DTS-1: source gone"));
    }
}

#[tokio::test]
async fn describe_jobs_without_filters_sends_no_id_and_no_type() {
    for version in VERSIONS {
        let t = Fixed::new(
            200,
            r#"{"RequestId":"E","Success":true,"DtsJobList":[],"TotalRecordCount":0}"#,
        );
        let query = JobsQuery {
            region_id: "cn-hangzhou".into(),
            ..JobsQuery::default()
        };
        let page = client_for(version, &t)
            .describe_dts_jobs(&creds(), &query)
            .await
            .expect("page");
        assert_eq!(
            api_params(&t, version, "DescribeDtsJobs"),
            map(&[
                ("PageNumber", "1"),
                ("PageSize", "1"),
                ("Region", "cn-hangzhou"),
                ("RegionId", "cn-hangzhou"),
            ]),
            "{version}"
        );
        assert!(page.jobs.is_empty());
        assert_eq!(page.total_record_count, Some(0));
    }
}

#[tokio::test]
async fn a_describe_jobs_query_that_cannot_be_sent_never_reaches_the_transport() {
    let t = Fixed::new(200, OK);
    let client = client_for(SignatureVersion::HmacSha1, &t);
    let comma = JobsQuery {
        region_id: "cn-hangzhou".into(),
        job_ids: vec!["j1,j2".into()],
        ..JobsQuery::default()
    };
    let bad_region = JobsQuery {
        region_id: "cn-hangzhou.evil.example".into(),
        ..JobsQuery::default()
    };
    for query in [comma, bad_region] {
        let err = client.describe_dts_jobs(&creds(), &query).await.expect_err("refused");
        assert_eq!(
            (err.class, err.reason()),
            (ErrorClass::Terminal, ErrorReason::InvalidParameter)
        );
    }
    assert!(t.queries().is_empty());
}

#[tokio::test]
async fn describe_detail_reads_progress_fields() {
    let t = Fixed::new(
        200,
        r#"{"RequestId":"D","Success":true,"Status":"Synchronizing","Delay":"250","Checkpoint":1764633600,"ErrorMessage":"","DtsJobDirection":"Reverse"}"#,
    );
    let detail = client_for(SignatureVersion::Acs3HmacSha256, &t)
        .describe_dts_job_detail(&creds(), &job(Some("Reverse")))
        .await
        .expect("detail");
    assert!(detail.status_is("synchronizing"));
    assert!(!detail.is_finished());
    assert_eq!(detail.delay_ms, Some(250));
    assert_eq!(detail.checkpoint, Some(1_764_633_600));
    assert_eq!(detail.error_message, None);
    assert_eq!(detail.direction.as_deref(), Some("Reverse"));
    assert_eq!(
        api_params(&t, SignatureVersion::Acs3HmacSha256, "DescribeDtsJobDetail"),
        map(&[
            ("DtsInstanceID", "dtsl3m1213ye7l1234"),
            ("DtsJobId", "l3m1213ye7l1234"),
            ("RegionId", "ap-northeast-1"),
            ("SynchronizationDirection", "Reverse"),
        ])
    );
}
