//! Once per job id: before a call the job's id is claimed in the ledger (Redis, shared
//! by every replica), and as soon as Pushwoosh answers the answer is recorded, or the
//! claim released when nothing can have been sent. A job whose id already went out is
//! not sent again, whether a producer published it twice, the broker redelivered it
//! after a crash, or two replicas hold a copy each.

use std::time::Duration;

use chrono::Utc;
use tracing::{error, warn};

use super::context::WorkerContext;
use crate::job::{Job, JobKind};
use crate::ledger::{Claim, ClaimOutcome, Ledger, LedgerError, Record, Recorded};
use crate::pushwoosh::Verdict;
use crate::result_event::{Outcome, message_codes};
use crate::settings::OnUnavailable;

/// How long Pushwoosh remembers a transactionId, with a margin: within it, a push whose
/// earlier call may have gone out is called again with the same transactionId.
const TRANSACTION_MEMORY: Duration = Duration::from_secs(240);
/// Beyond the HTTP time-out, how long a claim of another processing counts as a call
/// still under way (its answer is waited for) rather than one whose worker died.
const CALL_GRACE: Duration = Duration::from_secs(5);
/// How often a claim under way elsewhere is looked at again.
const POLL: Duration = Duration::from_millis(100);

/// What the ledger says of a job about to be called.
#[derive(Debug)]
pub(super) enum Gate {
    /// Call Pushwoosh.
    Go,
    /// The id went out within the window: the result repeats the first answer.
    Duplicate(Recorded),
    /// An earlier processing's call may have reached Pushwoosh, and its answer was never
    /// recorded: not called again.
    Unknown,
    /// Redis cannot be reached and `ledger.on_unavailable` is `hold`: not called now.
    Hold(String),
    /// Another processing's call for the id is under way: look again shortly.
    Elsewhere,
    /// The job's deadline passed while it waited for its batch's call: not sent (the
    /// batcher's word, not the ledger's).
    Expired,
}

/// One processing of a job, as the ledger knows it.
pub(super) fn claim_of(job_id: &str, owner: u64) -> Claim<'_> {
    Claim {
        job_id,
        owner,
        now_ms: Utc::now().timestamp_millis(),
    }
}

/// Claims the job's id, waiting out a call of another processing that is under way.
pub(super) async fn gate(ctx: &WorkerContext, job: &Job, owner: u64) -> Gate {
    let Some(ledger) = &ctx.ledger else {
        return Gate::Go;
    };
    let call_timeout = ctx.settings.pushwoosh.timeout();
    loop {
        let outcome = match ledger.claim(&[claim_of(&job.id, owner)]).await {
            Ok(mut outcomes) => outcomes.pop(),
            Err(e) => return unavailable(ledger, job.kind, &e),
        };
        let may_resend = ctx.may_resend_unknown(job.kind);
        match decide(ledger, call_timeout, job.kind, may_resend, outcome) {
            Gate::Elsewhere => tokio::time::sleep(POLL).await,
            gate => return gate,
        }
    }
}

/// The gate a claim's outcome opens. `may_resend`: a call of this kind that may have
/// reached Pushwoosh may be made again (a transactionId, or `retry.resend_unknown_*`).
pub(super) fn decide(
    ledger: &Ledger,
    call_timeout: Duration,
    kind: JobKind,
    may_resend: bool,
    outcome: Option<ClaimOutcome>,
) -> Gate {
    let metrics = ledger.metrics();
    match outcome {
        None | Some(ClaimOutcome::Claimed) => Gate::Go,
        Some(ClaimOutcome::Answered(recorded)) => {
            metrics.hit(kind);
            metrics.duplicate_refused(kind);
            Gate::Duplicate(recorded)
        }
        Some(ClaimOutcome::Sending { since_ms, by_self }) => {
            let age = Duration::from_millis(
                u64::try_from(Utc::now().timestamp_millis() - since_ms).unwrap_or(0),
            );
            // Another processing's call may be under way; so may this same processing's,
            // when the broker holds two copies of one parked retry (given back, and the
            // ack lost): its answer is waited for, unless calling again is harmless.
            if (!by_self || !may_resend) && age < call_timeout + CALL_GRACE {
                return Gate::Elsewhere;
            }
            if kind.has_transaction_id() && age < TRANSACTION_MEMORY {
                // Pushwoosh drops a repeat of the same transactionId.
                return Gate::Go;
            }
            if may_resend && !kind.has_transaction_id() {
                // `retry.resend_unknown_*`: sent again, as configured.
                return Gate::Go;
            }
            metrics.unknown_delivery(kind);
            Gate::Unknown
        }
    }
}

