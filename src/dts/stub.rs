//! TEMPORARY interface stand-in until the client branch merges.
#![allow(dead_code, unused_variables)]
use std::collections::BTreeMap;
use std::time::Duration;

use super::sign::Credentials;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SignatureVersion {
    #[default]
    HmacSha1,
    Acs3HmacSha256,
}
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub endpoint_override: Option<url::Url>,
    pub signature_version: SignatureVersion,
    pub timeout: Duration,
}
#[derive(Clone, Debug)]
pub struct JobRef {
    pub job_id: String,
    pub instance_id: Option<String>,
    pub region_id: String,
    pub direction: Option<String>,
}
pub struct ApiSuccess {
    pub request_id: Option<String>,
    pub http_status: u16,
    pub body: serde_json::Value,
}
pub struct JobDetail {
    pub request_id: Option<String>,
    pub http_status: u16,
    pub status: Option<String>,
}
impl JobDetail {
    pub fn is_finished(&self) -> bool {
        false
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    Retryable,
    Ambiguous,
    Terminal,
}
#[derive(Debug, Clone)]
pub struct DtsError {
    pub class: ErrorClass,
    pub http_status: Option<u16>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub raw_message: Option<String>,
    pub dynamic_code: Option<String>,
    pub dynamic_message: Option<String>,
    pub request_id: Option<String>,
    pub retry_after: Option<Duration>,
}
impl DtsError {
    pub fn reason(&self) -> &'static str {
        "DtsError"
    }
}
impl std::fmt::Display for DtsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "x")
    }
}
pub struct DtsClient;
impl DtsClient {
    pub fn new(config: ClientConfig) -> Self {
        DtsClient
    }
    pub async fn stop_dts_job(&self, creds: &Credentials, job: &JobRef) -> Result<ApiSuccess, DtsError> {
        unimplemented!()
    }
    pub async fn describe_dts_job_detail(&self, creds: &Credentials, job: &JobRef) -> Result<JobDetail, DtsError> {
        unimplemented!()
    }
    pub async fn call(&self, c: &Credentials, r: &str, a: &str, p: BTreeMap<String, String>) -> Result<ApiSuccess, DtsError> {
        unimplemented!()
    }
}
