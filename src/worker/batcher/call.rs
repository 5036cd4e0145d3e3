//! Sending one batch and splitting a rejected one: a 210 or HTTP 400 for several jobs is
//! sent again in halves until the bad jobs stand alone, so only they are rejected.

use std::sync::Arc;
use std::time::Instant;

use secrecy::SecretString;
use tracing::{debug, info};

use super::attribute::{answer_alike, answer_success};
use super::{Entry, METHOD, Shared};
use crate::job::JobKind;
use crate::ledger::Account;
use crate::ledger::Claim;
use crate::pushwoosh::{Priority, Verdict, request};
use crate::worker::once::{self, Gate};
use crate::worker::process::Feedback;

/// One call of a lane; its splits are clones.
#[derive(Clone)]
pub(super) struct Call {
    pub(super) shared: Arc<Shared>,
    pub(super) application: String,
    pub(super) token: SecretString,
    pub(super) account: Account,
    pub(super) shared_token: bool,
}

impl Call {
    /// Sends the entries in one call and answers each of them. `has_slot`: the lane already
    /// waited for this call's rate-limit slot.
    pub(super) async fn send(self, mut entries: Vec<Entry>, has_slot: bool) {
        // Jobs handed back to the queue meanwhile are not sent.
        entries.retain(|e| !e.reply.is_closed());
        if entries.is_empty() {
            return;
        }
        if !has_slot {
            let priority = if entries.iter().any(Entry::is_urgent) {
                Priority::Urgent
            } else {
                Priority::Bulk
            };
            self.shared.slot(&self.account, priority).await;
        }
        entries = on_time(entries);
        if entries.is_empty() {
            return;
        }
        entries = self.claimed(entries).await;
        if entries.is_empty() {
            return;
        }
        let notifications: usize = entries.iter().map(|e| e.count).sum();
        let body = request::batch_body(
            &self.token,
            &self.application,
            entries.iter().map(|e| &e.notifications[..]),
        );
        let started = Instant::now();
        let answer = self.shared.client.call(METHOD, body).await;
        let feedback = Feedback {
            metrics: &self.shared.metrics,
            limiter: &self.shared.limiter,
            account: &self.account,
            breaker: &self.shared.breaker,
        };
        let answered = feedback
            .answered(METHOD, started, &answer, self.shared_token)
            .await;
        self.shared.metrics.batch_jobs.observe(entries.len() as f64);
        debug!(
            application = %self.application,
            jobs = entries.len(),
            notifications,
            verdict = answered.verdict.label(),
            "batched call answered"
        );
        let replies = match answered.verdict {
            Verdict::Success {
                ref status_message,
                ref response,
            } => answer_success(entries, notifications, status_message, response, &answered),
            Verdict::Rejected { .. } if entries.len() > 1 => {
                self.shared.metrics.batch_splits.inc();
                info!(
                    application = %self.application,
                    jobs = entries.len(),
                    "batch rejected: split in halves to find the bad job"
                );
                let right = entries.split_off(entries.len() / 2);
                tokio::join!(
                    Box::pin(self.clone().send(entries, false)),
                    Box::pin(self.send(right, false)),
                );
                return;
            }
            _ => answer_alike(entries, notifications, &answered),
        };
        // The ledger hears the answers before the jobs do, so before their results.
        if let Some(ledger) = &self.shared.ledger {
            let answers: Vec<once::Answer> = replies
                .iter()
                .map(|(entry, batched)| once::Answer {
                    job_id: &entry.job_id,
                    kind: JobKind::Push,
                    owner: entry.owner,
                    verdict: &batched.answered.verdict,
                })
                .collect();
            once::answered_batch(ledger, &answers).await;
        }
        for (entry, batched) in replies {
            let _ = entry.reply.send(Ok(batched));
        }
    }

    /// Claims the entries' ids in the ledger, in one round trip: the entries that may be
    /// sent come back; every other one hears the ledger's word instead of a call.
    async fn claimed(&self, entries: Vec<Entry>) -> Vec<Entry> {
        let Some(ledger) = &self.shared.ledger else {
            return entries;
        };
        let claims: Vec<Claim> = entries
            .iter()
            .map(|e| once::claim_of(&e.job_id, e.owner))
            .collect();
        let gates: Vec<Gate> = match ledger.claim(&claims).await {
            Ok(outcomes) => outcomes
                .into_iter()
                .map(|outcome| {
                    once::decide(
                        ledger,
                        self.shared.call_timeout,
                        JobKind::Push,
                        true,
                        Some(outcome),
                    )
                })
                .collect(),
            Err(e) => entries
                .iter()
                .map(|_| once::unavailable(ledger, JobKind::Push, &e))
                .collect(),
        };
        entries
            .into_iter()
            .zip(gates)
            .filter_map(|(entry, gate)| match gate {
                Gate::Go => Some(entry),
                gate => {
                    let _ = entry.reply.send(Err(gate));
                    None
                }
            })
            .collect()
    }
}

/// The entries whose deadline has not passed; the others are answered
/// [`Gate::Expired`] and not sent.
fn on_time(entries: Vec<Entry>) -> Vec<Entry> {
    let now = tokio::time::Instant::now();
    let (late, on_time): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .partition(|e| e.deadline.is_some_and(|d| d <= now));
    for entry in late {
        let _ = entry.reply.send(Err(Gate::Expired));
    }
    on_time
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::pushwoosh::Verdict;
    use crate::worker::batcher::caller::fake::{Fake, codes, job, new_batcher, submit};

    #[tokio::test(start_paused = true)]
    async fn a_rejected_batch_is_split_until_only_the_bad_jobs_are_rejected() {
        let fake = Arc::new(Fake::default());
        let batcher = new_batcher(fake.clone(), 100, 10);
        let ids = ["a", "b", "c", "d", "e"];
        let handles: Vec<_> = ids
            .iter()
            .map(|id| submit(&batcher, job(id, &[id], *id == "d")))
            .collect();
        let mut answers = Vec::new();
        for handle in handles {
            answers.push(handle.await.unwrap());
        }
        for (id, answer) in ids.iter().zip(&answers) {
            if *id == "d" {
                assert!(
                    matches!(&answer.answered.verdict, Verdict::Rejected { status_code: 210, status_message, .. } if status_message == "Invalid content"),
                    "{answer:?}"
                );
                assert_eq!(answer.batch.jobs, 1);
            } else {
                assert_eq!(codes(answer), [format!("C-{id}")]);
            }
        }
        let calls = fake.calls();
        // [a b c d e] → [a b] ok, [c d e] → [c] ok, [d e] → [d] rejected, [e] ok
        assert_eq!(calls[0], ["a", "b", "c", "d", "e"]);
        assert_eq!(calls.len(), 7, "{calls:?}");
        let sent_ok: usize = calls
            .iter()
            .filter(|c| !c.contains(&"d".to_owned()))
            .map(Vec::len)
            .sum();
        assert_eq!(sent_ok, 4, "each good job sent exactly once: {calls:?}");
        assert_eq!(batcher.shared.metrics.batch_splits.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_given_up_before_its_call_is_not_sent() {
        let fake = Arc::new(Fake::default());
        let batcher = new_batcher(fake.clone(), 100, 20);
        let gone = submit(&batcher, job("gone", &["gone"], false));
        let kept = submit(&batcher, job("kept", &["kept"], false));
        tokio::time::sleep(Duration::from_millis(5)).await;
        gone.abort(); // what the worker does when it hands a job back while stopping
        assert_eq!(codes(&kept.await.unwrap()), ["C-kept"]);
        assert_eq!(fake.calls(), [vec!["kept"]]);
    }
}
