//! The Security Token Service (STS, API version 2015-04-01): temporary
//! credentials for a RAM role, with `AssumeRole` (signed with an AccessKey,
//! exactly as DTS calls are) and `AssumeRoleWithOIDC` (RRSA: a Kubernetes
//! ServiceAccount token, sent unsigned as the official credentials SDKs do).
//!
//! Both answer `Credentials{AccessKeyId, AccessKeySecret, SecurityToken,
//! Expiration}`; errors have the gateway's shape and are read and classified
//! by the same [`parse_response`] and [`DtsError`] rules as DTS's
//! (docs/dts-api.md §10). One call is one attempt; caching and refreshing
//! the credentials is the caller's job.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::client::{build_signed, check_names, format_timestamp, new_nonce, user_agent, ClientConfig};
use super::endpoint::{self, Endpoint};
use super::error::DtsError;
use super::response::parse_response;
use super::sign::{percent_encode, Credentials};
use super::transport::{HttpRequest, ReqwestTransport, Transport};

/// The STS API version.
pub const STS_API_VERSION: &str = "2015-04-01";

/// What `DurationSeconds` the credentials SDKs ask for by default.
pub const DEFAULT_DURATION_SECONDS: u32 = 3600;

/// `AssumeRole`: a role to assume with an AccessKey (which signs the call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRole {
    pub role_arn: String,
    pub role_session_name: String,
    /// The role's trust policy may require it (`sts:ExternalId`).
    pub external_id: Option<String>,
    pub duration_seconds: u32,
}

/// `AssumeRoleWithOIDC`: a role to assume with an OIDC token (RRSA).
#[derive(Clone, PartialEq, Eq)]
pub struct AssumeRoleWithOidc {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    /// The token itself (a JWT): a secret, never printed.
    pub oidc_token: String,
    pub role_session_name: String,
    pub duration_seconds: u32,
}

impl fmt::Debug for AssumeRoleWithOidc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssumeRoleWithOidc")
            .field("role_arn", &self.role_arn)
            .field("oidc_provider_arn", &self.oidc_provider_arn)
            .field("oidc_token", &"** REDACTED **")
            .field("role_session_name", &self.role_session_name)
            .field("duration_seconds", &self.duration_seconds)
            .finish()
    }
}

/// Temporary credentials from STS. `Debug` is redacted (see [`Credentials`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsCredentials {
    pub credentials: Credentials,
    /// `Credentials.Expiration`: after it, calls signed with them are refused.
    pub expiration: jiff::Timestamp,
    /// `AssumedRoleUser.Arn`, when STS sent it.
    pub assumed_role_arn: Option<String>,
    pub request_id: Option<String>,
}

impl StsCredentials {
    /// Reads `Credentials` out of a successful STS answer. An answer without
    /// complete credentials is a terminal, unreadable-answer error.
    pub fn from_body(body: &serde_json::Value, request_id: Option<String>) -> Result<StsCredentials, DtsError> {
        let c = &body["Credentials"];
        let field = |k: &str| {
            c[k].as_str()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let incomplete = |what: &str| {
            let mut e = DtsError::invalid_request(format!("the STS answer has no usable Credentials.{what}"));
            e.request_id = request_id.clone();
            e
        };
        let id = field("AccessKeyId").ok_or_else(|| incomplete("AccessKeyId"))?;
        let secret = field("AccessKeySecret").ok_or_else(|| incomplete("AccessKeySecret"))?;
        let token = field("SecurityToken").ok_or_else(|| incomplete("SecurityToken"))?;
        let expiration = field("Expiration")
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .ok_or_else(|| incomplete("Expiration"))?;
        Ok(StsCredentials {
            credentials: Credentials::new(id, secret).with_security_token(token),
            expiration,
            assumed_role_arn: body["AssumedRoleUser"]["Arn"].as_str().map(str::to_owned),
            request_id,
        })
    }
}

/// The STS client. Cheap to clone.
#[derive(Clone)]
pub struct StsClient {
    config: ClientConfig,
    /// `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED`: `sts-vpc.<region>` hosts.
    vpc: bool,
    transport: Arc<dyn Transport>,
}

impl fmt::Debug for StsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsClient")
            .field("config", &self.config)
            .field("vpc", &self.vpc)
            .finish_non_exhaustive()
    }
}

