//! Reading DTS answers into success or a classified [`DtsError`].
//!
//! DTS answers in several shapes (docs/dts-api.md §5, §8), and all of
//! them have been seen from the official SDK's point of view:
//!
//! * HTTP 200 `{"Success": true, ...}`: success;
//! * HTTP 200 `{"Success": false, "ErrCode", "ErrMessage", "DynamicMessage",
//!   "DynamicCode"}`: a business failure the SDK does *not* raise on;
//! * gateway 4xx/5xx `{"RequestId","HostId","Code","Message","Recommend"}`;
//! * XML `<Error><Code>..</Code>..</Error>` with `text/xml`;
//! * anything else (an HTML 502 from a proxy, an empty or truncated body).
//!
//! `Success` and `HttpStatusCode` are modelled as strings by some SDK
//! response types, so both `true`/`"true"` and `200`/`"200"` are accepted.
//! Nothing here panics on any input.

use std::time::Duration;

use serde_json::{Map, Value};

use super::client::ApiSuccess;
use super::error::{classify, DtsError, ErrorClass, ErrorKind};
use super::transport::HttpResponse;

/// The fields of an answer that matter for success and errors, whatever the
/// body format.
#[derive(Debug, Default)]
struct Fields {
    success: Option<bool>,
    code: Option<String>,
    raw_message: Option<String>,
    dynamic_code: Option<String>,
    dynamic_message: Option<String>,
    request_id: Option<String>,
    body_http_status: Option<u16>,
    body: Value,
}

/// Turns one HTTP answer into success or a classified error.
pub fn parse_response(resp: &HttpResponse) -> Result<ApiSuccess, DtsError> {
    let status = resp.status;
    let header_request_id = resp.header("x-acs-request-id").and_then(non_empty);
    let retry_after = retry_after(resp);
    let is_2xx = (200..300).contains(&status);

    let Some(mut fields) = read_body(resp) else {
        // An answer whose body cannot be read. For 2xx the call may well
        // have been executed: ambiguous. Otherwise the status decides.
        let class = if is_2xx {
            ErrorClass::Ambiguous
        } else {
            classify(None, status)
        };
        return Err(DtsError {
            class,
            kind: ErrorKind::Unreadable,
            http_status: Some(status),
            code: None,
            message: Some(format!(
                "the answer is neither DTS JSON nor XML: {}",
                snippet(&resp.body)
            )),
            raw_message: None,
            dynamic_code: None,
            dynamic_message: None,
            request_id: header_request_id,
            retry_after,
        });
    };
    if fields.request_id.is_none() {
        fields.request_id = header_request_id;
    }

    let failed = if is_2xx {
        // A 2xx without `Success` is a success unless it carries an error code.
        match fields.success {
            Some(success) => !success,
            None => fields.code.is_some(),
        }
    } else {
        true
    };
    if !failed {
        return Ok(ApiSuccess {
            request_id: fields.request_id,
            http_status: status,
            body: fields.body,
        });
    }

    // A `Success:false` answer arrives with HTTP 200; its body's
    // `HttpStatusCode` is the better status to fall back on when the code
    // is unknown.
    let class_status = match fields.body_http_status {
        Some(s) if is_2xx && (400..600).contains(&s) => s,
        _ => status,
    };
    let message = render_message(fields.raw_message.as_deref(), fields.dynamic_message.as_deref());
    Err(DtsError {
        class: classify(fields.code.as_deref(), class_status),
        kind: ErrorKind::Api,
        http_status: Some(status),
        code: fields.code,
        message,
        raw_message: fields.raw_message,
        dynamic_code: fields.dynamic_code,
        dynamic_message: fields.dynamic_message,
        request_id: fields.request_id,
        retry_after,
    })
}

/// `ErrMessage` with every `%s` replaced by `DynamicMessage`, the rule the
/// StopDtsJob documentation gives. Without a `DynamicMessage` the message is
/// kept as sent.
pub fn render_message(raw: Option<&str>, dynamic: Option<&str>) -> Option<String> {
    let raw = raw?;
    match dynamic {
        Some(d) if raw.contains("%s") => Some(raw.replace("%s", d)),
        _ => Some(raw.to_owned()),
    }
}

/// `x-acs-retry-after` in milliseconds, as tea-openapi reads it; a standard
/// `Retry-After` in seconds is accepted as a fallback (proxies send it).
fn retry_after(resp: &HttpResponse) -> Option<Duration> {
    let positive = |v: &str| v.trim().parse::<u64>().ok().filter(|n| *n > 0);
    if let Some(ms) = resp.header("x-acs-retry-after").and_then(positive) {
        return Some(Duration::from_millis(ms));
    }
    resp.header("retry-after").and_then(positive).map(Duration::from_secs)
}

