//! Resolving the credentials a DtsJob's calls are signed with.
//!
//! The Secrets a DtsJob references are read with a GET the first time a call
//! needs them and then kept in [`SecretCache`], valid exactly while the
//! metadata-only Secret watch shows the same resourceVersion: the critical
//! path from a flip to StopDtsJob then has no GET, and a changed or deleted
//! Secret is read afresh. Only the values of referenced Secrets are held
//! (never the whole scope's), behind the redacting `Debug` of
//! [`Credentials`]. Errors name the Secret and the key, never a value.
//!
//! Around it sits the rest of the chain ([`Resolver`]): a Secret may name a
//! role to assume with its keys (`roleArn`, optional `roleSessionName`,
//! `externalId`; [`assumed`] caches the temporary credentials), and a
//! DtsJob without a Secret uses the operator's default source
//! ([`defaults`]: credentials directory, environment, or RRSA). The
//! precedence is the resource's Secret, then the directory, the
//! environment and RRSA (docs/design.md §2.7).

pub mod assumed;
mod chain;
pub mod defaults;

pub use chain::Resolver;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::reason::Reason;
use defaults::DefaultSource;
use dts_api::sign::Credentials;
use dts_api::{DtsError, ErrorClass};

pub const ACCESS_KEY_ID: &str = "accessKeyId";
pub const ACCESS_KEY_SECRET: &str = "accessKeySecret";
pub const SECURITY_TOKEN: &str = "securityToken";
pub const ROLE_ARN: &str = "roleArn";
pub const ROLE_SESSION_NAME: &str = "roleSessionName";
pub const EXTERNAL_ID: &str = "externalId";

/// The largest value of one key (or file) read: AccessKeys and STS tokens
/// are far smaller; anything bigger is a mistake, refused before use.
pub const MAX_VALUE_BYTES: usize = 4096;

/// A role to assume with a source's keys (`AssumeRole`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub role_arn: String,
    pub role_session_name: String,
    pub external_id: Option<String>,
}

/// What a Secret (or the credentials directory) holds: keys, and maybe a
/// role to assume with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceKeys {
    pub credentials: Credentials,
    pub role: Option<Role>,
}

impl From<Credentials> for SourceKeys {
    fn from(credentials: Credentials) -> Self {
        Self {
            credentials,
            role: None,
        }
    }
}

/// One value of a Secret key or credentials file: trimmed; `None` when
/// empty; refused when not UTF-8 or larger than [`MAX_VALUE_BYTES`]. The
/// error says what is wrong, never the value.
pub fn parse_value(bytes: &[u8]) -> Result<Option<String>, &'static str> {
    if bytes.len() > MAX_VALUE_BYTES {
        return Err("is larger than 4096 bytes");
    }
    let s = std::str::from_utf8(bytes).map_err(|_| "is not valid UTF-8")?;
    let trimmed = s.trim();
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

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
    values: HashMap<Key, (String, SourceKeys)>,
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

    /// The cached keys of `namespace/name`, if read at the version the
    /// watch shows now.
    fn get(&self, namespace: &str, name: &str) -> Option<Cached> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_owned(), name.to_owned());
        let (version, keys) = state.values.get(&key)?;
        (state.seen.get(&key) == Some(version)).then(|| Cached {
            credentials: keys.credentials.clone(),
            role: keys.role.clone(),
            secret_version: Some(version.clone()),
        })
    }

    fn put(&self, namespace: &str, name: &str, version: &str, keys: impl Into<SourceKeys>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_owned(), name.to_owned());
        state.values.insert(key, (version.to_owned(), keys.into()));
    }

    /// How many Secrets' values are held (for tests and the docs' claim).
    pub fn held(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).values.len()
    }
}

/// A cache hit: a Secret's keys at the version the watch shows.
#[derive(Debug)]
struct Cached {
    credentials: Credentials,
    role: Option<Role>,
    secret_version: Option<String>,
}

impl From<&Credentials> for SourceKeys {
    fn from(credentials: &Credentials) -> Self {
        credentials.clone().into()
    }
}

/// Credentials ready for signing, with the version of their source (part
/// of the fingerprint: a changed Secret, a rotated credentials file or new
/// RRSA credentials is a new stop intent) and the source's name.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub credentials: Credentials,
    /// The Secret's resourceVersion; for the default source a digest of its
    /// version (`dir:…`, `rrsa:…`; `None` for the environment, which never
    /// changes).
    pub secret_version: Option<String>,
    /// `status.credentialsSource`: `Secret/<name>`, `Secret/<name>
    /// (AssumeRole)`, `DefaultCredentialsDir`, `Environment`, `RRSA`.
    pub source: String,
}

