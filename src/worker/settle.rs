//! Settling a delivery once its job's fate is decided: the dead letter and the result
//! published (shortened, or left to the broker's own dead-lettering, when the broker
//! refuses them), then the ack, the reject or the hand-back.

use std::time::Instant;

use chrono::Utc;
use lapin::message::Delivery;
use tracing::{debug, error, info, warn};

use super::acks::{HandBack, Pending};
use super::context::WorkerContext;
use super::fate::Fate;
use super::received::Received;
use crate::broker::DeadReason;
use crate::broker::publisher::{DeadLetter, PublishError};
use crate::metrics::{JobLabels, ReasonLabels};
use crate::result_event::{Outcome, ResultEvent, timestamp};

pub(super) async fn settle(
    delivery: &Delivery,
    received: &Received,
    ctx: &WorkerContext,
    fate: Fate,
    pending: Pending,
) {
    match fate {
        Fate::HandBack(reason) => pending.requeue(reason),
        Fate::Parked => pending.ack(),
        Fate::Finish {
            mut event,
            dead_letter,
        } => match finish(delivery, received, ctx, &mut event, dead_letter).await {
            // Should the ack not reach the broker, it redelivers the job, whose result may
            // then come twice, marked redelivered.
            Finished::Published => {
                pending.ack();
                ctx.metrics
                    .lanes
                    .time_to_result
                    .get_or_create(&ctx.lane_labels())
                    .observe(received.since_publish());
            }
            Finished::Reject => pending.reject(),
            Finished::CannotPublish(why) => {
                error!(error = %why, "could not publish the result: job handed back");
                pending.requeue(HandBack::CannotPublish);
            }
        },
    }
}

/// How publishing a finished job's result (and dead letter) ended.
enum Finished {
    /// Everything the job owes is published: ack.
    Published,
    /// The broker refused what the job owes even in its shortest form: reject the
    /// delivery, so that the broker moves it to the dead-letter queue itself.
    Reject,
    /// No channel to publish on (the connection is gone, or the worker is stopping).
    CannotPublish(String),
}

/// Publishes the job's dead letter (when it has one), then its result. A result the
/// broker refuses is published again shortened; one refused even so, or a dead letter
/// refused, leaves the job to the broker's own dead-lettering. Never a hand-back over a
/// problem with the job's own messages.
async fn finish(
    delivery: &Delivery,
    received: &Received,
    ctx: &WorkerContext,
    event: &mut ResultEvent,
    dead_letter: Option<DeadReason>,
) -> Finished {
    event.completed_at = timestamp(Utc::now());
    event.bound(ctx.settings.validation.max_errors);
    let mut settled = Finished::Published;
    if let Some(reason) = dead_letter {
        match publish_dead_letter(delivery, ctx, event, reason).await {
            Ok(()) => {}
            Err(PublishError::Unavailable(why)) => return Finished::CannotPublish(why),
            Err(PublishError::Refused(why)) => {
                error!(error = %why, %reason, "the broker refused the dead letter: the job is rejected to the queue's dead-letter exchange instead");
                settled = Finished::Reject;
            }
        }
    }
    let correlation_id = received.correlation_id(event.job_id.as_deref());
    let reply_to = received.reply_to.as_deref();
    let publishing = Instant::now();
    match ctx
        .publisher
        .publish_result(event, &correlation_id, reply_to)
        .await
    {
        Ok(()) => {}
        Err(PublishError::Unavailable(why)) => return Finished::CannotPublish(why),
        Err(PublishError::Refused(why)) => {
            ctx.metrics.results_refused.inc();
            warn!(error = %why, "the broker refused the result: publishing it shortened");
            *event = event.shortened(&why);
            match ctx
                .publisher
                .publish_result(event, &correlation_id, reply_to)
                .await
            {
                Ok(()) => {}
                Err(PublishError::Unavailable(why)) => return Finished::CannotPublish(why),
                Err(PublishError::Refused(why)) => {
                    error!(error = %why, "the broker refused even the shortened result: dead-lettering the job");
                    if dead_letter.is_none()
                        && publish_dead_letter(delivery, ctx, event, DeadReason::BrokerRefused)
                            .await
                            .is_ok()
                    {
                        return Finished::Published;
                    }
                    return Finished::Reject;
                }
            }
        }
    }
    ctx.metrics
        .result_publish
        .observe(publishing.elapsed().as_secs_f64());
    ctx.metrics
        .jobs
        .get_or_create(&JobLabels {
            kind: event.kind,
            outcome: event.outcome.as_str(),
        })
        .inc();
    // A line per job costs more CPU than anything else the worker does besides the
    // broker and the HTTP call: successes are in the results exchange and the metrics,
    // and are logged only at debug; every other outcome is logged at info.
    if event.outcome == Outcome::Ok {
        debug!(
            outcome = event.outcome.as_str(),
            status_code = event.status_code,
            attempts = event.attempts,
            "result published"
        );
    } else {
        info!(
            outcome = event.outcome.as_str(),
            status_code = event.status_code,
            attempts = event.attempts,
            "result published"
        );
    }
    settled
}

async fn publish_dead_letter(
    delivery: &Delivery,
    ctx: &WorkerContext,
    event: &ResultEvent,
    reason: DeadReason,
) -> Result<(), PublishError> {
    let letter = DeadLetter {
        reason,
        error: &event.status_message,
        job_id: event.job_id.as_deref(),
        kind: event.kind,
        attempts: event.attempts,
        original_exchange: delivery.exchange.as_str(),
        original_routing_key: delivery.routing_key.as_str(),
    };
    ctx.publisher
        .dead_letter(&delivery.data, &delivery.properties, &letter)
        .await?;
    ctx.metrics
        .dead_letters
        .get_or_create(&ReasonLabels {
            reason: reason.as_str(),
        })
        .inc();
    Ok(())
}
