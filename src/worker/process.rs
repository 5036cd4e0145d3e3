//! One delivery's life: decode, call Pushwoosh, decide, publish the result (or park a
//! retry, or dead-letter), and only then settle the delivery with the broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use lapin::message::Delivery;
use serde_json::Value;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::acks::{HandBack, Pending};
use super::context::WorkerContext;
use super::outage::{self, Budget};
use crate::broker::DeadReason;
use crate::broker::publisher::{DeadLetter, ParkedRetry, PublishError, header_int, headers};
use crate::job::{self, DecodeError, Job, JobKind};
use secrecy::SecretString;

use super::breaker::{BreakerState, CircuitBreaker, Signal};
use crate::metrics::{
    CallLabels, JobLabels, MethodLabels, Metrics, ReasonLabels, RetryLabels, transient_reason,
};
use crate::pushwoosh::{HttpAnswer, RateLimiter, TransportError, Verdict, classify, request};
use crate::result_event::{
    BatchInfo, Delivery as DeliveryState, Outcome, ResultEvent, ValidationError, kind_name,
    message_codes, timestamp,
};
use crate::retry::RetryDecision;
use crate::trace_context::JobTrace;

/// What happens to the delivery once the job's fate is decided.
pub(super) enum Settle {
    /// Publish this result (after the optional dead letter), then ack.
    Finish {
        event: Box<ResultEvent>,
        dead_letter: Option<DeadReason>,
    },
    /// Parked for a retry (already confirmed): ack, no result yet.
    Parked,
    /// Give the job back to the queue untouched.
    HandBack(HandBack),
}

/// What is known about a delivery before its body is decoded.
struct Envelope {
    message_id: Option<String>,
    correlation_id: Option<String>,
    reply_to: Option<String>,
    redelivered: bool,
    prior_attempts: u32,
    received_at_ms: i64,
    /// Earlier deliveries that were never settled (quorum queues' `x-delivery-count`).
    failed_deliveries: u32,
    /// The producer's W3C trace context, continued by this job's span.
    trace: Option<JobTrace>,
}

impl Envelope {
    fn of(delivery: &Delivery) -> Self {
        let p = &delivery.properties;
        let text =
            |v: &Option<lapin::types::ShortString>| v.as_ref().map(|s| s.as_str().to_owned());
        Self {
            message_id: text(p.message_id()),
            correlation_id: text(p.correlation_id()),
            reply_to: text(p.reply_to()),
            redelivered: delivery.redelivered,
            prior_attempts: header_int(p, headers::ATTEMPTS)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            received_at_ms: header_int(p, headers::RECEIVED_AT)
                .unwrap_or_else(|| Utc::now().timestamp_millis()),
            failed_deliveries: header_int(p, "x-delivery-count")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            trace: JobTrace::of(p),
        }
    }

    fn received_at(&self) -> String {
        chrono::DateTime::from_timestamp_millis(self.received_at_ms)
            .map(timestamp)
            .unwrap_or_else(|| timestamp(Utc::now()))
    }

    fn event(
        &self,
        job_id: Option<String>,
        kind: &'static str,
        application: Option<String>,
    ) -> ResultEvent {
        ResultEvent {
            job_id,
            kind,
            outcome: Outcome::Rejected,
            status_code: None,
            status_message: String::new(),
            message_codes: Vec::new(),
            response: Value::Null,
            attempts: self.prior_attempts,
            application,
            received_at: self.received_at(),
            completed_at: String::new(),
            redelivered: self.redelivered,
            delivery: None,
            batch: None,
            errors: Vec::new(),
            warnings: Vec::new(),
            trace: self.trace.clone(),
            truncated: Vec::new(),
        }
    }
}

