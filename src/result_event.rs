//! The result event published for every job: the contract's shape, one per job.

use serde::Serialize;
use serde_json::Value;

use crate::job::JobKind;
use crate::trace_context::JobTrace;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Rejected,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

/// What a result says about whether Pushwoosh got the message, when it cannot be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// The request went out and no answer came: Pushwoosh may or may not have sent it.
    Unknown,
}

/// One problem found by the worker's own validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    pub path: String,
    pub message: String,
}

/// Where a job sat in the batched call that decided its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchInfo {
    /// Jobs in the call.
    pub jobs: usize,
    /// Notifications in the call, all jobs together.
    pub notifications: usize,
    /// Index of this job's first notification in the call.
    pub position: usize,
    /// Whether Pushwoosh answered one message code per notification, so that this job's
    /// codes are known. When false, `message_codes` is empty and `response` is the whole
    /// call's: the worker does not guess which codes are whose.
    pub codes_mapped: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResultEvent {
    pub job_id: Option<String>,
    /// The job's kind, or "unknown" when the body named none the worker knows.
    pub kind: &'static str,
    pub outcome: Outcome,
    pub status_code: Option<i64>,
    pub status_message: String,
    pub message_codes: Vec<String>,
    pub response: Value,
    /// Calls made to Pushwoosh for this job, 0 when it was refused before any call.
    pub attempts: u32,
    pub application: Option<String>,
    pub received_at: String,
    pub completed_at: String,
    /// The broker delivered this job before: a result for it may already exist.
    pub redelivered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// Present when the job shared its call with other jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ValidationError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ValidationError>,
    /// The job's W3C trace context, when it carried a valid `traceparent`: its trace id,
    /// the producer's span and the worker's (also sent as the result's `traceparent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<JobTrace>,
    /// The fields cut short to keep the result within its bounds (see [`ResultEvent::bound`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<&'static str>,
    /// The job's id already went out within the ledger's window: nothing was sent, and
    /// the outcome, status and codes are the first processing's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// The job's `expires_at` passed before it could be sent: not sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

/// The most characters of a result's `status_message`.
pub const MAX_STATUS_MESSAGE_CHARS: usize = 2_000;
/// The most characters of a validation error's `path`.
pub const MAX_PATH_CHARS: usize = 200;
/// The most characters of a validation error's `message`.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 500;
/// The most characters of the `application` a result echoes.
pub const MAX_APPLICATION_CHARS: usize = 128;

/// `text` cut to at most `max` characters, an ellipsis marking the cut.
pub fn excerpt(text: &str, max: usize) -> Option<String> {
    let (cut, _) = text.char_indices().nth(max.saturating_sub(1))?;
    // Exactly `max` characters: nothing to cut.
    text[cut..].chars().nth(1)?;
    Some(format!("{}…", &text[..cut]))
}

impl ResultEvent {
    /// Keeps the result small whatever the job held: at most `max_errors` validation
    /// errors and as many warnings (one last entry counts the rest), every path, message
    /// and echoed value cut to an excerpt. A result within these bounds is left as it is,
    /// byte for byte. Pushwoosh's `response` is bounded apart, by size, when published.
    pub fn bound(&mut self, max_errors: usize) {
        let mut cut = false;
        cut |= cut_text(&mut self.status_message, MAX_STATUS_MESSAGE_CHARS);
        if let Some(application) = &mut self.application {
            cut |= cut_text(application, MAX_APPLICATION_CHARS);
        }
        if cut {
            self.mark_truncated("status_message");
        }
        if bound_list(&mut self.errors, max_errors, "errors") {
            self.mark_truncated("errors");
        }
        if bound_list(&mut self.warnings, max_errors, "warnings") {
            self.mark_truncated("warnings");
        }
    }

    /// The same result without Pushwoosh's `response`, for when the whole one is too large.
    pub fn without_response(&self) -> ResultEvent {
        let mut short = self.clone();
        short.response = Value::Null;
        short.mark_truncated("response");
        short
    }

    /// The smallest result that still says what happened to the job, for when the broker
    /// refused the full one (`why`): no response, no validation details.
    pub fn shortened(&self, why: &str) -> ResultEvent {
        let mut short = self.without_response();
        if !short.errors.is_empty() {
            short.errors.clear();
            short.mark_truncated("errors");
        }
        if !short.warnings.is_empty() {
            short.warnings.clear();
            short.mark_truncated("warnings");
        }
        let mut message = format!(
            "{}; the broker refused this job's full result ({why}): response and validation details left out",
            short.status_message
        );
        cut_text(&mut message, MAX_STATUS_MESSAGE_CHARS);
        short.status_message = message;
        short
    }

    fn mark_truncated(&mut self, field: &'static str) {
        if !self.truncated.contains(&field) {
            self.truncated.push(field);
        }
    }

    /// `<kind>.<outcome>`, the routing key on the results exchange.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.kind, self.outcome.as_str())
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A push's result is ~400 bytes: start there rather than grow from serde_json's 128.
        let mut out = Vec::with_capacity(512);
        // Plain data with string keys: serialization cannot fail.
        let _ = serde_json::to_writer(&mut out, self);
        out
    }
}

