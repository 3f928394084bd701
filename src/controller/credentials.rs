//! Resolving the credentials a DtsJob's calls are signed with.
//!
//! The Secrets a DtsJob references are read with a GET the first time a call
//! needs them and then kept in [`SecretCache`], valid exactly while the
//! metadata-only Secret watch shows the same resourceVersion: the critical
//! path from a flip to StopDtsJob then has no GET, and a changed or deleted
//! Secret is read afresh. Only the values of referenced Secrets are held
//! (never the whole scope's), behind the redacting `Debug` of
//! [`Credentials`]. Errors name the Secret and the key, never a value.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use crate::crd::DtsJobSpec;
use crate::reason::Reason;
use dts_api::sign::Credentials;

pub const ACCESS_KEY_ID: &str = "accessKeyId";
pub const ACCESS_KEY_SECRET: &str = "accessKeySecret";
pub const SECURITY_TOKEN: &str = "securityToken";

/// (namespace, name) of a Secret.
type Key = (String, String);

/// The credentials of referenced Secrets, each tied to the resourceVersion
/// it was read at, and the latest resourceVersion the metadata watch showed
/// for every Secret in scope (a few dozen bytes each, no values). A read is
/// served from the cache only when the two agree, so an entry can never
/// outlive the Secret version it came from, even when a GET and a watch
/// event race.
#[derive(Default)]
pub struct SecretCache {
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    seen: HashMap<Key, String>,
    values: HashMap<Key, (String, Credentials)>,
    /// The keys listed since each watch's last (re)list began, by the
    /// watch's namespace (`None`: all namespaces).
    relisting: HashMap<Option<String>, HashSet<Key>>,
}

impl CacheState {
    fn saw(&mut self, key: Key, version: Option<String>) {
        let Some(version) = version else { return };
        if self.values.get(&key).is_some_and(|(v, _)| *v != version) {
            self.values.remove(&key);
        }
        self.seen.insert(key, version);
    }

    fn forget(&mut self, key: &Key) {
        self.seen.remove(key);
        self.values.remove(key);
    }
}

impl SecretCache {
    /// Follows one event of the metadata-only Secret watch of `scope` (a
    /// namespace, or `None` for all): a relist of one namespace's watch
    /// forgets only that namespace's Secrets it did not list.
    pub fn observe(&self, scope: Option<&str>, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let key = |s: &PartialObjectMeta<Secret>| (s.namespace().unwrap_or_default(), s.name_any());
        let scope_key = scope.map(str::to_owned);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(s) => state.saw(key(s), s.resource_version()),
            watcher::Event::Delete(s) => state.forget(&key(s)),
            watcher::Event::Init => {
                state.relisting.insert(scope_key, HashSet::new());
            }
            watcher::Event::InitApply(s) => {
                let k = key(s);
                if let Some(listed) = state.relisting.get_mut(&scope_key) {
                    listed.insert(k.clone());
                }
                state.saw(k, s.resource_version());
            }
            watcher::Event::InitDone => {
                // A relist reports no deletions: whatever it did not list is gone.
                if let Some(listed) = state.relisting.remove(&scope_key) {
                    let gone: Vec<Key> = state
                        .seen
                        .keys()
                        .filter(|k| scope.is_none_or(|ns| k.0 == ns) && !listed.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        state.forget(&k);
                    }
                }
            }
        }
    }

    /// The cached credentials of `namespace/name`, if read at the version
    /// the watch shows now.
    fn get(&self, namespace: &str, name: &str) -> Option<Resolved> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_owned(), name.to_owned());
        let (version, credentials) = state.values.get(&key)?;
        (state.seen.get(&key) == Some(version)).then(|| Resolved {
            credentials: credentials.clone(),
            secret_version: Some(version.clone()),
        })
    }

    fn put(&self, namespace: &str, name: &str, version: &str, credentials: &Credentials) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_owned(), name.to_owned());
        state.values.insert(key, (version.to_owned(), credentials.clone()));
    }

    /// How many Secrets' values are held (for tests and the docs' claim).
    pub fn held(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).values.len()
    }
}

/// Credentials ready for signing, with the Secret version they came from
/// (part of the fingerprint: a changed Secret is a new stop intent).
#[derive(Debug)]
pub struct Resolved {
    pub credentials: Credentials,
    pub secret_version: Option<String>,
}

