//! The operator's default credentials, for DtsJobs without
//! `spec.credentialsSecretRef`. One source is chosen at start-up, the first
//! configured of:
//!
//! 1. a credentials directory (`--default-credentials-dir`, the chart's
//!    mounted Secret): files `accessKeyId`, `accessKeySecret`, optional
//!    `securityToken`, and optional `roleArn` / `roleSessionName` /
//!    `externalId` to assume a role with those keys. Read on every use (a
//!    few small files), so a rotated Secret is used by the next call;
//! 2. the environment: `ALIBABA_CLOUD_ACCESS_KEY_ID`,
//!    `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, optional `ALIBABA_CLOUD_SECURITY_TOKEN`;
//! 3. RRSA: `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` and
//!    `ALIBABA_CLOUD_OIDC_TOKEN_FILE` (the names Alibaba's SDKs read), for
//!    `AssumeRoleWithOIDC` with the ServiceAccount token the kubelet keeps
//!    in that file (re-read on every refresh: the kubelet rotates it).
//!
//! A configured source that cannot be read is an error, never a silent
//! fall-through to another identity.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{parse_value, CredentialsError, Role, SourceKeys, ACCESS_KEY_ID, ACCESS_KEY_SECRET, SECURITY_TOKEN};
use super::{EXTERNAL_ID, ROLE_ARN, ROLE_SESSION_NAME};
use dts_api::Credentials;

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
/// The region whose STS endpoint default credentials use (absent: the
/// central `sts.aliyuncs.com`); `--sts-endpoint` overrides either.
pub const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";

/// The session name when none is configured.
pub const DEFAULT_SESSION_NAME: &str = "dts-operator";

/// The largest OIDC token file read (a ServiceAccount token is ~1 KiB).
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// RRSA's settings (the token itself is read at each refresh).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rrsa {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub token_file: PathBuf,
    pub role_session_name: String,
}

/// The chosen default source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefaultSource {
    None,
    Dir(PathBuf),
    Env(Credentials),
    Rrsa(Rrsa),
}

impl DefaultSource {
    /// The first configured source: `dir`, then the environment's keys, then RRSA.
    pub fn choose(dir: Option<PathBuf>) -> DefaultSource {
        Self::choose_from(dir, |k| std::env::var(k).ok())
    }

    /// [`Self::choose`] over any environment (pure, for tests).
    pub fn choose_from(dir: Option<PathBuf>, env: impl Fn(&str) -> Option<String>) -> DefaultSource {
        let var = |k: &str| env(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(dir) = dir {
            return DefaultSource::Dir(dir);
        }
        if let (Some(id), Some(secret)) = (var(ENV_ACCESS_KEY_ID), var(ENV_ACCESS_KEY_SECRET)) {
            let mut creds = Credentials::new(id, secret);
            if let Some(token) = var(ENV_SECURITY_TOKEN) {
                creds = creds.with_security_token(token);
            }
            return DefaultSource::Env(creds);
        }
        if let (Some(role_arn), Some(oidc_provider_arn), Some(file)) =
            (var(ENV_ROLE_ARN), var(ENV_OIDC_PROVIDER_ARN), var(ENV_OIDC_TOKEN_FILE))
        {
            return DefaultSource::Rrsa(Rrsa {
                role_arn,
                oidc_provider_arn,
                token_file: PathBuf::from(file),
                role_session_name: var(ENV_ROLE_SESSION_NAME).unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned()),
            });
        }
        DefaultSource::None
    }

    /// How the source is named in `status.credentialsSource` and logs.
    pub fn name(&self) -> &'static str {
        match self {
            DefaultSource::None => "None",
            DefaultSource::Dir(_) => "DefaultCredentialsDir",
            DefaultSource::Env(_) => "Environment",
            DefaultSource::Rrsa(_) => "RRSA",
        }
    }
}

/// A short digest that changes with `parts` and reveals nothing of them:
/// the first 16 hex digits of their SHA-256.
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..8])
}

/// Reads at most `limit` + 1 bytes of `path`: `None` when it does not exist.
fn read_limited(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, CredentialsError> {
    let unreadable = |problem: String| CredentialsError::FileUnreadable {
        path: path.display().to_string(),
        problem,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(format!("cannot be opened: {}", e.kind()))),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(format!("cannot be read: {}", e.kind())))?;
    Ok(Some(bytes))
}

/// The keys in credentials directory `dir` and the digest of its contents
/// (the source's version: a rotated file is a new stop intent).
pub fn read_dir(dir: &Path) -> Result<(SourceKeys, String), CredentialsError> {
    let mut contents: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut value = |key: &'static str| -> Result<Option<String>, CredentialsError> {
        let path = dir.join(key);
        let Some(bytes) = read_limited(&path, super::MAX_VALUE_BYTES as u64)? else {
            return Ok(None);
        };
        let parsed = parse_value(&bytes).map_err(|problem| CredentialsError::FileUnreadable {
            path: path.display().to_string(),
            problem: problem.to_owned(),
        })?;
        contents.push((key, bytes));
        Ok(parsed)
    };
    let required = |v: Option<String>, key: &'static str| {
        v.ok_or_else(|| CredentialsError::FileUnreadable {
            path: dir.join(key).display().to_string(),
            problem: "is missing or empty".to_owned(),
        })
    };
    let id = required(value(ACCESS_KEY_ID)?, ACCESS_KEY_ID)?;
    let secret = required(value(ACCESS_KEY_SECRET)?, ACCESS_KEY_SECRET)?;
    let token = value(SECURITY_TOKEN)?;
    let role_arn = value(ROLE_ARN)?;
    let session = value(ROLE_SESSION_NAME)?;
    let external_id = value(EXTERNAL_ID)?;
    let mut credentials = Credentials::new(id, secret);
    if let Some(t) = token {
        credentials = credentials.with_security_token(t);
    }
    let role = role_arn.map(|role_arn| Role {
        role_arn,
        role_session_name: session.unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned()),
        external_id,
    });
    let version = digest(contents.iter().flat_map(|(k, v)| [k.as_bytes(), v.as_slice()]));
    Ok((SourceKeys { credentials, role }, format!("dir:{version}")))
}

