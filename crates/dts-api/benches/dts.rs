//! `make bench` (with benches/controller.rs of dts-operator): prints the
//! cost of the DTS client's hot pure steps (signing, request building,
//! response parsing), per operation. Numbers, not assertions: this machine
//! is shared and noisy, so read them as orders of magnitude and compare runs
//! on one machine.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use dts_api::response::parse_response;
use dts_api::sign::{rpc_v1, v3, Credentials};
use dts_api::{build_request, ClientConfig, HttpResponse, SignatureVersion};

/// Runs `f` for about `budget` and prints the mean time per call.
fn bench(name: &str, budget: Duration, mut f: impl FnMut()) {
    for _ in 0..1_000 {
        f(); // warm-up
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{name:<48} {per:>10.0} ns/op  ({n} iterations)");
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MILLIS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    let creds = Credentials::new("LTAIbenchAccessKey", "bench-secret");
    let mut api = BTreeMap::new();
    api.insert("DtsJobId".to_owned(), "dtsj1a2b3c4d5e6f7".to_owned());
    api.insert("RegionId".to_owned(), "cn-hangzhou".to_owned());
    api.insert("SynchronizationDirection".to_owned(), "Reverse".to_owned());

    bench("sign HMAC-SHA1 (canonicalize + HMAC)", budget, || {
        let p = rpc_v1::signed_parameters("StopDtsJob", "2020-01-01", &api, &creds, "2024-01-02T03:04:05Z", "0001");
        black_box(rpc_v1::signed_query("POST", &p, &creds.access_key_secret));
    });
    let headers = v3::request_headers(
        "dts.aliyuncs.com",
        "StopDtsJob",
        "2020-01-01",
        b"",
        &creds,
        "2024-01-02T03:04:05Z",
        "0001",
    );
    bench("sign ACS3-HMAC-SHA256 (canonical request + HMAC)", budget, || {
        black_box(v3::sign("POST", &api, &headers, b"", &creds));
    });
    for (name, version) in [
        ("HMAC-SHA1", SignatureVersion::HmacSha1),
        ("ACS3", SignatureVersion::Acs3HmacSha256),
    ] {
        let config = ClientConfig {
            endpoint_override: None,
            signature_version: version,
            timeout: Duration::from_secs(10),
        };
        let ts = jiff::Timestamp::from_second(1_704_164_645).expect("valid timestamp");
        bench(&format!("build_request StopDtsJob ({name})"), budget, || {
            black_box(build_request(&config, &creds, "cn-hangzhou", "StopDtsJob", &api, ts, "0001").ok());
        });
    }
    let ok = HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"RequestId":"7C1A0E52-4B8D-4F0B-9E57-1D2C3B4A5F60","Success":true,"HttpStatusCode":200}"#.to_vec(),
    };
    bench("parse_response success", budget, || {
        black_box(parse_response(&ok).ok());
    });
    let failed = HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"RequestId":"7C1A","Success":false,"HttpStatusCode":200,"ErrCode":"InvalidParameter","ErrMessage":"The Value of Input Parameter %s is not valid.","DynamicMessage":"SynchronizationDirection"}"#.to_vec(),
    };
    bench("parse_response Success:false + classify", budget, || {
        black_box(parse_response(&failed).err());
    });
}
