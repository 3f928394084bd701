//! Temporary credentials from STS (`AssumeRole` with a Secret's or the
//! credentials directory's keys, `AssumeRoleWithOIDC` for RRSA), cached per
//! source and refreshed before they expire.
//!
//! One cell per source, each behind an async lock: a burst of reconciles
//! that all need the same role waits for one STS call instead of making one
//! each. A terminal refusal is remembered for the source version it came
//! from (a Secret's resourceVersion, the directory's digest, the OIDC token's
//! digest), so fifty DtsJobs on a refused role make one STS call, not fifty,
//! and a changed source is tried afresh.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dts_api::{DtsError, ErrorClass, StsCredentials};
use jiff::Timestamp;

/// Refresh when less than this is left...
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// ...or less than this share of the lifetime (short-lived credentials).
pub const REFRESH_FRACTION: f64 = 0.5;

/// Whether credentials obtained at `obtained` and expiring at `expiration`
/// are to be refreshed at `now`: less than [`REFRESH_MARGIN`] or less than
/// [`REFRESH_FRACTION`] of their lifetime left, whichever comes first. A call
/// signed with them then still has time to wait for the rate limit and
/// reach DTS before they expire. Pure, for tests.
pub fn needs_refresh(obtained: Timestamp, expiration: Timestamp, now: Timestamp) -> bool {
    let lifetime = expiration.duration_since(obtained).as_secs_f64().max(0.0);
    let margin = (lifetime * REFRESH_FRACTION).min(REFRESH_MARGIN.as_secs_f64());
    let left = expiration.duration_since(now).as_secs_f64();
    left <= margin
}

/// What one cell holds.
enum Slot {
    Empty,
    Fresh {
        creds: StsCredentials,
        obtained: Timestamp,
    },
    /// A terminal refusal for source version `version`.
    Refused {
        version: String,
        error: DtsError,
    },
}

type Cell = Arc<tokio::sync::Mutex<Slot>>;

/// The cells, by source key (`secret:<ns>/<name>@<resourceVersion>#<role>`,
/// `dir:<digest>#<role>`, `rrsa`).
#[derive(Default)]
pub struct StsCache {
    cells: Mutex<HashMap<String, Cell>>,
}

impl StsCache {
    /// The cell of `key`; other keys of the same `family` (the same Secret
    /// at an older version, the directory's older contents) are dropped.
    fn cell(&self, family: &str, key: &str) -> Cell {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        if !cells.contains_key(key) {
            cells.retain(|k, _| !k.starts_with(family));
            cells.insert(key.to_owned(), Arc::new(tokio::sync::Mutex::new(Slot::Empty)));
        }
        cells[key].clone()
    }

    /// The cached credentials of `key` when still fresh, else the answer of
    /// `fetch` (cached when it succeeds). `version` is the source version a
    /// terminal refusal is remembered for: while it holds, the refusal is
    /// answered again without calling STS.
    pub async fn get<F, Fut>(
        &self,
        family: &str,
        key: &str,
        version: &str,
        fetch: F,
    ) -> Result<StsCredentials, DtsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<StsCredentials, DtsError>>,
    {
        let cell = self.cell(family, key);
        let mut slot = cell.lock().await;
        match &*slot {
            Slot::Fresh { creds, obtained } if !needs_refresh(*obtained, creds.expiration, Timestamp::now()) => {
                return Ok(creds.clone());
            }
            Slot::Refused { version: v, error } if v == version => return Err(error.clone()),
            _ => {}
        }
        let obtained = Timestamp::now();
        match fetch().await {
            Ok(creds) => {
                *slot = Slot::Fresh {
                    creds: creds.clone(),
                    obtained,
                };
                Ok(creds)
            }
            Err(error) => {
                if error.class == ErrorClass::Terminal {
                    *slot = Slot::Refused {
                        version: version.to_owned(),
                        error: error.clone(),
                    };
                }
                Err(error)
            }
        }
    }

    /// Forgets the credentials whose AccessKeyId is `access_key_id` (DTS
    /// said they expired: revoked, or a clock ahead of ours), so the next
    /// call assumes the role again. Cells busy refreshing are skipped: they
    /// are getting new credentials anyway.
    pub fn expired(&self, access_key_id: &str) -> bool {
        let cells: Vec<Cell> = self
            .cells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut dropped = false;
        for cell in cells {
            if let Ok(mut slot) = cell.try_lock() {
                if matches!(&*slot, Slot::Fresh { creds, .. } if creds.credentials.access_key_id == access_key_id) {
                    *slot = Slot::Empty;
                    dropped = true;
                }
            }
        }
        dropped
    }

