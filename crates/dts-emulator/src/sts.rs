//! The STS (2015-04-01) operations the operator uses: `AssumeRole` (signed,
//! verified like a DTS call) and `AssumeRoleWithOIDC` (unsigned; the OIDC
//! token is verified instead: RS256/ES256 signature against the provider's
//! JWKS, issuer, audience, expiry). Both issue temporary credentials
//! (`STS.` AccessKeyId, secret, `CAIS` token) with the configured lifetime,
//! which the DTS operations then accept until they expire
//! (`InvalidSecurityToken.Expired` after).

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{Account, OidcProvider, StsConfig};
use crate::error::GatewayError;

/// The STS API version the emulator serves.
pub const STS_VERSION: &str = "2015-04-01";

/// The STS operations; both need `Version=2015-04-01`.
pub const ACTIONS: [&str; 2] = ["AssumeRole", "AssumeRoleWithOIDC"];

/// Temporary credentials the emulator issued.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Issued {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    #[serde(serialize_with = "rfc3339")]
    pub expiration: Timestamp,
    pub role_arn: String,
    pub role_session_name: String,
    /// `AssumeRole` or `AssumeRoleWithOIDC`.
    pub issued_by: &'static str,
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_string())
}

impl Issued {
    pub fn account(&self) -> Account {
        Account::new(&self.access_key_id, &self.access_key_secret).with_security_token(&self.security_token)
    }
}

/// Issued credentials by AccessKeyId, and the parsed JWKS of each provider.
#[derive(Default)]
pub struct StsState {
    issued: HashMap<String, Issued>,
    jwks: HashMap<String, JwkSet>,
}

impl StsState {
    pub fn new(config: Option<&StsConfig>) -> StsState {
        let jwks = config
            .map(|c| {
                c.oidc_providers
                    .iter()
                    .filter_map(|p| Some((p.arn.clone(), serde_json::from_value(p.jwks.clone()).ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        StsState {
            issued: HashMap::new(),
            jwks,
        }
    }

    /// The account and expiry of issued credentials `access_key_id`.
    pub fn get(&self, access_key_id: &str) -> Option<(Account, Timestamp)> {
        self.issued.get(access_key_id).map(|i| (i.account(), i.expiration))
    }

    /// Every issued credential, oldest expiry first (`GET /_emulator/sts/credentials`).
    pub fn list(&self) -> Vec<Issued> {
        let mut v: Vec<Issued> = self.issued.values().cloned().collect();
        v.sort_by_key(|i| i.expiration);
        v
    }

    /// Expires every issued credential at `now` (`POST /_emulator/sts/expire`),
    /// as a revocation or a server clock ahead of the client's would.
    pub fn expire_all(&mut self, now: Timestamp) -> usize {
        for i in self.issued.values_mut() {
            i.expiration = i.expiration.min(now);
        }
        self.issued.len()
    }
}

fn random(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(n);
    s
}

fn no_permission(message: &str) -> GatewayError {
    GatewayError::new(StatusCode::FORBIDDEN, "NoPermission", message)
}

fn oidc_error(code: &str, message: &str) -> GatewayError {
    GatewayError::new(StatusCode::UNAUTHORIZED, code, message)
}

fn duration(params: &BTreeMap<String, String>) -> Result<u64, GatewayError> {
    match params.get("DurationSeconds") {
        None => Ok(3600),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (900..=43_200).contains(&n) => Ok(n),
            _ => Err(GatewayError::new(
                StatusCode::BAD_REQUEST,
                "InvalidParameter.DurationSeconds",
                "The parameter DurationSeconds is invalid: it must be 900 to 43200.",
            )),
        },
    }
}

fn issue(
    state: &mut StsState,
    config: &StsConfig,
    role_arn: &str,
    session: &str,
    requested_seconds: u64,
    issued_by: &'static str,
    now: Timestamp,
) -> Issued {
    let lifetime = config.credential_lifetime_seconds.unwrap_or(requested_seconds);
    let lifetime = i64::try_from(lifetime).unwrap_or(i64::MAX);
    let issued = Issued {
        access_key_id: format!("STS.{}", random(24)),
        access_key_secret: random(32),
        security_token: format!("CAIS{}", random(96)),
        expiration: now
            .checked_add(SignedDuration::from_secs(lifetime))
            .unwrap_or(Timestamp::MAX),
        role_arn: role_arn.to_owned(),
        role_session_name: session.to_owned(),
        issued_by,
    };
    state.issued.insert(issued.access_key_id.clone(), issued.clone());
    issued
}

fn answer(issued: &Issued, request_id: &str, extra: Value) -> Value {
    // Expiration has second precision, as STS writes it.
    let expiration = Timestamp::from_second(issued.expiration.as_second())
        .unwrap_or(issued.expiration)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut body = json!({
        "RequestId": request_id,
        "AssumedRoleUser": {
            "Arn": format!("{}/{}", issued.role_arn, issued.role_session_name),
            "AssumedRoleId": format!("3{}:{}", &random(17), issued.role_session_name),
        },
        "Credentials": {
            "AccessKeyId": issued.access_key_id,
            "AccessKeySecret": issued.access_key_secret,
            "SecurityToken": issued.security_token,
            "Expiration": expiration,
        },
    });
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
        b.extend(extra);
    }
    body
}

/// `AssumeRole` by `caller` (the verified AccessKeyId that signed it).
pub fn assume_role(
    state: &mut StsState,
    config: Option<&StsConfig>,
    caller: &str,
    params: &BTreeMap<String, String>,
    now: Timestamp,
    request_id: &str,
) -> Result<Value, GatewayError> {
    let role_arn = params
        .get("RoleArn")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| GatewayError::missing_parameter("RoleArn"))?;
    let session = params
        .get("RoleSessionName")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| GatewayError::missing_parameter("RoleSessionName"))?;
    let seconds = duration(params)?;
    let config = config.ok_or_else(|| entity_not_exist(role_arn))?;
    let role = config
        .roles
        .iter()
        .find(|r| &r.arn == role_arn)
        .ok_or_else(|| entity_not_exist(role_arn))?;
    // Temporary credentials assume roles as the key that obtained them did not:
    // only the listed AccessKeyIds are trusted.
    if !role.trusted_access_key_ids.iter().any(|k| k == caller) {
        return Err(no_permission(
            "You are not authorized to do this action. You should be authorized by RAM.",
        ));
    }
    if let Some(want) = &role.external_id {
        if params.get("ExternalId") != Some(want) {
            return Err(no_permission(
                "You are not authorized to do this action: the ExternalId does not match the role's trust policy.",
            ));
        }
    }
    let issued = issue(state, config, role_arn, session, seconds, "AssumeRole", now);
    Ok(answer(&issued, request_id, json!({})))
}

fn entity_not_exist(role_arn: &str) -> GatewayError {
    GatewayError::new(
        StatusCode::NOT_FOUND,
        "EntityNotExist.Role",
        format!("The role not exists: {role_arn}."),
    )
}

/// The claims the emulator reads from an OIDC token.
#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    #[serde(default)]
    aud: serde_json::Value,
}

