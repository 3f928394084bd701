//! The Kubernetes client: kube's own stack (base URI, authentication and
//! its token refresh, extra headers, the retry of 429/503/504 when the
//! config asks for it, rustls, the connect/read/write timeouts), on a
//! connection pool that lets idle connections go.
//!
//! Why not `Client::try_default()`: kube-client 5 builds its hyper-util
//! pool without a timer, and hyper-util closes idle connections only with
//! one, so every connection a burst opens stays open for the life of the
//! process (over a hundred after stopping 10,000 jobs: some 25 KB each here
//! and a connection, goroutine and buffers each in kube-apiserver). This
//! pool does what client-go's transport does: a connection idle for
//! [`POOL_IDLE_TIMEOUT`] is closed. It keeps as many idle as the operator
//! has requests in flight at most ([`pool_max_idle`]), so a burst reuses
//! its connections instead of opening new ones.
//!
//! Left out of kube's builder: proxies (`proxy-url` in a kubeconfig; the
//! operator is built without kube's proxy features, so kube refused them
//! too), and rebuilding the client when an exec plugin's client
//! certificate expires (kube keeps that expiry private; tokens from exec
//! plugins and the in-cluster token file are refreshed as before).

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{ClientBuilder, ConfigExt};
use kube::{Client, Config};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

use crate::controller::events::EVENT_WRITERS;

/// How long a connection may stay idle in the pool (client-go's
/// `IdleConnTimeout`).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Connections kept idle on top of one per concurrent reconcile: the Event
/// writers ([`EVENT_WRITERS`]) and a few for the Lease, Secret reads and the
/// observer's writes, which run beside the reconciles.
pub const POOL_SPARE_IDLE: usize = EVENT_WRITERS + 4;

/// The most idle connections kept to the API server for an operator that
/// runs `max_concurrent_reconciles` reconciles at once: a connection coming
/// back to a pool that already holds this many is closed.
///
/// Why not client-go's `MaxIdleConnsPerHost` of 25: client-go speaks
/// HTTP/2 to the API server, one connection for everything, so its idle
/// limit hardly matters. kube's client speaks HTTP/1.1, one request per
/// connection at a time; a pool smaller than the requests in flight closes
/// connections the moment they come back and opens new ones (a TLS
/// handshake on both sides) for the next requests. With 25, stopping 1,000
/// two-way jobs opened about 740 connections; sized to the concurrency, 74.
/// HTTP/2 (measured too: two connections) did not make that burst faster,
/// and on one connection it would need the health pings client-go adds to
/// notice a dead one (docs/benchmarks.md).
pub fn pool_max_idle(max_concurrent_reconciles: u16) -> usize {
    usize::from(max_concurrent_reconciles) + POOL_SPARE_IDLE
}

/// A client as [`Client::try_default`] makes one, on the pool above, for
/// an operator that runs `max_concurrent_reconciles` reconciles at once.
pub async fn infer(max_concurrent_reconciles: u16) -> Result<Client, BoxError> {
    from_config(
        Config::infer().await?,
        POOL_IDLE_TIMEOUT,
        pool_max_idle(max_concurrent_reconciles),
    )
}

/// A client for `config` whose pool closes a connection idle for
/// `idle_timeout` and keeps at most `max_idle` idle.
pub fn from_config(config: Config, idle_timeout: Duration, max_idle: usize) -> Result<Client, BoxError> {
    if let Some(proxy) = &config.proxy_url {
        return Err(format!(
            "the kubeconfig names a proxy ({proxy}); dts-operator connects to the API server directly"
        )
        .into());
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let pool = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout)
        .pool_max_idle_per_host(max_idle)
        .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(pool);
    Ok(ClientBuilder::new(service, config.default_namespace).build())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::Barrier;

    use super::*;

    /// Connections a test server holds open now, and has accepted in all.
    #[derive(Clone, Default)]
    struct Counts {
        open: Arc<AtomicUsize>,
        accepted: Arc<AtomicUsize>,
    }

    /// A loopback HTTP/1.1 server that keeps connections alive and counts
    /// them. The first request on each of its first `hold` connections is
    /// answered (with `{}`) only once all `hold` have one waiting, so that
    /// many connections are open at once; every other request at once.
    async fn server(hold: usize) -> (String, Counts, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counts = Counts::default();
        let barrier = Arc::new(Barrier::new(hold));
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (open, barrier) = (shared.open.clone(), barrier.clone());
                open.fetch_add(1, Ordering::SeqCst);
                let held = shared.accepted.fetch_add(1, Ordering::SeqCst) < hold;
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    let mut first = held;
                    loop {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if first {
                                barrier.wait().await;
                                first = false;
                            }
                            let reply =
                                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                            if conn.write_all(reply).await.is_err() {
                                break;
                            }
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (url, counts, task)
    }

    async fn requests(client: &Client, n: usize) {
        let calls = (0..n).map(|_| {
            let client = client.clone();
            async move {
                let req = http::Request::get("/version").body(Vec::new()).unwrap();
                client.request_text(req).await.unwrap()
            }
        });
        let answers = futures::future::join_all(calls).await;
        assert!(answers.iter().all(|a| a == "{}"));
    }

    async fn open_within(open: &AtomicUsize, at_most: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let n = open.load(Ordering::SeqCst);
            if n <= at_most || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_timeout() {
        let (url, counts, server) = server(10).await;
        let config = Config::new(url.parse().unwrap());
        let idle = Duration::from_millis(300);
        let client = from_config(config, idle, 25).unwrap();
        let start = Instant::now();
        requests(&client, 10).await;
        assert_eq!(
            counts.open.load(Ordering::SeqCst),
            10,
            "ten requests at once, ten connections"
        );
        assert_eq!(
            open_within(&counts.open, 0, Duration::from_secs(10)).await,
            0,
            "all closed once idle"
        );
        assert!(start.elapsed() >= idle, "not before the idle timeout");
        server.abort();
    }

    #[tokio::test]
    async fn at_most_the_idle_limit_is_kept_after_a_burst() {
        let (max_idle, burst) = (10, 25);
        let (url, counts, server) = server(burst).await;
        let client = from_config(Config::new(url.parse().unwrap()), POOL_IDLE_TIMEOUT, max_idle).unwrap();
        requests(&client, burst).await;
        let left = open_within(&counts.open, max_idle, Duration::from_secs(10)).await;
        assert_eq!(
            left, max_idle,
            "the connections past the limit are closed, the rest kept"
        );
        server.abort();
    }

    /// The second of two equal bursts opens no connection when the pool is
    /// sized to the concurrency, and one per request past the limit when
    /// it is not (each a TLS handshake against a real API server).
    #[tokio::test]
    async fn a_pool_sized_to_the_concurrency_reuses_its_connections_in_the_next_burst() {
        let reconciles = 20;
        let burst = reconciles as usize;
        for (max_idle, new_in_second) in [(pool_max_idle(reconciles), 0), (5, burst - 5)] {
            let (url, counts, server) = server(burst).await;
            let client = from_config(Config::new(url.parse().unwrap()), POOL_IDLE_TIMEOUT, max_idle).unwrap();
            requests(&client, burst).await;
            assert_eq!(
                counts.accepted.load(Ordering::SeqCst),
                burst,
                "the first burst: one each"
            );
            // Connections past the limit are closed once they come back.
            open_within(&counts.open, max_idle, Duration::from_secs(10)).await;
            requests(&client, burst).await;
            assert_eq!(
                counts.accepted.load(Ordering::SeqCst) - burst,
                new_in_second,
                "connections the second burst opened, with {max_idle} kept idle"
            );
            server.abort();
        }
    }
}
