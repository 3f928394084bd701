//! Every canned server answer recorded in
//! `tests/data/sdk-http-behaviour-observations.json` (replayed to Alibaba's
//! official SDKs), replayed to this client through a fake transport: the
//! class, code, status, rendered message and retry-after of each, checked
//! against a table written from docs/dts-api.md (§5, §8) and cross-checked
//! against what the official SDK itself reported for the same answer.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dts_api::{
    ClientConfig, Credentials, DtsClient, DtsError, ErrorClass, HttpRequest, HttpResponse, JobRef, SignatureVersion,
    Transport, TransportError,
};
use futures::future::BoxFuture;
use serde_json::Value;

const RID: &str = "A1B2C3D4-0000-4000-8000-00000000ABCD";

/// Replays scripted answers in order and keeps the requests it was sent.
#[derive(Default)]
struct Replay {
    answers: Mutex<VecDeque<HttpResponse>>,
    requests: Mutex<Vec<HttpRequest>>,
}

impl Transport for Replay {
    fn send(&self, req: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
        if let Ok(mut seen) = self.requests.lock() {
            seen.push(req);
        }
        let next = self.answers.lock().ok().and_then(|mut a| a.pop_front());
        Box::pin(async move { next.ok_or_else(|| TransportError::NotSent("script exhausted".into())) })
    }
}

/// What one scripted answer must produce.
#[derive(Debug, Clone)]
enum Expect {
    Ok,
    Err {
        class: ErrorClass,
        code: Option<&'static str>,
        status: u16,
        message: &'static str,
        reason: &'static str,
        retry_after_ms: Option<u64>,
    },
}

fn err(
    class: ErrorClass,
    code: Option<&'static str>,
    status: u16,
    reason: &'static str,
    message: &'static str,
) -> Expect {
    Expect::Err {
        class,
        code,
        status,
        message,
        reason,
        retry_after_ms: None,
    }
}

fn with_retry_after(mut e: Expect, ms: u64) -> Expect {
    if let Expect::Err { retry_after_ms, .. } = &mut e {
        *retry_after_ms = Some(ms);
    }
    e
}

/// The expectations per scenario (the name after the client-flavour prefix),
/// one per scripted answer.
fn expectations(scenario: &str) -> Option<Vec<Expect>> {
    use ErrorClass::*;
    let invalid_param = err(
        Terminal,
        Some("InvalidParameter"),
        400,
        "InvalidParameter",
        "The parameter DtsJobId is invalid.",
    );
    let throttled_user = err(
        Retryable,
        Some("Throttling.User"),
        400,
        "Throttled",
        "Request was denied due to user flow control.",
    );
    let unavailable = err(
        Retryable,
        Some("ServiceUnavailable"),
        503,
        "ServiceUnavailable",
        "The request has failed due to a temporary failure of the server.",
    );
    let one = |e: Expect| Some(vec![e]);
    match scenario {
        "ok_200" => one(Expect::Ok),
        "biz_fail_200_success_false" => one(err(
            Terminal,
            Some("InvalidParameter"),
            200,
            "InvalidParameter",
            "The Value of Input Parameter DtsJobId is not valid.",
        )),
        "gateway_400_InvalidParameter" => one(invalid_param),
        "gateway_400_SignatureDoesNotMatch" => one(err(
            Terminal,
            Some("SignatureDoesNotMatch"),
            400,
            "AuthenticationFailed",
            "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&x",
        )),
        "gateway_403_Forbidden.RAM" => one(err(
            Terminal,
            Some("Forbidden.RAM"),
            403,
            "AccessDenied",
            "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
        )),
        "gateway_404_InvalidAccessKeyId.NotFound" => one(err(
            Terminal,
            Some("InvalidAccessKeyId.NotFound"),
            404,
            "AuthenticationFailed",
            "Specified access key is not found.",
        )),
        "gateway_400_Throttling.User" => one(throttled_user),
        "http_429_Throttling" => one(err(
            Retryable,
            Some("Throttling"),
            429,
            "Throttled",
            "Request was denied due to request throttling.",
        )),
        "http_400_Throttling.User_with_x-acs-retry-after" => one(with_retry_after(throttled_user, 1500)),
        "http_503_ServiceUnavailable" => one(unavailable),
        "http_503_Throttling" => one(err(
            Retryable,
            Some("Throttling"),
            503,
            "Throttled",
            "Request was denied due to request throttling.",
        )),
        "http_502_html_body" => one(err(
            Retryable,
            None,
            502,
            "ServiceUnavailable",
            "the answer is neither DTS JSON nor XML: <html><body>502 Bad Gateway</body></html>",
        )),
        "http_400_xml_body" => one(err(Terminal, Some("InvalidParameter"), 400, "InvalidParameter", "bad")),
        "503 then 200" => Some(vec![unavailable.clone(), unavailable, Expect::Ok]),
        "Throttling.User x4" => Some(vec![throttled_user; 4]),
        "400 InvalidParameter" => Some(vec![invalid_param, Expect::Ok]),
        "retry-after 1500ms then 200" => Some(vec![with_retry_after(throttled_user, 1500), Expect::Ok]),
        _ => None,
    }
}