/// The OIDC token in `path` and its digest.
pub fn read_token(path: &Path) -> Result<(String, String), CredentialsError> {
    let unreadable = |problem: &str| CredentialsError::FileUnreadable {
        path: path.display().to_string(),
        problem: problem.to_owned(),
    };
    let bytes = read_limited(path, MAX_TOKEN_BYTES)?.ok_or_else(|| unreadable("does not exist"))?;
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        return Err(unreadable("is larger than 64 KiB"));
    }
    let token = String::from_utf8(bytes)
        .map_err(|_| unreadable("is not UTF-8"))?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err(unreadable("is empty"));
    }
    let version = digest([token.as_bytes()]);
    Ok((token, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_first_configured_source_wins() {
        let rrsa = [
            (ENV_ROLE_ARN, "acs:ram::1:role/r"),
            (ENV_OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
            (ENV_OIDC_TOKEN_FILE, "/var/run/token"),
        ];
        let keys = [(ENV_ACCESS_KEY_ID, "id"), (ENV_ACCESS_KEY_SECRET, "s")];
        let all: Vec<_> = rrsa.iter().chain(keys.iter()).copied().collect();
        let dir = Some(PathBuf::from("/etc/creds"));
        assert_eq!(
            DefaultSource::choose_from(dir, env(&all)).name(),
            "DefaultCredentialsDir"
        );
        assert_eq!(DefaultSource::choose_from(None, env(&all)).name(), "Environment");
        match DefaultSource::choose_from(None, env(&rrsa)) {
            DefaultSource::Rrsa(r) => {
                assert_eq!(r.role_session_name, DEFAULT_SESSION_NAME);
                assert_eq!(r.token_file, PathBuf::from("/var/run/token"));
            }
            other => panic!("{other:?}"),
        }
        // Incomplete settings are no source.
        assert_eq!(DefaultSource::choose_from(None, env(&rrsa[..2])), DefaultSource::None);
        assert_eq!(
            DefaultSource::choose_from(None, env(&[(ENV_ACCESS_KEY_ID, "id"), (ENV_ACCESS_KEY_SECRET, " ")])),
            DefaultSource::None
        );
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("dts-creds-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_directory_is_read_afresh_and_its_digest_follows_the_contents() {
        let d = tempdir();
        std::fs::write(d.join("accessKeyId"), "LTAIdir\n").unwrap();
        std::fs::write(d.join("accessKeySecret"), "dir-secret-one").unwrap();
        let (keys, v1) = read_dir(&d).unwrap();
        assert_eq!(keys.credentials.access_key_id, "LTAIdir");
        assert!(keys.role.is_none() && keys.credentials.security_token.is_none());
        assert!(v1.starts_with("dir:") && !v1.contains("dir-secret-one"));
        std::fs::write(d.join("accessKeySecret"), "dir-secret-two").unwrap();
        std::fs::write(d.join("roleArn"), "acs:ram::1:role/dts").unwrap();
        let (keys, v2) = read_dir(&d).unwrap();
        assert_ne!(v1, v2);
        assert_eq!(keys.credentials.access_key_secret, "dir-secret-two");
        let role = keys.role.unwrap();
        assert_eq!(
            (role.role_arn.as_str(), role.role_session_name.as_str()),
            ("acs:ram::1:role/dts", "dts-operator")
        );
        assert_eq!(read_dir(&d).unwrap().1, v2, "unchanged contents, same version");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_bad_directory_names_the_file_never_the_value() {
        let d = tempdir();
        let e = read_dir(&d).unwrap_err();
        assert_eq!(e.reason(), crate::reason::Reason::CredentialsFileUnreadable);
        assert!(
            e.to_string().contains("accessKeyId") && e.to_string().contains("missing"),
            "{e}"
        );
        std::fs::write(d.join("accessKeyId"), "LTAIdir").unwrap();
        std::fs::write(d.join("accessKeySecret"), [0xff, 0xfe, b's']).unwrap();
        let e = read_dir(&d).unwrap_err().to_string();
        assert!(e.contains("accessKeySecret") && e.contains("UTF-8"), "{e}");
        std::fs::write(d.join("accessKeySecret"), "x".repeat(5000)).unwrap();
        let e = read_dir(&d).unwrap_err().to_string();
        assert!(e.contains("4096") && !e.contains("xxxx"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_token_file_is_read_with_its_digest() {
        let d = tempdir();
        let path = d.join("token");
        assert!(read_token(&path).unwrap_err().to_string().contains("does not exist"));
        std::fs::write(&path, "  \n").unwrap();
        assert!(read_token(&path).unwrap_err().to_string().contains("empty"));
        std::fs::write(&path, "eyJhbGc.payload.sig\n").unwrap();
        let (token, v) = read_token(&path).unwrap();
        assert_eq!(token, "eyJhbGc.payload.sig");
        assert!(!v.contains("eyJ"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
