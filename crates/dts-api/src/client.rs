//! The DTS client: builds signed requests as the official SDK does, sends
//! them through a [`Transport`], and reads the answers.
//!
//! One call is one attempt. Retrying is the controller's job (per-object
//! backoff, and "look before calling again" after an ambiguous failure); the
//! client only says which of the three cases a failure is. Every attempt
//! gets a fresh nonce and timestamp, read here rather than in `sign.rs` so
//! that signing stays pure and [`build_request`] stays testable.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::endpoint;
use super::error::DtsError;
// `JobDetail` lives with the other answer readers; it keeps its old path.
pub use super::jobs::JobDetail;
use super::jobs::{JobPage, JobsQuery};
use super::response::parse_response;
use super::sign::{self, Credentials};
use super::transport::{HttpRequest, ReqwestTransport, Transport};

/// The DTS API version every call uses.
pub const API_VERSION: &str = "2020-01-01";

/// The client is dts-operator's; the version is this crate's, released with it.
const USER_AGENT: &str = concat!("dts-operator/", env!("CARGO_PKG_VERSION"));

/// Which signature scheme to sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SignatureVersion {
    /// RPC HMAC-SHA1, `SignatureVersion=1.0`: the product's default
    /// (docs/design.md), as the legacy SDK and `signature_algorithm="v2"` send it.
    #[default]
    HmacSha1,
    /// ACS3-HMAC-SHA256, header based: the current SDK's default.
    Acs3HmacSha256,
}

impl SignatureVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha1 => "hmac-sha1",
            Self::Acs3HmacSha256 => "acs3-hmac-sha256",
        }
    }
}

impl fmt::Display for SignatureVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignatureVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hmac-sha1" => Ok(Self::HmacSha1),
            "acs3-hmac-sha256" => Ok(Self::Acs3HmacSha256),
            other => Err(format!(
                "unknown signature version {other:?}: expected hmac-sha1 or acs3-hmac-sha256"
            )),
        }
    }
}

/// Operator-level settings of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Replaces the endpoint derived from the regionId (emulator, private
    /// endpoints). The only way to use plain `http`.
    pub endpoint_override: Option<url::Url>,
    pub signature_version: SignatureVersion,
    /// Deadline for each call, answer included.
    pub timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoint_override: None,
            signature_version: SignatureVersion::HmacSha1,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The DTS job (and direction) a lifecycle call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub job_id: String,
    pub instance_id: Option<String>,
    pub region_id: String,
    /// `Forward` or `Reverse`; unset means DTS's default (`Forward`).
    pub direction: Option<String>,
}

impl JobRef {
    /// The API parameters naming this job and direction. `instance_key` is
    /// the operation's spelling of the instance parameter (`DtsInstanceId`,
    /// or `DtsInstanceID` for DescribeDtsJobDetail).
    fn params(&self, instance_key: &str) -> BTreeMap<String, String> {
        let mut params = BTreeMap::new();
        params.insert("DtsJobId".to_owned(), self.job_id.clone());
        if let Some(instance) = &self.instance_id {
            params.insert(instance_key.to_owned(), instance.clone());
        }
        if let Some(direction) = &self.direction {
            params.insert("SynchronizationDirection".to_owned(), direction.clone());
        }
        params
    }
}

/// A call DTS answered with success.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSuccess {
    pub request_id: Option<String>,
    pub http_status: u16,
    /// The whole answer, for callers that need more than the envelope.
    pub body: serde_json::Value,
}

/// The DTS API client. Cheap to clone; share one per operator.
#[derive(Clone)]
pub struct DtsClient {
    config: ClientConfig,
    transport: Arc<dyn Transport>,
}

impl fmt::Debug for DtsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtsClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DtsClient {
    /// A client over HTTPS (reqwest, rustls).
    pub fn new(config: ClientConfig) -> Self {
        Self::with_transport(config, Arc::new(ReqwestTransport::new()))
    }

    /// A client over any transport (tests, custom HTTP stacks).
    pub fn with_transport(config: ClientConfig, transport: Arc<dyn Transport>) -> Self {
        Self { config, transport }
    }

    /// `StopDtsJob` for one direction of a job. Not idempotent from the
    /// caller's point of view: after an ambiguous failure, describe first.
    pub async fn stop_dts_job(&self, creds: &Credentials, job: &JobRef) -> Result<ApiSuccess, DtsError> {
        let params = job.params("DtsInstanceId");
        self.call(creds, &job.region_id, "StopDtsJob", params).await
    }