fn to_response(script: &Value) -> HttpResponse {
    let status = script["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .expect("status");
    let headers = script["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let body = match &script["body"] {
        Value::String(s) => s.as_bytes().to_vec(),
        other => serde_json::to_vec(other).expect("json body"),
    };
    HttpResponse { status, headers, body }
}

fn job() -> JobRef {
    JobRef {
        job_id: "dtsj1a2b3c4d5e6f7".into(),
        instance_id: None,
        region_id: "cn-hangzhou".into(),
        direction: None,
    }
}

/// What the official SDK reported for the final answer of a scenario:
/// (code, status, message, retry_after ms). Only for exceptions that carry a
/// DTS code (not the SDKs' own `SDK.*` or parse failures).
fn sdk_reported(obs: &Value) -> Option<(String, u16, Option<String>, Option<u64>)> {
    let exc = obs.get("exception")?;
    let (code, status) = if let Some(code) = exc.get("code").and_then(Value::as_str) {
        (code, exc.get("status_code").and_then(Value::as_u64)?)
    } else {
        (
            exc.get("get_error_code").and_then(Value::as_str)?,
            exc.get("get_http_status").and_then(Value::as_u64)?,
        )
    };
    if code.starts_with("SDK.") {
        return None;
    }
    // The legacy SDK's message is the server's Message as is; tea's wraps it.
    let message = exc
        .get("get_error_msg")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| exc.get("data")?.get("Message")?.as_str().map(str::to_owned));
    let retry_after = exc.get("retry_after").and_then(Value::as_u64);
    Some((code.to_owned(), u16::try_from(status).ok()?, message, retry_after))
}

