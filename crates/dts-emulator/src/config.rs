//! The emulator's configuration file: accounts that may call it and the DTS
//! jobs it starts with. YAML, and JSON too (JSON is read by the same parser).
//!
//! Loading never panics: every problem becomes a [`ConfigError`] whose
//! `Display` is one line naming the file and the problem, which the binary
//! prints before exiting with status 2.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub accounts: Vec<Account>,
    #[serde(default)]
    pub jobs: Vec<JobSpec>,
    /// Describe* calls allowed per second per (AccessKeyId, region), a token
    /// bucket whose burst is the rate; `0` = unlimited. Absent: 20, the
    /// documented DescribeDtsJobs limit per account per region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub describe_qps: Option<u32>,
    /// STS (2015-04-01): the roles `AssumeRole` and `AssumeRoleWithOIDC`
    /// may assume, and the OIDC providers whose tokens are accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts: Option<StsConfig>,
}

/// The emulator's STS.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StsConfig {
    /// Lifetime of issued credentials, seconds, whatever `DurationSeconds`
    /// asked for (tests use a few seconds); absent: `DurationSeconds`.
    #[serde(default)]
    pub credential_lifetime_seconds: Option<u64>,
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
    #[serde(default)]
    pub oidc_providers: Vec<OidcProvider>,
}

/// A RAM role and its trust policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    /// `acs:ram::<account>:role/<name>`.
    pub arn: String,
    /// AccessKeyIds (of `accounts`) that may `AssumeRole` it.
    #[serde(default)]
    pub trusted_access_key_ids: Vec<String>,
    /// When set, `AssumeRole` must send this `ExternalId`.
    #[serde(default)]
    pub external_id: Option<String>,
    /// OIDC providers whose tokens may `AssumeRoleWithOIDC` it.
    #[serde(default)]
    pub oidc_provider_arns: Vec<String>,
    /// When not empty, the token's `sub` must be one of these
    /// (`system:serviceaccount:<namespace>:<name>` for Kubernetes).
    #[serde(default)]
    pub subjects: Vec<String>,
}

/// An OIDC identity provider (RRSA: the cluster's ServiceAccount issuer).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcProvider {
    /// `acs:ram::<account>:oidc-provider/<name>`.
    pub arn: String,
    /// The tokens' `iss`.
    pub issuer: String,
    /// Accepted `aud` values (the provider's client IDs; ACK uses `sts.aliyuncs.com`).
    pub audiences: Vec<String>,
    /// The issuer's signing keys, a JWKS document (`/openid/v1/jwks` of a
    /// kube-apiserver).
    pub jwks: serde_json::Value,
}

/// The default Describe* quota per (AccessKeyId, region), calls per second.
pub const DEFAULT_DESCRIBE_QPS: u32 = 20;

/// The job types of DTS's `JobType` parameter.
pub const JOB_TYPES: [&str; 3] = ["SYNC", "MIGRATION", "SUBSCRIBE"];

/// An AccessKey that the emulator accepts: the client's own credential type
/// (whose `Debug` redacts the secret and token). With `securityToken` it is
/// an STS credential: every call must then carry and sign that exact token.
pub type Account = dts_api::sign::Credentials;

/// A DTS job as declared in the file or posted to `/_emulator/jobs`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub region_id: String,
    /// `false`: one-way; a `Reverse` call is then answered `InvalidParameter`.
    #[serde(default)]
    pub two_way: bool,
    /// Initial status of every direction.
    #[serde(default = "default_status")]
    pub status: String,
    /// `SYNC` (default), `MIGRATION` or `SUBSCRIBE` (change tracking: a
    /// SuspendDtsJob answers success and changes nothing). Case-insensitive.
    #[serde(default = "default_job_type")]
    pub job_type: String,
    /// Milliseconds a StopDtsJob, SuspendDtsJob or StartDtsJob takes to
    /// reach its target status (every direction); 0 = immediately.
    #[serde(default)]
    pub transition_ms: u64,
    /// Replication delay every direction reports (`Delay`, milliseconds).
    #[serde(default)]
    pub delay_ms: u64,
    /// `Checkpoint` every direction reports (unix seconds); absent: the
    /// time of the call (no lag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<i64>,
    /// `ErrorMessage` every direction reports (e.g. with `status: Failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