/// Why credentials could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("Secret {0} referenced by credentialsSecretRef was not found")]
    SecretNotFound(String),
    #[error("Secret {secret}: key {key} {problem} (it must be present and non-empty)")]
    KeyMissing {
        secret: String,
        key: &'static str,
        problem: &'static str,
    },
    #[error("Secret {secret}: key {key} {problem} (values must be UTF-8 of at most 4096 bytes)")]
    KeyInvalid {
        secret: String,
        key: &'static str,
        problem: &'static str,
    },
    #[error("no credentialsSecretRef is set and the operator has no default credentials (--default-credentials-dir, ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET, or RRSA's ALIBABA_CLOUD_ROLE_ARN / ALIBABA_CLOUD_OIDC_PROVIDER_ARN / ALIBABA_CLOUD_OIDC_TOKEN_FILE)")]
    NotConfigured,
    #[error("Secret {secret} is in namespace {namespace}, where the operator reads no Secrets (--secret-namespaces / the chart's credentialsNamespaces)")]
    NamespaceNotAllowed { namespace: String, secret: String },
    #[error("default credentials file {path} {problem}")]
    FileUnreadable { path: String, problem: String },
    #[error("{source_name}: STS {action} for role {role_arn} failed: {error}")]
    AssumeRole {
        source_name: String,
        action: &'static str,
        role_arn: String,
        /// Boxed: the error is rare and large; the other variants are small.
        error: Box<DtsError>,
    },
    #[error("reading Secret {0}: {1}")]
    Kube(String, #[source] kube::Error),
}

impl CredentialsError {
    /// The condition/Event reason.
    pub fn reason(&self) -> Reason {
        match self {
            CredentialsError::SecretNotFound(_) => Reason::CredentialsSecretNotFound,
            CredentialsError::KeyMissing { .. } => Reason::CredentialsKeyMissing,
            CredentialsError::KeyInvalid { .. } => Reason::CredentialsKeyInvalid,
            CredentialsError::NotConfigured => Reason::CredentialsNotConfigured,
            CredentialsError::NamespaceNotAllowed { .. } => Reason::CredentialsNamespaceNotAllowed,
            CredentialsError::FileUnreadable { .. } => Reason::CredentialsFileUnreadable,
            CredentialsError::AssumeRole { .. } => Reason::AssumeRoleFailed,
            CredentialsError::Kube(..) => Reason::CredentialsUnavailable,
        }
    }

    /// A Kubernetes API failure, or an STS failure that is not terminal
    /// (throttled, unavailable, no answer), is worth retrying with backoff;
    /// the others wait for the user to fix the source (a Secret's watch, or
    /// the default source's, triggers a new reconcile).
    pub fn is_transient(&self) -> bool {
        match self {
            CredentialsError::Kube(..) => true,
            CredentialsError::AssumeRole { error, .. } => error.class != ErrorClass::Terminal,
            _ => false,
        }
    }
}

/// Reads credentials (and a role to assume) out of a Secret's data. Pure, for tests.
pub fn from_secret(name: &str, secret: &Secret) -> Result<SourceKeys, CredentialsError> {
    let get = |key: &'static str| -> Result<Option<String>, CredentialsError> {
        let Some(data) = secret.data.as_ref().and_then(|d| d.get(key)) else {
            return Ok(None);
        };
        match parse_value(&data.0) {
            Ok(Some(v)) => Ok(Some(v)),
            Ok(None) => Err(CredentialsError::KeyMissing {
                secret: name.into(),
                key,
                problem: "is empty",
            }),
            Err(problem) => Err(CredentialsError::KeyInvalid {
                secret: name.into(),
                key,
                problem,
            }),
        }
    };
    let required = |key: &'static str| {
        get(key)?.ok_or(CredentialsError::KeyMissing {
            secret: name.into(),
            key,
            problem: "is missing",
        })
    };
    // An optional key that is present but empty is as good as absent.
    let optional = |key: &'static str| match get(key) {
        Err(CredentialsError::KeyMissing { .. }) => Ok(None),
        other => other,
    };
    let id = required(ACCESS_KEY_ID)?;
    let key = required(ACCESS_KEY_SECRET)?;
    let mut credentials = Credentials::new(id, key);
    if let Some(token) = optional(SECURITY_TOKEN)? {
        credentials = credentials.with_security_token(token);
    }
    let role = match optional(ROLE_ARN)? {
        Some(role_arn) => Some(Role {
            role_arn,
            role_session_name: optional(ROLE_SESSION_NAME)?
                .unwrap_or_else(|| defaults::DEFAULT_SESSION_NAME.to_owned()),
            external_id: optional(EXTERNAL_ID)?,
        }),
        None => None,
    };
    Ok(SourceKeys { credentials, role })
}

