//! Batching: push jobs for one application that are ready at the same moment share one
//! `createMessage` call, so Pushwoosh's per-minute call budget carries many pushes.
//!
//! Each application has a lane: a task that gathers the jobs submitted to it (up to
//! `batch.max_size` notifications, waiting `batch.linger_ms` for company, waiting up to
//! `batch.busy_linger_ms` more while the application's calls under way already cover a
//! call's latency, and filling further while the call waits for a rate-limit slot), then
//! sends them in one call and answers every job with its own verdict:
//!
//! - success: each job gets its own message codes, by position. If the answer does not
//!   carry exactly one code per notification, no job gets codes: the worker does not
//!   guess, and each result says so (`batch.codes_mapped: false`);
//! - 210 or HTTP 400 for a batch of several jobs: split in halves and sent again, until
//!   the bad job(s) stand alone; only they are rejected. Nothing was sent by the rejected
//!   call, and every notification keeps its transactionId, so this is safe;
//! - anything else (5xx, time-out, 429, refused token): every job gets the same verdict
//!   and goes its own way (retry budget, parking, dead letter) in `process`.
//!
//! A job whose task gave up waiting (the worker is stopping and handed it back to the
//! queue) is dropped from its batch before the call: it is not sent.
//!
//! This file is the way in (`Batcher`); `lane` gathers a batch, `call` sends it and splits
//! a rejected one, `attribute` hands each job its share of the answer, `caller` is where
//! tests put a fake Pushwoosh. The batched body itself is built in `pushwoosh::request`,
//! beside a single job's.

mod attribute;
mod call;
mod caller;
mod lane;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use secrecy::SecretString;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::breaker::CircuitBreaker;
use super::once::Gate;
use super::process::Answered;
use crate::job::{Job, JobKind};
use crate::ledger::Ledger;
use crate::ledger::{Account, CallLimiter};
use crate::metrics::Metrics;
use crate::pushwoosh::{Priority, request};
use crate::result_event::BatchInfo;
use crate::settings::BatchSettings;

pub use caller::Caller;
use lane::{Lane, Receivers};

const METHOD: &str = "createMessage";

/// What a batched job learns from its call.
#[derive(Debug, Clone)]
pub struct Batched {
    /// The call's answer, this job's own: for a success, a `response` holding only its codes.
    pub answered: Answered,
    pub batch: BatchInfo,
}

/// A push job ready for a batch: its notifications, serialized once.
pub struct Batchable {
    job_id: String,
    application: String,
    /// The notification objects, comma-separated, without the enclosing brackets.
    notifications: Bytes,
    count: usize,
    priority: Priority,
}

