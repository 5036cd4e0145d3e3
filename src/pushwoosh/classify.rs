//! The single place where an answer from Pushwoosh (or its absence) becomes a decision:
//! success, rejected (the job's fault, never retried), failed (not the job's fault, not
//! worth retrying) or transient (retry, maybe after `Retry-After`).
//!
//! | answer | verdict |
//! |---|---|
//! | HTTP 200, `status_code` 200 | success |
//! | HTTP 200, `status_code` 210 | rejected (argument error) |
//! | HTTP 400 | rejected (malformed request) |
//! | HTTP 200, `status_code` 5xx | transient, did not reach |
//! | HTTP 200, any other `status_code` (e.g. 403 token restrictions) | failed: an account or token problem, retrying won't help |
//! | HTTP 200 that is not Pushwoosh JSON | transient, may have reached |
//! | HTTP 429, 408, 500, 503 | transient, did not reach (429 honours `Retry-After`) |
//! | HTTP 502, 504 and other 5xx | transient, may have reached (a gateway lost the answer) |
//! | any other HTTP status (401, 403, 404, …) | failed: the configuration is wrong, not the job |
//! | time-out after sending, connection lost mid-call | transient, may have reached |
//! | connection refused, time-out while connecting | transient, did not reach |

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::client::{HttpAnswer, TransportError};

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Success {
        status_message: String,
        response: Value,
    },
    Rejected {
        status_code: i64,
        status_message: String,
        response: Value,
    },
    Failed {
        status_code: Option<i64>,
        status_message: String,
        response: Value,
    },
    Transient {
        status_code: Option<i64>,
        status_message: String,
        retry_after: Option<Duration>,
        /// The request may have been taken by Pushwoosh although no good answer came.
        may_have_reached: bool,
    },
}

impl Verdict {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Success { .. } => "ok",
            Verdict::Rejected { .. } => "rejected",
            Verdict::Failed { .. } => "failed",
            Verdict::Transient { .. } => "transient",
        }
    }
}

#[derive(Deserialize)]
struct ApiAnswer {
    status_code: i64,
    #[serde(default)]
    status_message: String,
    #[serde(default)]
    response: Value,
}

const MAX_TEXT: usize = 300;

pub fn classify(answer: &Result<HttpAnswer, TransportError>) -> Verdict {
    match answer {
        Ok(answer) => classify_http(answer),
        Err(TransportError::Timeout { sent, after }) => Verdict::Transient {
            status_code: None,
            status_message: if *sent {
                format!(
                    "time-out: no answer from Pushwoosh within {} ms",
                    after.as_millis()
                )
            } else {
                format!(
                    "time-out connecting to Pushwoosh after {} ms",
                    after.as_millis()
                )
            },
            retry_after: None,
            may_have_reached: *sent,
        },
        Err(TransportError::Connect { message }) => Verdict::Transient {
            status_code: None,
            status_message: format!("connection error: {message}"),
            retry_after: None,
            may_have_reached: false,
        },
        Err(TransportError::Other { message }) => Verdict::Transient {
            status_code: None,
            status_message: format!("transport error: {message}"),
            retry_after: None,
            may_have_reached: true,
        },
    }
}

fn classify_http(answer: &HttpAnswer) -> Verdict {
    let status = i64::from(answer.status);
    match answer.status {
        200 => match serde_json::from_slice::<ApiAnswer>(&answer.body) {
            Ok(api) => classify_api(api),
            Err(_) => Verdict::Transient {
                status_code: None,
                status_message: format!(
                    "HTTP 200 without a Pushwoosh JSON answer: {}",
                    snippet(&answer.body)
                ),
                retry_after: None,
                may_have_reached: true,
            },
        },
        400 => Verdict::Rejected {
            status_code: 400,
            status_message: http_message(answer, "malformed request"),
            response: Value::Null,
        },
        408 | 429 | 500 | 503 => Verdict::Transient {
            status_code: Some(status),
            status_message: http_message(answer, reason(answer.status)),
            retry_after: answer.retry_after,
            may_have_reached: false,
        },
        500..=599 => Verdict::Transient {
            status_code: Some(status),
            status_message: http_message(answer, reason(answer.status)),
            retry_after: answer.retry_after,
            may_have_reached: true,
        },
        _ => Verdict::Failed {
            status_code: Some(status),
            status_message: http_message(answer, reason(answer.status)),
            response: Value::Null,
        },
    }
}

fn classify_api(api: ApiAnswer) -> Verdict {
    match api.status_code {
        200 => Verdict::Success {
            status_message: api.status_message,
            response: api.response,
        },
        210 => Verdict::Rejected {
            status_code: 210,
            status_message: api.status_message,
            response: api.response,
        },
        code @ 500..=599 => Verdict::Transient {
            status_code: Some(code),
            status_message: api.status_message,
            retry_after: None,
            may_have_reached: false,
        },
        code => Verdict::Failed {
            status_code: Some(code),
            status_message: api.status_message,
            response: api.response,
        },
    }
}

