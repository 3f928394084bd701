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
//! [`POOL_IDLE_TIMEOUT`] is closed, and at most [`POOL_MAX_IDLE`] are kept
//! idle at all.
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

/// How long a connection may stay idle in the pool (client-go's
/// `IdleConnTimeout`).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most idle connections kept to the API server (client-go's
/// `MaxIdleConnsPerHost`): a connection coming back to a pool that already
/// holds this many is closed.
pub const POOL_MAX_IDLE: usize = 25;

/// A client as [`Client::try_default`] makes one, on the pool above.
pub async fn infer() -> Result<Client, BoxError> {
    from_config(Config::infer().await?, POOL_IDLE_TIMEOUT)
}

/// A client for `config` whose pool closes a connection idle for
/// `idle_timeout`.
pub fn from_config(config: Config, idle_timeout: Duration) -> Result<Client, BoxError> {
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
        .pool_max_idle_per_host(POOL_MAX_IDLE)
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

    /// A loopback HTTP/1.1 server that answers every request with `{}` once
    /// `hold` requests are waiting (so that many connections are open at
    /// once), keeps connections alive, and counts those open.
    async fn server(hold: usize) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(hold));
        let count = open.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (open, barrier) = (count.clone(), barrier.clone());
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    let mut first = true;
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
        (url, open, task)
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
        let (url, open, server) = server(10).await;
        let config = Config::new(url.parse().unwrap());
        let idle = Duration::from_millis(300);
        let client = from_config(config, idle).unwrap();
        let start = Instant::now();
        requests(&client, 10).await;
        assert_eq!(open.load(Ordering::SeqCst), 10, "ten requests at once, ten connections");
        assert_eq!(
            open_within(&open, 0, Duration::from_secs(10)).await,
            0,
            "all closed once idle"
        );
        assert!(start.elapsed() >= idle, "not before the idle timeout");
        server.abort();
    }

    #[tokio::test]
    async fn at_most_the_idle_limit_is_kept_after_a_burst() {
        let burst = POOL_MAX_IDLE + 15;
        let (url, open, server) = server(burst).await;
        let client = from_config(Config::new(url.parse().unwrap()), POOL_IDLE_TIMEOUT).unwrap();
        requests(&client, burst).await;
        let left = open_within(&open, POOL_MAX_IDLE, Duration::from_secs(10)).await;
        assert_eq!(
            left, POOL_MAX_IDLE,
            "the connections past the limit are closed, the rest kept"
        );
        server.abort();
    }
}
