//! Command-line flags of `dts-operator run` (each has an environment
//! variable, so a Deployment can set them either way).

use std::num::NonZeroU32;
use std::time::Duration;

use crate::telemetry::LogFormat;
use dts_api::SignatureVersion;

/// Flags of `dts-operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch DtsJobs (and Secrets) in these namespaces only (repeat the flag
    /// or separate with commas); default: all namespaces.
    #[arg(long, env = "DTS_OPERATOR_NAMESPACE", value_delimiter = ',')]
    pub namespace: Vec<String>,

    /// Handle only the DtsJobs matching this label selector (e.g.
    /// `shard=a`), so a fleet can be split across Deployments, each with its
    /// own --lease-name. Shards must not overlap.
    #[arg(long, env = "DTS_OPERATOR_SELECTOR")]
    pub selector: Option<String>,

    /// Override the DTS endpoint for every region (e.g. http://127.0.0.1:8080 for
    /// the emulator, or a private endpoint). http is only allowed here.
    #[arg(long, env = "DTS_ENDPOINT", value_parser = parse_endpoint)]
    pub dts_endpoint: Option<url::Url>,

    /// Override the STS endpoint (AssumeRole, AssumeRoleWithOIDC) for every
    /// region, as --dts-endpoint does for DTS. http is only allowed here.
    #[arg(long, env = "STS_ENDPOINT", value_parser = parse_endpoint)]
    pub sts_endpoint: Option<url::Url>,

    /// The default credentials, as files (accessKeyId, accessKeySecret,
    /// optional securityToken, optional roleArn/roleSessionName/externalId),
    /// e.g. a mounted Secret. Re-read on use, so a rotated Secret needs no
    /// restart. Wins over the ALIBABA_CLOUD_* environment and RRSA.
    #[arg(long, env = "DTS_DEFAULT_CREDENTIALS_DIR")]
    pub default_credentials_dir: Option<std::path::PathBuf>,

    /// Read (and watch) Secrets only in these namespaces (repeat the flag or
    /// separate with commas; an empty value: none). Unset: every namespace
    /// of --namespace. A DtsJob elsewhere whose credentialsSecretRef is set
    /// gets CredentialsNamespaceNotAllowed.
    #[arg(long, env = "DTS_SECRET_NAMESPACES", value_delimiter = ',', num_args = 0..)]
    pub secret_namespaces: Option<Vec<String>>,

    /// Request signing scheme.
    #[arg(long, env = "DTS_SIGNATURE_VERSION", value_parser = signature_version_parser(), default_value = "hmac-sha1")]
    pub signature_version: SignatureVersion,

    /// DTS calls per second at most per AccessKey and region (DTS's quota
    /// unit), evenly spaced; lowered for a while after DTS throttles.
    #[arg(long, env = "DTS_RATE_LIMIT", default_value = "10")]
    pub dts_rate_limit: NonZeroU32,

    /// DTS calls in flight at most, all AccessKeys and regions together.
    #[arg(long, env = "DTS_MAX_CONCURRENCY", default_value = "16")]
    pub dts_max_concurrency: usize,

    /// DTS calls in a row that fail with the same class (credentials
    /// refused, RAM permission missing, DTS 5xx) for one AccessKey and
    /// region before its circuit opens: no call with it until the cool-off
    /// is over; 0 never opens.
    #[arg(long, env = "DTS_CIRCUIT_FAILURE_THRESHOLD", default_value = "5")]
    pub circuit_failure_threshold: u32,

    /// How long an open circuit sends no call; then one call tests it
    /// (e.g. 30s, 2m).
    #[arg(long, env = "DTS_CIRCUIT_COOLOFF", default_value = "30s", value_parser = parse_cooloff)]
    pub circuit_cooloff: Duration,

    /// Timeout of each DTS call (e.g. 10s, 500ms).
    #[arg(long, env = "DTS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub dts_timeout: Duration,

    /// First retry delay after a retryable DTS failure (doubles up to --retry-max-delay).
    #[arg(long, env = "DTS_RETRY_BASE_DELAY", default_value = "1s", value_parser = parse_duration)]
    pub retry_base_delay: Duration,

    /// Longest retry delay.
    #[arg(long, env = "DTS_RETRY_MAX_DELAY", default_value = "5m", value_parser = parse_duration)]
    pub retry_max_delay: Duration,

    /// How often DTS is read for each DtsJob (batched DescribeDtsJobs, by
    /// account and region); 0 turns the observer off. A DtsJob's
    /// kubedts.io/poll-interval annotation overrides it ("0" for none).
    #[arg(long, env = "DTS_POLL_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// Reconciles running at once, at most. A burst of thousands of flips
    /// is then worked off at this width instead of all at once against the
    /// API server (kube-runtime's controller is unbounded by default); DTS
    /// calls are limited separately by --dts-rate-limit and
    /// --dts-max-concurrency.
    #[arg(long, env = "DTS_MAX_CONCURRENT_RECONCILES", default_value = "64",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,

    /// Log level or filter (RUST_LOG syntax); RUST_LOG wins when set.
    #[arg(long, env = "DTS_OPERATOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "DTS_OPERATOR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Address of the /metrics, /livez and /readyz server.
    #[arg(long, env = "DTS_OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,

    /// Run leader election on a Lease, so only one replica acts.
    #[arg(long, env = "DTS_OPERATOR_LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,

    /// Name of the leader election Lease.
    #[arg(long, env = "DTS_OPERATOR_LEASE_NAME", default_value = "dts-operator")]
    pub lease_name: String,

    /// Namespace of the Lease (default: the pod's namespace, POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's identity in the Lease (default: POD_NAME, else the hostname).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// How long a Lease is valid without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How long the leader keeps trying to renew before it gives up leading.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub lease_renew_deadline: Duration,

    /// How often to try to acquire or renew.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lease_retry_period: Duration,
}