    /// The AccessKeyId of the credentials cached under `key`, if any (the
    /// RRSA source's version: new credentials retry terminal failures).
    pub fn current_key_id(&self, key: &str) -> Option<String> {
        let cell = self.cells.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()?;
        let slot = cell.try_lock().ok()?;
        match &*slot {
            Slot::Fresh { creds, .. } => Some(creds.credentials.access_key_id.clone()),
            _ => None,
        }
    }

    /// How many sources have a cell (for tests).
    pub fn len(&self) -> usize {
        self.cells.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dts_api::Credentials;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn refresh_comes_before_expiry_by_a_margin_or_a_share_of_the_lifetime() {
        let (t0, hour) = (ts("2026-01-01T00:00:00Z"), ts("2026-01-01T01:00:00Z"));
        assert!(!needs_refresh(t0, hour, ts("2026-01-01T00:54:59Z")));
        assert!(needs_refresh(t0, hour, ts("2026-01-01T00:55:00Z")), "5 minutes left");
        assert!(needs_refresh(t0, hour, ts("2026-01-01T02:00:00Z")), "expired");
        // Six-second credentials: refreshed with half their life left.
        let six = ts("2026-01-01T00:00:06Z");
        assert!(!needs_refresh(t0, six, ts("2026-01-01T00:00:02Z")));
        assert!(needs_refresh(t0, six, ts("2026-01-01T00:00:03Z")));
    }

    fn sts(id: &str, lifetime: i64) -> StsCredentials {
        StsCredentials {
            credentials: Credentials::new(id, "tmp-secret").with_security_token("tmp-token"),
            expiration: Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(lifetime))
                .unwrap(),
            assumed_role_arn: None,
            request_id: None,
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_fresh_credentials_are_reused() {
        let cache = Arc::new(StsCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    cache
                        .get("rrsa", "rrsa", "t1", || async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok(sts("STS.one", 3600))
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().credentials.access_key_id, "STS.one");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Revoked: the next caller assumes the role again.
        assert!(cache.expired("STS.one"));
        assert!(!cache.expired("STS.one"));
        let c = cache
            .get("rrsa", "rrsa", "t1", || async { Ok(sts("STS.two", 3600)) })
            .await;
        assert_eq!(c.unwrap().credentials.access_key_id, "STS.two");
        assert_eq!(cache.current_key_id("rrsa").as_deref(), Some("STS.two"));
    }

    #[tokio::test]
    async fn short_lived_credentials_are_refreshed_and_refusals_remembered_per_version() {
        let cache = StsCache::default();
        let first = cache
            .get("f", "f#1", "v1", || async { Ok(sts("STS.a", 0)) })
            .await
            .unwrap();
        // Credentials at their expiry are refreshed.
        let second = cache
            .get("f", "f#1", "v1", || async { Ok(sts("STS.b", 3600)) })
            .await
            .unwrap();
        assert_ne!(first.credentials.access_key_id, second.credentials.access_key_id);

        let refused = || async {
            let mut e = DtsError::invalid_request("refused");
            e.class = ErrorClass::Terminal;
            Err(e)
        };
        let cache = StsCache::default();
        assert!(cache.get("g", "g", "token-1", refused).await.is_err());
        let again = cache
            .get("g", "g", "token-1", || async {
                panic!("no second STS call for the same token")
            })
            .await;
        assert!(again.is_err());
        let renewed = cache
            .get("g", "g", "token-2", || async { Ok(sts("STS.c", 3600)) })
            .await;
        assert!(renewed.is_ok(), "a new token is tried");

        // A newer version of a family replaces the older cell.
        cache
            .get("s:ns/x@", "s:ns/x@1", "1", || async { Ok(sts("STS.d", 3600)) })
            .await
            .unwrap();
        cache
            .get("s:ns/x@", "s:ns/x@2", "2", || async { Ok(sts("STS.e", 3600)) })
            .await
            .unwrap();
        assert_eq!(cache.len(), 2, "g and the latest s:ns/x");
    }
}