    /// `StartDtsJob` for one direction of a job: starts a configured job,
    /// and is also how a suspended job is resumed (Terraform's status flow
    /// does exactly that, docs/dts-api.md §6). The same parameters as
    /// [`stop_dts_job`](Self::stop_dts_job), as the SDK's request model has
    /// them. Not idempotent from the caller's point of view: after an
    /// ambiguous failure, describe first.
    pub async fn start_dts_job(&self, creds: &Credentials, job: &JobRef) -> Result<ApiSuccess, DtsError> {
        let params = job.params("DtsInstanceId");
        self.call(creds, &job.region_id, "StartDtsJob", params).await
    }

    /// `SuspendDtsJob` for one direction of a job; the job's `Status`
    /// becomes `Suspending` (paused). DTS documents that on change-tracking
    /// tasks this answers success *without* pausing, so a caller that needs
    /// the pause must describe afterwards rather than trust the success.
    /// The same parameters as [`stop_dts_job`](Self::stop_dts_job).
    pub async fn suspend_dts_job(&self, creds: &Credentials, job: &JobRef) -> Result<ApiSuccess, DtsError> {
        let params = job.params("DtsInstanceId");
        self.call(creds, &job.region_id, "SuspendDtsJob", params).await
    }

    /// `DescribeDtsJobDetail` for one direction of a job. Note the
    /// `DtsInstanceID` spelling this operation (alone) uses. The answer is
    /// read by [`JobDetail::from_success`].
    pub async fn describe_dts_job_detail(&self, creds: &Credentials, job: &JobRef) -> Result<JobDetail, DtsError> {
        let params = job.params("DtsInstanceID");
        let ok = self.call(creds, &job.region_id, "DescribeDtsJobDetail", params).await?;
        Ok(JobDetail::from_success(&ok))
    }

    /// One page of `DescribeDtsJobs`: many jobs' status in one call (DTS
    /// documents a rate limit of 20 calls/s per account and region for it,
    /// docs/dts-api.md §6). The query's `region_id` is sent both as
    /// `Region`, which this operation requires, and as `RegionId`. A query
    /// that cannot be sent (an id with a comma, a bad region) is refused
    /// before anything is signed. The answer is read by
    /// [`JobPage::from_success`]; paging is the caller's loop.
    pub async fn describe_dts_jobs(&self, creds: &Credentials, query: &JobsQuery) -> Result<JobPage, DtsError> {
        let params = query.params()?;
        let ok = self.call(creds, &query.region_id, "DescribeDtsJobs", params).await?;
        Ok(JobPage::from_success(&ok))
    }

    /// Any DTS RPC action, one attempt. `region_id` selects the endpoint and
    /// is sent as `RegionId` unless `params` already has one.
    pub async fn call(
        &self,
        creds: &Credentials,
        region_id: &str,
        action: &str,
        mut params: BTreeMap<String, String>,
    ) -> Result<ApiSuccess, DtsError> {
        params
            .entry("RegionId".to_owned())
            .or_insert_with(|| region_id.to_owned());
        let req = build_request(
            &self.config,
            creds,
            region_id,
            action,
            &params,
            jiff::Timestamp::now(),
            &new_nonce(),
        )?;
        let result = match self.transport.send(req).await {
            Ok(resp) => parse_response(&resp),
            Err(e) => Err(DtsError::from_transport(&e)),
        };
        let result = result.map_err(|mut e| {
            // Servers echo what they received (a SignatureDoesNotMatch
            // message carries the string-to-sign, STS token included).
            e.scrub(&creds.access_key_secret);
            if let Some(token) = &creds.security_token {
                e.scrub(token);
            }
            e
        });
        match &result {
            Ok(ok) => tracing::debug!(
                action,
                region_id,
                request_id = ok.request_id.as_deref(),
                "DTS call succeeded"
            ),
            Err(e) => tracing::debug!(
                action,
                region_id,
                reason = e.reason().as_str(),
                class = ?e.class,
                code = e.code.as_deref(),
                http_status = e.http_status,
                request_id = e.request_id.as_deref(),
                "DTS call failed"
            ),
        }
        result
    }
}

