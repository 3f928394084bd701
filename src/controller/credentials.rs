//! Resolving the credentials a DtsJob's calls are signed with.
//!
//! The operator caches Secrets by metadata only, so no secret value sits in
//! its memory between reconciles; the value is read with a GET when a call
//! needs it. Errors name the Secret and the key, never a value.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::crd::DtsJobSpec;
use crate::reason::Reason;
use dts_api::sign::Credentials;

pub const ACCESS_KEY_ID: &str = "accessKeyId";
pub const ACCESS_KEY_SECRET: &str = "accessKeySecret";
pub const SECURITY_TOKEN: &str = "securityToken";

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

/// Resolves the credentials for `spec` in `namespace`.
pub async fn resolve(
    client: &Client,
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
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match api.get_opt(&secret_ref.name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(CredentialsError::SecretNotFound(secret_ref.name.clone())),
        Err(e) => return Err(CredentialsError::Kube(secret_ref.name.clone(), e)),
    };
    let credentials = from_secret(&secret_ref.name, &secret)?;
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