fn default_status() -> String {
    "Synchronizing".to_owned()
}

fn default_job_type() -> String {
    "SYNC".to_owned()
}

/// The upper-case job type if `t` is one of [`JOB_TYPES`].
pub fn normalize_job_type(t: &str) -> Option<&'static str> {
    JOB_TYPES.into_iter().find(|k| k.eq_ignore_ascii_case(t.trim()))
}

impl JobSpec {
    /// Checks one job on its own (emptiness); uniqueness is checked by the
    /// caller that knows the other jobs.
    pub fn validate(&self) -> Result<(), String> {
        if self.job_id.trim().is_empty() {
            return Err("jobId is empty".into());
        }
        if self.region_id.trim().is_empty() {
            return Err(format!("job {:?}: regionId is empty", self.job_id));
        }
        if self.instance_id.as_deref().is_some_and(|i| i.trim().is_empty()) {
            return Err(format!("job {:?}: instanceId is empty", self.job_id));
        }
        if self.status.trim().is_empty() {
            return Err(format!("job {:?}: status is empty", self.job_id));
        }
        match normalize_job_type(&self.job_type) {
            None => {
                return Err(format!(
                    "job {:?}: jobType {:?} is not one of SYNC, MIGRATION, SUBSCRIBE",
                    self.job_id, self.job_type
                ))
            }
            Some(t) if t != "SYNC" && self.two_way => {
                return Err(format!("job {:?}: twoWay needs jobType SYNC, not {t}", self.job_id))
            }
            Some(_) => {}
        }
        Ok(())
    }
}

