//! What an answer means for the job: the four verdicts.

use std::time::Duration;

use serde_json::Value;

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
