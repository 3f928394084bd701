//! Alibaba Cloud request signing, as pure functions.
//!
//! Two schemes are implemented, both pinned down by vectors produced by
//! Alibaba's own Python SDK (`tests/data/`):
//!
//! * [`rpc_v1`]: the RPC "HMAC-SHA1, SignatureVersion 1.0" scheme (Alibaba's
//!   docs call it "signature method V2"): every parameter, the signature
//!   included, travels in the query string.
//! * [`v3`]: ACS3-HMAC-SHA256, header based (`Authorization`, `x-acs-*`).
//!
//! Nothing here reads a clock, draws a random number or does I/O: callers pass
//! the timestamp and nonce in. That is what lets the same code serve the
//! client (which signs) and the emulator (which recomputes and compares), and
//! lets every intermediate be asserted against the vectors.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Everything but the RFC 3986 unreserved set `A-Z a-z 0-9 - _ . ~` is
/// encoded, in upper-case hex: Alibaba's "percentEncode" for both schemes.
const ALIBABA_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes a key or value the way Alibaba's signers do (space becomes
/// `%20`, `*` becomes `%2A`, `~` stays).
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, ALIBABA_ENCODE_SET).to_string()
}

/// An AccessKey pair, optionally with an STS security token.
///
/// `Debug` never prints the secret or the token, so a credential can sit in a
/// struct that is logged without leaking. It deserializes from the
/// camelCase shape the emulator's config file uses for an account.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    #[serde(default)]
    pub security_token: Option<String>,
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token: None,
        }
    }

    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(token.into());
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"** REDACTED **")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "** REDACTED **"),
            )
            .finish()
    }
}

/// The RPC HMAC-SHA1 scheme (`SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`).
pub mod rpc_v1 {
    use super::*;

