//! Which host a call goes to.
//!
//! The rule is the official SDK's: the operator-level override if set, else
//! the SDK's region → host map (`data/endpoints.json`, copied from
//! alibabacloud-dts20200101 5.11.7, provenance inside the file), else
//! `dts.<regionId>.aliyuncs.com`. The regionId comes from a user's resource
//! and the operator's credentials are sent to the host it selects, so it is
//! validated here even though the CRD schema validates it too.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::error::DtsError;

/// Where to send a call: scheme, host and port. The path is always `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https`, or `http` when the operator override says so.
    pub scheme: String,
    /// `host` or `host:port` exactly as the `Host` header carries it (and as
    /// V3 signs it).
    pub authority: String,
}

impl Endpoint {
    /// `scheme://authority/?query`.
    pub fn url_with_query(&self, query: &str) -> String {
        format!("{}://{}/?{}", self.scheme, self.authority, query)
    }
}

#[derive(serde::Deserialize)]
struct EndpointData {
    endpoint_map: BTreeMap<String, String>,
}

/// The SDK's map. Parsed once from the embedded JSON; a unit test proves it
/// parses, and an unparsable file degrades to the regional rule rather than
/// a panic.
fn endpoint_map() -> &'static BTreeMap<String, String> {
    static MAP: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    MAP.get_or_init(|| {
        serde_json::from_str::<EndpointData>(include_str!("data/endpoints.json"))
            .map(|d| d.endpoint_map)
            .unwrap_or_default()
    })
}

/// `^[a-z]{2,}(-[a-z0-9]+)+$`, the CRD's pattern, without a regex engine.
pub fn is_valid_region_id(region_id: &str) -> bool {
    let mut parts = region_id.split('-');
    let Some(first) = parts.next() else {
        return false;
    };
    if first.len() < 2 || !first.bytes().all(|b| b.is_ascii_lowercase()) {
        return false;
    }
    let mut rest = 0;
    for part in parts {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return false;
        }
        rest += 1;
    }
    rest > 0
}

/// The endpoint an override URL names: `http` or `https` and a host. Also
/// the check of the operator's `--dts-endpoint` flag, so a bad value stops
/// start-up instead of failing every call.
pub fn override_endpoint(url: &url::Url) -> Result<Endpoint, DtsError> {
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(DtsError::invalid_request(format!(
            "endpoint override must be http or https, not {scheme:?}"
        )));
    }
    let Some(host) = url.host_str() else {
        return Err(DtsError::invalid_request("endpoint override has no host"));
    };
    // `port()` is None when it is the scheme's default, which is also
    // when an HTTP client leaves it out of `Host`.
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Ok(Endpoint {
        scheme: scheme.to_owned(),
        authority,
    })
}

/// The endpoint for `region_id`, honouring `override_url`.
///
/// The override may use `http` (emulator, private endpoints); the derived
/// endpoints are always `https`. A path in the override is ignored: both
/// signature schemes sign the path `/`.
pub fn resolve(override_url: Option<&url::Url>, region_id: &str) -> Result<Endpoint, DtsError> {
    if !is_valid_region_id(region_id) {
        return Err(DtsError::invalid_request(format!(
            "regionId {region_id:?} does not match ^[a-z]{{2,}}(-[a-z0-9]+)+$"
        )));
    }
    if let Some(url) = override_url {
        return override_endpoint(url);
    }
    let host = match endpoint_map().get(region_id) {
        Some(host) => host.clone(),
        None => format!("dts.{region_id}.aliyuncs.com"),
    };
    Ok(Endpoint {
        scheme: "https".to_owned(),
        authority: host,
    })
}

