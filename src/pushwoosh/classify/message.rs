//! The words of a verdict when Pushwoosh gave none: the HTTP status, its reason and a
//! snippet of the body.

use super::HttpAnswer;

/// How much of a body a message quotes, in characters.
const MAX_TEXT: usize = 300;

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not found: check pushwoosh.api_url",
        408 => "request time-out",
        429 => "too many requests",
        500 => "internal error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway time-out",
        _ => "unexpected answer",
    }
}

/// `HTTP 500 internal error: <body>` (the body only when there is one).
pub(super) fn http_message(answer: &HttpAnswer, reason: &str) -> String {
    let body = snippet(&answer.body);
    if body.is_empty() {
        format!("HTTP {} {reason}", answer.status)
    } else {
        format!("HTTP {} {reason}: {body}", answer.status)
    }
}

pub(super) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
