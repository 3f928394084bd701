//! The real HTTP path (`DtsClient::new`, reqwest) against tiny servers on
//! 127.0.0.1: what goes on the wire, and how each network failure is
//! classified. Every server task is aborted at the end of its test.

use std::time::Duration;

use dts_api::{sign, ClientConfig, Credentials, DtsClient, ErrorClass, JobRef, SignatureVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const SECRET: &str = "very-secret-access-key";
const TOKEN: &str = "sts-token+with/odd=chars";

fn job() -> JobRef {
    JobRef {
        job_id: "l3m1213ye7l1234".into(),
        instance_id: Some("dtsl3m1213ye7l1234".into()),
        region_id: "cn-hangzhou".into(),
        direction: Some("Forward".into()),
    }
}

fn client(port: u16, version: SignatureVersion, timeout: Duration) -> DtsClient {
    DtsClient::new(ClientConfig {
        endpoint_override: Some(url::Url::parse(&format!("http://127.0.0.1:{port}")).expect("url")),
        signature_version: version,
        timeout,
    })
}

/// Reads one request: the head (up to the blank line) and the body that
/// Content-Length announces.
async fn read_request(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return (String::from_utf8_lossy(&buf).into_owned(), Vec::new()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    (head, body)
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json;charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A server that answers every request with `body` (made from the request
/// head by `make_body`) and reports each request it saw.
async fn answering_server(
    status: &'static str,
    make_body: fn(&str) -> String,
) -> (u16, JoinHandle<()>, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (head, body) = read_request(&mut stream).await;
            let answer = make_body(&head);
            let _ = tx.send((head, body));
            respond(&mut stream, status, &answer).await;
        }
    });
    (port, task, rx)
}

fn header<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[tokio::test]
async fn sends_post_slash_with_params_in_query_and_empty_body() {
    let (port, task, mut seen) = answering_server("200 OK", |_| {
        r#"{"RequestId":"R-1","HttpStatusCode":200,"Success":true}"#.to_owned()
    })
    .await;
    let creds = Credentials::new("testAccessKeyId", SECRET);
    for version in [SignatureVersion::HmacSha1, SignatureVersion::Acs3HmacSha256] {
        let ok = client(port, version, Duration::from_secs(5))
            .stop_dts_job(&creds, &job())
            .await
            .expect("success");
        assert_eq!(ok.request_id.as_deref(), Some("R-1"));
        assert_eq!(ok.http_status, 200);

        let (head, body) = seen.recv().await.expect("request seen");
        let request_line = head.lines().next().unwrap_or_default();
        assert!(request_line.starts_with("POST /?"), "{request_line}");
        assert!(request_line.ends_with(" HTTP/1.1"), "{request_line}");
        let target = request_line.split(' ').nth(1).unwrap_or_default();
        let query: std::collections::BTreeMap<String, String> = url::Url::parse(&format!("http://x{target}"))
            .expect("target")
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(query.get("DtsJobId").map(String::as_str), Some("l3m1213ye7l1234"));
        assert_eq!(
            query.get("DtsInstanceId").map(String::as_str),
            Some("dtsl3m1213ye7l1234")
        );
        assert_eq!(
            query.get("SynchronizationDirection").map(String::as_str),
            Some("Forward")
        );
        assert_eq!(query.get("RegionId").map(String::as_str), Some("cn-hangzhou"));
        assert!(body.is_empty(), "{version}: body {body:?}");
        assert_eq!(header(&head, "content-length"), vec!["0"], "{version}: {head}");
        assert!(header(&head, "content-type").is_empty(), "{version}: {head}");
        assert_eq!(
            header(&head, "host"),
            vec![format!("127.0.0.1:{port}").as_str()],
            "{version}"
        );
        assert_eq!(header(&head, "x-acs-action"), vec!["StopDtsJob"], "{version}");
        assert_eq!(header(&head, "user-agent").len(), 1, "{version}: {head}");
        assert_eq!(header(&head, "x-acs-version"), vec!["2020-01-01"], "{version}");
        match version {
            SignatureVersion::HmacSha1 => {
                assert_eq!(query.get("Action").map(String::as_str), Some("StopDtsJob"));
                assert!(query.contains_key("Signature"));
                assert!(header(&head, "authorization").is_empty());
            }
            SignatureVersion::Acs3HmacSha256 => {
                assert!(!query.contains_key("Action"));
                let auth = header(&head, "authorization");
                assert_eq!(auth.len(), 1, "{head}");
                assert!(auth[0].starts_with("ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders="));
            }
        }
    }
    task.abort();
    let _ = task.await;
}

#[tokio::test]
async fn a_server_that_never_answers_is_an_ambiguous_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = read_request(&mut stream).await;
            held.push(stream); // keep the connection open, say nothing
        }
    });
    let creds = Credentials::new("STS.id", SECRET).with_security_token(TOKEN);
    let started = std::time::Instant::now();
    let err = client(port, SignatureVersion::HmacSha1, Duration::from_millis(300))
        .stop_dts_job(&creds, &job())
        .await
        .expect_err("timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout was not applied"
    );
    assert_eq!(err.class, ErrorClass::Ambiguous);
    assert_eq!(err.reason(), "Timeout");
    assert_eq!(err.http_status, None);
    assert_no_secret(&format!("{err} {err:?}"));
    task.abort();
    let _ = task.await;
}