/// The STS host for `region_id`, honouring `override_url`, as the official
/// credentials SDKs derive it: `sts.aliyuncs.com` without a region,
/// `sts.<region>.aliyuncs.com` with one, `sts-vpc.<region>.aliyuncs.com`
/// when `vpc` (the SDKs' `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED`). Always
/// `https` unless overridden; the region is validated as for DTS.
pub fn resolve_sts(override_url: Option<&url::Url>, region_id: Option<&str>, vpc: bool) -> Result<Endpoint, DtsError> {
    if let Some(region) = region_id {
        if !is_valid_region_id(region) {
            return Err(DtsError::invalid_request(format!(
                "STS region {region:?} does not match ^[a-z]{{2,}}(-[a-z0-9]+)+$"
            )));
        }
    }
    if let Some(url) = override_url {
        return override_endpoint(url);
    }
    let prefix = if vpc { "sts-vpc" } else { "sts" };
    let authority = match region_id {
        Some(region) => format!("{prefix}.{region}.aliyuncs.com"),
        None => "sts.aliyuncs.com".to_owned(),
    };
    Ok(Endpoint {
        scheme: "https".to_owned(),
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_map_is_embedded() {
        let map = endpoint_map();
        assert_eq!(
            map.len(),
            55,
            "entries of alibabacloud-dts20200101 5.11.7 _endpoint_map"
        );
        assert!(map.keys().all(|r| is_valid_region_id(r)));
    }

    #[test]
    fn mapped_regions_use_the_central_host() {
        for region in [
            "cn-hangzhou",
            "cn-shanghai",
            "ap-southeast-1",
            "eu-central-1",
            "cn-shenzhen-finance-1",
        ] {
            let ep = resolve(None, region).expect("valid region");
            assert_eq!(ep.url_with_query("a=b"), "https://dts.aliyuncs.com/?a=b", "{region}");
        }
    }

    #[test]
    fn unmapped_regions_use_the_regional_rule() {
        let ep = resolve(None, "ap-northeast-1").expect("valid region");
        assert_eq!(ep.authority, "dts.ap-northeast-1.aliyuncs.com");
        assert_eq!(ep.scheme, "https");
        assert_eq!(
            resolve(None, "cn-guangzhou").map(|e| e.authority).ok().as_deref(),
            Some("dts.cn-guangzhou.aliyuncs.com")
        );
    }

    #[test]
    fn the_override_wins_and_may_be_http() {
        let url = url::Url::parse("http://127.0.0.1:8080/ignored").expect("url");
        let ep = resolve(Some(&url), "cn-hangzhou").expect("ok");
        assert_eq!(ep.url_with_query("x=1"), "http://127.0.0.1:8080/?x=1");
        let url = url::Url::parse("https://dts-vpc.cn-hangzhou.aliyuncs.com:443").expect("url");
        assert_eq!(
            resolve(Some(&url), "cn-hangzhou").map(|e| e.authority).ok().as_deref(),
            Some("dts-vpc.cn-hangzhou.aliyuncs.com")
        );
        let url = url::Url::parse("ftp://example.com").expect("url");
        assert!(resolve(Some(&url), "cn-hangzhou").is_err());
    }

    #[test]
    fn sts_endpoints_follow_the_credentials_sdks() {
        assert_eq!(resolve_sts(None, None, false).unwrap().authority, "sts.aliyuncs.com");
        let ep = resolve_sts(None, Some("cn-hangzhou"), false).unwrap();
        assert_eq!(ep.url_with_query("a=b"), "https://sts.cn-hangzhou.aliyuncs.com/?a=b");
        assert_eq!(
            resolve_sts(None, Some("cn-beijing"), true).unwrap().authority,
            "sts-vpc.cn-beijing.aliyuncs.com"
        );
        let url = url::Url::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            resolve_sts(Some(&url), Some("cn-hangzhou"), false).unwrap().authority,
            "127.0.0.1:9000"
        );
        assert!(resolve_sts(None, Some("cn-hangzhou.evil.com"), false).is_err());
    }

    #[test]
    fn region_ids_cannot_carry_a_host() {
        for bad in [
            "",
            "cn",
            "c-hangzhou",
            "cn-",
            "cn--x",
            "CN-hangzhou",
            "cn-hangzhou.evil.com",
            "evil.com/cn-hangzhou",
            "cn-hangzhou:80",
            "cn-hangzhou@evil",
            "cn-hangzhou\n",
            "cn_hangzhou",
            "1a-b",
        ] {
            let err = resolve(None, bad).expect_err(bad);
            assert_eq!(err.class, crate::ErrorClass::Terminal);
            assert_eq!(err.reason(), "InvalidParameter");
        }
        for good in [
            "cn-hangzhou",
            "ap-southeast-1",
            "cn-hangzhou-finance",
            "rus-west-1-pop",
            "us-east-1",
        ] {
            assert!(is_valid_region_id(good), "{good}");
        }
    }
}
