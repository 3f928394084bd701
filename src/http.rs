//! The operator's HTTP endpoint (`--metrics-addr`, port 8080 in the chart):
//!
//! * `/metrics`: the Prometheus registry in the text exposition format
//!   (OpenMetrics, as prometheus-client encodes it);
//! * `/livez`: 200 while the process serves HTTP;
//! * `/readyz`: 200 once the first watch has synced ([`ReadySignal`]), 503
//!   before. A standby replica that has synced is ready too: readiness says
//!   "able to take over", not "leader", so rolling updates and the standby's
//!   Service endpoint work.
//!
//! Binding is separate from serving ([`HttpServer::bind`]) so a port clash
//! fails startup and the bound address (port 0 in tests) can be logged.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Content type of prometheus-client's text encoding.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// "The first watch has synced": set once by the controller, read by `/readyz`.
#[derive(Clone, Debug, Default)]
pub struct ReadySignal(Arc<AtomicBool>);

impl ReadySignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the operator ready; idempotent.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    ready: ReadySignal,
}

/// The routes, without a listener (for embedding or in-process tests).
pub fn router(registry: Arc<Registry>, ready: ReadySignal) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(AppState { registry, ready })
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.is_ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "waiting for the first watch to sync\n").into_response()
    }
}

/// A bound, not yet serving, HTTP listener.
pub struct HttpServer {
    listener: TcpListener,
}

impl HttpServer {
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// The address actually bound (resolves port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes open requests.
    pub async fn serve(
        self,
        registry: Arc<Registry>,
        ready: ReadySignal,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        axum::serve(self.listener, router(registry, ready))
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    async fn start(ready: ReadySignal) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        counter.inc_by(3);
        registry.register("dts_operator_test_calls", "Test calls", counter);
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(Arc::new(registry), ready, async move {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ctype, resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn readyz_is_503_until_the_first_watch_synced() {
        let ready = ReadySignal::new();
        let (addr, _stop) = start(ready.clone()).await;
        assert_eq!(get(addr, "/readyz").await.0, 503);
        assert_eq!(get(addr, "/livez").await.0, 200);
        ready.set_ready();
        assert_eq!(get(addr, "/readyz").await.0, 200);
    }

    #[tokio::test]
    async fn metrics_are_served_in_text_format() {
        let (addr, _stop) = start(ReadySignal::new()).await;
        let (status, ctype, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(ctype, METRICS_CONTENT_TYPE);
        assert!(body.contains("# TYPE dts_operator_test_calls counter"), "{body}");
        assert!(body.contains("dts_operator_test_calls_total 3"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[tokio::test]
    async fn unknown_paths_are_404_and_shutdown_stops_serving() {
        let (addr, stop) = start(ReadySignal::new()).await;
        assert_eq!(get(addr, "/nope").await.0, 404);
        stop.send(()).unwrap();
        // Graceful shutdown closes the listener.
        let mut refused = false;
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(refused, "server still accepting after shutdown");
    }
}
