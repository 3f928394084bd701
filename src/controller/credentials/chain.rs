//! The chain a DtsJob's credentials are resolved along: its Secret (served
//! by [`SecretCache`]), or the operator's default source; then the role
//! either names, assumed through [`StsCache`]. Which namespaces' Secrets may
//! be read is decided here too.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::assumed::StsCache;
use super::defaults::{self, DefaultSource};
use super::{from_secret, Cached, CredentialsError, Resolved, Role, SecretCache};
use crate::crd::DtsJobSpec;
use dts_api::sign::Credentials;
use dts_api::{AssumeRole, AssumeRoleWithOidc, StsClient};

/// The whole chain: the Secret cache's keys (or the default source), roles
/// assumed with them, and which namespaces' Secrets may be read.
pub struct Resolver {
    defaults: DefaultSource,
    sts: StsClient,
    /// The STS region of the default source (`ALIBABA_CLOUD_STS_REGION`).
    sts_region: Option<String>,
    assumed: StsCache,
    /// `None`: every namespace in scope; else only these.
    secret_namespaces: Option<HashSet<String>>,
}

/// The STS cache key of RRSA (one role per operator).
const RRSA_KEY: &str = "rrsa";

impl Resolver {
    pub fn new(defaults: DefaultSource, sts: StsClient, secret_namespaces: Option<Vec<String>>) -> Self {
        Self {
            defaults,
            sts,
            sts_region: std::env::var(defaults::ENV_STS_REGION)
                .ok()
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty()),
            assumed: StsCache::default(),
            secret_namespaces: secret_namespaces.map(|v| v.into_iter().collect()),
        }
    }

    /// A resolver with fixed default credentials (or none), for tests.
    pub fn fixed(defaults: Option<Credentials>) -> Self {
        let source = defaults.map_or(DefaultSource::None, DefaultSource::Env);
        Self::new(source, StsClient::new(dts_api::ClientConfig::default(), false), None)
    }

    /// The default source.
    pub fn defaults(&self) -> &DefaultSource {
        &self.defaults
    }

    /// Whether Secrets in `namespace` may be read.
    pub fn secrets_allowed(&self, namespace: &str) -> bool {
        self.secret_namespaces.as_ref().is_none_or(|s| s.contains(namespace))
    }

    /// DTS refused credentials `creds` as expired: drop them from the STS
    /// cache so the next call assumes the role again.
    pub fn expired(&self, creds: &Credentials) {
        if creds.security_token.is_some() && self.assumed.expired(&creds.access_key_id) {
            tracing::debug!("temporary credentials refused as expired; the role is assumed again at the next call");
        }
    }

    /// The default source's current version, as a digest: it changes when
    /// the directory's files change, when the OIDC token is rotated or new
    /// RRSA credentials were obtained. Read by the watch that re-reconciles
    /// the DtsJobs using the defaults; no STS call.
    pub fn defaults_version(&self) -> String {
        match &self.defaults {
            DefaultSource::Dir(dir) => match defaults::read_dir(dir) {
                Ok((_, v)) => v,
                Err(e) => format!("unreadable:{}", defaults::digest([e.to_string().as_bytes()])),
            },
            DefaultSource::Rrsa(r) => {
                let token = defaults::read_token(&r.token_file).map(|(_, v)| v).unwrap_or_default();
                let key = self.assumed.current_key_id(RRSA_KEY).unwrap_or_default();
                defaults::digest([token.as_bytes(), key.as_bytes()])
            }
            DefaultSource::Env(_) | DefaultSource::None => String::new(),
        }
    }

    /// Resolves the credentials for `spec` in `namespace`: its Secret (from
    /// `cache` when the watch shows it unchanged since it was read, else
    /// with a GET whose result is cached), or the default source; then the
    /// role either names, if any.
    pub async fn resolve(
        &self,
        client: &Client,
        cache: &SecretCache,
        namespace: &str,
        spec: &DtsJobSpec,
    ) -> Result<Resolved, CredentialsError> {
        let Some(secret_ref) = &spec.credentials_secret_ref else {
            return self.resolve_defaults(spec).await;
        };
        let name = &secret_ref.name;
        if !self.secrets_allowed(namespace) {
            return Err(CredentialsError::NamespaceNotAllowed {
                namespace: namespace.to_owned(),
                secret: name.clone(),
            });
        }
        let hit = match cache.get(namespace, name) {
            Some(hit) => hit,
            None => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let secret = match api.get_opt(name).await {
                    Ok(Some(s)) => s,
                    Ok(None) => return Err(CredentialsError::SecretNotFound(name.clone())),
                    Err(e) => return Err(CredentialsError::Kube(name.clone(), e)),
                };
                let keys = from_secret(name, &secret)?;
                if let Some(version) = secret.metadata.resource_version.as_deref() {
                    cache.put(namespace, name, version, keys.clone());
                }
                Cached {
                    credentials: keys.credentials,
                    role: keys.role,
                    secret_version: secret.metadata.resource_version.clone(),
                }
            }
        };
        let Some(role) = hit.role else {
            return Ok(Resolved {
                credentials: hit.credentials,
                secret_version: hit.secret_version,
                source: format!("Secret/{name}"),
            });
        };
        let version = hit.secret_version.clone().unwrap_or_default();
        let family = format!("secret:{namespace}/{name}@");
        let key = format!("{family}{version}#{}", role.role_arn);
        let source = format!("Secret/{name}");
        let credentials = self
            .assume(
                &source,
                &family,
                &key,
                &version,
                &hit.credentials,
                Some(&spec.region_id),
                &role,
            )
            .await?;
        Ok(Resolved {
            credentials,
            secret_version: hit.secret_version,
            source: format!("{source} (AssumeRole)"),
        })
    }

    async fn resolve_defaults(&self, spec: &DtsJobSpec) -> Result<Resolved, CredentialsError> {
        let source = self.defaults.name();
        match &self.defaults {
            DefaultSource::None => Err(CredentialsError::NotConfigured),
            DefaultSource::Env(c) => Ok(Resolved {
                credentials: c.clone(),
                secret_version: None,
                source: source.to_owned(),
            }),
            DefaultSource::Dir(dir) => {
                let (keys, version) = defaults::read_dir(dir)?;
                let Some(role) = &keys.role else {
                    return Ok(Resolved {
                        credentials: keys.credentials,
                        secret_version: Some(version),
                        source: source.to_owned(),
                    });
                };
                let key = format!("dir:{version}#{}", role.role_arn);
                let region = self.sts_region.as_deref().or(Some(spec.region_id.as_str()));
                let credentials = self
                    .assume(source, "dir:", &key, &version, &keys.credentials, region, role)
                    .await?;
                Ok(Resolved {
                    credentials,
                    secret_version: Some(version),
                    source: format!("{source} (AssumeRole)"),
                })
            }
            DefaultSource::Rrsa(r) => {
                let (token, token_version) = defaults::read_token(&r.token_file)?;
                let request = AssumeRoleWithOidc {
                    role_arn: r.role_arn.clone(),
                    oidc_provider_arn: r.oidc_provider_arn.clone(),
                    oidc_token: token,
                    role_session_name: r.role_session_name.clone(),
                    duration_seconds: dts_api::sts::DEFAULT_DURATION_SECONDS,
                };
                let sts = &self.sts;
                let region = self.sts_region.as_deref();
                let creds = self
                    .assumed
                    .get(RRSA_KEY, RRSA_KEY, &token_version, || async move {
                        sts.assume_role_with_oidc(region, &request).await
                    })
                    .await
                    .map_err(|error| CredentialsError::AssumeRole {
                        source_name: source.to_owned(),
                        action: "AssumeRoleWithOIDC",
                        role_arn: r.role_arn.clone(),
                        error: Box::new(error),
                    })?;
                let version = defaults::digest([creds.credentials.access_key_id.as_bytes()]);
                Ok(Resolved {
                    credentials: creds.credentials,
                    secret_version: Some(format!("rrsa:{version}")),
                    source: source.to_owned(),
                })
            }
        }
    }

    /// `AssumeRole` with `keys`, through the cache.
    #[allow(clippy::too_many_arguments)]
    async fn assume(
        &self,
        source: &str,
        family: &str,
        key: &str,
        version: &str,
        keys: &Credentials,
        region: Option<&str>,
        role: &Role,
    ) -> Result<Credentials, CredentialsError> {
        let request = AssumeRole {
            role_arn: role.role_arn.clone(),
            role_session_name: role.role_session_name.clone(),
            external_id: role.external_id.clone(),
            duration_seconds: dts_api::sts::DEFAULT_DURATION_SECONDS,
        };
        let sts = &self.sts;
        self.assumed
            .get(family, key, version, || async move {
                sts.assume_role(keys, region, &request).await
            })
            .await
            .map(|c| c.credentials)
            .map_err(|error| CredentialsError::AssumeRole {
                source_name: source.to_owned(),
                action: "AssumeRole",
                role_arn: role.role_arn.clone(),
                error: Box::new(error),
            })
    }

    /// How many roles have cached credentials (for tests).
    pub fn assumed_len(&self) -> usize {
        self.assumed.len()
    }
}
