//! What is known about a delivery before its body is decoded: its properties and the
//! worker's own headers, and the result event every outcome starts from.

use chrono::Utc;
use lapin::message::Delivery;
use serde_json::Value;

use crate::broker::publisher::{header_int, headers};
use crate::result_event::{Outcome, ResultEvent, timestamp};
use crate::trace_context::JobTrace;

pub(super) struct Received {
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub redelivered: bool,
    /// Calls made for this job before this delivery (on a parked retry).
    pub prior_attempts: u32,
    /// When a worker first received the job (kept across its parked retries).
    pub received_at_ms: i64,
    /// This processing of the job, for the ledger: kept across its parked retries, new
    /// for a redelivery or a second publish.
    pub owner: u64,
    /// Earlier deliveries that were never settled (quorum queues' `x-delivery-count`).
    pub failed_deliveries: u32,
    /// The producer's W3C trace context, continued by this job's span.
    pub trace: Option<JobTrace>,
    /// When the producer published the job: its `timestamp_in_ms` header, else its AMQP
    /// `timestamp` (seconds).
    pub published_at_ms: Option<i64>,
    /// No worker had the job before: not a parked retry, not a redelivery.
    pub first_receipt: bool,
}

impl Received {
    pub fn of(delivery: &Delivery) -> Self {
        let p = &delivery.properties;
        let text =
            |v: &Option<lapin::types::ShortString>| v.as_ref().map(|s| s.as_str().to_owned());
        Self {
            message_id: text(p.message_id()),
            correlation_id: text(p.correlation_id()),
            reply_to: text(p.reply_to()),
            redelivered: delivery.redelivered,
            prior_attempts: header_int(p, headers::ATTEMPTS)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            received_at_ms: header_int(p, headers::RECEIVED_AT)
                .unwrap_or_else(|| Utc::now().timestamp_millis()),
            published_at_ms: header_int(p, "timestamp_in_ms").or_else(|| {
                p.timestamp()
                    .and_then(|s| i64::try_from(s).ok()?.checked_mul(1000))
            }),
            first_receipt: !delivery.redelivered && header_int(p, headers::RECEIVED_AT).is_none(),
            owner: header_int(p, headers::OWNER)
                .map(|n| n as u64)
                .unwrap_or_else(|| fastrand::u64(..)),
            failed_deliveries: header_int(p, "x-delivery-count")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            trace: JobTrace::of(p),
        }
    }

    /// Seconds from the job's publish (its first receipt when that is unknown) to now.
    pub fn since_publish(&self) -> f64 {
        let from = self.published_at_ms.unwrap_or(self.received_at_ms);
        seconds_since(from)
    }

    /// Seconds from the job's publish to its first receipt, when both are known.
    pub fn queue_wait(&self) -> Option<f64> {
        self.published_at_ms
            .filter(|_| self.first_receipt)
            .map(|at| (self.received_at_ms - at).max(0) as f64 / 1000.0)
    }

    fn received_at(&self) -> String {
        chrono::DateTime::from_timestamp_millis(self.received_at_ms)
            .map(timestamp)
            .unwrap_or_else(|| timestamp(Utc::now()))
    }

    /// The job's result, `rejected` until a stage says otherwise.
    pub fn result(
        &self,
        job_id: Option<String>,
        kind: &'static str,
        application: Option<String>,
    ) -> ResultEvent {
        ResultEvent {
            job_id,
            kind,
            outcome: Outcome::Rejected,
            status_code: None,
            status_message: String::new(),
            message_codes: Vec::new(),
            response: Value::Null,
            attempts: self.prior_attempts,
            application,
            received_at: self.received_at(),
            completed_at: String::new(),
            redelivered: self.redelivered,
            delivery: None,
            batch: None,
            errors: Vec::new(),
            warnings: Vec::new(),
            trace: self.trace.clone(),
            truncated: Vec::new(),
            duplicate: false,
            expired: false,
        }
    }

    /// The correlation id every copy of the result carries: the job's, else its id.
    pub fn correlation_id(&self, job_id: Option<&str>) -> String {
        self.correlation_id
            .clone()
            .or_else(|| job_id.map(str::to_owned))
            .unwrap_or_default()
    }
}

fn seconds_since(ms: i64) -> f64 {
    (Utc::now().timestamp_millis() - ms).max(0) as f64 / 1000.0
}