fn reason(status: u16) -> &'static str {
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
fn http_message(answer: &HttpAnswer, reason: &str) -> String {
    let body = snippet(&answer.body);
    if body.is_empty() {
        format!("HTTP {} {reason}", answer.status)
    } else {
        format!("HTTP {} {reason}: {body}", answer.status)
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn http(
        status: u16,
        retry_after: Option<u64>,
        body: &str,
    ) -> Result<HttpAnswer, TransportError> {
        Ok(HttpAnswer {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: bytes::Bytes::from(body.to_owned()),
        })
    }

    /// (case, answer, expected label, expected status_code, retry_after secs, may_have_reached)
    type Case = (
        &'static str,
        Result<HttpAnswer, TransportError>,
        &'static str,
        Option<i64>,
        Option<u64>,
        bool,
    );

    #[test]
    fn classifies_every_kind_of_answer() {
        let ok = r#"{"status_code":200,"status_message":"OK","response":{"Messages":["C3F8-C3863ED4-334AD4F1"]}}"#;
        let arg = r#"{"status_code":210,"status_message":"Invalid devices list. \"devices\" must be an array.","response":{"Messages":[]}}"#;
        let forbidden =
            r#"{"status_code":403,"status_message":"Token restrictions forbid this operation"}"#;
        let internal = r#"{"status_code":500,"status_message":"Internal error"}"#;
        let cases: Vec<Case> = vec![
            ("200 ok", http(200, None, ok), "ok", None, None, false),
            (
                "210 argument error",
                http(200, None, arg),
                "rejected",
                Some(210),
                None,
                false,
            ),
            (
                "http 400",
                http(400, None, "bad json"),
                "rejected",
                Some(400),
                None,
                false,
            ),
            (
                "403 in body",
                http(200, None, forbidden),
                "failed",
                Some(403),
                None,
                false,
            ),
            (
                "500 in body",
                http(200, None, internal),
                "transient",
                Some(500),
                None,
                false,
            ),
            (
                "200 not json",
                http(200, None, "<html>"),
                "transient",
                None,
                None,
                true,
            ),
            (
                "429 without retry-after",
                http(429, None, ""),
                "transient",
                Some(429),
                None,
                false,
            ),
            (
                "429 with retry-after",
                http(429, Some(7), ""),
                "transient",
                Some(429),
                Some(7),
                false,
            ),
            (
                "500",
                http(500, None, ""),
                "transient",
                Some(500),
                None,
                false,
            ),
            (
                "503",
                http(503, Some(2), ""),
                "transient",
                Some(503),
                Some(2),
                false,
            ),
            (
                "502",
                http(502, None, ""),
                "transient",
                Some(502),
                None,
                true,
            ),
            (
                "504",
                http(504, None, ""),
                "transient",
                Some(504),
                None,
                true,
            ),
            (
                "http 401",
                http(401, None, ""),
                "failed",
                Some(401),
                None,
                false,
            ),
            (
                "http 404",
                http(404, None, ""),
                "failed",
                Some(404),
                None,
                false,
            ),
            (
                "time-out after sending",
                Err(TransportError::Timeout {
                    sent: true,
                    after: Duration::from_secs(10),
                }),
                "transient",
                None,
                None,
                true,
            ),
            (
                "time-out connecting",
                Err(TransportError::Timeout {
                    sent: false,
                    after: Duration::from_secs(10),
                }),
                "transient",
                None,
                None,
                false,
            ),
            (
                "connection refused",
                Err(TransportError::Connect {
                    message: "Connection refused (os error 111)".into(),
                }),
                "transient",
                None,
                None,
                false,
            ),
            (
                "reset mid-call",
                Err(TransportError::Other {
                    message: "connection reset".into(),
                }),
                "transient",
                None,
                None,
                true,
            ),
        ];
        for (name, answer, label, code, retry_after, reached) in cases {
            let verdict = classify(&answer);
            assert_eq!(verdict.label(), label, "{name}: {verdict:?}");
            match verdict {
                Verdict::Success { response, .. } => {
                    assert_eq!(
                        response,
                        json!({"Messages": ["C3F8-C3863ED4-334AD4F1"]}),
                        "{name}"
                    )
                }
                Verdict::Rejected {
                    status_code,
                    status_message,
                    ..
                } => {
                    assert_eq!(Some(status_code), code, "{name}");
                    assert!(!status_message.is_empty(), "{name}");
                }
                Verdict::Failed { status_code, .. } => assert_eq!(status_code, code, "{name}"),
                Verdict::Transient {
                    status_code,
                    retry_after: ra,
                    may_have_reached,
                    status_message,
                } => {
                    assert_eq!(status_code, code, "{name}");
                    assert_eq!(ra, retry_after.map(Duration::from_secs), "{name}");
                    assert_eq!(may_have_reached, reached, "{name}");
                    assert!(!status_message.is_empty(), "{name}");
                }
            }
        }
    }

    #[test]
    fn pushwoosh_words_are_kept() {
        let v = classify(&http(
            200,
            None,
            r#"{"status_code":210,"status_message":"Invalid devices list. \"devices\" must be an array.","response":{"Messages":[]}}"#,
        ));
        let Verdict::Rejected {
            status_message,
            response,
            ..
        } = v
        else {
            panic!()
        };
        assert_eq!(
            status_message,
            "Invalid devices list. \"devices\" must be an array."
        );
        assert_eq!(response, json!({"Messages": []}));
        let Verdict::Transient { status_message, .. } = classify(&Err(TransportError::Timeout {
            sent: true,
            after: Duration::from_millis(1500),
        })) else {
            panic!()
        };
        assert!(status_message.contains("1500 ms"), "{status_message}");
    }
}