fn read_body(resp: &HttpResponse) -> Option<Fields> {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&resp.body) {
        return Some(from_json(map));
    }
    let text = std::str::from_utf8(&resp.body).ok()?;
    let xml_type = resp
        .header("content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("xml"));
    let trimmed = text.trim_start();
    if xml_type || trimmed.starts_with("<?xml") || trimmed.starts_with("<Error") {
        return from_xml(text);
    }
    None
}

fn from_json(map: Map<String, Value>) -> Fields {
    let get = |key: &str| -> Option<&Value> {
        map.get(key)
            .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
    };
    let text = |key: &str| get(key).and_then(lenient_string);
    let mut fields = Fields {
        success: get("Success").and_then(lenient_bool),
        code: text("ErrCode").or_else(|| text("Code")),
        raw_message: text("ErrMessage").or_else(|| text("Message")),
        dynamic_code: text("DynamicCode"),
        dynamic_message: text("DynamicMessage"),
        request_id: text("RequestId"),
        body_http_status: get("HttpStatusCode").and_then(lenient_u16),
        body: Value::Null,
    };
    // The fields above are owned copies, so the map itself moves in.
    fields.body = Value::Object(map);
    fields
}

/// Lenient XML: the few tags DTS error bodies carry, found by name. A full
/// XML parser would buy nothing here; an unexpected document just yields no
/// fields and is treated as unreadable.
fn from_xml(text: &str) -> Option<Fields> {
    let tag = |name: &str| xml_tag(text, name).and_then(|v| non_empty(&v));
    let fields = Fields {
        success: tag("Success").and_then(|s| lenient_bool(&Value::String(s))),
        code: tag("ErrCode").or_else(|| tag("Code")),
        raw_message: tag("ErrMessage").or_else(|| tag("Message")),
        dynamic_code: tag("DynamicCode"),
        dynamic_message: tag("DynamicMessage"),
        request_id: tag("RequestId"),
        body_http_status: tag("HttpStatusCode").and_then(|s| s.trim().parse().ok()),
        body: Value::Null,
    };
    if fields.code.is_none() && fields.request_id.is_none() && fields.success.is_none() {
        return None;
    }
    let mut body = Map::new();
    for (k, v) in [
        ("Success", fields.success.map(Value::Bool)),
        ("Code", fields.code.clone().map(Value::String)),
        ("Message", fields.raw_message.clone().map(Value::String)),
        ("RequestId", fields.request_id.clone().map(Value::String)),
    ] {
        if let Some(v) = v {
            body.insert(k.to_owned(), v);
        }
    }
    Some(Fields {
        body: Value::Object(body),
        ..fields
    })
}

