//! The two lifecycle calls through a capturing transport: the parameters
//! each one sends (note `DtsInstanceID` for DescribeDtsJobDetail) and how
//! the describe answer is read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dts_api::{
    ClientConfig, Credentials, DtsClient, ErrorClass, ErrorReason, HttpRequest, HttpResponse, JobRef, SignatureVersion,
    Transport, TransportError,
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
