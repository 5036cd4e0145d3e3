//! Jobs the circuit breaker holds back while Pushwoosh fails for everyone: parked for a
//! later call without using their attempts: an outage fails no job before its deadline
//! (`expires_at`, `retry.max_elapsed_ms`), which the next receipt checks.

use std::time::Duration;

use lapin::message::Delivery;
use tracing::info;

use super::breaker::{BreakerState, Signal};
use super::call::Answered;
use super::context::WorkerContext;
use super::fate::Fate;
use super::park::park;
use super::received::Received;
use crate::broker::publisher::ParkedRetry;
use crate::job::Job;
use crate::pushwoosh::Verdict;

/// Before the call: while the breaker is open, the job is parked instead of sent.
pub(super) async fn before_call(
    ctx: &WorkerContext,
    delivery: &Delivery,
    received: &Received,
) -> Option<Fate> {
    if ctx.breaker.admits() {
        return None;
    }
    hold(ctx, delivery, received, "circuit breaker open: not sent").await
}

/// After the call (the breaker has heard its answer): an outage answer while the breaker
/// is (now) open parks the job without charging the call. A call that may have reached
/// Pushwoosh and must not be repeated (SMS, WhatsApp) is left to the normal path:
/// holding it would send it again.
pub(super) async fn after_answer(
    ctx: &WorkerContext,
    delivery: &Delivery,
    received: &Received,
    job: &Job,
    answered: &Answered,
) -> Option<Fate> {
    if answered.breaker == BreakerState::Closed {
        return None;
    }
    let Signal::Down(error) = Signal::of(&answered.verdict, ctx.uses_default_token(job)) else {
        return None;
    };
    let may_have_reached = matches!(
        answered.verdict,
        Verdict::Transient {
            may_have_reached: true,
            ..
        }
    );
    if ctx.must_not_repeat(job.kind, may_have_reached) {
        return None;
    }
    hold(ctx, delivery, received, &error).await
}

/// Parks the job with the calls it had before this delivery; `None` when the broker
/// refuses to hold it, so that the job takes its normal path instead of coming back to
/// be refused again.
pub(super) async fn hold(
    ctx: &WorkerContext,
    delivery: &Delivery,
    received: &Received,
    error: &str,
) -> Option<Fate> {
    // The shortest tier: the job is back in the jobs queue soon and waits there, untaken,
    // until the breaker lets jobs through again.
    let tier = ctx.retry.tier_for(Duration::ZERO);
    let parked = ParkedRetry {
        attempts: received.prior_attempts,
        owner: received.owner,
        received_at_ms: received.received_at_ms,
        last_error: error,
        tier,
        delay: tier,
        lane: ctx.lane.name(),
    };
    let fate = park(ctx, delivery, &parked).await.ok()?;
    if matches!(fate, Fate::Parked) {
        info!(
            attempts = received.prior_attempts,
            %error,
            "circuit breaker open: job parked without using an attempt"
        );
        ctx.metrics.breaker_held_jobs.inc();
    }
    Some(fate)
}
