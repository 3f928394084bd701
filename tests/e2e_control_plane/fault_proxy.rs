//! 500s on demand: a loopback proxy in front of the API server that fails
//! a share of the DtsJob status writes.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

/// A loopback HTTP proxy in front of the test API server that answers every
/// `every`-th DtsJob status PATCH with a 500 InternalError: alternately
/// without forwarding it (the write is lost) and after forwarding it (the
/// write happened, only the answer is lost: the nastier case for a client
/// that retries). Everything else, watches included, is passed through
/// (the operator speaks plain HTTP to the proxy, the proxy TLS to the server).
pub struct FaultProxy {
    pub url: String,
    /// How many 500s were injected so far.
    pub injected: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    every: u64,
    seen: Arc<std::sync::atomic::AtomicU64>,
    injected: Arc<std::sync::atomic::AtomicU64>,
}

/// `server` and `certificate-authority-data` of the kubeconfig at `path`.
fn kubeconfig_cluster(path: &Path) -> (String, Vec<u8>) {
    use base64::Engine;
    let config: Value = serde_yaml::from_str(&std::fs::read_to_string(path).expect("kubeconfig")).expect("YAML");
    let cluster = &config["clusters"][0]["cluster"];
    let ca = base64::engine::general_purpose::STANDARD
        .decode(cluster["certificate-authority-data"].as_str().expect("CA data"))
        .expect("CA base64");
    (cluster["server"].as_str().expect("server").to_string(), ca)
}

pub async fn start_fault_proxy(kubeconfig: &Path, every: u64) -> FaultProxy {
    let (upstream, ca) = kubeconfig_cluster(kubeconfig);
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
        .build()
        .expect("proxy client");
    let injected = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let state = ProxyState {
        upstream,
        http,
        every,
        seen: Arc::default(),
        injected: injected.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(forward).with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FaultProxy { url, injected, task }
}

fn internal_error() -> axum::response::Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "injected by the test proxy", "reason": "InternalError", "code": 500});
    axum::response::Response::builder()
        .status(500)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .expect("response")
}

async fn forward(
    axum::extract::State(st): axum::extract::State<ProxyState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use std::sync::atomic::Ordering;
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let status_write = parts.method == http::Method::PATCH
        && parts.uri.path().contains("/dtsjobs/")
        && parts.uri.path().ends_with("/status");
    let fault = status_write && st.seen.fetch_add(1, Ordering::SeqCst) % st.every == st.every - 1;
    let lose_request = fault && st.injected.load(Ordering::SeqCst) % 2 == 0;
    if lose_request {
        st.injected.fetch_add(1, Ordering::SeqCst);
        return internal_error();
    }
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return internal_error();
    };
    let mut upstream = st.http.request(parts.method.clone(), format!("{}{path}", st.upstream));
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let resp = match upstream.body(body).send().await {
        Ok(r) => r,
        Err(_) => return internal_error(),
    };
    if fault {
        // The write went through; only its answer is replaced.
        st.injected.fetch_add(1, Ordering::SeqCst);
        return internal_error();
    }
    let mut out = axum::response::Response::builder().status(resp.status().as_u16());
    for (name, value) in resp.headers() {
        if name != http::header::TRANSFER_ENCODING
            && name != http::header::CONTENT_LENGTH
            && name != http::header::CONNECTION
        {
            out = out.header(name, value);
        }
    }
    let chunks = futures::stream::unfold(resp, |mut r| async move {
        match r.chunk().await {
            Ok(Some(c)) => Some((Ok::<_, reqwest::Error>(c), r)),
            _ => None,
        }
    });
    out.body(axum::body::Body::from_stream(chunks)).expect("response")
}

/// A kubeconfig like `source`'s, but reaching the API server through `url`.
pub fn proxied_kubeconfig(source: &Path, url: &str, out: &Path) {
    let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(source).expect("kubeconfig")).expect("YAML");
    let cluster = &mut config["clusters"][0]["cluster"];
    cluster["server"] = json!(url);
    cluster
        .as_object_mut()
        .expect("cluster")
        .remove("certificate-authority-data");
    std::fs::write(out, serde_json::to_vec_pretty(&config).expect("JSON")).expect("writing kubeconfig");
}