/// Why a config file could not be used. `Display` is a single line.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |problem: String| ConfigError {
            path: path.to_owned(),
            // Keep the promise of one line whatever the parser says.
            problem: problem.replace(['\n', '\r'], " "),
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        Config::parse(&text).map_err(err)
    }

    /// Parses and validates a YAML or JSON document.
    pub fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Err("the file is empty (expected `accounts:` and `jobs:`)".into());
        }
        let config: Config = serde_yaml::from_str(text).map_err(|e| format!("invalid YAML/JSON: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-entry checks: non-empty credentials, unique AccessKeyIds and jobIds.
    pub fn validate(&self) -> Result<(), String> {
        let mut keys = HashSet::new();
        for (i, a) in self.accounts.iter().enumerate() {
            if a.access_key_id.trim().is_empty() {
                return Err(format!("accounts[{i}].accessKeyId is empty"));
            }
            if a.access_key_secret.is_empty() {
                return Err(format!("accounts[{i}].accessKeySecret is empty"));
            }
            if a.security_token.as_deref() == Some("") {
                return Err(format!(
                    "accounts[{i}].securityToken is empty (omit it for a non-STS account)"
                ));
            }
            if !keys.insert(a.access_key_id.as_str()) {
                return Err(format!("duplicate accessKeyId {:?} (accounts[{i}])", a.access_key_id));
            }
        }
        if let Some(sts) = &self.sts {
            for (i, p) in sts.oidc_providers.iter().enumerate() {
                if p.arn.trim().is_empty() || p.issuer.trim().is_empty() || p.audiences.is_empty() {
                    return Err(format!(
                        "sts.oidcProviders[{i}]: arn, issuer and audiences are required"
                    ));
                }
                if let Err(e) = serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(p.jwks.clone()) {
                    return Err(format!("sts.oidcProviders[{i}].jwks is not a JWKS document: {e}"));
                }
            }
            for (i, r) in sts.roles.iter().enumerate() {
                if r.arn.trim().is_empty() {
                    return Err(format!("sts.roles[{i}].arn is empty"));
                }
            }
            if sts.credential_lifetime_seconds == Some(0) {
                return Err("sts.credentialLifetimeSeconds must be at least 1".into());
            }
        }
        let mut ids = HashSet::new();
        for (i, j) in self.jobs.iter().enumerate() {
            j.validate().map_err(|e| format!("jobs[{i}]: {e}"))?;
            if !ids.insert(j.job_id.as_str()) {
                return Err(format!("duplicate jobId {:?} (jobs[{i}])", j.job_id));
            }
        }
        Ok(())
    }

    /// The Describe* quota in force at start-up (and after
    /// `DELETE /_emulator/faults`).
    pub fn describe_qps(&self) -> u32 {
        self.describe_qps.unwrap_or(DEFAULT_DESCRIBE_QPS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_shape_in_yaml_and_json() {
        let yaml = "accounts:\n  - accessKeyId: LTAIexample\n    accessKeySecret: s\n    securityToken: t\njobs:\n  - jobId: j\n    instanceId: i\n    regionId: cn-hangzhou\n    twoWay: true\n    status: Synchronizing\n";
        let c = Config::parse(yaml).unwrap();
        assert_eq!(c.accounts[0].security_token.as_deref(), Some("t"));
        assert!(c.jobs[0].two_way);
        let json = r#"{"accounts":[{"accessKeyId":"a","accessKeySecret":"s"}],"jobs":[{"jobId":"j","regionId":"cn-hangzhou"}]}"#;
        let c = Config::parse(json).unwrap();
        assert_eq!(c.jobs[0].status, "Synchronizing");
        assert!(!c.jobs[0].two_way);
        assert_eq!(c.jobs[0].job_type, "SYNC");
        assert_eq!((c.jobs[0].transition_ms, c.jobs[0].delay_ms), (0, 0));
        assert_eq!(c.describe_qps(), DEFAULT_DESCRIBE_QPS);
        let c = Config::parse(
            "describeQps: 0\njobs:\n  - {jobId: t, regionId: r, jobType: subscribe, transitionMs: 500, delayMs: 7, checkpoint: 1700000000}\n",
        )
        .unwrap();
        assert_eq!(c.describe_qps(), 0);
        assert_eq!(c.jobs[0].checkpoint, Some(1_700_000_000));
    }

    #[test]
    fn rejects_bad_files_with_one_line_reasons() {
        for (text, needle) in [
            ("accounts: [", "invalid YAML/JSON"),
            ("accounts: []\nbogus: 1\n", "unknown field `bogus`"),
            (
                "jobs:\n  - {jobId: j, regionId: r, colour: red}\n",
                "unknown field `colour`",
            ),
            (
                "accounts:\n  - {accessKeyId: '', accessKeySecret: s}\n",
                "accounts[0].accessKeyId is empty",
            ),
            (
                "jobs:\n  - {jobId: j, regionId: r}\n  - {jobId: j, regionId: r}\n",
                "duplicate jobId \"j\"",
            ),
            ("", "empty"),
            (
                "jobs:\n  - {jobId: j, regionId: r, jobType: BATCH}\n",
                "jobType \"BATCH\"",
            ),
            (
                "jobs:\n  - {jobId: j, regionId: r, jobType: SUBSCRIBE, twoWay: true}\n",
                "twoWay needs jobType SYNC",
            ),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn reads_the_sts_section_and_checks_the_jwks() {
        let yaml = "sts:\n  credentialLifetimeSeconds: 5\n  roles:\n    - {arn: 'acs:ram::1:role/r', trustedAccessKeyIds: [a], oidcProviderArns: ['acs:ram::1:oidc-provider/p']}\n  oidcProviders:\n    - {arn: 'acs:ram::1:oidc-provider/p', issuer: 'https://k', audiences: [sts.aliyuncs.com], jwks: {keys: []}}\n";
        let c = Config::parse(yaml).unwrap();
        let sts = c.sts.unwrap();
        assert_eq!(sts.credential_lifetime_seconds, Some(5));
        assert_eq!(sts.roles[0].trusted_access_key_ids, vec!["a"]);
        let bad = "sts:\n  oidcProviders:\n    - {arn: p, issuer: i, audiences: [a], jwks: {nokeys: 1}}\n";
        assert!(Config::parse(bad).unwrap_err().contains("not a JWKS"), "{bad}");
    }

    #[test]
    fn missing_file_names_the_file() {
        let e = Config::load(Path::new("/nonexistent/emu.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config file /nonexistent/emu.yaml: cannot read it"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn debug_hides_secrets() {
        let a = Account {
            access_key_id: "id".into(),
            access_key_secret: "sekret".into(),
            security_token: Some("tok".into()),
        };
        let s = format!("{a:?}");
        assert!(!s.contains("sekret") && !s.contains("tok\""), "{s}");
    }
}
