//! A job's deadline: the earlier of its `expires_at` and its retry budget
//! (`retry.max_elapsed_ms` from its first receipt). Whatever keeps a job waiting before
//! its call (a rate-limit slot, a batch, a retry delay, an open breaker) ends there: the
//! job is not sent.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::info;

use super::context::WorkerContext;
use super::fate::Fate;
use super::received::Received;
use crate::broker::DeadReason;
use crate::job::Job;
use crate::result_event::{Outcome, ResultEvent, timestamp};

/// Which limit a deadline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    /// The job's own `expires_at`.
    ExpiresAt,
    /// `retry.max_elapsed_ms` from the job's first receipt.
    RetryBudget,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    pub at: DateTime<Utc>,
    pub limit: Limit,
}

impl Deadline {
    /// The earlier of the job's `expires_at` and the end of its retry budget.
    pub fn of(ctx: &WorkerContext, received: &Received, job: &Job) -> Self {
        let budget = Duration::from_millis(ctx.settings.retry.max_elapsed_ms);
        let budget_end = DateTime::from_timestamp_millis(received.received_at_ms)
            .unwrap_or_else(Utc::now)
            .checked_add_signed(chrono::Duration::from_std(budget).unwrap_or(chrono::Duration::MAX))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        match job.expires_at {
            Some(expires) if expires <= budget_end => Self {
                at: expires,
                limit: Limit::ExpiresAt,
            },
            _ => Self {
                at: budget_end,
                limit: Limit::RetryBudget,
            },
        }
    }

    /// How long until the deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        (self.at - Utc::now()).to_std().unwrap_or(Duration::ZERO)
    }

    pub fn passed(&self) -> bool {
        self.at <= Utc::now()
    }

    /// Whether waiting `delay` from now would end after the deadline.
    pub fn within(&self, delay: Duration) -> bool {
        delay <= self.remaining()
    }

    /// Resolves when the deadline passes (on tokio's clock, from now).
    pub async fn passes(&self) {
        tokio::time::sleep(self.remaining()).await;
    }
}

/// The job waited past its deadline `waiting` (e.g. "waiting for a rate-limit slot"):
/// failed without a call. An `expires_at` that passed is `"expired": true` and
/// dead-lettered `expired`; a spent retry budget is dead-lettered `retries_exhausted`.
pub(super) fn missed(
    ctx: &WorkerContext,
    deadline: Deadline,
    mut event: ResultEvent,
    waiting: &str,
) -> Fate {
    event.outcome = Outcome::Failed;
    event.status_code = None;
    let at = timestamp(deadline.at);
    match deadline.limit {
        Limit::ExpiresAt => {
            info!(expires_at = %at, "expired {waiting}: not sent");
            ctx.metrics
                .lanes
                .expired
                .get_or_create(&ctx.lane_labels())
                .inc();
            event.expired = true;
            event.status_message = format!("expires_at {at} passed {waiting}: not sent");
            Fate::finish(event, Some(DeadReason::Expired))
        }
        Limit::RetryBudget => {
            info!(until = %at, "retry budget spent {waiting}: not sent");
            event.status_message = format!(
                "the retry budget (retry.max_elapsed_ms={} from the job's first receipt) ran out at {at} {waiting}: not sent",
                ctx.settings.retry.max_elapsed_ms
            );
            Fate::finish(event, Some(DeadReason::RetriesExhausted))
        }
    }
}
