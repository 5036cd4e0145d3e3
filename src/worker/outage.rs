//! Jobs the circuit breaker holds back while Pushwoosh fails for everyone: parked for a
//! later call without using their retry budget, so an outage fails no job.

use std::time::Duration;

use lapin::message::Delivery;
use tracing::{error, info};

use super::acks::HandBack;
use super::breaker::{BreakerState, Signal};
use super::context::WorkerContext;
use super::process::Settle;
use crate::broker::publisher::{ParkedRetry, PublishError};
use crate::job::Job;
use crate::pushwoosh::Verdict;

/// What a held job keeps: its calls so far (not counting the held one) and its first receipt.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    pub prior_attempts: u32,
    pub received_at_ms: i64,
}

/// Before the call: while the breaker is open, the job is parked instead of sent.
pub(super) async fn before_call(
    ctx: &WorkerContext,
    delivery: &Delivery,
    budget: Budget,
) -> Option<Settle> {
    if ctx.breaker.admits() {
        return None;
    }
    park(ctx, delivery, budget, "circuit breaker open: not sent").await
}

/// After the call (the breaker has heard its answer: `state`): an outage answer while the
/// breaker is (now) open parks the job without charging the call. A call that may have
/// reached Pushwoosh and must not be repeated (SMS, WhatsApp) is left to the normal path:
/// holding it would send it again.
pub(super) async fn after_verdict(
    ctx: &WorkerContext,
    delivery: &Delivery,
    job: &Job,
    verdict: &Verdict,
    budget: Budget,
    state: BreakerState,
) -> Option<Settle> {
    if state == BreakerState::Closed {
        return None;
    }
    let shared_token = !ctx
        .settings
        .pushwoosh
        .has_application_token(job.application());
    let Signal::Down(error) = Signal::of(verdict, shared_token) else {
        return None;
    };
    let may_have_reached = matches!(
        verdict,
        Verdict::Transient {
            may_have_reached: true,
            ..
        }
    );
    if may_have_reached && !ctx.may_resend_unknown(job.kind) {
        return None;
    }
    park(ctx, delivery, budget, &error).await
}

/// Parks the job for later; `None` when the broker refuses to hold it, so that the job
/// takes its normal path instead of coming back to be refused again.
async fn park(
    ctx: &WorkerContext,
    delivery: &Delivery,
    budget: Budget,
    error: &str,
) -> Option<Settle> {
    // The shortest tier: the job is back in the jobs queue soon and waits there, untaken,
    // until the breaker lets jobs through again.
    let tier = ctx.retry.tier_for(Duration::ZERO);
    let parked = ParkedRetry {
        attempts: budget.prior_attempts,
        received_at_ms: budget.received_at_ms,
        last_error: error,
        tier,
        delay: tier,
    };
    match ctx
        .publisher
        .park_retry(&delivery.data, &delivery.properties, &parked)
        .await
    {
        Ok(()) => {
            info!(
                attempts = budget.prior_attempts,
                %error,
                "circuit breaker open: job parked without using its retry budget"
            );
            ctx.metrics.breaker_held_jobs.inc();
            Some(Settle::Parked)
        }
        Err(PublishError::Unavailable(why)) => {
            error!(error = %why, "could not park the held job: job handed back");
            Some(Settle::HandBack(HandBack::CannotPublish))
        }
        Err(PublishError::Refused(why)) => {
            error!(error = %why, "the broker refused to hold the job: not held");
            None
        }
    }
}