impl Batchable {
    /// An urgent job's: its batch leaves at once, on an urgent slot.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

/// A job in a lane: its part of the body, and where its verdict goes (or the ledger's
/// word instead of a call).
struct Entry {
    job_id: String,
    /// The job's processing, for the ledger.
    owner: u64,
    notifications: Bytes,
    count: usize,
    /// Not sent after this: answered [`Gate::Expired`] instead.
    deadline: Option<tokio::time::Instant>,
    /// An urgent job's batch leaves now, on an urgent slot.
    priority: Priority,
    reply: oneshot::Sender<Result<Batched, Gate>>,
}

impl Entry {
    fn is_urgent(&self) -> bool {
        self.priority == Priority::Urgent
    }
}

/// What every lane shares.
struct Shared {
    settings: BatchSettings,
    client: Arc<dyn Caller>,
    limiter: Arc<CallLimiter>,
    metrics: Arc<Metrics>,
    breaker: Arc<CircuitBreaker>,
    /// Which job ids went out, when `ledger.enabled`.
    ledger: Option<Ledger>,
    /// One HTTP call's time-out (how long another replica's claim may be a call under way).
    call_timeout: Duration,
}

impl Shared {
    /// Waits for a slot in `account`'s createMessage rate limit.
    async fn slot(&self, account: &Account, priority: Priority) {
        self.limiter.acquire(account, METHOD, priority).await;
    }
}

type Lanes = Mutex<HashMap<String, LaneSender>>;

/// Where a lane's jobs are submitted: urgent ones apart, so that they are read first.
struct LaneSender {
    bulk: mpsc::UnboundedSender<Entry>,
    urgent: mpsc::UnboundedSender<Entry>,
}

impl LaneSender {
    /// Gives the entry back when the lane has ended.
    fn send(&self, entry: Entry) -> Result<(), Entry> {
        let tx = if entry.is_urgent() {
            &self.urgent
        } else {
            &self.bulk
        };
        tx.send(entry)
            .map_err(|mpsc::error::SendError(entry)| entry)
    }
}

pub struct Batcher {
    shared: Arc<Shared>,
    lanes: Arc<Lanes>,
}

impl Batcher {
    pub fn new(
        settings: &BatchSettings,
        client: Arc<dyn Caller>,
        limiter: Arc<CallLimiter>,
        metrics: Arc<Metrics>,
        breaker: Arc<CircuitBreaker>,
        ledger: Option<Ledger>,
        call_timeout: Duration,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                settings: settings.clone(),
                client,
                limiter,
                metrics,
                breaker,
                ledger,
                call_timeout,
            }),
            lanes: Arc::default(),
        }
    }

    /// The job's notifications, when the job can share a call: batching is on, it is a
    /// push whose request is only `application` and `notifications`, and it fits a batch.
    /// Call it after the transactionIds were added.
    pub fn batchable(&self, job: &Job) -> Option<Batchable> {
        if !self.shared.settings.enabled || job.kind != JobKind::Push {
            return None;
        }
        batchable(&job.request, self.shared.settings.max_size).map(|mut b| {
            b.job_id.clone_from(&job.id);
            b
        })
    }

    /// Hands the job to its application's lane; resolves with its verdict (or the
    /// ledger's word instead of a call), or `None` if the worker is going away.
    /// `shared_token`: the token is the default one (for the breaker: a refused shared
    /// token stops every job). `owner`: the job's processing, for the ledger. A job whose
    /// `deadline` passes before its batch's call is not sent. An urgent job
    /// ([`Batchable::with_priority`]) never lingers: its batch leaves at once, on an urgent slot, with whatever of its
    /// application's jobs are ready.
    pub(super) async fn submit(
        &self,
        job: Batchable,
        token: &SecretString,
        shared_token: bool,
        owner: u64,
        deadline: Option<tokio::time::Instant>,
    ) -> Option<Result<Batched, Gate>> {
        let (reply, answer) = oneshot::channel();
        let entry = Entry {
            job_id: job.job_id,
            owner,
            notifications: job.notifications,
            count: job.count,
            deadline,
            priority: job.priority,
            reply,
        };
        {
            // Never held across an await.
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            let entry = match lanes.get(&job.application) {
                Some(lane) => lane.send(entry).err(),
                None => Some(entry),
            };
            if let Some(entry) = entry {
                let (bulk, bulk_rx) = mpsc::unbounded_channel();
                let (urgent, urgent_rx) = mpsc::unbounded_channel();
                let sender = LaneSender { bulk, urgent };
                // Fresh channels' receivers are alive: this send cannot fail.
                let _ = sender.send(entry);
                lanes.insert(job.application.clone(), sender);
                let lane = Lane::new(
                    self.shared.clone(),
                    Arc::downgrade(&self.lanes),
                    job.application,
                    token.clone(),
                    shared_token,
                    Receivers {
                        bulk: bulk_rx,
                        urgent: urgent_rx,
                    },
                );
                tokio::spawn(lane.run());
            }
        }
        answer.await.ok()
    }
}

fn batchable(request: &Map<String, Value>, max_size: usize) -> Option<Batchable> {
    if request.len() != 2 {
        return None;
    }
    let application = request.get("application")?.as_str()?;
    let notifications = request.get("notifications")?.as_array()?;
    let count = notifications.len();
    if count == 0 || count > max_size || !notifications.iter().all(Value::is_object) {
        return None;
    }
    Some(Batchable {
        job_id: String::new(),
        application: application.to_owned(),
        notifications: request::batch_notifications(notifications)?,
        count,
        priority: Priority::Bulk,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::caller::fake::{Fake, job, new_batcher, with_settings};
    use crate::job::decode;
    use crate::settings::BatchSettings;

    #[test]
    fn only_plain_push_requests_are_batched() {
        let fake = Arc::new(Fake::default());
        let batcher = new_batcher(fake, 2, 0);
        assert!(batcher.batchable(&job("a", &["1", "2"], false)).is_some());
        assert!(
            batcher
                .batchable(&job("a", &["1", "2", "3"], false))
                .is_none()
        );
        let sms = decode(
            br#"{"id":"s","kind":"sms","application":"APP","notifications":[{"content":"x"}]}"#,
            None,
        )
        .unwrap();
        assert!(batcher.batchable(&sms).is_none());
        let grouped = decode(
            br#"{"id":"g","kind":"push","application":"APP","applications_group":"G","notifications":[{"content":"x"}]}"#,
            None,
        )
        .unwrap();
        assert!(batcher.batchable(&grouped).is_none());
        let off = with_settings(
            Arc::new(Fake::default()),
            BatchSettings {
                enabled: false,
                ..BatchSettings::default()
            },
        );
        assert!(off.batchable(&job("a", &["1"], false)).is_none());
    }
}