/// Cuts `text` to `max` characters; whether it did.
fn cut_text(text: &mut String, max: usize) -> bool {
    match excerpt(text, max) {
        Some(short) => {
            *text = short;
            true
        }
        None => false,
    }
}

/// At most `max` entries, each cut to an excerpt, and one more that counts the rest.
fn bound_list(list: &mut Vec<ValidationError>, max: usize, what: &str) -> bool {
    let mut cut = false;
    if list.len() > max {
        let more = list.len() - max;
        list.truncate(max);
        list.push(ValidationError {
            path: String::new(),
            message: format!("and {more} more {what}"),
        });
        cut = true;
    }
    for entry in list.iter_mut() {
        cut |= cut_text(&mut entry.path, MAX_PATH_CHARS);
        cut |= cut_text(&mut entry.message, MAX_ERROR_MESSAGE_CHARS);
    }
    cut
}

pub fn kind_name(kind: Option<JobKind>) -> &'static str {
    kind.map_or("unknown", JobKind::as_str)
}

/// The message codes of a successful answer: `Messages` for the create methods,
/// `messageCode` for targeted, none for the others.
pub fn message_codes(kind: JobKind, response: &Value) -> Vec<String> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    match kind {
        JobKind::Push | JobKind::Sms | JobKind::Whatsapp => strings(&response["Messages"]),
        JobKind::Targeted => response["messageCode"]
            .as_str()
            .map(|c| vec![c.to_owned()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// RFC 3339 UTC with milliseconds, as in the contract's example.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_come_from_the_right_field() {
        let create = json!({"Messages": ["A", "B"], "UnknownDevices": {}});
        assert_eq!(message_codes(JobKind::Push, &create), ["A", "B"]);
        assert_eq!(message_codes(JobKind::Sms, &create), ["A", "B"]);
        assert_eq!(
            message_codes(JobKind::Targeted, &json!({"messageCode": "T"})),
            ["T"]
        );
        assert!(message_codes(JobKind::Details, &json!({"message": {}})).is_empty());
        assert!(message_codes(JobKind::Cancel, &Value::Null).is_empty());
    }

    #[test]
    fn serializes_the_contract_shape() {
        let event = ResultEvent {
            job_id: Some("order-4711-shipped".into()),
            kind: "push",
            outcome: Outcome::Ok,
            status_code: Some(200),
            status_message: "OK".into(),
            message_codes: vec!["C3F8-C3863ED4-334AD4F1".into()],
            response: json!({"Messages": ["C3F8-C3863ED4-334AD4F1"]}),
            attempts: 1,
            application: Some("ABCDE-12345".into()),
            received_at: "2026-11-22T10:15:02.118Z".into(),
            completed_at: "2026-11-22T10:15:02.361Z".into(),
            redelivered: false,
            delivery: None,
            batch: None,
            errors: vec![],
            warnings: vec![],
            trace: None,
            truncated: vec![],
            duplicate: false,
            expired: false,
        };
        let value: Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(
            value,
            json!({ "job_id": "order-4711-shipped", "kind": "push", "outcome": "ok",
                    "status_code": 200, "status_message": "OK",
                    "message_codes": ["C3F8-C3863ED4-334AD4F1"],
                    "response": { "Messages": ["C3F8-C3863ED4-334AD4F1"] },
                    "attempts": 1, "application": "ABCDE-12345",
                    "received_at": "2026-11-22T10:15:02.118Z",
                    "completed_at": "2026-11-22T10:15:02.361Z",
                    "redelivered": false })
        );
        assert_eq!(event.routing_key(), "push.ok");
        // Within its bounds, a result is not touched: the same bytes.
        let before = event.to_json();
        let mut bounded = event.clone();
        bounded.bound(50);
        assert_eq!(bounded.to_json(), before);
    }

    fn error(path: &str, message: &str) -> ValidationError {
        ValidationError {
            path: path.into(),
            message: message.into(),
        }
    }

    fn rejected() -> ResultEvent {
        ResultEvent {
            job_id: Some("j".into()),
            kind: "push",
            outcome: Outcome::Rejected,
            status_code: Some(210),
            status_message: "bad".into(),
            message_codes: vec![],
            response: Value::Null,
            attempts: 0,
            application: Some("A-B".into()),
            received_at: String::new(),
            completed_at: String::new(),
            redelivered: false,
            delivery: None,
            batch: None,
            errors: vec![],
            warnings: vec![],
            trace: None,
            truncated: vec![],
            duplicate: false,
            expired: false,
        }
    }

    #[test]
    fn a_result_stays_small_whatever_the_job_held() {
        let mut event = rejected();
        let huge = "x".repeat(1_000_000);
        event.status_message = huge.clone();
        event.application = Some(huge.clone());
        event.errors = (0..10_000).map(|_| error(&huge, &huge)).collect();
        event.warnings = vec![error("a", "b"); 60];
        event.bound(50);
        assert_eq!(event.errors.len(), 51);
        assert_eq!(event.errors[50].message, "and 9950 more errors");
        assert_eq!(event.warnings.len(), 51);
        assert_eq!(event.warnings[50].message, "and 10 more warnings");
        assert_eq!(event.errors[0].path.chars().count(), MAX_PATH_CHARS);
        assert!(event.errors[0].path.ends_with('…'));
        assert_eq!(
            event.status_message.chars().count(),
            MAX_STATUS_MESSAGE_CHARS
        );
        assert_eq!(
            event.application.as_deref().map(|a| a.chars().count()),
            Some(MAX_APPLICATION_CHARS)
        );
        assert_eq!(event.truncated, ["status_message", "errors", "warnings"]);
        let bytes = event.to_json().len();
        assert!(bytes < 60_000, "{bytes} bytes");
    }

    #[test]
    fn excerpts_cut_on_characters_and_leave_short_text_alone() {
        assert_eq!(excerpt("abc", 3), None);
        assert_eq!(excerpt("abcd", 3).as_deref(), Some("ab…"));
        assert_eq!(excerpt("ééééé", 4).as_deref(), Some("ééé…"));
        assert_eq!(excerpt("", 3), None);
    }

    #[test]
    fn a_shortened_result_keeps_the_outcome_and_the_codes() {
        let mut event = rejected();
        event.outcome = Outcome::Ok;
        event.message_codes = vec!["C".into()];
        event.response = json!({"big": "x".repeat(10_000)});
        event.warnings = vec![error("a", "b")];
        let short = event.shortened("message size 99 is larger than configured max size 9");
        assert_eq!(short.outcome, Outcome::Ok);
        assert_eq!(short.message_codes, ["C"]);
        assert_eq!(short.response, Value::Null);
        assert!(short.warnings.is_empty());
        assert_eq!(short.truncated, ["response", "warnings"]);
        assert!(
            short
                .status_message
                .contains("larger than configured max size")
        );
    }
}
