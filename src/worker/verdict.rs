//! Deciding a job's fate from Pushwoosh's answer: a result now (ok, rejected, failed,
//! delivery unknown), or another call later, parked in the broker.

use std::time::Duration;

use chrono::Utc;
use lapin::message::Delivery;
use tracing::{info, warn};

use super::call::Called;
use super::context::WorkerContext;
use super::deadline::{Deadline, Limit, missed};
use super::fate::Fate;
use super::park::park;
use super::received::Received;
use crate::broker::DeadReason;
use crate::broker::publisher::ParkedRetry;
use crate::job::Job;
use crate::metrics::RetryLabels;
use crate::pushwoosh::Verdict;
use crate::result_event::{Delivery as DeliveryState, Outcome, ResultEvent, message_codes};
use crate::retry::RetryDecision;

/// An answer that may get another call.
struct Transient {
    status_code: Option<i64>,
    status_message: String,
    retry_after: Option<Duration>,
    may_have_reached: bool,
    /// The `reason` label of the retry.
    reason: String,
}

pub(super) async fn conclude(
    ctx: &WorkerContext,
    delivery: &Delivery,
    received: &Received,
    job: &Job,
    mut event: ResultEvent,
    called: Called,
    deadline: Deadline,
) -> Fate {
    let Called { answered, batch } = called;
    let transient = match answered.verdict {
        Verdict::Success {
            status_message,
            response,
        } => {
            event.outcome = Outcome::Ok;
            event.status_code = Some(200);
            event.status_message = status_message;
            // A batched call whose codes could not be told apart gives none: never a guess.
            if batch.is_none_or(|b| b.codes_mapped) {
                event.message_codes = message_codes(job.kind, &response);
            }
            event.response = response;
            return Fate::finish(event, None);
        }
        Verdict::Rejected {
            status_code,
            status_message,
            response,
        } => {
            event.status_code = Some(status_code);
            event.status_message = status_message;
            event.response = response;
            return Fate::finish(event, None);
        }
        Verdict::Failed {
            status_code,
            status_message,
            response,
        } => {
            warn!(status_code, %status_message, "Pushwoosh refused the call for a reason that is not the job's");
            event.outcome = Outcome::Failed;
            event.status_code = status_code;
            event.status_message = status_message;
            event.response = response;
            return Fate::finish(event, Some(DeadReason::Failed));
        }
        Verdict::Transient {
            status_code,
            status_message,
            retry_after,
            may_have_reached,
        } => Transient {
            status_code,
            status_message,
            retry_after,
            may_have_reached,
            reason: answered
                .retry_reason
                .unwrap_or_else(|| "unknown".to_owned()),
        },
    };
    retry_or_fail(ctx, delivery, received, job, event, transient, deadline).await
}

/// A transient answer: another call later, parked in the broker, unless the call may
/// have sent what must not be sent twice, or the retry budget is spent.
async fn retry_or_fail(
    ctx: &WorkerContext,
    delivery: &Delivery,
    received: &Received,
    job: &Job,
    mut event: ResultEvent,
    transient: Transient,
    deadline: Deadline,
) -> Fate {
    let Transient {
        status_code,
        status_message,
        retry_after,
        may_have_reached,
        reason,
    } = transient;
    event.outcome = Outcome::Failed;
    event.status_code = status_code;
    if ctx.must_not_repeat(job.kind, may_have_reached) {
        warn!(error = %status_message, "the call may have reached Pushwoosh: not repeated, delivery unknown");
        event.status_message = format!(
            "{status_message}; the request may have reached Pushwoosh, so it was not sent again (delivery unknown)"
        );
        event.delivery = Some(DeliveryState::Unknown);
        return Fate::finish(event, Some(DeadReason::DeliveryUnknown));
    }

    let attempts = event.attempts;
    let elapsed_ms = Utc::now().timestamp_millis() - received.received_at_ms;
    let elapsed = Duration::from_millis(u64::try_from(elapsed_ms).unwrap_or(0));
    let delay = match ctx.retry_decision(attempts, elapsed, retry_after) {
        RetryDecision::RetryIn(delay) => delay,
        RetryDecision::GiveUp(why) => {
            warn!(attempts, error = %status_message, "retries exhausted: failed");
            event.status_message = format!("{status_message} ({why})");
            return Fate::finish(event, Some(DeadReason::RetriesExhausted));
        }
    };
    if deadline.limit == Limit::ExpiresAt && !deadline.within(delay) {
        // Failed now rather than when the retry comes back: the producer may fall back.
        return missed(
            ctx,
            deadline,
            event,
            &format!(
                "before its next call ({status_message}; next call in {} ms)",
                delay.as_millis()
            ),
        );
    }
    let parked = ParkedRetry {
        attempts,
        owner: received.owner,
        received_at_ms: received.received_at_ms,
        last_error: &status_message,
        tier: ctx.retry.tier_for(delay),
        delay,
        lane: ctx.lane.name(),
    };
    match park(ctx, delivery, &parked).await {
        Ok(fate) => {
            if matches!(fate, Fate::Parked) {
                info!(attempt = attempts, retry_in_ms = delay.as_millis() as u64, error = %status_message, "transient failure: retry parked");
                ctx.metrics
                    .retries
                    .get_or_create(&RetryLabels {
                        kind: job.kind.as_str(),
                        reason,
                    })
                    .inc();
            }
            fate
        }
        Err(why) => {
            event.status_message = format!(
                "{status_message}; the broker refused to hold the job for its retry ({why})"
            );
            Fate::finish(event, Some(DeadReason::BrokerRefused))
        }
    }
}
