//! Signature verification for both schemes, the way Alibaba's gateway does
//! it: decode the request first, then canonicalize and recompute with the
//! same pure functions the client signs with ([`dts_api::sign`]), so the
//! emulator and the client cannot drift apart silently — and Alibaba's own
//! SDKs (tests/sdk_compat) check both against an independent implementation.
//!
//! Replay protection (nonces) lives in [`NonceCache`]; it is separate because
//! it is the only stateful check.

use std::collections::{BTreeMap, HashMap};

use axum::http::{HeaderMap, Method, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::config::Account;
use super::error::GatewayError;
use dts_api::sign::{rpc_v1, v3};

/// The only API version the emulator serves.
pub const API_VERSION: &str = "2020-01-01";

/// Allowed clock skew, both directions, and how long a nonce is remembered.
pub const WINDOW: SignedDuration = SignedDuration::from_secs(15 * 60);

/// Which signature scheme a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Scheme {
    #[serde(rename = "HMAC-SHA1")]
    HmacSha1,
    #[serde(rename = "ACS3-HMAC-SHA256")]
    Acs3HmacSha256,
}

/// A request as received, before any check.
pub struct Incoming<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What can be read from a request without trusting it: enough to journal
/// it and to route it.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub scheme: Scheme,
    pub action: Option<String>,
    pub access_key_id: Option<String>,
    /// Query parameters (decoded): what a V3 signature covers.
    pub query: BTreeMap<String, String>,
    /// Query and urlencoded form parameters together (decoded): the API's
    /// input, and what an HMAC-SHA1 signature covers.
    pub params: BTreeMap<String, String>,
}

/// The facts a verified request establishes.
#[derive(Debug, Clone)]
pub struct Verified {
    pub nonce: String,
    pub request_time: Timestamp,
}

/// Decodes `a=b&c=d` with `+` or `%20` for a space: both official SDKs are
/// in use and they differ here (docs/dts-api.md §1.4).
pub fn decode_pairs(raw: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    // Latin-1 bytes are possible on the wire; never fail on them.
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn is_form(headers: &HeaderMap) -> bool {
    header(headers, "content-type").is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    })
}

/// Reads scheme, action, AccessKeyId and parameters. Never fails.
pub fn parse(req: &Incoming<'_>) -> Parsed {
    let query = decode_pairs(req.raw_query.as_bytes());
    let mut params = query.clone();
    if is_form(req.headers) && !req.body.is_empty() {
        params.extend(decode_pairs(req.body));
    }
    let auth = header(req.headers, "authorization");
    if let Some(auth) = auth.filter(|a| a.trim_start().starts_with("ACS3-")) {
        let access_key_id = parse_authorization(&auth).ok().map(|a| a.credential);
        return Parsed {
            scheme: Scheme::Acs3HmacSha256,
            action: header(req.headers, "x-acs-action"),
            access_key_id,
            query,
            params,
        };
    }
    Parsed {
        scheme: Scheme::HmacSha1,
        action: params.get("Action").cloned(),
        access_key_id: params.get("AccessKeyId").cloned(),
        query,
        params,
    }
}