pub async fn process(delivery: Delivery, ctx: Arc<WorkerContext>) {
    let started = Instant::now();
    // First: whatever happens to this task from here on, the delivery is settled.
    let pending = ctx.acks.pending(delivery.delivery_tag);
    // The body is read before the job's span exists, so that the span is made once with
    // every field it carries: each field recorded afterwards costs another pass of the
    // log formatter, for every job, whether or not a line is ever written. (This
    // `debug_span` is for the `debug` lines about a bad traceparent; at `info` it costs
    // nothing.)
    let envelope = tracing::debug_span!("job", delivery_tag = delivery.delivery_tag)
        .in_scope(|| Envelope::of(&delivery));
    let decoded = job::decode_within(
        &delivery.data,
        envelope.message_id.as_deref(),
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
    let trace = envelope.trace.as_ref();
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
        let settle = if envelope.failed_deliveries >= limit {
            poison(&envelope, &decoded, limit)
        } else {
            decide(&delivery, &envelope, decoded, &ctx).await
        };
        settle_delivery(&delivery, &envelope, &ctx, settle, pending).await;
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
    envelope: &Envelope,
    decoded: Result<Job, DecodeError>,
    ctx: &WorkerContext,
) -> Settle {
    let mut job = match decoded {
        Ok(job) => job,
        Err(DecodeError::Unparseable { job_id, message }) => {
            warn!(error = %message, "unparseable job: rejected and dead-lettered");
            let mut event = envelope.event(job_id, "unknown", None);
            event.status_code = Some(400);
            event.status_message = message;
            return Settle::Finish {
                event: Box::new(event),
                dead_letter: Some(DeadReason::Unparseable),
            };
        }
        Err(DecodeError::TooLarge { job_id, bytes, max }) => {
            warn!(
                bytes,
                max, "job over amqp.max_job_bytes: rejected undecoded and dead-lettered"
            );
            let mut event = envelope.event(job_id, "unknown", None);
            event.status_code = Some(400);
            event.status_message = format!(
                "the job body is {bytes} bytes, over the worker's limit of {max} (amqp.max_job_bytes): not read"
            );
            return Settle::Finish {
                event: Box::new(event),
                dead_letter: Some(DeadReason::TooLarge),
            };
        }
        Err(DecodeError::Invalid {
            job_id,
            kind,
            application,
            message,
        }) => {
            info!(error = %message, "job rejected");
            let mut event = envelope.event(job_id, kind_name(kind), application);
            event.status_code = Some(210);
            event.status_message = message;
            return Settle::Finish {
                event: Box::new(event),
                dead_letter: None,
            };
        }
    };
    let mut event = envelope.event(
        Some(job.id.clone()),
        job.kind.as_str(),
        job.application().map(str::to_owned),
    );

    let report = ctx.validate(&job);
    event.warnings = report.warnings;
    if !report.errors.is_empty() {
        info!(errors = report.errors.len(), "job rejected by validation");
        event.status_code = Some(210);
        event.status_message = validation_message(&job.id, &report.errors);
        event.errors = report.errors;
        return Settle::Finish {
            event: Box::new(event),
            dead_letter: None,
        };
    }

    let Some(token) = ctx.settings.pushwoosh.token_for(job.application()) else {
        let message = match job.application() {
            Some(app) => format!(
                "no API token configured for application {app}: set pushwoosh.auth_token or pushwoosh.tokens.\"{app}\", then replay the dead letter"
            ),
            None => "no API token configured: set pushwoosh.auth_token (PUSHWOOSH_AUTH_TOKEN), then replay the dead letter".to_owned(),
        };
        error!(%message, "cannot call Pushwoosh");
        event.outcome = Outcome::Failed;
        event.status_message = message;
        return Settle::Finish {
            event: Box::new(event),
            dead_letter: Some(DeadReason::NoToken),
        };
    };

    request::add_transaction_ids(&mut job);
    let attempts = envelope.prior_attempts + 1;
    event.attempts = attempts;

    let budget = Budget {
        prior_attempts: envelope.prior_attempts,
        received_at_ms: envelope.received_at_ms,
    };
    if let Some(held) = outage::before_call(ctx, delivery, budget).await {
        return held;
    }
    let Some(Called {
        answered:
            Answered {
                verdict,
                breaker,
                retry_reason,
            },
        batch,
    }) = call(ctx, &job, token).await
    else {
        info!("shutting down: job handed back to the queue before its call");
        return Settle::HandBack(HandBack::Stopping);
    };
    // Only worth saying when the job shared its call.
    event.batch = batch.filter(|b| b.jobs > 1);
    if let Some(held) = outage::after_verdict(ctx, delivery, &job, &verdict, budget, breaker).await
    {
        return held;
    }
    let (outcome_of_transient, dead_letter) = match verdict {
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
            (None, None)
        }
        Verdict::Rejected {
            status_code,
            status_message,
            response,
        } => {
            event.status_code = Some(status_code);
            event.status_message = status_message;
            event.response = response;
            (None, None)
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
            (None, Some(DeadReason::Failed))
        }
        Verdict::Transient {
            status_code,
            status_message,
            retry_after,
            may_have_reached,
        } => (
            Some((status_code, status_message, retry_after, may_have_reached)),
            None,
        ),
    };
    let Some((status_code, status_message, retry_after, may_have_reached)) = outcome_of_transient
    else {
        return Settle::Finish {
            event: Box::new(event),
            dead_letter,
        };
    };

    event.outcome = Outcome::Failed;
    event.status_code = status_code;
    if may_have_reached && !ctx.may_resend_unknown(job.kind) {
        warn!(error = %status_message, "the call may have reached Pushwoosh: not repeated, delivery unknown");
        event.status_message = format!(
            "{status_message}; the request may have reached Pushwoosh, so it was not sent again (delivery unknown)"
        );
        event.delivery = Some(DeliveryState::Unknown);
        return Settle::Finish {
            event: Box::new(event),
            dead_letter: Some(DeadReason::DeliveryUnknown),
        };
    }

    let elapsed_ms = Utc::now().timestamp_millis() - envelope.received_at_ms;
    let elapsed = Duration::from_millis(u64::try_from(elapsed_ms).unwrap_or(0));
    let decision = ctx.retry_decision(attempts, elapsed, retry_after);
    match decision {
        RetryDecision::RetryIn(delay) => {
            let tier = ctx.retry.tier_for(delay);
            match ctx
                .publisher
                .park_retry(
                    &delivery.data,
                    &delivery.properties,
                    &ParkedRetry {
                        attempts,
                        received_at_ms: envelope.received_at_ms,
                        last_error: &status_message,
                        tier,
                        delay,
                    },
                )
                .await
            {
                Ok(()) => {
                    info!(attempt = attempts, retry_in_ms = delay.as_millis() as u64, error = %status_message, "transient failure: retry parked");
                    ctx.metrics
                        .retries
                        .get_or_create(&RetryLabels {
                            kind: job.kind.as_str(),
                            reason: retry_reason.unwrap_or_else(|| "unknown".to_owned()),
                        })
                        .inc();
                    Settle::Parked
                }
                Err(PublishError::Unavailable(why)) => {
                    error!(error = %why, "could not park the retry: job handed back");
                    Settle::HandBack(HandBack::CannotPublish)
                }
                Err(PublishError::Refused(why)) => {
                    error!(error = %why, "the broker refused the parked retry: failed");
                    event.status_message = format!(
                        "{status_message}; the broker refused to hold the job for its retry ({why})"
                    );
                    Settle::Finish {
                        event: Box::new(event),
                        dead_letter: Some(DeadReason::BrokerRefused),
                    }
                }
            }
        }
        RetryDecision::GiveUp(why) => {
            warn!(attempts, error = %status_message, "retries exhausted: failed");
            event.status_message = format!("{status_message} ({why})");
            Settle::Finish {
                event: Box::new(event),
                dead_letter: Some(DeadReason::RetriesExhausted),
            }
        }
    }
}