impl StsClient {
    /// A client over HTTPS. `config.endpoint_override` replaces the derived
    /// STS host (the operator's `--sts-endpoint`).
    pub fn new(config: ClientConfig, vpc: bool) -> Self {
        Self::with_transport(config, vpc, Arc::new(ReqwestTransport::new()))
    }

    pub fn with_transport(config: ClientConfig, vpc: bool, transport: Arc<dyn Transport>) -> Self {
        Self { config, vpc, transport }
    }

    /// The host a call for `region_id` goes to (`None`: the central endpoint).
    pub fn endpoint(&self, region_id: Option<&str>) -> Result<Endpoint, DtsError> {
        endpoint::resolve_sts(self.config.endpoint_override.as_ref(), region_id, self.vpc)
    }

    /// `AssumeRole`, signed with `creds` as any DTS call.
    pub async fn assume_role(
        &self,
        creds: &Credentials,
        region_id: Option<&str>,
        req: &AssumeRole,
    ) -> Result<StsCredentials, DtsError> {
        let endpoint = self.endpoint(region_id)?;
        let request = build_signed(
            &endpoint,
            self.config.signature_version,
            self.config.timeout,
            STS_API_VERSION,
            creds,
            "AssumeRole",
            &assume_role_params(req),
            jiff::Timestamp::now(),
            &new_nonce(),
        )?;
        let mut secrets = vec![creds.access_key_secret.as_str()];
        secrets.extend(creds.security_token.as_deref());
        self.send("AssumeRole", request, &secrets).await
    }

    /// `AssumeRoleWithOIDC`, unsigned: the token is the proof.
    pub async fn assume_role_with_oidc(
        &self,
        region_id: Option<&str>,
        req: &AssumeRoleWithOidc,
    ) -> Result<StsCredentials, DtsError> {
        let endpoint = self.endpoint(region_id)?;
        let request = build_assume_role_with_oidc(&endpoint, req, jiff::Timestamp::now(), self.config.timeout)?;
        self.send("AssumeRoleWithOIDC", request, &[req.oidc_token.as_str()])
            .await
    }

    async fn send(&self, action: &str, request: HttpRequest, secrets: &[&str]) -> Result<StsCredentials, DtsError> {
        let result = match self.transport.send(request).await {
            Ok(resp) => parse_response(&resp).and_then(|ok| StsCredentials::from_body(&ok.body, ok.request_id)),
            Err(e) => Err(DtsError::from_transport(&e)),
        };
        let result = result.map_err(|mut e| {
            for s in secrets {
                e.scrub(s);
            }
            e
        });
        match &result {
            Ok(c) => tracing::debug!(
                action,
                request_id = c.request_id.as_deref(),
                expiration = %c.expiration,
                access_key_id = %c.credentials.access_key_id,
                "STS call succeeded"
            ),
            Err(e) => tracing::debug!(
                action,
                reason = e.reason().as_str(),
                class = ?e.class,
                code = e.code.as_deref(),
                http_status = e.http_status,
                request_id = e.request_id.as_deref(),
                "STS call failed"
            ),
        }
        result
    }
}

fn assume_role_params(req: &AssumeRole) -> BTreeMap<String, String> {
    let mut params = BTreeMap::from([
        ("RoleArn".to_owned(), req.role_arn.clone()),
        ("RoleSessionName".to_owned(), req.role_session_name.clone()),
        ("DurationSeconds".to_owned(), req.duration_seconds.to_string()),
    ]);
    if let Some(id) = &req.external_id {
        params.insert("ExternalId".to_owned(), id.clone());
    }
    params
}

