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
}

impl ResultEvent {
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
    }
}