/// A job whose earlier deliveries all ended without being settled: whatever it does to
/// a worker, it is not tried again. Failed with a result, and dead-lettered for a look.
fn poison(envelope: &Envelope, decoded: &Result<Job, DecodeError>, limit: u32) -> Settle {
    // Only what the decode found out: the job is not looked at any further.
    let (job_id, kind, application) = match decoded {
        Ok(job) => (
            Some(job.id.clone()),
            job.kind.as_str(),
            job.application().map(str::to_owned),
        ),
        Err(DecodeError::Invalid {
            job_id,
            kind,
            application,
            ..
        }) => (job_id.clone(), kind_name(*kind), application.clone()),
        Err(DecodeError::Unparseable { job_id, .. } | DecodeError::TooLarge { job_id, .. }) => {
            (job_id.clone(), "unknown", None)
        }
    };
    error!(
        deliveries = envelope.failed_deliveries,
        "poison job: delivered {} times without finishing; failed and dead-lettered",
        envelope.failed_deliveries
    );
    let mut event = envelope.event(job_id, kind, application);
    event.outcome = Outcome::Failed;
    event.status_message = format!(
        "poison job: delivered {} times without its worker finishing it (amqp.delivery_limit={limit}); not tried again",
        envelope.failed_deliveries
    );
    Settle::Finish {
        event: Box::new(event),
        dead_letter: Some(DeadReason::Poison),
    }
}

/// What a call (alone or in a batch) decided for the job.
struct Called {
    /// The job's own part of the call's answer.
    answered: Answered,
    batch: Option<BatchInfo>,
}

