//! What a Pushwoosh answer tells the breaker: whether Pushwoosh is up, down, or neither.

use crate::pushwoosh::Verdict;

/// What one Pushwoosh answer says about Pushwoosh as a whole (not about the job).
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Pushwoosh answered about the job itself (success or rejection): it is up.
    Answered,
    /// Pushwoosh is failing for everyone: 5xx, time-out, connection error, auth
    /// rejected. Carries the error.
    Down(String),
    /// Says nothing either way: 429 (rate limiting, handled by `Retry-After`), a refused
    /// per-application token (that application's problem), other refusals.
    Neutral,
}

impl Signal {
    /// `shared_token`: the call used the default token, so an auth refusal hits every job.
    pub fn of(verdict: &Verdict, shared_token: bool) -> Self {
        match verdict {
            Verdict::Success { .. } | Verdict::Rejected { .. } => Signal::Answered,
            Verdict::Transient {
                status_code: Some(429),
                ..
            } => Signal::Neutral,
            Verdict::Transient { status_message, .. } => Signal::Down(status_message.clone()),
            Verdict::Failed {
                status_code: Some(401 | 403),
                status_message,
                ..
            } if shared_token => Signal::Down(status_message.clone()),
            Verdict::Failed { .. } => Signal::Neutral,
        }
    }
}

#[cfg(test)]
mod tests;
