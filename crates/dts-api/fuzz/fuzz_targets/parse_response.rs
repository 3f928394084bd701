//! Any status, content type and body through the DTS answer parser: it
//! must return success or a classified error, never panic. The first two
//! bytes are the status, the third picks a content type.
#![no_main]

use dts_api::response::parse_response;
use dts_api::HttpResponse;
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&str; 4] = ["application/json;charset=utf-8", "text/xml", "text/html", ""];

fuzz_target!(|data: &[u8]| {
    let (head, body) = data.split_at(data.len().min(3));
    let status = match head {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 200,
    };
    let content_type = CONTENT_TYPES[usize::from(head.get(2).copied().unwrap_or(0)) % CONTENT_TYPES.len()];
    let resp = HttpResponse {
        status,
        headers: vec![("content-type".into(), content_type.into())],
        body: body.to_vec(),
    };
    if let Err(e) = parse_response(&resp) {
        let _ = (e.to_string(), e.reason(), e.class);
    }
});