impl RunArgs {
    /// The DtsJobs (and Secrets) this replica set handles.
    pub fn scope(&self) -> crate::scope::Scope {
        crate::scope::Scope {
            namespaces: self
                .namespace
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            selector: self.selector.clone().filter(|s| !s.trim().is_empty()),
        }
    }
}

impl RunArgs {
    /// The namespaces whose Secrets may be read: `None` for every namespace
    /// of the scope; else the listed ones, within the scope when the scope
    /// is a list of namespaces.
    pub fn secret_namespaces(&self) -> Option<Vec<String>> {
        let listed: Vec<String> = self
            .secret_namespaces
            .as_ref()?
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        let scope = self.scope();
        let mut out: Vec<String> = Vec::new();
        for n in listed {
            if (scope.namespaces.is_empty() || scope.namespaces.contains(&n)) && !out.contains(&n) {
                out.push(n);
            }
        }
        Some(out)
    }
}

/// `--signature-version`: clap checks the value against the possible values
/// (so `--help` lists them and a typo is refused with them), then
/// [`SignatureVersion`]'s `FromStr`, the one parser, reads it.
fn signature_version_parser() -> impl clap::builder::TypedValueParser<Value = SignatureVersion> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
    PossibleValuesParser::new([
        PossibleValue::new(SignatureVersion::HmacSha1.as_str()).help(
            "RPC HMAC-SHA1, `SignatureVersion=1.0`: the product's default, as the legacy SDK and \
             `signature_algorithm=\"v2\"` send it",
        ),
        PossibleValue::new(SignatureVersion::Acs3HmacSha256.as_str())
            .help("ACS3-HMAC-SHA256, header based: the current SDK's default"),
    ])
    .map(|s| {
        s.parse::<SignatureVersion>()
            .expect("every possible value is a SignatureVersion")
    })
}

/// An endpoint override: a URL with `http` or `https` and a host.
pub fn parse_endpoint(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    dts_api::endpoint::override_endpoint(&url).map_err(|e| e.message.unwrap_or_default())?;
    Ok(url)
}

/// `--circuit-cooloff`: a duration of at least 100 ms (a zero cool-off
/// would let every call through as a probe).
fn parse_cooloff(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("cool-off {s:?} is too short: at least 100ms"));
    }
    Ok(d)
}

