//! The HTTP boundary of the DTS client: plain request/response values and a
//! small [`Transport`] trait, so tests can capture the requests the client
//! builds and replay canned answers without a network.
//!
//! [`ReqwestTransport`] is the production implementation. Its main job
//! besides sending is to sort failures into the three shapes that matter for
//! a non-idempotent call: never sent, timed out, broken after sending.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;

/// A fully built, signed request.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: http::Method,
    /// Absolute URL, query included.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Deadline for the whole exchange, answer body included.
    pub timeout: Duration,
}

impl HttpRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The URL and headers carry a signature and, with STS credentials, the
/// security token: `Debug` shows only the method and the URL's origin.
impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self.url.split('?').next().unwrap_or_default();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &format_args!("{origin}?** REDACTED **"))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// An HTTP answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why no HTTP answer came back. The variants differ in what they say about
/// whether DTS may have executed the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request never left (connection refused, DNS, TLS handshake):
    /// DTS cannot have executed it, so sending again is safe.
    #[error("the request was not sent: {0}")]
    NotSent(String),
    /// No complete answer in time: DTS may have executed the call.
    #[error("no answer from DTS within the timeout")]
    Timeout,
    /// The connection broke once the request was on its way: DTS may have
    /// executed the call.
    #[error("the connection failed after the request was sent: {0}")]
    AfterSend(String),
}

/// Sends one request and returns the answer, whatever its status.
pub trait Transport: Send + Sync {
    fn send(&self, req: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>>;
}

/// Answers larger than this are not DTS answers; refusing them bounds memory.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// An answer over [`MAX_BODY_BYTES`]. The request was sent and may have been
/// executed, so it is [`TransportError::AfterSend`] (ambiguous), whatever the
/// status.
fn too_large() -> TransportError {
    TransportError::AfterSend(format!("answer body larger than {MAX_BODY_BYTES} bytes"))
}

/// [`Transport`] over reqwest (rustls).
///
/// Redirects are not followed: a redirect would replay a signed request to a
/// host that the endpoint rules did not choose. Proxies from the standard
/// environment variables (`HTTPS_PROXY`, `NO_PROXY`) are honoured, as an
/// operator behind an egress proxy needs.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    // The build can only fail if the TLS backend cannot start; that failure is
    // reported on every call instead of panicking at construction.
    client: Result<reqwest::Client, String>,
}

impl ReqwestTransport {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| describe(&e));
        Self { client }
    }

    async fn send_inner(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        let client = self.client.as_ref().map_err(|e| TransportError::NotSent(e.clone()))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &req.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| TransportError::NotSent(format!("invalid header name {k:?}")))?;
            // The value may be a token: never echo it.
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| TransportError::NotSent(format!("invalid value for header {k}")))?;
            headers.append(name, value);
        }
        let url = reqwest::Url::parse(&req.url).map_err(|e| TransportError::NotSent(format!("invalid URL: {e}")))?;
        let deadline = tokio::time::Instant::now() + req.timeout;
        let send = client
            .request(req.method, url)
            .headers(headers)
            .body(req.body)
            .timeout(req.timeout)
            .send();
        let mut resp = send.await.map_err(|e| classify_send_error(&e))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        // A declared length over the cap is refused before reading a byte.
        if resp.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            // reqwest's timeout covers the body too; the explicit deadline
            // keeps that true whatever a caller-provided client does.
            let chunk = tokio::time::timeout_at(deadline, resp.chunk())
                .await
                .map_err(|_| TransportError::Timeout)?
                .map_err(|e| {
                    if e.is_timeout() {
                        TransportError::Timeout
                    } else {
                        TransportError::AfterSend(describe(&e))
                    }
                })?;
            match chunk {
                Some(bytes) => {
                    // Checked before the chunk is kept: reading stops (and
                    // the connection is dropped) at the first byte over.
                    if body.len() + bytes.len() > MAX_BODY_BYTES {
                        return Err(too_large());
                    }
                    // Never more than the cap, whatever the growth policy.
                    body.reserve_exact(bytes.len().max(body.capacity().min(MAX_BODY_BYTES - body.len())));
                    body.extend_from_slice(&bytes);
                }
                None => break,
            }
        }
        Ok(HttpResponse { status, headers, body })
    }
}

impl Default for ReqwestTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport for ReqwestTransport {
    fn send(&self, req: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
        Box::pin(self.send_inner(req))
    }
}

/// Sorts a reqwest send error. A connect error means nothing was written;
/// everything else after the connection was up is ambiguous.
fn classify_send_error(e: &reqwest::Error) -> TransportError {
    if e.is_timeout() {
        // Even a timeout during connect is reported as a timeout: reqwest
        // does not say which phase the deadline hit, and "may have been
        // executed" is the safe reading.
        TransportError::Timeout
    } else if e.is_connect() || e.is_builder() {
        TransportError::NotSent(describe(e))
    } else {
        TransportError::AfterSend(describe(e))
    }
}

/// The error and its causes, without the URL: reqwest's `Display` includes
/// the URL, whose query holds the signature and, with STS, the token.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e_without_url(e);
    let mut current = std::error::Error::source(e);
    while let Some(err) = current {
        let s = err.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        current = err.source();
    }
    text
}

fn e_without_url(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_body() || e.is_decode() {
        "error reading the answer".to_owned()
    } else if e.is_request() {
        "error sending the request".to_owned()
    } else if e.is_builder() {
        "invalid request".to_owned()
    } else {
        "HTTP error".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_debug_hides_query_and_header_values() {
        let req = HttpRequest {
            method: http::Method::POST,
            url: "https://dts.aliyuncs.com/?SecurityToken=sts-secret&Signature=abc".into(),
            headers: vec![("x-acs-security-token".into(), "sts-secret".into())],
            body: Vec::new(),
            timeout: Duration::from_secs(10),
        };
        let shown = format!("{req:?}");
        assert!(!shown.contains("sts-secret"), "{shown}");
        assert!(!shown.contains("abc"), "{shown}");
        assert!(shown.contains("dts.aliyuncs.com"));
    }
}
