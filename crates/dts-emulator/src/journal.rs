//! The journal of received DTS calls (`GET /_emulator/journal`): what tests
//! and users assert on — which calls arrived, with which parameters, and
//! what they were answered. Rejected calls are journaled too.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::verify::Scheme;

/// Oldest entries are dropped beyond this, so a long demo cannot grow the
/// emulator without bound.
pub const CAPACITY: usize = 10_000;

/// Parameters whose values are secrets and never stored. The HMAC-SHA1
/// `Signature` too: tests print journals when they fail, and the run's
/// secret scan treats every signature as a secret.
const REDACTED_PARAMS: [&str; 3] = ["SecurityToken", "OIDCToken", "Signature"];

/// What replaces a redacted value.
pub const REDACTED: &str = "** REDACTED **";

/// One received call.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Arrival time, RFC 3339 UTC with milliseconds.
    pub time: String,
    pub action: Option<String>,
    /// Decoded query and form parameters (secrets redacted).
    pub params: BTreeMap<String, String>,
    pub scheme: Scheme,
    pub access_key_id: Option<String>,
    pub auth_ok: bool,
    /// `null` when the connection was reset instead of answered.
    pub http_status: Option<u16>,
    pub request_id: String,
    /// The gateway `Code` or the business `ErrCode`; `null` on success.
    pub error_code: Option<String>,
    /// `reset` or `malformed` when the answer was sabotaged on purpose.
    pub fault: Option<String>,
}

/// Redacts secret parameters in place.
pub fn redact(params: &mut BTreeMap<String, String>) {
    for k in REDACTED_PARAMS {
        if let Some(v) = params.get_mut(k) {
            *v = REDACTED.to_owned();
        }
    }
}

/// Bounded, in arrival order.
#[derive(Debug, Default)]
pub struct Journal {
    entries: VecDeque<Entry>,
}

impl Journal {
    pub fn push(&mut self, mut entry: Entry) {
        redact(&mut entry.params);
        if self.entries.len() == CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.entries.iter().cloned().collect()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_token_and_signature_are_redacted() {
        let mut j = Journal::default();
        let params = BTreeMap::from([
            ("SecurityToken".to_owned(), "sts-secret".to_owned()),
            ("Signature".to_owned(), "c2lnbmF0dXJl".to_owned()),
            ("DtsJobId".to_owned(), "j".to_owned()),
        ]);
        j.push(Entry {
            time: String::new(),
            action: None,
            params,
            scheme: Scheme::HmacSha1,
            access_key_id: None,
            auth_ok: false,
            http_status: Some(400),
            request_id: String::new(),
            error_code: None,
            fault: None,
        });
        let e = &j.entries()[0];
        assert_eq!(e.params["SecurityToken"], REDACTED);
        assert_eq!(e.params["Signature"], REDACTED);
        assert_eq!(e.params["DtsJobId"], "j");
    }
}