/// Parses Go-style durations as Kubernetes users write them: `500ms`,
/// `10s`, `5m`, `1m30s`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let invalid = || format!("invalid duration {s:?}: expected e.g. 500ms, 10s, 1m30s");
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map(Duration::from_secs).map_err(|_| invalid());
    }
    let mut total = 0.0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(invalid)?;
        let unit_len = rest[num_len..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len() - num_len);
        let n: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
        let scale = match &rest[num_len..num_len + unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
        };
        total += n * scale;
        rest = &rest[num_len + unit_len..];
    }
    if !(0.0..=86_400.0 * 365.0).contains(&total) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn poll_interval_defaults_to_five_minutes_and_zero_is_off() {
        use clap::Parser;
        let parse = |args: &[&str]| Wrapper::try_parse_from(["run"].iter().chain(args)).map(|w| w.run.poll_interval);
        assert_eq!(parse(&[]).unwrap(), Duration::from_secs(300));
        assert_eq!(parse(&["--poll-interval", "2s"]).unwrap(), Duration::from_secs(2));
        assert_eq!(parse(&["--poll-interval", "0"]).unwrap(), Duration::ZERO);
        assert!(parse(&["--poll-interval", "soon"]).is_err());
    }

    #[test]
    fn circuit_flags_have_sane_defaults_and_refuse_a_zero_cooloff() {
        use clap::Parser;
        let parse = |args: &[&str]| Wrapper::try_parse_from(["run"].iter().chain(args)).map(|w| w.run);
        let run = parse(&[]).unwrap();
        assert_eq!(run.circuit_failure_threshold, 5);
        assert_eq!(run.circuit_cooloff, Duration::from_secs(30));
        let run = parse(&["--circuit-failure-threshold", "0", "--circuit-cooloff", "2m"]).unwrap();
        assert_eq!(
            (run.circuit_failure_threshold, run.circuit_cooloff),
            (0, Duration::from_secs(120))
        );
        let err = parse(&["--circuit-cooloff", "0"]).unwrap_err().to_string();
        assert!(err.contains("at least 100ms"), "{err}");
    }

    #[derive(clap::Parser, Debug)]
    struct Wrapper {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn a_bad_endpoint_override_is_refused_at_start_with_the_reason() {
        use clap::Parser;
        let err = Wrapper::try_parse_from(["run", "--dts-endpoint", "ftp://127.0.0.1:21"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("--dts-endpoint") && text.contains("http or https"),
            "{text}"
        );
        let err = Wrapper::try_parse_from(["run", "--dts-endpoint", "127.0.0.1:8080"]).unwrap_err();
        assert!(err.to_string().contains("--dts-endpoint"), "{err}");
        let ok = Wrapper::try_parse_from(["run", "--dts-endpoint", "http://127.0.0.1:8080"]).unwrap();
        assert_eq!(ok.run.dts_endpoint.unwrap().as_str(), "http://127.0.0.1:8080/");
    }

    #[test]
    fn secret_namespaces_narrow_the_scope_and_empty_means_none() {
        use clap::Parser;
        let parse = |args: &[&str]| Wrapper::try_parse_from(["run"].iter().chain(args)).unwrap().run;
        assert_eq!(parse(&[]).secret_namespaces(), None, "unset: the whole scope");
        assert_eq!(
            parse(&["--secret-namespaces", "a,b", "--secret-namespaces", "a"]).secret_namespaces(),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(parse(&["--secret-namespaces", ""]).secret_namespaces(), Some(vec![]));
        assert_eq!(parse(&["--secret-namespaces"]).secret_namespaces(), Some(vec![]));
        assert_eq!(
            parse(&["--namespace", "a", "--secret-namespaces", "a,c"]).secret_namespaces(),
            Some(vec!["a".to_owned()]),
            "never beyond --namespace"
        );
        let run = parse(&[
            "--sts-endpoint",
            "http://127.0.0.1:1",
            "--default-credentials-dir",
            "/etc/dts",
        ]);
        assert_eq!(run.sts_endpoint.unwrap().as_str(), "http://127.0.0.1:1/");
        assert_eq!(
            run.default_credentials_dir.unwrap(),
            std::path::PathBuf::from("/etc/dts")
        );
        assert!(Wrapper::try_parse_from(["run", "--sts-endpoint", "ftp://x"]).is_err());
    }

    #[test]
    fn signature_version_takes_the_two_schemes_and_lists_them() {
        use clap::{CommandFactory, Parser};
        let parse =
            |args: &[&str]| Wrapper::try_parse_from(["run"].iter().chain(args)).map(|w| w.run.signature_version);
        assert_eq!(parse(&[]).unwrap(), SignatureVersion::HmacSha1);
        assert_eq!(
            parse(&["--signature-version", "hmac-sha1"]).unwrap(),
            SignatureVersion::HmacSha1
        );
        assert_eq!(
            parse(&["--signature-version", "acs3-hmac-sha256"]).unwrap(),
            SignatureVersion::Acs3HmacSha256
        );
        let err = parse(&["--signature-version", "v4"]).unwrap_err().to_string();
        assert!(err.contains("hmac-sha1") && err.contains("acs3-hmac-sha256"), "{err}");
        let help = Wrapper::command().render_long_help().to_string();
        assert!(
            help.contains("- hmac-sha1:") && help.contains("- acs3-hmac-sha256:"),
            "{help}"
        );
        let short = Wrapper::command().render_help().to_string();
        assert!(
            short.contains("[possible values: hmac-sha1, acs3-hmac-sha256]"),
            "{short}"
        );
    }
}
