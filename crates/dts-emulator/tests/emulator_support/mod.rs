//! Shared helpers for the emulator tests: start an emulator in-process on
//! 127.0.0.1:0, and sign requests with the crate's own signing functions
//! (`dts::sign`) sent through reqwest. Deliberately not a DTS client: the
//! tests build each request by hand so they can also break it on purpose.
#![allow(dead_code)]

use std::collections::BTreeMap;

use dts_api::sign::{percent_encode, rpc_v1, v3, Credentials};
use dts_emulator::{self as emulator, Config, EmulatorHandle};
use serde_json::Value;

pub const AK: &str = "testAccessKeyId";
pub const SECRET: &str = "testAccessKeySecret";
pub const STS_AK: &str = "stsAccessKeyId";
pub const STS_SECRET: &str = "stsAccessKeySecret";
pub const STS_TOKEN: &str = "sts-token-value-CAIS";

pub const CONFIG: &str = r#"
accounts:
  - accessKeyId: testAccessKeyId
    accessKeySecret: testAccessKeySecret
  - accessKeyId: stsAccessKeyId
    accessKeySecret: stsAccessKeySecret
    securityToken: sts-token-value-CAIS
jobs:
  - jobId: dtsjob2way
    instanceId: dtsinst2way
    regionId: cn-hangzhou
    twoWay: true
    status: Synchronizing
  - jobId: dtsjob1way
    instanceId: dtsinst1way
    regionId: cn-hangzhou
    twoWay: false
    status: Synchronizing
"#;

pub fn creds() -> Credentials {
    Credentials::new(AK, SECRET)
}

pub fn sts_creds() -> Credentials {
    Credentials::new(STS_AK, STS_SECRET).with_security_token(STS_TOKEN)
}

/// A running emulator plus an HTTP client; the emulator stops when the test
/// calls [`Emu::stop`] (or drops it).
pub struct Emu {
    pub handle: EmulatorHandle,
    pub http: reqwest::Client,
}

pub async fn start() -> Emu {
    start_with(CONFIG).await
}

pub async fn start_with(config: &str) -> Emu {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = emulator::serve(listener, Config::parse(config).unwrap()).await.unwrap();
    Emu {
        handle,
        http: reqwest::Client::new(),
    }
}

pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn minutes_off(min: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(min * 60))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// An answer: status, headers and the body parsed as JSON (`Value::Null`
/// when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.json["Code"].as_str().unwrap_or_default()
    }

    pub fn err_code(&self) -> &str {
        self.json["ErrCode"].as_str().unwrap_or_default()
    }
}

pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

impl Emu {
    pub fn url(&self) -> String {
        self.handle.base_url()
    }

    pub async fn stop(self) {
        self.handle.shutdown().await.unwrap();
    }

    /// Sends a raw POST `/?{query}` with optional form body.
    pub async fn raw(
        &self,
        method: &str,
        query: &str,
        headers: &[(String, String)],
        body: Option<(&str, &str)>,
    ) -> Reply {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self.http.request(m, format!("{}/?{query}", self.url()));
        for (k, v) in headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if let Some((ct, b)) = body {
            rb = rb.header("content-type", ct).body(b.to_owned());
        }
        reply(rb.send().await.unwrap()).await
    }

    /// HMAC-SHA1 call with the standard signed parameters plus `extra`.
    pub async fn v1(&self, action: &str, api: &[(&str, &str)], c: &Credentials) -> Reply {
        self.v1_with(action, api, c, &now(), &nonce(), |_| {}).await
    }

    /// The URL of a signed HMAC-SHA1 call, for tests that send it with their
    /// own HTTP client.
    pub fn v1_url(&self, action: &str, api: &[(&str, &str)], c: &Credentials) -> String {
        let p = rpc_v1::signed_parameters(action, "2020-01-01", &params(api), c, &now(), &nonce());
        format!(
            "{}/?{}",
            self.url(),
            rpc_v1::signed_query("POST", &p, &c.access_key_secret)
        )
    }

    /// HMAC-SHA1 call whose signed map can be edited before signing.
    pub async fn v1_with(
        &self,
        action: &str,
        api: &[(&str, &str)],
        c: &Credentials,
        timestamp: &str,
        nonce: &str,
        edit: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Reply {
        let mut p = rpc_v1::signed_parameters(action, "2020-01-01", &params(api), c, timestamp, nonce);
        edit(&mut p);
        let q = rpc_v1::signed_query("POST", &p, &c.access_key_secret);
        self.raw("POST", &q, &[], None).await
    }

    /// The signed V3 headers (with `Authorization`) for a call.
    pub fn v3_headers(
        &self,
        action: &str,
        query: &BTreeMap<String, String>,
        body: &[u8],
        c: &Credentials,
        date: &str,
        nonce: &str,
    ) -> BTreeMap<String, String> {
        let host = self.handle.local_addr().to_string();
        let mut h = v3::request_headers(&host, action, "2020-01-01", body, c, date, nonce);
        let auth = v3::sign("POST", query, &h, body, c);
        h.insert("authorization".into(), auth);
        h
    }

    pub async fn v3(&self, action: &str, api: &[(&str, &str)], c: &Credentials) -> Reply {
        self.v3_with(action, api, c, &now(), &nonce(), |_| {}).await
    }

    /// V3 call whose headers can be edited after signing.
    pub async fn v3_with(
        &self,
        action: &str,
        api: &[(&str, &str)],
        c: &Credentials,
        date: &str,
        nonce: &str,
        edit: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Reply {
        let q = params(api);
        let mut h = self.v3_headers(action, &q, b"", c, date, nonce);
        edit(&mut h);
        let hs: Vec<(String, String)> = h.into_iter().filter(|(k, _)| k != "host").collect();
        self.raw("POST", &v3::canonical_query_string(&q), &hs, None).await
    }

    pub async fn admin_get(&self, what: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/_emulator/{what}", self.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }

    pub async fn admin_post(&self, what: &str, body: Value) -> Reply {
        let r = self
            .http
            .post(format!("{}/_emulator/{what}", self.url()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        reply(r).await
    }

    pub async fn journal(&self) -> Vec<Value> {
        self.admin_get("journal").await.as_array().unwrap().clone()
    }

    pub async fn last_entry(&self) -> Value {
        self.journal().await.last().cloned().unwrap()
    }

    /// The job's `status` object from `GET /_emulator/jobs`.
    pub async fn job_status(&self, job: &str) -> Value {
        let jobs = self.admin_get("jobs").await;
        jobs.as_array().unwrap().iter().find(|j| j["jobId"] == job).unwrap()["status"].clone()
    }
}

/// Percent-encodes `k=v` pairs in the given order, spaces as `+`
/// (tea-openapi's wire form).
pub fn form_encode(pairs: &BTreeMap<String, String>) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v).replace("%20", "+")))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn is_upper_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok() && s == s.to_uppercase()
}
