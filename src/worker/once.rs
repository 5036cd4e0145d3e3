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
}

/// One processing of a job, as the ledger knows it.
pub(super) fn claim_of(job: &Job, owner: u64) -> Claim<'_> {
    Claim {
        job_id: &job.id,
        owner,
        now_ms: Utc::now().timestamp_millis(),
    }
}

/// Claims the job's id (waiting for a call of another processing that is under way).
pub(super) async fn gate(ctx: &WorkerContext, job: &Job, owner: u64) -> Gate {
    let Some(ledger) = &ctx.ledger else {
        return Gate::Go;
    };
    loop {
        let outcome = match ledger.claim(&[claim_of(job, owner)]).await {
            Ok(mut outcomes) => outcomes.pop(),
            Err(e) => return unavailable(ledger, job.kind, &e),
        };
        match decide(ctx, job.kind, outcome) {
            Some(gate) => return gate,
            None => tokio::time::sleep(POLL).await,
        }
    }
}

/// The gate a claim's outcome opens, or `None` while another processing's call is
/// under way (look again shortly).
pub(super) fn decide(
    ctx: &WorkerContext,
    kind: JobKind,
    outcome: Option<ClaimOutcome>,
) -> Option<Gate> {
    let metrics = ctx.ledger.as_ref().map(Ledger::metrics);
    match outcome {
        None | Some(ClaimOutcome::Claimed) => Some(Gate::Go),
        Some(ClaimOutcome::Answered(recorded)) => {
            if let Some(m) = metrics {
                m.hit(kind);
                m.duplicate_refused(kind);
            }
            Some(Gate::Duplicate(recorded))
        }
        Some(ClaimOutcome::Sending { since_ms, by_self }) => {
            let age = Duration::from_millis(
                u64::try_from(Utc::now().timestamp_millis() - since_ms).unwrap_or(0),
            );
            if !by_self && age < ctx.settings.pushwoosh.timeout() + CALL_GRACE {
                return None;
            }
            if kind.has_transaction_id() && age < TRANSACTION_MEMORY {
                // Pushwoosh drops a repeat of the same transactionId.
                return Some(Gate::Go);
            }
            if let Some(m) = metrics {
                m.unknown_delivery(kind);
            }
            Some(Gate::Unknown)
        }
    }
}

fn unavailable(ledger: &Ledger, kind: JobKind, error: &LedgerError) -> Gate {
    match ledger.on_unavailable() {
        OnUnavailable::Hold => Gate::Hold(error.to_string()),
        OnUnavailable::Send => {
            warn!(error = %error, "the ledger is unavailable: sending without it (ledger.on_unavailable = send)");
            ledger.metrics().unrecorded(kind);
            Gate::Go
        }
    }
}

/// Tells the ledger what the call's answer means for the job: recorded when the message
/// may have gone out, released when it cannot have, left claimed when nobody can know.
pub(super) async fn answered(ctx: &WorkerContext, job: &Job, owner: u64, verdict: &Verdict) {
    let Some(ledger) = &ctx.ledger else {
        return;
    };
    let claim = claim_of(job, owner);
    let done = match record_of(job, verdict) {
        Remember::Record(answer) => {
            ledger
                .record(&[Record {
                    job_id: &job.id,
                    answer,
                }])
                .await
        }
        Remember::Release => ledger.release(&[claim]).await,
        Remember::Keep => Ok(()),
    };
    if let Err(e) = done {
        // A claim left behind makes a later publish of the id "delivery unknown": the
        // safe side.
        error!(error = %e, "could not tell the ledger the call's answer");
    }
}

/// What the ledger keeps of an answer.
pub(super) enum Remember {
    Record(Recorded),
    Release,
    Keep,
}

pub(super) fn record_of(job: &Job, verdict: &Verdict) -> Remember {
    match verdict {
        Verdict::Success { response, .. } => Remember::Record(Recorded {
            outcome: Outcome::Ok,
            status_code: Some(200),
            message_codes: message_codes(job.kind, response),
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
