//! Calling Pushwoosh for a job: its rate-limit slot, the call (alone or in a batch), and
//! what the answer is fed back to (metrics, the rate limiter, the breaker) before the
//! job's fate is decided from it.

use std::time::Instant;

use secrecy::SecretString;
use tracing::debug;

use super::breaker::{BreakerState, CircuitBreaker, Signal};
use super::context::WorkerContext;
use super::deadline::Deadline;
use super::once::{self, Gate};
use crate::job::{Job, JobKind};
use crate::ledger::{Account, CallLimiter};
use crate::metrics::{CallLabels, MethodLabels, Metrics, transient_reason};
use crate::pushwoosh::{HttpAnswer, TransportError, Verdict, classify, request};
use crate::result_event::BatchInfo;

/// Why a job was not called.
pub(super) enum NotCalled {
    /// The worker is stopping: the job can safely go back to the queue.
    Stopping,
    /// The ledger decided instead of a call (or the batcher: its deadline passed).
    Gated(Gate),
    /// The job's deadline passed while it waited for its rate-limit slot.
    Expired,
}

/// What a call (alone or in a batch) decided for the job.
pub(super) struct Called {
    /// The job's own part of the call's answer.
    pub answered: Answered,
    pub batch: Option<BatchInfo>,
}

/// Waits for the rate limiter's slot, asks the ledger, then makes the call, alone or in
/// a batch, unless the worker is stopping and the job can safely go back to the queue.
/// Waiting for a slot is always safe to abandon, and a batched job abandoned before its
/// call is not sent; an SMS or WhatsApp call already under way is not: it might send.
pub(super) async fn call(
    ctx: &WorkerContext,
    job: &Job,
    token: &SecretString,
    owner: u64,
    deadline: &Deadline,
) -> Result<Called, NotCalled> {
    if ctx.hand_back.is_cancelled() {
        return Err(NotCalled::Stopping);
    }
    let shared_token = ctx.uses_default_token(job);
    // An urgent push joins its application's batch, which then leaves at once.
    if ctx.batcher.batchable(job).is_some() {
        let deadline = tokio::time::Instant::now() + deadline.remaining();
        return batched(ctx, job, token, shared_token, owner, deadline).await;
    }
    let body = request::body(&job.request, token);
    let method = job.kind.method();
    let account = Account::of_token(token);
    tokio::select! {
        biased;
        () = ctx.hand_back.cancelled() => return Err(NotCalled::Stopping),
        () = deadline.passes() => return Err(NotCalled::Expired),
        () = ctx.limiter.acquire(&account, method, ctx.lane.priority()) => {}
    }
    match once::gate(ctx, job, owner).await {
        Gate::Go => {}
        gate => return Err(NotCalled::Gated(gate)),
    }
    let started = Instant::now();
    let call = ctx.client.call(method, body);
    let answer = if matches!(job.kind, JobKind::Sms | JobKind::Whatsapp) {
        call.await
    } else {
        tokio::select! {
            answer = call => answer,
            // Abandoned before the answer: Pushwoosh de-duplicates the transactionId of
            // the job's next call, so its claim goes, and the next worker calls at once.
            () = ctx.hand_back.cancelled() => {
                once::abandoned(ctx, job, owner).await;
                return Err(NotCalled::Stopping);
            }
        }
    };
    let feedback = Feedback {
        metrics: &ctx.metrics,
        limiter: &ctx.limiter,
        account: &account,
        breaker: &ctx.breaker,
    };
    let answered = feedback
        .answered(method, started, &answer, shared_token)
        .await;
    once::answered(ctx, job, owner, &answered.verdict).await;
    Ok(Called {
        answered,
        batch: None,
    })
}

/// The call in the job's application's batch. A job whose id another processing is
/// sending right now waits for that call's answer, then is decided again.
async fn batched(
    ctx: &WorkerContext,
    job: &Job,
    token: &SecretString,
    shared_token: bool,
    owner: u64,
    deadline: tokio::time::Instant,
) -> Result<Called, NotCalled> {
    loop {
        let Some(batchable) = ctx.batcher.batchable(job) else {
            return Err(NotCalled::Stopping);
        };
        let batchable = batchable.with_priority(ctx.lane.priority());
        let batched = tokio::select! {
            batched = ctx.batcher.submit(batchable, token, shared_token, owner, Some(deadline)) => batched.ok_or(NotCalled::Stopping)?,
            () = ctx.hand_back.cancelled() => {
                // Its batch may be under way: the next worker calls again with the same
                // transactionIds rather than wait out this one's claim.
                once::abandoned(ctx, job, owner).await;
                return Err(NotCalled::Stopping);
            }
        };
        match batched {
            Ok(batched) => {
                return Ok(Called {
                    answered: batched.answered,
                    batch: Some(batched.batch),
                });
            }
            Err(Gate::Elsewhere) => {
                let waited = tokio::select! {
                    gate = once::gate(ctx, job, owner) => gate,
                    () = ctx.hand_back.cancelled() => return Err(NotCalled::Stopping),
                };
                match waited {
                    // Its own now: into a batch again (the claim is found as this
                    // processing's, within the transactionId's memory).
                    Gate::Go => {}
                    gate => return Err(NotCalled::Gated(gate)),
                }
            }
            Err(gate) => return Err(NotCalled::Gated(gate)),
        }
    }
}

/// Where a call's answer is fed back to: the metrics, the rate limiter, the breaker.
pub(super) struct Feedback<'a> {
    pub metrics: &'a Metrics,
    pub limiter: &'a CallLimiter,
    /// The account the call's token belongs to (whose budget a 429 slows down).
    pub account: &'a Account,
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

impl Feedback<'_> {
    /// Accounts for one call, whatever number of jobs it carried: its duration and
    /// status, a 429 to the rate limiter (which slows every caller), and what the answer
    /// says about Pushwoosh to the breaker. `shared_token`: the call used the default
    /// token (a refusal then stops every job).
    pub(super) async fn answered(
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
            self.limiter
                .throttled(self.account, method, a.retry_after)
                .await;
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