/// The text between `<name>` and `</name>`, CDATA unwrapped, the five XML
/// entities decoded.
fn xml_tag(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let len = text.get(start..)?.find(&close)?;
    let inner = text.get(start..start + len)?.trim();
    let inner = inner
        .strip_prefix("<![CDATA[")
        .and_then(|s| s.strip_suffix("]]>"))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            inner
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        });
    Some(inner)
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn lenient_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => non_empty(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `true`, `"true"`, `"True"` (Python's `str(True)`), and the same for false.
fn lenient_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn lenient_u16(v: &Value) -> Option<u16> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The start of an unreadable body, on one line, for the error message.
fn snippet(body: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    if body.is_empty() {
        return "(empty body)".to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if one_line.chars().count() > MAX_CHARS {
        let cut: String = one_line.chars().take(MAX_CHARS).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorReason;

    fn resp(status: u16, content_type: &str, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn json(status: u16, body: &str) -> HttpResponse {
        resp(status, "application/json;charset=utf-8", body)
    }

    #[test]
    fn percent_s_is_replaced_by_the_dynamic_message() {
        assert_eq!(
            render_message(
                Some("The Value of Input Parameter %s is not valid."),
                Some("SynchronizationDirection")
            )
            .as_deref(),
            Some("The Value of Input Parameter SynchronizationDirection is not valid.")
        );
        assert_eq!(
            render_message(Some("no placeholder"), Some("x")).as_deref(),
            Some("no placeholder")
        );
        assert_eq!(render_message(Some("kept %s"), None).as_deref(), Some("kept %s"));
        assert_eq!(render_message(None, Some("x")), None);
    }

    #[test]
    fn success_may_be_a_bool_or_a_string() {
        for body in [
            r#"{"Success":true,"RequestId":"R"}"#,
            r#"{"Success":"true","HttpStatusCode":"200","RequestId":"R"}"#,
            r#"{"Success":"True","RequestId":"R"}"#,
            r#"{"RequestId":"R"}"#,
        ] {
            let ok = parse_response(&json(200, body)).expect(body);
            assert_eq!((ok.request_id.as_deref(), ok.http_status), (Some("R"), 200));
        }
        for body in [
            r#"{"Success":false,"ErrCode":"InvalidJobStatus","ErrMessage":"m","RequestId":"R"}"#,
            r#"{"Success":"false","HttpStatusCode":"200","ErrCode":"InvalidJobStatus","ErrMessage":"m","RequestId":"R"}"#,
            r#"{"ErrCode":"InvalidJobStatus","ErrMessage":"m","RequestId":"R"}"#,
        ] {
            let err = parse_response(&json(200, body)).expect_err(body);
            assert_eq!(err.code.as_deref(), Some("InvalidJobStatus"), "{body}");
            assert_eq!(err.class, ErrorClass::Terminal);
            assert_eq!(err.reason(), "InvalidJobStatus");
        }
    }

    #[test]
    fn business_failure_falls_back_on_the_body_status() {
        let body = r#"{"Success":false,"HttpStatusCode":"503","ErrCode":"Unknown.New","RequestId":"R"}"#;
        let err = parse_response(&json(200, body)).expect_err("failure");
        assert_eq!(err.http_status, Some(200));
        assert_eq!(err.class, ErrorClass::Retryable);
    }

    #[test]
    fn xml_errors_are_read_by_tag() {
        let body = "<?xml version='1.0' encoding='UTF-8'?><Error><RequestId>R1</RequestId><HostId>dts.aliyuncs.com</HostId><Code>Throttling.User</Code><Message>a &amp; b</Message></Error>";
        let err = parse_response(&resp(400, "text/xml;charset=utf-8", body)).expect_err("xml");
        assert_eq!(err.code.as_deref(), Some("Throttling.User"));
        assert_eq!(err.message.as_deref(), Some("a & b"));
        assert_eq!(err.request_id.as_deref(), Some("R1"));
        assert_eq!(err.class, ErrorClass::Retryable);
    }

    #[test]
    fn html_502_keeps_the_status_and_is_retryable() {
        let err =
            parse_response(&resp(502, "text/html", "<html><body>502 Bad Gateway</body></html>")).expect_err("html");
        assert_eq!(err.http_status, Some(502));
        assert_eq!(err.kind, ErrorKind::Unreadable);
        assert_eq!(err.class, ErrorClass::Retryable);
        assert_eq!(err.reason(), "ServiceUnavailable");
        assert!(err.message.unwrap_or_default().contains("502 Bad Gateway"));
    }

    #[test]
    fn unreadable_success_is_ambiguous() {
        for body in ["", "{\"Success\":tr", "<html>ok</html>", "[1,2]", "\u{0}\u{1}"] {
            let err = parse_response(&resp(200, "application/json", body)).expect_err(body);
            assert_eq!(err.class, ErrorClass::Ambiguous, "{body:?}");
            assert_eq!(err.reason(), "UnreadableResponse");
        }
        let err = parse_response(&HttpResponse {
            status: 200,
            headers: vec![],
            body: vec![0xff, 0xfe, 0x00],
        })
        .expect_err("binary");
        assert_eq!(err.class, ErrorClass::Ambiguous);
        let err = parse_response(&resp(404, "text/plain", "not found")).expect_err("404");
        assert_eq!(
            (err.class, err.reason()),
            (ErrorClass::Terminal, ErrorReason::UnreadableResponse)
        );
    }

    #[test]
    fn retry_after_is_milliseconds() {
        let mut r = json(400, r#"{"Code":"Throttling.User","Message":"m","RequestId":"R"}"#);
        r.headers.push(("X-Acs-Retry-After".into(), "1500".into()));
        let err = parse_response(&r).expect_err("throttled");
        assert_eq!(err.retry_after, Some(Duration::from_millis(1500)));
        let mut r = json(503, r#"{"Code":"ServiceUnavailable"}"#);
        r.headers.push(("Retry-After".into(), "2".into()));
        assert_eq!(
            parse_response(&r).expect_err("503").retry_after,
            Some(Duration::from_secs(2))
        );
        let mut r = json(503, r#"{"Code":"ServiceUnavailable"}"#);
        r.headers.push(("x-acs-retry-after".into(), "soon".into()));
        assert_eq!(parse_response(&r).expect_err("503").retry_after, None);
    }

    #[test]
    fn request_id_falls_back_on_the_header() {
        let mut r = resp(502, "text/html", "<html/>");
        r.headers.push(("x-acs-request-id".into(), "HDR".into()));
        assert_eq!(parse_response(&r).expect_err("502").request_id.as_deref(), Some("HDR"));
    }

    #[test]
    fn odd_json_never_panics() {
        for body in [
            r#"{"Success":null,"Code":null}"#,
            r#"{"Success":1,"HttpStatusCode":1e99}"#,
            r#"{"HttpStatusCode":-1,"ErrCode":{"a":1}}"#,
            r#"{"Success":false}"#,
            r#"{"ErrMessage":"%s%s","DynamicMessage":"x","Success":false,"ErrCode":"E"}"#,
        ] {
            for status in [200, 400, 500, 302] {
                let _ = parse_response(&json(status, body));
            }
        }
        let err = parse_response(&json(200, r#"{"Success":false}"#)).expect_err("no code");
        assert_eq!((err.class, err.reason()), (ErrorClass::Terminal, ErrorReason::DtsError));
    }
}