/// The three parts of a V3 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub algorithm: String,
    pub credential: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=a;b,Signature=…`.
/// Spaces after the commas are tolerated.
pub fn parse_authorization(value: &str) -> Result<Authorization, GatewayError> {
    let value = value.trim();
    let (algorithm, rest) = value
        .split_once(' ')
        .ok_or_else(|| GatewayError::incomplete_signature("Authorization has no credential part"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| GatewayError::incomplete_signature("Authorization is not key=value pairs"))?;
        match k {
            "Credential" => credential = Some(v.to_owned()),
            "SignedHeaders" => signed = Some(v.to_owned()),
            "Signature" => signature = Some(v.to_owned()),
            _ => {}
        }
    }
    let missing = |n: &str| GatewayError::incomplete_signature(&format!("Authorization has no {n}"));
    let credential = credential
        .filter(|c| !c.is_empty())
        .ok_or_else(|| missing("Credential"))?;
    let signed = signed
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("Signature"))?;
    Ok(Authorization {
        algorithm: algorithm.to_owned(),
        credential,
        signed_headers: signed.split(';').map(|h| h.trim().to_ascii_lowercase()).collect(),
        signature,
    })
}

/// Equal-time comparison so the check does not leak how many leading bytes
/// of a signature were right.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_time(value: &str, name: &str, now: Timestamp) -> Result<Timestamp, GatewayError> {
    let t: Timestamp = value.parse().map_err(|_| GatewayError::timestamp_format(name))?;
    let skew = now.duration_since(t).abs();
    if skew > WINDOW {
        return Err(GatewayError::timestamp_expired());
    }
    Ok(t)
}

fn check_version(v: &str, want: &str) -> Result<(), GatewayError> {
    if v == want {
        Ok(())
    } else {
        Err(GatewayError::api_not_found())
    }
}

/// Checks the STS rule: an STS account must send its token, and a plain
/// account must not send one.
fn check_token(account: &Account, sent: Option<&str>) -> Result<(), GatewayError> {
    match (&account.security_token, sent) {
        (None, None) => Ok(()),
        (Some(want), Some(got)) if same(want, got) => Ok(()),
        _ => Err(GatewayError::token_mismatch()),
    }
}

/// The accounts a request may be signed by: AccessKeyId → account.
pub type Accounts<'a> = &'a dyn Fn(&str) -> Option<Account>;

/// Verifies authentication of a parsed request for API `version` against
/// `accounts` at `now`. Does not look at nonces (see [`NonceCache`]).
pub fn verify(
    req: &Incoming<'_>,
    parsed: &Parsed,
    accounts: Accounts<'_>,
    version: &str,
    now: Timestamp,
) -> Result<Verified, GatewayError> {
    match parsed.scheme {
        Scheme::HmacSha1 => verify_v1(req, parsed, accounts, version, now),
        Scheme::Acs3HmacSha256 => verify_v3(req, parsed, accounts, version, now),
    }
}

/// [`verify`] against a fixed map of accounts.
pub fn verify_with_map(
    req: &Incoming<'_>,
    parsed: &Parsed,
    accounts: &HashMap<String, Account>,
    now: Timestamp,
) -> Result<Verified, GatewayError> {
    verify(req, parsed, &|id: &str| accounts.get(id).cloned(), API_VERSION, now)
}

fn verify_v1(
    req: &Incoming<'_>,
    parsed: &Parsed,
    accounts: Accounts<'_>,
    version: &str,
    now: Timestamp,
) -> Result<Verified, GatewayError> {
    let mut signed = parsed.params.clone();
    let signature = signed.remove("Signature");
    let get = |k: &str| signed.get(k).map(String::as_str);
    for name in [
        "Version",
        "AccessKeyId",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
    ] {
        if get(name).is_none_or(str::is_empty) {
            return Err(GatewayError::missing_parameter(name));
        }
    }
    let signature = signature
        .filter(|s| !s.is_empty())
        .ok_or_else(|| GatewayError::missing_parameter("Signature"))?;
    check_version(get("Version").unwrap_or_default(), version)?;
    if get("SignatureMethod") != Some("HMAC-SHA1") {
        return Err(GatewayError::invalid_parameter(
            "SignatureMethod",
            "only HMAC-SHA1 is supported",
        ));
    }
    if get("SignatureVersion") != Some("1.0") {
        return Err(GatewayError::invalid_parameter(
            "SignatureVersion",
            "only 1.0 is supported",
        ));
    }
    // tea-openapi sends `json`, the legacy SDK `JSON`.
    if get("Format").is_some_and(|f| !f.eq_ignore_ascii_case("json")) {
        return Err(GatewayError::invalid_parameter("Format", "only JSON is supported"));
    }
    // The legacy SDK sends `SignatureType=` (empty); it stays in the signed set.
    if get("SignatureType").is_some_and(|t| !t.is_empty()) {
        return Err(GatewayError::invalid_parameter(
            "SignatureType",
            "must be empty or absent",
        ));
    }
    let request_time = check_time(get("Timestamp").unwrap_or_default(), "Timestamp", now)?;
    let key_id = get("AccessKeyId").unwrap_or_default();
    let account = accounts(key_id).ok_or_else(GatewayError::access_key_not_found)?;
    let sts = rpc_v1::string_to_sign(req.method.as_str(), &rpc_v1::canonicalized_query_string(&signed));
    let expected = rpc_v1::signature(&account.access_key_secret, &sts);
    if !same(&expected, &signature) {
        return Err(GatewayError::signature_mismatch(&sts));
    }
    check_token(&account, get("SecurityToken"))?;
    Ok(Verified {
        nonce: get("SignatureNonce").unwrap_or_default().to_owned(),
        request_time,
    })
}

/// Headers the V3 documentation requires to be signed.
const REQUIRED_SIGNED: [&str; 6] = [
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
];

fn verify_v3(
    req: &Incoming<'_>,
    parsed: &Parsed,
    accounts: Accounts<'_>,
    version: &str,
    now: Timestamp,
) -> Result<Verified, GatewayError> {
    let auth = parse_authorization(&header(req.headers, "authorization").unwrap_or_default())?;
    if auth.algorithm != v3::ALGORITHM {
        return Err(GatewayError::incomplete_signature(&format!(
            "unsupported algorithm {:?}; the emulator verifies {}",
            auth.algorithm,
            v3::ALGORITHM
        )));
    }
    for name in REQUIRED_SIGNED {
        if header(req.headers, name).is_none_or(|v| v.trim().is_empty()) {
            return Err(GatewayError::missing_parameter(name));
        }
    }
    let token = header(req.headers, "x-acs-security-token");
    let must_sign = REQUIRED_SIGNED
        .iter()
        .copied()
        .chain(token.as_ref().map(|_| "x-acs-security-token"));
    for name in must_sign {
        if !auth.signed_headers.iter().any(|h| h == name) {
            return Err(GatewayError::incomplete_signature(&format!(
                "header {name} must be in SignedHeaders"
            )));
        }
    }
    check_version(header(req.headers, "x-acs-version").unwrap_or_default().trim(), version)?;
    let request_time = check_time(
        header(req.headers, "x-acs-date").unwrap_or_default().trim(),
        "x-acs-date",
        now,
    )?;
    let hashed = v3::hashed_payload(req.body);
    let claimed = header(req.headers, "x-acs-content-sha256").unwrap_or_default();
    if !claimed.trim().eq_ignore_ascii_case(&hashed) {
        return Err(GatewayError::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "The specified parameter \"x-acs-content-sha256\" is not valid: it is not the SHA-256 of the request body.",
        ));
    }
    let account = accounts(&auth.credential).ok_or_else(GatewayError::access_key_not_found)?;
    // Canonical headers from the values actually received, for exactly the
    // names the client says it signed.
    let mut signed_values = BTreeMap::new();
    for name in &auth.signed_headers {
        let value = header(req.headers, name).ok_or_else(|| {
            GatewayError::incomplete_signature(&format!("signed header {name} is not in the request"))
        })?;
        signed_values.insert(name.clone(), value);
    }
    let (canonical_headers, signed_names) = v3::canonical_headers(&signed_values);
    let canonical = v3::canonical_request(
        req.method.as_str(),
        req.path,
        &v3::canonical_query_string(&parsed.query),
        &canonical_headers,
        &signed_names,
        &hashed,
    );
    let sts = v3::string_to_sign(&canonical);
    let expected = v3::signature(&account.access_key_secret, &sts);
    if !same(&expected, &auth.signature.to_ascii_lowercase()) {
        return Err(GatewayError::signature_mismatch(&sts));
    }
    check_token(&account, token.as_deref().map(str::trim))?;
    Ok(Verified {
        nonce: header(req.headers, "x-acs-signature-nonce")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        request_time,
    })
}

/// Nonces seen recently, across both schemes. Memory is bounded: a nonce is
/// forgotten once no request carrying it could pass the timestamp check
/// any more (15 minutes after the later of its arrival and its timestamp).
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: HashMap<String, Timestamp>,
    last_sweep: Option<Timestamp>,
}

impl NonceCache {
    /// Records `nonce`; `false` when it was already used within the window.
    pub fn check_and_insert(&mut self, nonce: &str, request_time: Timestamp, now: Timestamp) -> bool {
        self.sweep(now);
        if self.seen.get(nonce).is_some_and(|expiry| *expiry > now) {
            return false;
        }
        let expiry = now.max(request_time).checked_add(WINDOW).unwrap_or(Timestamp::MAX);
        self.seen.insert(nonce.to_owned(), expiry);
        true
    }

    fn sweep(&mut self, now: Timestamp) {
        // Sweeping on every call would be O(n) per request; once a second is
        // plenty to keep the map bounded by the window.
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < SignedDuration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        self.seen.retain(|_, expiry| *expiry > now);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent_twenty_alike() {
        let a = decode_pairs(b"K=a+b&L=c%20d&M=%2B");
        assert_eq!(a["K"], "a b");
        assert_eq!(a["L"], "c d");
        assert_eq!(a["M"], "+");
    }

    #[test]
    fn parses_authorization_with_or_without_spaces() {
        let a =
            parse_authorization("ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host;X-Acs-Date,Signature=ab").unwrap();
        assert_eq!(a.credential, "id");
        assert_eq!(a.signed_headers, vec!["host", "x-acs-date"]);
        let b = parse_authorization("ACS3-HMAC-SHA256 Credential=id, SignedHeaders=host, Signature=ab").unwrap();
        assert_eq!(b.signature, "ab");
        assert_eq!(
            parse_authorization("ACS3-HMAC-SHA256").unwrap_err().code,
            "IncompleteSignature"
        );
        assert_eq!(
            parse_authorization("ACS3-HMAC-SHA256 Credential=id").unwrap_err().code,
            "IncompleteSignature"
        );
    }

    #[test]
    fn nonce_cache_rejects_replays_and_forgets_old_nonces() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut c = NonceCache::default();
        assert!(c.check_and_insert("n", t0, t0));
        assert!(!c.check_and_insert("n", t0, t0 + SignedDuration::from_secs(60)));
        let later = t0 + SignedDuration::from_secs(16 * 60);
        assert!(c.check_and_insert("m", later, later));
        assert_eq!(c.len(), 1, "the expired nonce was swept");
    }

    #[test]
    fn nonce_is_kept_until_its_future_timestamp_expires() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let ahead = t0 + SignedDuration::from_secs(14 * 60);
        let mut c = NonceCache::default();
        assert!(c.check_and_insert("n", ahead, t0));
        // 20 minutes on, the request's own timestamp is 6 minutes old and
        // would still pass the skew check, so the nonce must still be known.
        assert!(!c.check_and_insert("n", ahead, t0 + SignedDuration::from_secs(20 * 60)));
    }
}
