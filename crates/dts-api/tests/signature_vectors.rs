//! The 20 signature vectors produced by Alibaba's official Python SDK
//! (tests/data/README.md): every intermediate is asserted before the
//! signature, so a failure points at the step that drifted.

use std::collections::BTreeMap;

use dts_api::sign::{rpc_v1, v3, Credentials};
use serde::Deserialize;

#[derive(Deserialize)]
struct V1Vector {
    name: String,
    http_method: String,
    action: String,
    version: String,
    access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
    timestamp: String,
    signature_nonce: String,
    parameters: BTreeMap<String, String>,
    canonicalized_query_string: String,
    string_to_sign: String,
    signature: String,
}

#[derive(Deserialize)]
struct V3Vector {
    name: String,
    http_method: String,
    canonical_uri: String,
    access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
    query_parameters: BTreeMap<String, String>,
    body: String,
    hashed_request_payload: String,
    signed_request_headers: BTreeMap<String, String>,
    canonicalized_query_string: String,
    canonicalized_headers: String,
    signed_headers: String,
    canonical_request: String,
    string_to_sign: String,
    signature: String,
    authorization: String,
}

fn load<T: serde::de::DeserializeOwned>(file: &str) -> Vec<T> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn hmac_sha1_vectors_match_the_official_sdk() {
    let vectors: Vec<V1Vector> = load("rpc-signature-v1-vectors.json");
    assert_eq!(vectors.len(), 11);
    for v in &vectors {
        let canonical = rpc_v1::canonicalized_query_string(&v.parameters);
        assert_eq!(
            canonical, v.canonicalized_query_string,
            "{}: canonicalized query string",
            v.name
        );
        let sts = rpc_v1::string_to_sign(&v.http_method, &canonical);
        assert_eq!(sts, v.string_to_sign, "{}: string to sign", v.name);
        assert_eq!(
            rpc_v1::signature(&v.access_key_secret, &sts),
            v.signature,
            "{}: signature",
            v.name
        );
    }
}

#[test]
fn hmac_sha1_common_parameters_are_the_ones_the_sdk_signs() {
    // Our client sends Format=JSON (legacy SDK spelling), so compare the full
    // parameter map with the vector's except for Format's case.
    let vectors: Vec<V1Vector> = load("rpc-signature-v1-vectors.json");
    for v in vectors
        .iter()
        .filter(|v| v.action == "StopDtsJob" && v.http_method == "POST")
    {
        let common = [
            "Action",
            "Version",
            "Format",
            "Timestamp",
            "SignatureNonce",
            "SignatureMethod",
            "SignatureVersion",
            "AccessKeyId",
            "SecurityToken",
        ];
        let api: BTreeMap<String, String> = v
            .parameters
            .iter()
            .filter(|(k, _)| !common.contains(&k.as_str()))
            .map(|(k, x)| (k.clone(), x.clone()))
            .collect();
        let mut creds = Credentials::new(&v.access_key_id, &v.access_key_secret);
        if let Some(t) = &v.security_token {
            creds = creds.with_security_token(t);
        }
        let mut ours = rpc_v1::signed_parameters(&v.action, &v.version, &api, &creds, &v.timestamp, &v.signature_nonce);
        assert_eq!(ours.insert("Format".into(), "json".into()).as_deref(), Some("JSON"));
        assert_eq!(ours, v.parameters, "{}", v.name);
    }
}

#[test]
fn acs3_hmac_sha256_vectors_match_the_official_sdk() {
    let vectors: Vec<V3Vector> = load("rpc-signature-v3-vectors.json");
    assert_eq!(vectors.len(), 9);
    for v in &vectors {
        let query = v3::canonical_query_string(&v.query_parameters);
        assert_eq!(query, v.canonicalized_query_string, "{}: canonical query", v.name);
        let (headers, signed) = v3::canonical_headers(&v.signed_request_headers);
        assert_eq!(headers, v.canonicalized_headers, "{}: canonical headers", v.name);
        assert_eq!(signed, v.signed_headers, "{}: signed headers", v.name);
        let payload = v3::hashed_payload(v.body.as_bytes());
        assert_eq!(payload, v.hashed_request_payload, "{}: hashed payload", v.name);
        let request = v3::canonical_request(&v.http_method, &v.canonical_uri, &query, &headers, &signed, &payload);
        assert_eq!(request, v.canonical_request, "{}: canonical request", v.name);
        let sts = v3::string_to_sign(&request);
        assert_eq!(sts, v.string_to_sign, "{}: string to sign", v.name);
        let sig = v3::signature(&v.access_key_secret, &sts);
        assert_eq!(sig, v.signature, "{}: signature", v.name);
        assert_eq!(
            v3::authorization(&v.access_key_id, &signed, &sig),
            v.authorization,
            "{}: authorization",
            v.name
        );

        let mut creds = Credentials::new(&v.access_key_id, &v.access_key_secret);
        if let Some(t) = &v.security_token {
            creds = creds.with_security_token(t);
        }
        let whole = v3::sign(
            &v.http_method,
            &v.query_parameters,
            &v.signed_request_headers,
            v.body.as_bytes(),
            &creds,
        );
        assert_eq!(whole, v.authorization, "{}: sign()", v.name);
    }
}