/// 32 lowercase hex characters, fresh for every attempt (a reused nonce is
/// refused with `SignatureNonceUsed`).
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `%Y-%m-%dT%H:%M:%SZ` in UTC, the format both schemes use.
pub fn format_timestamp(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Names that are the same encoded and unencoded, so V3 (which signs keys
/// unencoded) and the wire agree, and no key can smuggle `&` or `=`.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Builds the signed request for one attempt, as the official SDK sends it:
/// `POST /`, every parameter in the query, an empty body. Pure: the clock
/// and the nonce are arguments.
///
/// * HMAC-SHA1: the common parameters (`Action`, `Version`, `Timestamp`,
///   `SignatureNonce`, ..., `SecurityToken` with STS) and `Signature` join the
///   API parameters in the query. `x-acs-action`/`x-acs-version` headers are
///   also sent, as the SDK does.
/// * ACS3-HMAC-SHA256: only the API parameters are in the query; the
///   `x-acs-*` headers, `host` and `accept` are signed, and `Authorization`
///   carries the signature. With STS, `x-acs-accesskey-id` and
///   `x-acs-security-token` are added and signed.
pub fn build_request(
    config: &ClientConfig,
    creds: &Credentials,
    region_id: &str,
    action: &str,
    params: &BTreeMap<String, String>,
    timestamp: jiff::Timestamp,
    nonce: &str,
) -> Result<HttpRequest, DtsError> {
    let endpoint = endpoint::resolve(config.endpoint_override.as_ref(), region_id)?;
    build_signed(
        &endpoint,
        config.signature_version,
        config.timeout,
        API_VERSION,
        creds,
        action,
        params,
        timestamp,
        nonce,
    )
}

/// Builds one signed RPC request to `endpoint` for API `version`: what
/// [`build_request`] does for DTS, and [`crate::sts`] for STS (same
/// schemes, same checks, another version and host).
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_signed(
    endpoint: &endpoint::Endpoint,
    signature_version: SignatureVersion,
    timeout: Duration,
    version: &str,
    creds: &Credentials,
    action: &str,
    params: &BTreeMap<String, String>,
    timestamp: jiff::Timestamp,
    nonce: &str,
) -> Result<HttpRequest, DtsError> {
    check_names(action, params)?;
    let timestamp = format_timestamp(timestamp);
    let body: Vec<u8> = Vec::new();

    let (query, mut headers) = match signature_version {
        SignatureVersion::HmacSha1 => {
            let signed = sign::rpc_v1::signed_parameters(action, version, params, creds, &timestamp, nonce);
            let query = sign::rpc_v1::signed_query("POST", &signed, &creds.access_key_secret);
            let headers = vec![
                ("host".to_owned(), endpoint.authority.clone()),
                ("x-acs-action".to_owned(), action.to_owned()),
                ("x-acs-version".to_owned(), version.to_owned()),
                ("accept".to_owned(), "application/json".to_owned()),
            ];
            (query, headers)
        }
        SignatureVersion::Acs3HmacSha256 => {
            let signed_headers =
                sign::v3::request_headers(&endpoint.authority, action, version, &body, creds, &timestamp, nonce);
            let authorization = sign::v3::sign("POST", params, &signed_headers, &body, creds);
            let mut headers: Vec<(String, String)> = signed_headers.into_iter().collect();
            headers.push(("authorization".to_owned(), authorization));
            (sign::v3::canonical_query_string(params), headers)
        }
    };
    headers.push(("user-agent".to_owned(), USER_AGENT.to_owned()));
    headers.push(("content-length".to_owned(), "0".to_owned()));

    Ok(HttpRequest {
        method: http::Method::POST,
        url: endpoint.url_with_query(&query),
        headers,
        body,
        timeout,
    })
}

/// Refuses an action or parameter name that is not plain (see [`is_plain_name`]).
pub(crate) fn check_names(action: &str, params: &BTreeMap<String, String>) -> Result<(), DtsError> {
    if !is_plain_name(action) {
        return Err(DtsError::invalid_request(format!("invalid action name {action:?}")));
    }
    if let Some(bad) = params.keys().find(|k| !is_plain_name(k)) {
        return Err(DtsError::invalid_request(format!("invalid parameter name {bad:?}")));
    }
    Ok(())
}

/// The User-Agent of every call this crate makes.
pub(crate) fn user_agent() -> &'static str {
    USER_AGENT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts() -> jiff::Timestamp {
        "2026-11-27T10:00:00Z".parse().expect("timestamp")
    }

    fn params() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("DtsJobId".to_owned(), "l3m1213ye7l1234".to_owned()),
            ("RegionId".to_owned(), "cn-hangzhou".to_owned()),
            ("SynchronizationDirection".to_owned(), "Reverse".to_owned()),
        ])
    }

    /// The query of `url`, decoded into a map (the server's view).
    fn query_map(url: &str) -> BTreeMap<String, String> {
        url::Url::parse(url).expect("url").query_pairs().into_owned().collect()
    }

    #[test]
    fn timestamps_are_utc_seconds() {
        assert_eq!(format_timestamp(ts()), "2026-11-27T10:00:00Z");
        let with_fraction: jiff::Timestamp = "2026-11-27T12:00:00.987+02:00".parse().expect("ts");
        assert_eq!(format_timestamp(with_fraction), "2026-11-27T10:00:00Z");
    }

    #[test]
    fn nonces_are_fresh_lowercase_hex() {
        let a = new_nonce();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{a}"
        );
        assert_ne!(a, new_nonce());
    }

    #[test]
    fn hmac_sha1_request_verifies_with_the_rpc_signer() {
        let creds = Credentials::new("testAccessKeyId", "testAccessKeySecret");
        let req = build_request(
            &ClientConfig::default(),
            &creds,
            "cn-hangzhou",
            "StopDtsJob",
            &params(),
            ts(),
            "0123456789abcdef0123456789abcdef",
        )
        .expect("request");
        assert_eq!(req.method, http::Method::POST);
        assert!(req.url.starts_with("https://dts.aliyuncs.com/?"), "{}", req.url);
        assert!(req.body.is_empty());
        assert_eq!(req.timeout, Duration::from_secs(10));
        assert_eq!(req.header("x-acs-action"), Some("StopDtsJob"));
        assert_eq!(req.header("x-acs-version"), Some("2020-01-01"));
        assert_eq!(req.header("content-length"), Some("0"));
        assert_eq!(req.header("authorization"), None);

        let mut q = query_map(&req.url);
        let signature = q.remove("Signature").expect("signature in query");
        for (k, v) in [
            ("Action", "StopDtsJob"),
            ("Version", "2020-01-01"),
            ("Timestamp", "2026-11-27T10:00:00Z"),
            ("SignatureNonce", "0123456789abcdef0123456789abcdef"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("AccessKeyId", "testAccessKeyId"),
            ("DtsJobId", "l3m1213ye7l1234"),
            ("SynchronizationDirection", "Reverse"),
        ] {
            assert_eq!(q.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(!q.contains_key("SecurityToken"));
        // What a server does: recompute over the decoded parameters.
        let sts = sign::rpc_v1::string_to_sign("POST", &sign::rpc_v1::canonicalized_query_string(&q));
        assert_eq!(signature, sign::rpc_v1::signature("testAccessKeySecret", &sts));
        assert_ne!(signature, sign::rpc_v1::signature("wrong", &sts));
    }

    #[test]
    fn sts_token_travels_as_security_token_in_hmac_sha1() {
        let creds = Credentials::new("STS.id", "sec").with_security_token("tok+/=");
        let req = build_request(
            &ClientConfig::default(),
            &creds,
            "cn-hangzhou",
            "StopDtsJob",
            &params(),
            ts(),
            "n",
        )
        .expect("request");
        let mut q = query_map(&req.url);
        assert_eq!(q.get("SecurityToken").map(String::as_str), Some("tok+/="));
        let signature = q.remove("Signature").expect("signature");
        let sts = sign::rpc_v1::string_to_sign("POST", &sign::rpc_v1::canonicalized_query_string(&q));
        assert_eq!(signature, sign::rpc_v1::signature("sec", &sts));
    }

    fn v3_config() -> ClientConfig {
        ClientConfig {
            signature_version: SignatureVersion::Acs3HmacSha256,
            endpoint_override: Some(url::Url::parse("http://127.0.0.1:18080").expect("url")),
            timeout: Duration::from_secs(3),
        }
    }

    /// Recomputes the V3 signature the way a server does: from the headers
    /// named in `SignedHeaders` and the decoded query.
    fn verify_v3(req: &HttpRequest, secret: &str) {
        let auth = req.header("authorization").expect("authorization");
        let rest = auth.strip_prefix("ACS3-HMAC-SHA256 Credential=").expect("algorithm");
        let mut parts = rest.split(',');
        let _id = parts.next().expect("credential");
        let signed = parts
            .next()
            .and_then(|s| s.strip_prefix("SignedHeaders="))
            .expect("signed headers");
        let sig = parts
            .next()
            .and_then(|s| s.strip_prefix("Signature="))
            .expect("signature");
        let headers: BTreeMap<String, String> = signed
            .split(';')
            .map(|name| (name.to_owned(), req.header(name).expect(name).to_owned()))
            .collect();
        let (canonical_headers, signed_again) = sign::v3::canonical_headers(&headers);
        assert_eq!(signed_again, signed);
        let canonical = sign::v3::canonical_request(
            "POST",
            "/",
            &sign::v3::canonical_query_string(&query_map(&req.url)),
            &canonical_headers,
            signed,
            &sign::v3::hashed_payload(&req.body),
        );
        assert_eq!(sig, sign::v3::signature(secret, &sign::v3::string_to_sign(&canonical)));
    }

    #[test]
    fn v3_request_signs_headers_and_recomputes() {
        let creds = Credentials::new("testAccessKeyId", "testAccessKeySecret");
        let req = build_request(
            &v3_config(),
            &creds,
            "cn-hangzhou",
            "StopDtsJob",
            &params(),
            ts(),
            "abc",
        )
        .expect("request");
        assert_eq!(
            req.url,
            "http://127.0.0.1:18080/?DtsJobId=l3m1213ye7l1234&RegionId=cn-hangzhou&SynchronizationDirection=Reverse"
        );
        assert_eq!(req.header("host"), Some("127.0.0.1:18080"));
        assert_eq!(req.header("x-acs-date"), Some("2026-11-27T10:00:00Z"));
        assert_eq!(req.header("x-acs-signature-nonce"), Some("abc"));
        assert_eq!(
            req.header("x-acs-content-sha256"),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(req.timeout, Duration::from_secs(3));
        assert_eq!(req.header("x-acs-security-token"), None);
        verify_v3(&req, "testAccessKeySecret");
    }

    #[test]
    fn v3_sts_adds_signed_token_headers() {
        let creds = Credentials::new("STS.id", "sec").with_security_token("token-value");
        let req = build_request(
            &v3_config(),
            &creds,
            "cn-hangzhou",
            "StopDtsJob",
            &params(),
            ts(),
            "abc",
        )
        .expect("request");
        assert_eq!(req.header("x-acs-security-token"), Some("token-value"));
        assert_eq!(req.header("x-acs-accesskey-id"), Some("STS.id"));
        let auth = req.header("authorization").expect("authorization");
        assert!(
            auth.contains("x-acs-accesskey-id;") && auth.contains("x-acs-security-token"),
            "{auth}"
        );
        assert!(!req.url.contains("token-value"));
        verify_v3(&req, "sec");
    }

    #[test]
    fn bad_names_and_regions_are_refused_before_signing() {
        let creds = Credentials::new("id", "sec");
        let cfg = ClientConfig::default();
        assert!(build_request(&cfg, &creds, "cn-hangzhou.evil.com", "StopDtsJob", &params(), ts(), "n").is_err());
        assert!(build_request(&cfg, &creds, "cn-hangzhou", "Stop&X=1", &params(), ts(), "n").is_err());
        let mut p = params();
        p.insert("A=B&C".into(), "x".into());
        assert!(build_request(&cfg, &creds, "cn-hangzhou", "StopDtsJob", &p, ts(), "n").is_err());
    }

    #[test]
    fn signature_version_parses_flag_values() {
        assert_eq!("hmac-sha1".parse::<SignatureVersion>(), Ok(SignatureVersion::HmacSha1));
        assert_eq!(
            "acs3-hmac-sha256".parse::<SignatureVersion>(),
            Ok(SignatureVersion::Acs3HmacSha256)
        );
        assert!("v4".parse::<SignatureVersion>().is_err());
        assert_eq!(SignatureVersion::default(), SignatureVersion::HmacSha1);
        assert_eq!(SignatureVersion::Acs3HmacSha256.to_string(), "acs3-hmac-sha256");
        // Display and FromStr agree, so a value printed by one is read back by the other.
        for v in [SignatureVersion::HmacSha1, SignatureVersion::Acs3HmacSha256] {
            assert_eq!(v.to_string().parse::<SignatureVersion>(), Ok(v));
            assert_eq!(v.as_str(), v.to_string());
        }
    }

    #[test]
    fn finished_is_case_insensitive() {
        let d = |s: Option<&str>| JobDetail {
            status: s.map(str::to_owned),
            ..JobDetail::default()
        };
        assert!(d(Some("Finished")).is_finished());
        assert!(d(Some("finished")).is_finished());
        assert!(!d(Some("Synchronizing")).is_finished());
        assert!(!d(None).is_finished());
    }
}