/// Waits for the rate limiter's slot, then makes the call, alone or in a batch, unless
/// the worker is stopping and the job can safely go back to the queue. Waiting for a
/// slot is always safe to abandon, and a batched job abandoned before its call is not
/// sent; an SMS or WhatsApp call already under way is not: it might send.
async fn call(ctx: &WorkerContext, job: &Job, token: &SecretString) -> Option<Called> {
    if ctx.hand_back.is_cancelled() {
        return None;
    }
    let shared_token = !ctx
        .settings
        .pushwoosh
        .has_application_token(job.application());
    if let Some(batchable) = ctx.batcher.batchable(job) {
        let batched = tokio::select! {
            batched = ctx.batcher.submit(batchable, token, shared_token) => batched?,
            () = ctx.hand_back.cancelled() => return None,
        };
        return Some(Called {
            answered: batched.answered,
            batch: Some(batched.batch),
        });
    }
    let body = request::body(&job.request, token);
    let method = job.kind.method();
    tokio::select! {
        biased;
        () = ctx.hand_back.cancelled() => return None,
        () = ctx.limiter.acquire(method) => {}
    }
    let started = Instant::now();
    let call = ctx.client.call(method, body);
    let answer = if matches!(job.kind, JobKind::Sms | JobKind::Whatsapp) {
        call.await
    } else {
        tokio::select! {
            answer = call => answer,
            () = ctx.hand_back.cancelled() => return None,
        }
    };
    let accounts = Accounts {
        metrics: &ctx.metrics,
        limiter: &ctx.limiter,
        breaker: &ctx.breaker,
    };
    Some(Called {
        answered: accounts.answered(method, started, &answer, shared_token),
        batch: None,
    })
}

/// Where a call's answer is accounted for: the metrics, the rate limiter, the breaker.
pub(super) struct Accounts<'a> {
    pub metrics: &'a Metrics,
    pub limiter: &'a RateLimiter,
    pub breaker: &'a CircuitBreaker,
}

/// A call's answer once accounted for, for all the jobs the call carried.
#[derive(Debug, Clone)]
pub struct Answered {
    pub verdict: Verdict,
    /// The breaker's state after it heard this answer.
    pub breaker: BreakerState,
    /// For a transient verdict, the `reason` label of the retry.
    pub retry_reason: Option<String>,
}

impl Accounts<'_> {
    /// Accounts for one call, whatever number of jobs it carried: its duration and
    /// status, a 429 to the rate limiter (which slows every caller), and what the answer
    /// says about Pushwoosh to the breaker. `shared_token`: the call used the default
    /// token (a refusal then stops every job).
    pub(super) fn answered(
        &self,
        method: &'static str,
        started: Instant,
        answer: &Result<HttpAnswer, TransportError>,
        shared_token: bool,
    ) -> Answered {
        let seconds = started.elapsed().as_secs_f64();
        self.metrics
            .api_call_duration
            .get_or_create(&MethodLabels { method })
            .observe(seconds);
        if let Ok(a) = answer
            && a.status == 429
        {
            self.limiter.throttled(method, a.retry_after);
        }
        let verdict = classify(answer);
        debug!(
            method,
            seconds,
            verdict = verdict.label(),
            "Pushwoosh answered"
        );
        self.metrics
            .api_calls
            .get_or_create(&CallLabels {
                method,
                status: call_status(answer, &verdict),
            })
            .inc();
        let breaker = self.breaker.record(&Signal::of(&verdict, shared_token));
        Answered {
            retry_reason: transient_reason(answer, &verdict),
            verdict,
            breaker,
        }
    }
}

async fn settle_delivery(
    delivery: &Delivery,
    envelope: &Envelope,
    ctx: &WorkerContext,
    settle: Settle,
    pending: Pending,
) {
    match settle {
        Settle::HandBack(reason) => pending.requeue(reason),
        Settle::Parked => pending.ack(),
        Settle::Finish {
            mut event,
            dead_letter,
        } => match finish(delivery, envelope, ctx, &mut event, dead_letter).await {
            // Should the ack not reach the broker, it redelivers the job, whose result may
            // then come twice, marked redelivered.
            Finished::Published => pending.ack(),
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
    envelope: &Envelope,
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
    let correlation_id = envelope
        .correlation_id
        .clone()
        .or_else(|| event.job_id.clone())
        .unwrap_or_default();
    let reply_to = envelope.reply_to.as_deref();
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

/// `job 'x': notifications[0].send_date: …; devices: …`
fn validation_message(job_id: &str, errors: &[ValidationError]) -> String {
    let problems: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect();
    format!("job '{job_id}': {}", problems.join("; "))
}

/// The metrics label of a call: Pushwoosh's `status_code` for an HTTP 200 answer,
/// `http_<status>` for other HTTP answers, the transport error otherwise.
fn call_status(answer: &Result<HttpAnswer, TransportError>, verdict: &Verdict) -> String {
    match answer {
        Ok(a) if a.status == 200 => match verdict {
            Verdict::Success { .. } => "200".to_owned(),
            Verdict::Rejected { status_code, .. } => status_code.to_string(),
            Verdict::Failed { status_code, .. } | Verdict::Transient { status_code, .. } => {
                status_code.map_or_else(|| "unreadable".to_owned(), |c| c.to_string())
            }
        },
        Ok(a) => format!("http_{}", a.status),
        Err(e) => e.label().to_owned(),
    }
}