/// The operator's default credentials from its environment, if complete.
pub fn from_env() -> Option<Credentials> {
    match DefaultSource::choose(None) {
        DefaultSource::Env(c) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DtsJobSpec;
    use dts_api::StsClient;
    use k8s_openapi::ByteString;
    use kube::Client;
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
        .unwrap()
        .credentials;
        assert_eq!(c.access_key_id, "id");
        assert_eq!(c.security_token.as_deref(), Some("tok"));
        let c = from_secret("s", &secret(&[("accessKeyId", "id"), ("accessKeySecret", "sec")])).unwrap();
        assert_eq!(c.credentials.security_token, None);
        assert_eq!(c.role, None);
    }

    #[test]
    fn a_secret_may_name_a_role_to_assume() {
        let keys = from_secret(
            "s",
            &secret(&[
                ("accessKeyId", "id"),
                ("accessKeySecret", "sec"),
                ("roleArn", "acs:ram::2:role/dts"),
                ("externalId", "ext"),
                ("securityToken", " "),
            ]),
        )
        .unwrap();
        let role = keys.role.expect("a role");
        assert_eq!(role.role_arn, "acs:ram::2:role/dts");
        assert_eq!(role.role_session_name, "dts-operator");
        assert_eq!(role.external_id.as_deref(), Some("ext"));
        assert_eq!(keys.credentials.security_token, None, "an empty optional key is absent");
    }

    fn raw_secret(pairs: &[(&str, Vec<u8>)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.clone())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    /// Every bad Secret gets its own reason and a message naming the Secret
    /// and the key, never the value.
    #[test]
    fn bad_secrets_name_the_secret_and_key_never_the_value() {
        let id = ("accessKeyId", b"LTAIbadsecret".to_vec());
        let huge = "Q".repeat(MAX_VALUE_BYTES + 1);
        let cases: Vec<(&str, Secret, Reason, &str, &str)> = vec![
            (
                "missing key",
                raw_secret(std::slice::from_ref(&id)),
                Reason::CredentialsKeyMissing,
                "accessKeySecret",
                "is missing",
            ),
            (
                "empty value",
                raw_secret(&[id.clone(), ("accessKeySecret", b"  \n".to_vec())]),
                Reason::CredentialsKeyMissing,
                "accessKeySecret",
                "is empty",
            ),
            (
                "not UTF-8",
                raw_secret(&[id.clone(), ("accessKeySecret", vec![0xc3, 0x28, b'x'])]),
                Reason::CredentialsKeyInvalid,
                "accessKeySecret",
                "UTF-8",
            ),
            (
                "huge value",
                raw_secret(&[id.clone(), ("accessKeySecret", huge.clone().into_bytes())]),
                Reason::CredentialsKeyInvalid,
                "accessKeySecret",
                "4096 bytes",
            ),
            (
                "huge optional token",
                raw_secret(&[
                    id.clone(),
                    ("accessKeySecret", b"fine".to_vec()),
                    ("securityToken", huge.clone().into_bytes()),
                ]),
                Reason::CredentialsKeyInvalid,
                "securityToken",
                "4096 bytes",
            ),
            (
                "no data at all",
                Secret::default(),
                Reason::CredentialsKeyMissing,
                "accessKeyId",
                "is missing",
            ),
        ];
        for (what, s, reason, key, problem) in cases {
            let e = from_secret("team-creds", &s).unwrap_err();
            let text = e.to_string();
            assert_eq!(e.reason(), reason, "{what}: {text}");
            assert!(!e.is_transient(), "{what}");
            assert!(
                text.contains("Secret team-creds") && text.contains(key) && text.contains(problem),
                "{what}: {text}"
            );
            assert!(
                !text.contains("LTAIbadsecret") && !text.contains("QQQQ") && !text.contains("fine"),
                "{what}: {text}"
            );
        }
    }

    #[tokio::test]
    async fn a_namespace_outside_secret_namespaces_is_refused_without_a_read() {
        let resolver = Resolver::new(
            DefaultSource::None,
            StsClient::new(dts_api::ClientConfig::default(), false),
            Some(vec!["team-a".into()]),
        );
        assert!(resolver.secrets_allowed("team-a") && !resolver.secrets_allowed("team-b"));
        // A client whose every request would fail: the refusal comes first.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let mut spec: DtsJobSpec =
            serde_json::from_value(serde_json::json!({"jobId": "j", "regionId": "cn-hangzhou"})).unwrap();
        spec.credentials_secret_ref = Some(crate::crd::SecretReference { name: "creds".into() });
        let e = resolver
            .resolve(&client, &SecretCache::default(), "team-b", &spec)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), Reason::CredentialsNamespaceNotAllowed);
        assert!(
            e.to_string().contains("team-b") && e.to_string().contains("creds"),
            "{e}"
        );
        spec.credentials_secret_ref = None;
        let e = resolver
            .resolve(&client, &SecretCache::default(), "team-b", &spec)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), Reason::CredentialsNotConfigured);
        let fixed = Resolver::fixed(Some(Credentials::new("LTAIenv", "env-secret")));
        let r = fixed
            .resolve(&client, &SecretCache::default(), "team-b", &spec)
            .await
            .unwrap();
        assert_eq!((r.source.as_str(), r.secret_version), ("Environment", None));
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
        cache.put("ns", "s", "5", creds("id-5"));
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
        cache.put("ns", "s", "5", creds("id-5"));
        assert!(cache.get("ns", "s").is_none());
        cache.put("ns", "s", "6", creds("id-6"));
        assert_eq!(cache.get("ns", "s").unwrap().credentials.access_key_id, "id-6");
    }

    #[test]
    fn a_deleted_secret_is_forgotten_also_when_only_a_relist_shows_it() {
        let cache = SecretCache::default();
        for name in ["a", "b"] {
            cache.observe(None, &watcher::Event::Apply(meta("ns", name, "1")));
            cache.put("ns", name, "1", creds(name));
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
            cache.put(ns, "s", "1", creds(ns));
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