    /// `k=v` pairs sorted by key in byte order, each side percent-encoded,
    /// joined with `&`. `params` is the complete signed set: common and API
    /// parameters, query and form body together, without `Signature`.
    pub fn canonicalized_query_string(params: &BTreeMap<String, String>) -> String {
        // BTreeMap<String, _> iterates in byte order of the keys, which is the
        // order the scheme requires (`TimeStamp` after `SignatureVersion`).
        params
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// `METHOD & percentEncode("/") & percentEncode(canonicalized)`.
    pub fn string_to_sign(http_method: &str, canonicalized_query_string: &str) -> String {
        format!(
            "{}&{}&{}",
            http_method,
            percent_encode("/"),
            percent_encode(canonicalized_query_string)
        )
    }

    /// `Base64(HMAC-SHA1(secret + "&", string_to_sign))`.
    pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
        let key = format!("{access_key_secret}&");
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length");
        mac.update(string_to_sign.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// The common parameters this client sends, merged with the API
    /// parameters: the complete map to sign. `Format` is `JSON` and
    /// `SignatureType` is omitted, as the current tea SDK does.
    pub fn signed_parameters(
        action: &str,
        version: &str,
        api_params: &BTreeMap<String, String>,
        credentials: &Credentials,
        timestamp: &str,
        nonce: &str,
    ) -> BTreeMap<String, String> {
        let mut params = api_params.clone();
        for (k, v) in [
            ("Action", action),
            ("Version", version),
            ("Format", "JSON"),
            ("Timestamp", timestamp),
            ("SignatureNonce", nonce),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("AccessKeyId", credentials.access_key_id.as_str()),
        ] {
            params.insert(k.to_owned(), v.to_owned());
        }
        if let Some(token) = &credentials.security_token {
            params.insert("SecurityToken".to_owned(), token.clone());
        }
        params
    }

    /// Signs `params` (from [`signed_parameters`]) and returns the query
    /// string to put on the wire: the canonicalized string plus `&Signature=…`.
    pub fn signed_query(http_method: &str, params: &BTreeMap<String, String>, access_key_secret: &str) -> String {
        let canonical = canonicalized_query_string(params);
        let sig = signature(access_key_secret, &string_to_sign(http_method, &canonical));
        format!("{canonical}&Signature={}", percent_encode(&sig))
    }
}

/// The ACS3-HMAC-SHA256 scheme ("V3").
pub mod v3 {
    use super::*;

    /// The algorithm name that opens the string-to-sign and `Authorization`.
    pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

    /// Sorted `k=percentEncode(v)` pairs. Keys are used as they are (the SDK
    /// does not encode them; DTS parameter names are plain ASCII).
    pub fn canonical_query_string(params: &BTreeMap<String, String>) -> String {
        params
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// `(CanonicalHeaders, SignedHeaders)` for the headers to be signed.
    /// Names are lower-cased and sorted; values are trimmed.
    pub fn canonical_headers(headers: &BTreeMap<String, String>) -> (String, String) {
        let lowered: BTreeMap<String, &str> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
            .collect();
        let canonical = lowered.iter().map(|(k, v)| format!("{k}:{v}\n")).collect::<String>();
        let signed = lowered.keys().cloned().collect::<Vec<_>>().join(";");
        (canonical, signed)
    }

    /// Lower-case hex SHA-256 of the body (`x-acs-content-sha256`).
    pub fn hashed_payload(body: &[u8]) -> String {
        hex::encode(Sha256::digest(body))
    }

    /// `METHOD\nURI\nQuery\nCanonicalHeaders\nSignedHeaders\nHashedPayload`.
    pub fn canonical_request(
        http_method: &str,
        canonical_uri: &str,
        canonical_query: &str,
        canonical_headers: &str,
        signed_headers: &str,
        hashed_payload: &str,
    ) -> String {
        format!("{http_method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{hashed_payload}")
    }

    /// `ACS3-HMAC-SHA256\n hex(SHA-256(canonical_request))`.
    pub fn string_to_sign(canonical_request: &str) -> String {
        format!(
            "{ALGORITHM}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        )
    }

    /// Lower-case hex `HMAC-SHA256(secret, string_to_sign)` (no `&` suffix).
    pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(access_key_secret.as_bytes())
            .expect("HMAC accepts any key length");
        mac.update(string_to_sign.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The `Authorization` header value.
    pub fn authorization(access_key_id: &str, signed_headers: &str, signature: &str) -> String {
        format!("{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}")
    }

    /// The headers this client signs and sends for one V3 call: every header
    /// the V3 documentation requires to be signed, plus the STS pair when
    /// the credentials carry a token. `Authorization` is added by [`sign`].
    pub fn request_headers(
        host: &str,
        action: &str,
        version: &str,
        body: &[u8],
        credentials: &Credentials,
        date: &str,
        nonce: &str,
    ) -> BTreeMap<String, String> {
        let mut h = BTreeMap::new();
        h.insert("host".to_owned(), host.to_owned());
        h.insert("x-acs-action".to_owned(), action.to_owned());
        h.insert("x-acs-version".to_owned(), version.to_owned());
        h.insert("x-acs-date".to_owned(), date.to_owned());
        h.insert("x-acs-signature-nonce".to_owned(), nonce.to_owned());
        h.insert("x-acs-content-sha256".to_owned(), hashed_payload(body));
        h.insert("accept".to_owned(), "application/json".to_owned());
        if let Some(token) = &credentials.security_token {
            h.insert("x-acs-accesskey-id".to_owned(), credentials.access_key_id.clone());
            h.insert("x-acs-security-token".to_owned(), token.clone());
        }
        h
    }

    /// Signs a request whose signed headers are `headers` and returns the
    /// `Authorization` value.
    pub fn sign(
        http_method: &str,
        query: &BTreeMap<String, String>,
        headers: &BTreeMap<String, String>,
        body: &[u8],
        credentials: &Credentials,
    ) -> String {
        let (canonical_hdrs, signed) = canonical_headers(headers);
        let request = canonical_request(
            http_method,
            "/",
            &canonical_query_string(query),
            &canonical_hdrs,
            &signed,
            &hashed_payload(body),
        );
        let sig = signature(&credentials.access_key_secret, &string_to_sign(&request));
        authorization(&credentials.access_key_id, &signed, &sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_follows_alibaba_rules() {
        assert_eq!(percent_encode("a b*c~d/e+f=g&h%"), "a%20b%2Ac~d%2Fe%2Bf%3Dg%26h%25");
        assert_eq!(percent_encode("é中"), "%C3%A9%E4%B8%AD");
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
    }

    #[test]
    fn debug_of_credentials_is_redacted() {
        let c = Credentials::new("LTAIid", "very-secret").with_security_token("sts-token-value");
        let shown = format!("{c:?}");
        assert!(shown.contains("LTAIid"));
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("sts-token-value"), "{shown}");
        assert!(shown.contains("** REDACTED **"));
    }
}
