//! What happens to a delivery once its job's fate is decided: every stage of the
//! pipeline ends in one of these.

use super::acks::HandBack;
use crate::broker::DeadReason;
use crate::result_event::ResultEvent;

pub(super) enum Fate {
    /// Publish this result (after the dead letter, when there is one), then ack.
    Finish {
        event: Box<ResultEvent>,
        dead_letter: Option<DeadReason>,
    },
    /// Parked for a retry (already confirmed): ack, no result yet.
    Parked,
    /// Give the job back to the queue untouched.
    HandBack(HandBack),
}

impl Fate {
    pub fn finish(event: ResultEvent, dead_letter: Option<DeadReason>) -> Self {
        Self::Finish {
            event: Box::new(event),
            dead_letter,
        }
    }
}