/// Why credentials could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("Secret {0} referenced by credentialsSecretRef was not found")]
    SecretNotFound(String),
    #[error("Secret {secret} has no usable key {key} (it must be present, non-empty UTF-8)")]
    KeyMissing { secret: String, key: &'static str },
    #[error("no credentialsSecretRef is set and the operator has no default credentials (ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET)")]
    NotConfigured,
    #[error("reading Secret {0}: {1}")]
    Kube(String, #[source] kube::Error),
}

impl CredentialsError {
    /// The condition/Event reason.
    pub fn reason(&self) -> Reason {
        match self {
            CredentialsError::SecretNotFound(_) => Reason::CredentialsSecretNotFound,
            CredentialsError::KeyMissing { .. } => Reason::CredentialsKeyMissing,
            CredentialsError::NotConfigured => Reason::CredentialsNotConfigured,
            CredentialsError::Kube(..) => Reason::CredentialsUnavailable,
        }
    }

    /// A Kubernetes API failure is worth retrying; the others wait for the
    /// user to fix the Secret (its watch triggers a new reconcile).
    pub fn is_transient(&self) -> bool {
        matches!(self, CredentialsError::Kube(..))
    }
}

/// Reads credentials out of a Secret's data. Pure, for tests.
pub fn from_secret(name: &str, secret: &Secret) -> Result<Credentials, CredentialsError> {
    let get = |key: &'static str| -> Option<String> {
        let data = secret.data.as_ref()?.get(key)?;
        let s = String::from_utf8(data.0.clone()).ok()?;
        let trimmed = s.trim().to_owned();
        (!trimmed.is_empty()).then_some(trimmed)
    };
    let id = get(ACCESS_KEY_ID).ok_or(CredentialsError::KeyMissing {
        secret: name.into(),
        key: ACCESS_KEY_ID,
    })?;
    let key = get(ACCESS_KEY_SECRET).ok_or(CredentialsError::KeyMissing {
        secret: name.into(),
        key: ACCESS_KEY_SECRET,
    })?;
    let mut creds = Credentials::new(id, key);
    if let Some(token) = get(SECURITY_TOKEN) {
        creds = creds.with_security_token(token);
    }
    Ok(creds)
}