#[tokio::test]
async fn every_recorded_answer_is_parsed_and_classified() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sdk-http-behaviour-observations.json"
    ))
    .expect("observations file");
    let data: Value = serde_json::from_str(&text).expect("json");
    let observations = data["observations"].as_object().expect("observations");

    let creds = Credentials::new("testAccessKeyId", "testAccessKeySecret");
    let mut answers_checked = 0;
    let mut sdk_crosschecks = 0;
    let mut scenarios = 0;
    for (name, obs) in observations {
        let Some(script) = obs.get("server_responses_script").and_then(Value::as_array) else {
            continue; // raw request captures
        };
        if script.is_empty() {
            continue; // connection refused: covered by tests/dts_transport.rs
        }
        // "tea[v3] ok_200", "legacy ok_200", "tea[v3]+RetryOptions 503 then 200"
        let (flavour, scenario) = name.split_once(' ').expect("flavour prefix");
        let expected = expectations(scenario).unwrap_or_else(|| panic!("no expectation for {name:?}"));
        assert_eq!(expected.len(), script.len(), "{name}");
        scenarios += 1;

        // Sign as the recorded client did: tea's default is V3.
        let signature_version = if flavour.starts_with("tea[v3]") {
            SignatureVersion::Acs3HmacSha256
        } else {
            SignatureVersion::HmacSha1
        };
        let replay = Arc::new(Replay::default());
        if let Ok(mut answers) = replay.answers.lock() {
            answers.extend(script.iter().map(to_response));
        }
        let client = DtsClient::with_transport(
            ClientConfig {
                signature_version,
                ..ClientConfig::default()
            },
            replay.clone(),
        );

        let mut results: Vec<Result<_, DtsError>> = Vec::new();
        for (i, expect) in expected.iter().enumerate() {
            let got = client.stop_dts_job(&creds, &job()).await;
            let ctx = format!("{name} answer #{i}");
            match (expect, &got) {
                (Expect::Ok, Ok(ok)) => {
                    assert_eq!(ok.request_id.as_deref(), Some(RID), "{ctx}");
                    assert_eq!(ok.http_status, 200, "{ctx}");
                }
                (
                    Expect::Err {
                        class,
                        code,
                        status,
                        message,
                        reason,
                        retry_after_ms,
                    },
                    Err(e),
                ) => {
                    assert_eq!(e.class, *class, "{ctx}");
                    assert_eq!(e.code.as_deref(), *code, "{ctx}");
                    assert_eq!(e.http_status, Some(*status), "{ctx}");
                    assert_eq!(e.message.as_deref(), Some(*message), "{ctx}");
                    assert_eq!(e.reason(), *reason, "{ctx}");
                    assert_eq!(e.retry_after, retry_after_ms.map(Duration::from_millis), "{ctx}");
                    let rid = e.request_id.as_deref();
                    // The HTML 502 carries no RequestId; all the others do.
                    assert_eq!(rid, if code.is_some() { Some(RID) } else { None }, "{ctx}");
                    let shown = e.to_string();
                    let head = code.unwrap_or(reason);
                    let tail = match rid {
                        Some(rid) => format!("(HTTP {status}, RequestId {rid})"),
                        None => format!("(HTTP {status})"),
                    };
                    assert_eq!(shown, format!("{head}: {message} {tail}"), "{ctx}");
                }
                (expect, got) => panic!("{ctx}: expected {expect:?}, got {got:?}"),
            }
            answers_checked += 1;
            results.push(got);
        }

        // One request per answer, each a fresh POST / with an empty body.
        let requests = replay.requests.lock().map(|r| r.clone()).unwrap_or_default();
        assert_eq!(requests.len(), script.len(), "{name}");
        let mut nonces = std::collections::BTreeSet::new();
        for req in &requests {
            assert_eq!(req.method, http::Method::POST, "{name}");
            assert!(req.url.starts_with("https://dts.aliyuncs.com/?"), "{name}");
            assert!(req.body.is_empty(), "{name}");
            let query: BTreeMap<String, String> = url::Url::parse(&req.url)
                .expect("url")
                .query_pairs()
                .into_owned()
                .collect();
            let nonce = match signature_version {
                SignatureVersion::HmacSha1 => query.get("SignatureNonce").cloned(),
                SignatureVersion::Acs3HmacSha256 => req.header("x-acs-signature-nonce").map(str::to_owned),
            };
            assert!(nonces.insert(nonce.expect("nonce")), "{name}: nonce reused");
        }

        // The official SDK's own reading of the last answer it received
        // (it stopped early in some retry scripts) agrees with ours.
        let sdk_saw = obs
            .get("requests_seen")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(script.len());
        let ours = sdk_saw.checked_sub(1).and_then(|i| results.get(i));
        if let (Some((code, status, message, retry_after)), Some(Err(e))) = (sdk_reported(obs), ours) {
            assert_eq!(e.code.as_deref(), Some(code.as_str()), "{name}: SDK code");
            assert_eq!(e.http_status, Some(status), "{name}: SDK status");
            if let Some(message) = message {
                assert_eq!(e.message.as_deref(), Some(message.as_str()), "{name}: SDK message");
            }
            if obs["exception"].get("retry_after").is_some() {
                assert_eq!(
                    e.retry_after,
                    retry_after.map(Duration::from_millis),
                    "{name}: SDK retry_after"
                );
            }
            sdk_crosschecks += 1;
        }
    }
    // 13 scenarios for each of the three client flavours plus 4 retry scripts
    // (50 answers); the count keeps the test from passing on an empty file.
    assert_eq!(scenarios, 43);
    assert_eq!(answers_checked, 50);
    assert_eq!(sdk_crosschecks, 30);
}
