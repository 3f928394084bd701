//! The secret ledger (`dts-emulator --secret-ledger FILE`): every secret the
//! emulator knows or makes, appended to FILE one `label<TAB>value` a line,
//! so that a test run can afterwards search everything it printed (logs,
//! Events, status, test output) for them (`testcluster secret-scan`).
//!
//! Recorded: the configured accounts' AccessKeySecrets and SecurityTokens
//! (at start), and per call the signature received (HMAC-SHA1 base64 or
//! ACS3 hex, as sent), the SecurityToken and OIDC token presented, and the
//! temporary AccessKeySecret and SecurityToken STS issued. Only the client
//! and the emulator should ever hold these values.
//!
//! The file is the only place they go: never stdout, stderr or the journal.
//! Lines are appended with one `write` each, so several emulators of one
//! run can share a file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::Mutex;

use axum::http::HeaderMap;
use serde_json::Value;

use crate::config::Account;
use crate::verify::{self, Incoming, Parsed, Scheme};

/// An open ledger file.
#[derive(Debug)]
pub struct Ledger {
    file: Mutex<File>,
}

impl Ledger {
    /// Opens `path` for appending (creating it).
    pub fn open(path: &Path) -> io::Result<Ledger> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Ledger { file: Mutex::new(file) })
    }

    /// Appends one value. Empty values, and values a line cannot hold, are
    /// skipped; a failed write is reported without the value.
    pub fn record(&self, label: &str, value: &str) {
        if value.is_empty() || value.contains(['\n', '\r', '\t']) {
            return;
        }
        let line = format!("{label}\t{value}\n");
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!(label, error = %e, "cannot append to the secret ledger");
        }
    }

    /// The secrets of the configured accounts.
    pub fn record_accounts(&self, accounts: &[Account]) {
        for a in accounts {
            self.record("emulator-account-secret", &a.access_key_secret);
            if let Some(t) = &a.security_token {
                self.record("emulator-account-token", t);
            }
        }
    }

    /// The secrets one call carried in, and any credentials its answer
    /// `body` hands out.
    pub fn record_call(&self, req: &Incoming<'_>, parsed: &Parsed, body: &Value) {
        match parsed.scheme {
            Scheme::HmacSha1 => {
                if let Some(s) = parsed.params.get("Signature") {
                    self.record("signature-hmac-sha1", s);
                }
            }
            Scheme::Acs3HmacSha256 => {
                if let Some(s) = header(req.headers, "authorization")
                    .and_then(|a| verify::parse_authorization(&a).ok())
                    .map(|a| a.signature)
                {
                    self.record("signature-acs3", &s);
                }
            }
        }
        let tokens = [
            parsed.params.get("SecurityToken").cloned(),
            header(req.headers, "x-acs-security-token"),
        ];
        for t in tokens.iter().flatten() {
            self.record("security-token", t.trim());
        }
        if let Some(t) = parsed.params.get("OIDCToken") {
            self.record("oidc-token", t.trim());
        }
        let issued = &body["Credentials"];
        if let Some(s) = issued["AccessKeySecret"].as_str() {
            self.record("sts-issued-secret", s);
        }
        if let Some(t) = issued["SecurityToken"].as_str() {
            self.record("sts-issued-token", t);
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;
    use serde_json::json;

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn records_signatures_tokens_and_issued_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let ledger = Ledger::open(&path).unwrap();
        ledger.record_accounts(&[Account::new("id", "account-secret").with_security_token("account-token")]);

        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            "ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host,Signature=abcdef0123"
                .parse()
                .unwrap(),
        );
        headers.insert("x-acs-security-token", "v3-token".parse().unwrap());
        let req = Incoming {
            method: &Method::POST,
            path: "/",
            raw_query: "",
            headers: &headers,
            body: b"",
        };
        let parsed = verify::parse(&req);
        let body = json!({"Credentials": {"AccessKeySecret": "issued-secret", "SecurityToken": "CAISissued"}});
        ledger.record_call(&req, &parsed, &body);

        let empty = HeaderMap::new();
        let req = Incoming {
            method: &Method::GET,
            path: "/",
            raw_query: "Signature=ab%2Bcd%3D&SecurityToken=v1-token&OIDCToken=a.b.c",
            headers: &empty,
            body: b"",
        };
        let parsed = verify::parse(&req);
        ledger.record_call(&req, &parsed, &json!({"RequestId": "r"}));
        ledger.record("empty", "");

        assert_eq!(
            lines(&path),
            [
                "emulator-account-secret\taccount-secret",
                "emulator-account-token\taccount-token",
                "signature-acs3\tabcdef0123",
                "security-token\tv3-token",
                "sts-issued-secret\tissued-secret",
                "sts-issued-token\tCAISissued",
                "signature-hmac-sha1\tab+cd=",
                "security-token\tv1-token",
                "oidc-token\ta.b.c",
            ]
        );
    }
}
