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

mod message;
mod verdict;

use serde::Deserialize;
use serde_json::Value;

use super::client::{HttpAnswer, TransportError};
use message::{http_message, reason, snippet};
pub use verdict::Verdict;

#[derive(Deserialize)]
struct ApiAnswer {
    status_code: i64,
    #[serde(default)]
    status_message: String,
    #[serde(default)]
    response: Value,
}

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

#[cfg(test)]
mod tests;
