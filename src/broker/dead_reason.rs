//! Why a job is in the dead-letter queue: the `x-pushwoosh-dead-reason` header, the
//! `reason` label of `dead_letters_total`, and what `replay --reason` selects. One list,
//! so that a new reason cannot be written in one place and forgotten in another.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadReason {
    /// The body is not a JSON object (not JSON, not UTF-8, or JSON of another type).
    Unparseable,
    /// The body is larger than `amqp.max_job_bytes`; it was not decoded.
    TooLarge,
    /// Transient failures until the retry budget ran out.
    RetriesExhausted,
    /// The call may have reached Pushwoosh and was not repeated (SMS, WhatsApp).
    DeliveryUnknown,
    /// Pushwoosh refused the call for a reason that is not the job's (e.g. 403 in body).
    Failed,
    /// No API token is configured for the job's application.
    NoToken,
    /// Delivered `amqp.delivery_limit` times without a worker finishing it.
    Poison,
    /// The broker refused a message the worker published for the job (too large for it,
    /// or nacked): its result even when shortened, or the job held for a retry.
    BrokerRefused,
    /// The job's `expires_at` passed before it could be sent.
    Expired,
}

impl DeadReason {
    pub const ALL: [DeadReason; 9] = [
        Self::Unparseable,
        Self::TooLarge,
        Self::RetriesExhausted,
        Self::DeliveryUnknown,
        Self::Failed,
        Self::NoToken,
        Self::Poison,
        Self::BrokerRefused,
        Self::Expired,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unparseable => "unparseable",
            Self::TooLarge => "too_large",
            Self::RetriesExhausted => "retries_exhausted",
            Self::DeliveryUnknown => "delivery_unknown",
            Self::Failed => "failed",
            Self::NoToken => "no_token",
            Self::Poison => "poison",
            Self::BrokerRefused => "broker_refused",
            Self::Expired => "expired",
        }
    }

    pub fn parse(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == reason)
    }

    /// Whether putting the job back as it is can ever give another answer: an
    /// unparseable or oversized body is refused again, whatever the worker's state, and
    /// a job whose `expires_at` passed expires again.
    pub fn replayable(self) -> bool {
        !matches!(self, Self::Unparseable | Self::TooLarge | Self::Expired)
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_as_itself() {
        for reason in DeadReason::ALL {
            assert_eq!(DeadReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(DeadReason::parse("nope"), None);
    }
}
