//! One delivery's life, stage by stage: received, admitted (decoded, validated, a token),
//! held while the breaker is open, called, concluded from the answer, settled. Each
//! stage lives in the module named after it; this one only strings them together.

use std::sync::Arc;
use std::time::Instant;

use lapin::message::Delivery;
use tracing::{Instrument, info, info_span};

use super::acks::HandBack;
use super::admit::{Admitted, admit, poison};
use super::call::call;
use super::context::WorkerContext;
use super::fate::Fate;
use super::received::Received;
use super::settle::settle;
use super::{outage, verdict};
use crate::job::{self, DecodeError, Job};
use crate::pushwoosh::request;
use crate::trace_context::JobTrace;

// The batcher shares the call's accounting.
pub(super) use super::call::{Answered, Feedback as Accounts};

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
    request::add_transaction_ids(&mut job);
    event.attempts = received.prior_attempts + 1;

    if let Some(held) = outage::before_call(ctx, delivery, received).await {
        return held;
    }
    let Some(called) = call(ctx, &job, token).await else {
        info!("shutting down: job handed back to the queue before its call");
        return Fate::HandBack(HandBack::Stopping);
    };
    // Only worth saying when the job shared its call.
    event.batch = called.batch.filter(|b| b.jobs > 1);
    if let Some(held) = outage::after_answer(ctx, delivery, received, &job, &called.answered).await
    {
        return held;
    }
    verdict::conclude(ctx, delivery, received, &job, event, called).await
}