/// The operator's default credentials from its environment, if complete.
pub fn from_env() -> Option<Credentials> {
    let var = |k: &str| {
        std::env::var(k)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut creds = Credentials::new(
        var("ALIBABA_CLOUD_ACCESS_KEY_ID")?,
        var("ALIBABA_CLOUD_ACCESS_KEY_SECRET")?,
    );
    if let Some(token) = var("ALIBABA_CLOUD_SECURITY_TOKEN") {
        creds = creds.with_security_token(token);
    }
    Some(creds)
}

/// Resolves the credentials for `spec` in `namespace`: from `cache` when
/// the watch shows the Secret unchanged since it was read, else with a GET
/// (whose result is cached).
pub async fn resolve(
    client: &Client,
    cache: &SecretCache,
    namespace: &str,
    spec: &DtsJobSpec,
    defaults: Option<&Credentials>,
) -> Result<Resolved, CredentialsError> {
    let Some(secret_ref) = &spec.credentials_secret_ref else {
        return defaults
            .map(|c| Resolved {
                credentials: c.clone(),
                secret_version: None,
            })
            .ok_or(CredentialsError::NotConfigured);
    };
    if let Some(hit) = cache.get(namespace, &secret_ref.name) {
        return Ok(hit);
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match api.get_opt(&secret_ref.name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(CredentialsError::SecretNotFound(secret_ref.name.clone())),
        Err(e) => return Err(CredentialsError::Kube(secret_ref.name.clone(), e)),
    };
    let credentials = from_secret(&secret_ref.name, &secret)?;
    if let Some(version) = secret.metadata.resource_version.as_deref() {
        cache.put(namespace, &secret_ref.name, version, &credentials);
    }
    Ok(Resolved {
        credentials,
        secret_version: secret.metadata.resource_version.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn reads_keys_and_optional_token() {
        let c = from_secret(
            "s",
            &secret(&[
                ("accessKeyId", "id"),
                ("accessKeySecret", "sec"),
                ("securityToken", "tok"),
            ]),
        )
        .unwrap();
        assert_eq!(c.access_key_id, "id");
        assert_eq!(c.security_token.as_deref(), Some("tok"));
        let c = from_secret("s", &secret(&[("accessKeyId", "id"), ("accessKeySecret", "sec")])).unwrap();
        assert_eq!(c.security_token, None);
    }

    fn meta(ns: &str, name: &str, version: &str) -> PartialObjectMeta<Secret> {
        let mut m = PartialObjectMeta::<Secret>::default();
        m.metadata.namespace = Some(ns.into());
        m.metadata.name = Some(name.into());
        m.metadata.resource_version = Some(version.into());
        m
    }

    fn creds(id: &str) -> Credentials {
        Credentials::new(id, "secret-value")
    }

    #[test]
    fn the_cache_serves_a_secret_only_at_the_version_the_watch_shows() {
        let cache = SecretCache::default();
        cache.put("ns", "s", "5", &creds("id-5"));
        assert!(cache.get("ns", "s").is_none(), "the watch has not shown version 5 yet");
        cache.observe(None, &watcher::Event::Apply(meta("ns", "s", "5")));
        let hit = cache.get("ns", "s").expect("read at the version the watch shows");
        assert_eq!(hit.credentials.access_key_id, "id-5");
        assert_eq!(hit.secret_version.as_deref(), Some("5"));
        assert!(cache.get("other", "s").is_none());

        // A change drops the value at once: the next call reads the new one.
        cache.observe(None, &watcher::Event::Apply(meta("ns", "s", "6")));
        assert!(cache.get("ns", "s").is_none());
        assert_eq!(cache.held(), 0);
        // A GET that raced the event and returned the old version is never served.
        cache.put("ns", "s", "5", &creds("id-5"));
        assert!(cache.get("ns", "s").is_none());
        cache.put("ns", "s", "6", &creds("id-6"));
        assert_eq!(cache.get("ns", "s").unwrap().credentials.access_key_id, "id-6");
    }

    #[test]
    fn a_deleted_secret_is_forgotten_also_when_only_a_relist_shows_it() {
        let cache = SecretCache::default();
        for name in ["a", "b"] {
            cache.observe(None, &watcher::Event::Apply(meta("ns", name, "1")));
            cache.put("ns", name, "1", &creds(name));
        }
        cache.observe(None, &watcher::Event::Delete(meta("ns", "a", "1")));
        assert!(cache.get("ns", "a").is_none());
        assert_eq!(cache.held(), 1);
        // "b" was deleted during a watch gap: the relist does not list it.
        cache.observe(None, &watcher::Event::Init);
        cache.observe(None, &watcher::Event::InitApply(meta("ns", "c", "9")));
        cache.observe(None, &watcher::Event::InitDone);
        assert!(cache.get("ns", "b").is_none());
        assert_eq!(cache.held(), 0);
    }

    #[test]
    fn one_namespace_relisting_keeps_the_other_namespaces_secrets() {
        let cache = SecretCache::default();
        for ns in ["a", "b"] {
            cache.observe(Some(ns), &watcher::Event::Apply(meta(ns, "s", "1")));
            cache.put(ns, "s", "1", &creds(ns));
        }
        cache.observe(Some("a"), &watcher::Event::Init);
        cache.observe(Some("a"), &watcher::Event::InitDone);
        assert!(cache.get("a", "s").is_none(), "a's relist no longer lists it");
        assert!(cache.get("b", "s").is_some(), "b's Secret is untouched");
    }

    #[test]
    fn missing_or_empty_key_names_the_key_not_the_value() {
        let e = from_secret("creds", &secret(&[("accessKeyId", "id-value")])).unwrap_err();
        assert_eq!(e.reason(), Reason::CredentialsKeyMissing);
        assert!(e.to_string().contains("accessKeySecret"), "{e}");
        assert!(!e.to_string().contains("id-value"), "{e}");
        let e = from_secret("creds", &secret(&[("accessKeyId", " "), ("accessKeySecret", "x")])).unwrap_err();
        assert!(e.to_string().contains("accessKeyId"));
    }
}