#[tokio::test]
async fn a_refused_connection_is_retryable_and_not_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let creds = Credentials::new("STS.id", SECRET).with_security_token(TOKEN);
    let err = client(port, SignatureVersion::HmacSha1, Duration::from_secs(5))
        .stop_dts_job(&creds, &job())
        .await
        .expect_err("refused");
    assert_eq!(err.class, ErrorClass::Retryable, "{err:?}");
    assert_eq!(err.reason(), "ConnectionFailed");
    // reqwest's own Display would include the URL, and with it the token.
    assert_no_secret(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn a_connection_closed_after_sending_is_ambiguous() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = read_request(&mut stream).await;
            drop(stream); // read it all, then hang up without a word
        }
    });
    let creds = Credentials::new("testAccessKeyId", SECRET);
    let err = client(port, SignatureVersion::Acs3HmacSha256, Duration::from_secs(5))
        .stop_dts_job(&creds, &job())
        .await
        .expect_err("closed");
    assert_eq!(err.class, ErrorClass::Ambiguous, "{err:?}");
    assert_eq!(err.reason(), "ConnectionReset");
    task.abort();
    let _ = task.await;
}

fn assert_no_secret(text: &str) {
    for secret in [
        SECRET.to_owned(),
        TOKEN.to_owned(),
        sign::percent_encode(TOKEN),
        sign::percent_encode(&sign::percent_encode(TOKEN)),
    ] {
        assert!(!text.contains(&secret), "secret {secret:?} leaked in: {text}");
    }
}

/// A server that, like DTS on `SignatureDoesNotMatch`, echoes the
/// string-to-sign it computed, which includes the STS token in HMAC-SHA1
/// mode: neither the error's Display nor its Debug may show it.
#[tokio::test]
async fn echoed_tokens_never_reach_error_text() {
    let (port, task, _seen) = answering_server("400 Bad Request", |head| {
        let target = head.lines().next().and_then(|l| l.split(' ').nth(1)).unwrap_or_default();
        let query = target.trim_start_matches("/?");
        serde_json::json!({
            "RequestId": "R-2",
            "Code": "SignatureDoesNotMatch",
            "Message": format!(
                "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&{} (raw {query})",
                sign::percent_encode(query)
            ),
        })
        .to_string()
    })
    .await;
    let creds = Credentials::new("STS.id", SECRET).with_security_token(TOKEN);
    let err = client(port, SignatureVersion::HmacSha1, Duration::from_secs(5))
        .stop_dts_job(&creds, &job())
        .await
        .expect_err("signature mismatch");
    assert_eq!(err.reason(), "AuthenticationFailed");
    assert_eq!(err.class, ErrorClass::Terminal);
    let message = err.message.clone().unwrap_or_default();
    assert!(message.contains("server string to sign is:POST&%2F&"), "{message}");
    assert!(message.contains("** REDACTED **"), "{message}");
    assert_no_secret(&format!("{err} {err:?}"));
    task.abort();
    let _ = task.await;
}

/// Serves one answer head, then (when `endless`) body chunks until the
/// client hangs up; reports how many body bytes the socket accepted.
async fn oversized_server(head: &'static str, endless: bool) -> (u16, mpsc::UnboundedReceiver<u64>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = read_request(&mut stream).await;
            if stream.write_all(head.as_bytes()).await.is_err() {
                continue;
            }
            let mut written = 0u64;
            if endless {
                // 64 KiB chunks of JSON whitespace, as long as the client reads.
                let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {
                    written += 0x10000;
                }
            } else {
                // Announce a body and never send it: only a client that
                // refuses on the announced length returns before its timeout.
                let mut sink = [0u8; 1];
                let _ = stream.read(&mut sink).await;
            }
            let _ = tx.send(written);
        }
    });
    (port, rx, task)
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_cap_and_reading_stops() {
    let (port, mut written, task) = oversized_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        true,
    )
    .await;
    let creds = Credentials::new("testAccessKeyId", SECRET);
    let started = std::time::Instant::now();
    let err = client(port, SignatureVersion::HmacSha1, Duration::from_secs(30))
        .stop_dts_job(&creds, &job())
        .await
        .expect_err("an endless answer");
    let took = started.elapsed();
    assert_eq!(err.class, ErrorClass::Ambiguous, "{err:?}");
    assert_eq!(err.reason(), "ConnectionReset", "{err:?}");
    assert!(
        err.message
            .as_deref()
            .unwrap_or_default()
            .contains("larger than 4194304 bytes"),
        "{err:?}"
    );
    // The client hung up: the server's writes failed, after at most the cap
    // plus what the loopback socket buffers hold (a wide bound; an
    // unbounded reader would have kept the server writing until the 30 s
    // timeout).
    let sent = tokio::time::timeout(Duration::from_secs(10), written.recv())
        .await
        .expect("the server saw the client hang up")
        .expect("a count");
    assert!(sent >= dts_api::transport::MAX_BODY_BYTES as u64, "{sent}");
    assert!(sent < 64 * 1024 * 1024, "the server wrote {sent} bytes");
    println!("endless answer: client stopped after {took:?}; server wrote {sent} body bytes");
    task.abort();
    let _ = task.await;
}

#[tokio::test]
async fn an_announced_length_over_the_cap_is_refused_before_reading() {
    let (port, _written, task) = oversized_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10485760\r\n\r\n",
        false,
    )
    .await;
    let creds = Credentials::new("testAccessKeyId", SECRET);
    let err = client(port, SignatureVersion::Acs3HmacSha256, Duration::from_secs(30))
        .stop_dts_job(&creds, &job())
        .await
        .expect_err("too large");
    assert_eq!(err.class, ErrorClass::Ambiguous, "{err:?}");
    assert!(
        err.message.as_deref().unwrap_or_default().contains("larger than"),
        "not a timeout: {err:?}"
    );
    task.abort();
    let _ = task.await;
}