/// The unsigned `AssumeRoleWithOIDC` request: `POST /` with the common
/// parameters in the query and the API parameters (the token among them) in
/// an `application/x-www-form-urlencoded` body, so the token never sits in a
/// URL that a proxy might log. Pure: the clock is an argument.
pub fn build_assume_role_with_oidc(
    endpoint: &Endpoint,
    req: &AssumeRoleWithOidc,
    timestamp: jiff::Timestamp,
    timeout: std::time::Duration,
) -> Result<HttpRequest, DtsError> {
    let query = BTreeMap::from([
        ("Action".to_owned(), "AssumeRoleWithOIDC".to_owned()),
        ("Version".to_owned(), STS_API_VERSION.to_owned()),
        ("Format".to_owned(), "JSON".to_owned()),
        ("Timestamp".to_owned(), format_timestamp(timestamp)),
    ]);
    let form = BTreeMap::from([
        ("RoleArn".to_owned(), req.role_arn.clone()),
        ("OIDCProviderArn".to_owned(), req.oidc_provider_arn.clone()),
        ("OIDCToken".to_owned(), req.oidc_token.clone()),
        ("RoleSessionName".to_owned(), req.role_session_name.clone()),
        ("DurationSeconds".to_owned(), req.duration_seconds.to_string()),
    ]);
    check_names("AssumeRoleWithOIDC", &form)?;
    let encode = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let body = encode(&form).into_bytes();
    Ok(HttpRequest {
        method: http::Method::POST,
        url: endpoint.url_with_query(&encode(&query)),
        headers: vec![
            ("host".to_owned(), endpoint.authority.clone()),
            ("accept".to_owned(), "application/json".to_owned()),
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("user-agent".to_owned(), user_agent().to_owned()),
            ("content-length".to_owned(), body.len().to_string()),
        ],
        body,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{HttpResponse, TransportError};
    use futures::future::BoxFuture;
    use std::sync::Mutex;

    /// A transport that records the request and answers `answer`.
    struct Canned {
        answer: HttpResponse,
        seen: Mutex<Vec<HttpRequest>>,
    }

    impl Transport for Canned {
        fn send(&self, req: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
            self.seen.lock().unwrap().push(req);
            let answer = self.answer.clone();
            Box::pin(async move { Ok(answer) })
        }
    }

    fn canned(status: u16, body: serde_json::Value) -> Arc<Canned> {
        Arc::new(Canned {
            answer: HttpResponse {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.to_string().into_bytes(),
            },
            seen: Mutex::default(),
        })
    }

    fn ok_body() -> serde_json::Value {
        serde_json::json!({
            "RequestId": "R1",
            "AssumedRoleUser": {"Arn": "acs:ram::1:role/r/s", "AssumedRoleId": "3:s"},
            "Credentials": {
                "AccessKeyId": "STS.tmp",
                "AccessKeySecret": "tmp-secret",
                "SecurityToken": "CAIS-token",
                "Expiration": "2026-11-27T11:00:00Z"
            }
        })
    }

    fn oidc() -> AssumeRoleWithOidc {
        AssumeRoleWithOidc {
            role_arn: "acs:ram::1:role/r".into(),
            oidc_provider_arn: "acs:ram::1:oidc-provider/p".into(),
            oidc_token: "eyJ.jwt+/=.sig".into(),
            role_session_name: "dts-operator".into(),
            duration_seconds: 3600,
        }
    }

    #[tokio::test]
    async fn oidc_is_an_unsigned_form_post_and_reads_the_credentials() {
        let t = canned(200, ok_body());
        let client = StsClient::with_transport(ClientConfig::default(), false, t.clone());
        let c = client.assume_role_with_oidc(None, &oidc()).await.expect("credentials");
        assert_eq!(c.credentials.access_key_id, "STS.tmp");
        assert_eq!(c.credentials.security_token.as_deref(), Some("CAIS-token"));
        assert_eq!(c.expiration.to_string(), "2026-11-27T11:00:00Z");
        assert_eq!(c.assumed_role_arn.as_deref(), Some("acs:ram::1:role/r/s"));
        let req = t.seen.lock().unwrap().remove(0);
        assert!(req.url.starts_with("https://sts.aliyuncs.com/?"), "{}", req.url);
        assert!(!req.url.contains("eyJ"), "the token is not in the URL");
        let query: BTreeMap<String, String> = url::Url::parse(&req.url).unwrap().query_pairs().into_owned().collect();
        assert_eq!(query["Action"], "AssumeRoleWithOIDC");
        assert_eq!(query["Version"], "2015-04-01");
        assert!(!query.contains_key("Signature") && !query.contains_key("AccessKeyId"));
        let form: BTreeMap<String, String> = url::form_urlencoded::parse(&req.body).into_owned().collect();
        assert_eq!(form["OIDCToken"], "eyJ.jwt+/=.sig");
        assert_eq!(form["RoleSessionName"], "dts-operator");
        assert_eq!(req.header("content-type"), Some("application/x-www-form-urlencoded"));
        assert!(!format!("{req:?} {:?}", oidc()).contains("eyJ"));
    }

    #[tokio::test]
    async fn assume_role_is_signed_like_a_dts_call() {
        let t = canned(200, ok_body());
        let client = StsClient::with_transport(ClientConfig::default(), false, t.clone());
        let creds = Credentials::new("LTAIplatform", "platform-secret");
        let req = AssumeRole {
            role_arn: "acs:ram::2:role/dts".into(),
            role_session_name: "s".into(),
            external_id: Some("ext".into()),
            duration_seconds: 900,
        };
        client.assume_role(&creds, Some("cn-shanghai"), &req).await.expect("ok");
        let sent = t.seen.lock().unwrap().remove(0);
        assert!(
            sent.url.starts_with("https://sts.cn-shanghai.aliyuncs.com/?"),
            "{}",
            sent.url
        );
        let mut q: BTreeMap<String, String> = url::Url::parse(&sent.url).unwrap().query_pairs().into_owned().collect();
        assert_eq!(q["Version"], "2015-04-01");
        assert_eq!(q["ExternalId"], "ext");
        let signature = q.remove("Signature").expect("signed");
        let sts = crate::sign::rpc_v1::string_to_sign("POST", &crate::sign::rpc_v1::canonicalized_query_string(&q));
        assert_eq!(signature, crate::sign::rpc_v1::signature("platform-secret", &sts));
    }

    #[tokio::test]
    async fn sts_errors_are_classified_and_scrubbed_like_dts_errors() {
        let t = canned(
            401,
            serde_json::json!({"RequestId": "R2", "Code": "AuthenticationFail.OIDCToken.AudienceNotMatch",
                                "Message": "Invalid audience. token eyJ.jwt+/=.sig"}),
        );
        let client = StsClient::with_transport(ClientConfig::default(), false, t);
        let e = client.assume_role_with_oidc(None, &oidc()).await.unwrap_err();
        assert_eq!(e.class, crate::ErrorClass::Terminal);
        assert_eq!(e.reason(), crate::ErrorReason::AuthenticationFailed);
        assert!(!e.to_string().contains("eyJ"), "{e}");

        let t = canned(
            200,
            serde_json::json!({"RequestId": "R3", "Credentials": {"AccessKeyId": "x"}}),
        );
        let client = StsClient::with_transport(ClientConfig::default(), false, t);
        let e = client.assume_role_with_oidc(None, &oidc()).await.unwrap_err();
        assert!(e.to_string().contains("AccessKeySecret"), "{e}");
        assert_eq!(e.request_id.as_deref(), Some("R3"));
    }
}