/// Verifies `token` against `provider`: signature (by `kid`) with its JWKS,
/// issuer, audience and expiry (no leeway). Returns the claims.
fn verify_token(token: &str, provider: &OidcProvider, jwks: Option<&JwkSet>) -> Result<Claims, GatewayError> {
    let invalid = || {
        oidc_error(
            "AuthenticationFail.OIDCToken.Invalid",
            "The Jwt content is invalid that cannot be recognized.",
        )
    };
    if token.split('.').count() != 3 {
        return Err(oidc_error(
            "AuthenticationFail.OIDCToken.Invalid",
            "The number of Jwt field should be divided into 3 parts with '.' .",
        ));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::ES256 | Algorithm::ES384
    ) {
        return Err(oidc_error(
            "AuthenticationFail.OIDCToken.Invalid",
            &format!(
                "The algorithm {:?} that be specified in Jwt header is unknown.",
                header.alg
            ),
        ));
    }
    let jwks = jwks.ok_or_else(invalid)?;
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None => jwks.keys.first(),
    }
    .ok_or_else(|| {
        oidc_error(
            "AuthenticationFail.OIDCToken.InvalidSignature",
            "OIDC token validate failed: no key of the provider's JWKS matches the token's kid.",
        )
    })?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| invalid())?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = 0;
    validation.set_issuer(&[provider.issuer.as_str()]);
    validation.set_audience(&provider.audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => oidc_error(
                    "AuthenticationFail.OIDCToken.InvalidSignature",
                    "OIDC token validate failed: invalid signature.",
                ),
                K::ExpiredSignature => {
                    oidc_error("AuthenticationFail.OIDCToken.Expired", "This JsonWebToken is expired.")
                }
                K::InvalidAudience => oidc_error("AuthenticationFail.OIDCToken.AudienceNotMatch", "Invalid audience."),
                K::InvalidIssuer => oidc_error("AuthenticationFail.OIDCToken.IssuerNotMatch", "Invalid issuer."),
                _ => invalid(),
            }
        })
}

/// `AssumeRoleWithOIDC`: no signature; the token proves who calls.
pub fn assume_role_with_oidc(
    state: &mut StsState,
    config: Option<&StsConfig>,
    params: &BTreeMap<String, String>,
    now: Timestamp,
    request_id: &str,
) -> Result<Value, GatewayError> {
    let get = |k: &str| {
        params
            .get(k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| GatewayError::missing_parameter(k))
    };
    let role_arn = get("RoleArn")?;
    let provider_arn = get("OIDCProviderArn")?;
    let token = params.get("OIDCToken").map(|t| t.trim()).unwrap_or_default();
    if token.is_empty() {
        return Err(oidc_error(
            "AuthenticationFail.OIDCToken.Invalid",
            "The OIDCToken can not empty.",
        ));
    }
    let seconds = duration(params)?;
    let no_provider = || oidc_error("AuthenticationFail.NoPermission", "No such OIDC Provider registered.");
    let config = config.ok_or_else(no_provider)?;
    let provider = config
        .oidc_providers
        .iter()
        .find(|p| &p.arn == provider_arn)
        .ok_or_else(no_provider)?;
    let claims = verify_token(token, provider, state.jwks.get(provider_arn))?;
    let role = config
        .roles
        .iter()
        .find(|r| &r.arn == role_arn)
        .ok_or_else(|| entity_not_exist(role_arn))?;
    let trusted = role.oidc_provider_arns.iter().any(|p| p == provider_arn)
        && (role.subjects.is_empty() || role.subjects.contains(&claims.sub));
    if !trusted {
        return Err(oidc_error("AuthenticationFail.NoPermission", "There is no permission"));
    }
    let session = params
        .get("RoleSessionName")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("oidc-{}", now.as_second()));
    let issued = issue(state, config, role_arn, &session, seconds, "AssumeRoleWithOIDC", now);
    let client_ids = match &claims.aud {
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    Ok(answer(
        &issued,
        request_id,
        json!({
            "OIDCProviderArn": provider_arn,
            "OIDCTokenInfo": {"Subject": claims.sub, "Issuer": claims.iss, "ClientIds": client_ids},
        }),
    ))
}
