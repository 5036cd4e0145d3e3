//! One delivery's life, stage by stage: received, admitted (decoded, validated, a token),
//! held while the breaker is open, called, concluded from the answer, settled. Each
//! stage lives in the module named after it; this one only strings them together.

use std::sync::Arc;
use std::time::Instant;

use lapin::message::Delivery;
use tracing::{Instrument, info, info_span, warn};

use super::acks::HandBack;
use super::admit::{Admitted, admit, poison};
use super::call::{NotCalled, call};
use super::context::WorkerContext;
use super::deadline::{Deadline, missed};
use super::fate::Fate;
use super::once::Gate;
use super::received::Received;
use super::settle::settle;
use super::{outage, verdict};
use crate::broker::DeadReason;
use crate::job::{self, DecodeError, Job};
use crate::pushwoosh::request;
use crate::result_event::{Delivery as DeliveryState, Outcome, ResultEvent};
use crate::trace_context::JobTrace;

// The batcher shares the call's accounting.
pub(super) use super::call::{Answered, Feedback};

pub async fn process(delivery: Delivery, ctx: Arc<WorkerContext>) {
    let started = Instant::now();
    // First: whatever happens to this task from here on, the delivery is settled.
    let pending = ctx.acks.pending(delivery.delivery_tag);
    // The body is read before the job's span exists, so that the span is made once with
    // every field it carries: each field recorded afterwards costs another pass of the
    // log formatter, for every job, whether or not a line is ever written. (This
    // `debug_span` is for the `debug` lines about a bad traceparent; at `info` it costs
    // nothing.)
    let received = tracing::debug_span!("job", delivery_tag = delivery.delivery_tag)
        .in_scope(|| Received::of(&delivery));
    let decoded = job::decode_within(
        &delivery.data,
        received.message_id.as_deref(),
        ctx.settings.amqp.max_job_bytes,
    );
    let (job_id, kind) = match &decoded {
        Ok(job) => (Some(job.id.as_str()), Some(job.kind.as_str())),
        Err(
            DecodeError::Unparseable { job_id, .. }
            | DecodeError::Invalid { job_id, .. }
            | DecodeError::TooLarge { job_id, .. },
        ) => (job_id.as_deref(), None),
    };
    let trace = received.trace.as_ref();
    let span = info_span!(
        "job",
        job_id,
        kind,
        delivery_tag = delivery.delivery_tag,
        trace_id = trace.map(JobTrace::trace_id),
        parent_id = trace.map(JobTrace::parent_id),
        span_id = trace.map(JobTrace::span_id),
    );
    ctx.metrics.jobs_in_flight.inc();
    if let Some(wait) = received.queue_wait() {
        ctx.metrics
            .lanes
            .queue_wait
            .get_or_create(&ctx.lane_labels())
            .observe(wait);
    }
    async {
        let limit = ctx.settings.amqp.delivery_limit;
        let fate = if received.failed_deliveries >= limit {
            poison(&received, &decoded, limit)
        } else {
            decide(&delivery, &received, decoded, &ctx).await
        };
        settle(&delivery, &received, &ctx, fate, pending).await;
    }
    .instrument(span)
    .await;
    ctx.metrics.jobs_in_flight.dec();
    ctx.metrics
        .job_duration
        .observe(started.elapsed().as_secs_f64());
}

async fn decide(
    delivery: &Delivery,
    received: &Received,
    decoded: Result<Job, DecodeError>,
    ctx: &WorkerContext,
) -> Fate {
    let Admitted {
        mut job,
        token,
        mut event,
    } = match admit(received, decoded, ctx) {
        Ok(admitted) => admitted,
        Err(fate) => return fate,
    };
    // Checked at every receipt: a job that waited past it in a queue, a retry delay or
    // behind an open breaker is not sent.
    let deadline = Deadline::of(ctx, received, &job);
    if deadline.passed() {
        return missed(ctx, deadline, event, "before it was taken");
    }
    request::add_transaction_ids(&mut job);
    event.attempts = received.prior_attempts + 1;

    if let Some(held) = outage::before_call(ctx, delivery, received).await {
        return held;
    }
    let called = match call(ctx, &job, token, received.owner, &deadline).await {
        Ok(called) => called,
        Err(NotCalled::Stopping) => {
            info!("shutting down: job handed back to the queue before its call");
            return Fate::HandBack(HandBack::Stopping);
        }
        Err(NotCalled::Expired) => {
            event.attempts = received.prior_attempts;
            return missed(ctx, deadline, event, "waiting for a rate-limit slot");
        }
        Err(NotCalled::Gated(Gate::Expired)) => {
            event.attempts = received.prior_attempts;
            return missed(ctx, deadline, event, "waiting for its batch's call");
        }
        Err(NotCalled::Gated(gate)) => {
            return gated(ctx, delivery, received, &job, event, gate).await;
        }
    };
    // Only worth saying when the job shared its call.
    event.batch = called.batch.filter(|b| b.jobs > 1);
    if let Some(held) = outage::after_answer(ctx, delivery, received, &job, &called.answered).await
    {
        return held;
    }
    verdict::conclude(ctx, delivery, received, &job, event, called, deadline).await
}

/// The ledger's word instead of a call: a duplicate repeats the first answer, an unknown
/// delivery fails for a person to decide, and a ledger out of reach holds the job.
async fn gated(
    ctx: &WorkerContext,
    delivery: &Delivery,
    received: &Received,
    job: &Job,
    mut event: ResultEvent,
    gate: Gate,
) -> Fate {
    event.attempts = received.prior_attempts;
    match gate {
        Gate::Go | Gate::Elsewhere | Gate::Expired => {
            // `call` settles these itself; should one come here, the job goes back.
            tracing::error!(?gate, "a job was neither called nor decided: handed back");
            Fate::HandBack(HandBack::Unsettled)
        }
        Gate::Duplicate(first) => {
            info!("duplicate: the job id already went out; not sent again");
            event.outcome = first.outcome;
            event.status_code = first.status_code;
            event.message_codes = first.message_codes;
            event.status_message = format!(
                "job id '{}' already went out within the ledger's window: not sent again",
                job.id
            );
            event.duplicate = true;
            Fate::finish(event, None)
        }
        Gate::Unknown => {
            warn!(
                "an earlier call for this job id may have reached Pushwoosh and its answer is unknown: not sent again"
            );
            event.outcome = Outcome::Failed;
            event.status_message = format!(
                "an earlier processing of job id '{}' may have reached Pushwoosh and its answer was never recorded: not sent again (delivery unknown; replay to send it anyway)",
                job.id
            );
            event.delivery = Some(DeliveryState::Unknown);
            Fate::finish(event, Some(DeadReason::DeliveryUnknown))
        }
        Gate::Hold(why) => outage::hold(
            ctx,
            delivery,
            received,
            &format!("the ledger is unavailable: {why}"),
        )
        .await
        .unwrap_or(Fate::HandBack(HandBack::CannotPublish)),
    }
}