/// The gate when Redis cannot be reached.
pub(super) fn unavailable(ledger: &Ledger, kind: JobKind, error: &LedgerError) -> Gate {
    match ledger.on_unavailable() {
        OnUnavailable::Hold => Gate::Hold(error.to_string()),
        OnUnavailable::Send => {
            warn!(error = %error, "the ledger is unavailable: sending without it (ledger.on_unavailable = send)");
            ledger.metrics().unrecorded(kind);
            Gate::Go
        }
    }
}

/// One job's answer, for the ledger.
pub(super) struct Answer<'a> {
    pub job_id: &'a str,
    pub kind: JobKind,
    pub owner: u64,
    pub verdict: &'a Verdict,
}

/// What the answers of a call (one job's, or a batch's) mean for its jobs, told to the
/// ledger in one round trip for the records and one for the releases.
pub(super) async fn answered_batch(ledger: &Ledger, answers: &[Answer<'_>]) {
    let mut records = Vec::new();
    let mut releases = Vec::new();
    for answer in answers {
        match record_of(answer.kind, answer.verdict) {
            Remember::Record(recorded) => records.push(Record {
                job_id: answer.job_id,
                answer: recorded,
            }),
            Remember::Release => releases.push(claim_of(answer.job_id, answer.owner)),
            Remember::Keep => {}
        }
    }
    let (recorded, released) = tokio::join!(
        async {
            if records.is_empty() {
                Ok(())
            } else {
                ledger.record(&records).await
            }
        },
        async {
            if releases.is_empty() {
                Ok(())
            } else {
                ledger.release(&releases).await
            }
        }
    );
    if let Err(e) = recorded.and(released) {
        // A claim left behind makes a later publish of the id "delivery unknown": the
        // safe side.
        error!(error = %e, "could not tell the ledger the call's answers");
    }
}

/// Tells the ledger what the call's answer means for the job: recorded when the message
/// may have gone out, released when it cannot have, left claimed when nobody can know.
pub(super) async fn answered(ctx: &WorkerContext, job: &Job, owner: u64, verdict: &Verdict) {
    if let Some(ledger) = &ctx.ledger {
        let answer = Answer {
            job_id: &job.id,
            kind: job.kind,
            owner,
            verdict,
        };
        answered_batch(ledger, &[answer]).await;
    }
}

/// A push or targeted call abandoned by a stopping worker: its claim is released, since
/// the job's next call carries the same transactionId (Pushwoosh drops a repeat).
pub(super) async fn abandoned(ctx: &WorkerContext, job: &Job, owner: u64) {
    if let Some(ledger) = &ctx.ledger
        && job.kind.has_transaction_id()
        && let Err(e) = ledger.release(&[claim_of(&job.id, owner)]).await
    {
        warn!(error = %e, "could not release the claim of an abandoned call");
    }
}

/// What the ledger keeps of an answer.
pub(super) enum Remember {
    Record(Recorded),
    Release,
    Keep,
}

pub(super) fn record_of(kind: JobKind, verdict: &Verdict) -> Remember {
    match verdict {
        Verdict::Success { response, .. } => Remember::Record(Recorded {
            outcome: Outcome::Ok,
            status_code: Some(200),
            message_codes: message_codes(kind, response),
        }),
        // Refused by Pushwoosh, or not taken (429, 500, 503, refused connection): nothing
        // went out, and a later publish of the id is sent.
        Verdict::Rejected { .. }
        | Verdict::Failed { .. }
        | Verdict::Transient {
            may_have_reached: false,
            ..
        } => Remember::Release,
        Verdict::Transient {
            may_have_reached: true,
            ..
        } => Remember::Keep,
    }
}
