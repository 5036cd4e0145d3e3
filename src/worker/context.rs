//! What every job's task shares: the client, the publisher, the policies, the metrics,
//! and the signals of a stopping worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::acks::Acks;
use super::batcher::Batcher;
use super::breaker::CircuitBreaker;
use super::lane::Lane;
use crate::broker::Publisher;
use crate::job::{Job, JobKind};
use crate::ledger::CallLimiter;
use crate::metrics::{LaneLabels, Metrics};
use crate::pushwoosh::PushwooshClient;
use crate::retry::{RetryDecision, RetryPolicy};
use crate::settings::Settings;
use crate::validate::JobReport;

pub struct WorkerContext {
    pub settings: Arc<Settings>,
    pub client: PushwooshClient,
    pub publisher: Publisher,
    pub retry: RetryPolicy,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the shutdown grace period is over: jobs that have not been sent
    /// yet go back to the queue instead of being started.
    pub hand_back: CancellationToken,
    pub breaker: Arc<CircuitBreaker>,
    /// Calls per minute per method, shared by every job of the process.
    pub limiter: Arc<CallLimiter>,
    pub batcher: Arc<Batcher>,
    /// Settles the consume channel's deliveries, several at a time where it can.
    pub acks: Acks,
    /// Which job ids went out (Redis), when `ledger.enabled`.
    pub ledger: Option<crate::ledger::Ledger>,
    /// The lane this context's deliveries come from.
    pub lane: Lane,
}

impl WorkerContext {
    /// The metrics' labels of this context's lane.
    pub fn lane_labels(&self) -> LaneLabels {
        LaneLabels {
            lane: self.lane.label(),
        }
    }

    pub fn validate(&self, job: &Job) -> JobReport {
        crate::validate::check_job(job, self.settings.validation.unknown_params)
    }

    /// Whether a call that may have reached Pushwoosh may be made again for this kind.
    pub fn may_resend_unknown(&self, kind: JobKind) -> bool {
        match kind {
            JobKind::Sms => self.settings.retry.resend_unknown_sms,
            JobKind::Whatsapp => self.settings.retry.resend_unknown_whatsapp,
            // pushes carry a transactionId; the others change nothing or nothing twice.
            _ => true,
        }
    }

    /// A call that `may_have_reached` Pushwoosh, for a kind that must then not be called
    /// again: its delivery is unknown.
    pub fn must_not_repeat(&self, kind: JobKind, may_have_reached: bool) -> bool {
        may_have_reached && !self.may_resend_unknown(kind)
    }

    /// The job's calls use the default token (no token of its application's own): a
    /// refusal of that token then stops every job, not just this application's.
    pub fn uses_default_token(&self, job: &Job) -> bool {
        !self
            .settings
            .pushwoosh
            .has_application_token(job.application())
    }

    pub fn retry_decision(
        &self,
        attempts: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
    ) -> RetryDecision {
        let mut rng = fastrand::Rng::new();
        self.retry.decide(attempts, elapsed, retry_after, &mut rng)
    }
}

/// What `/readyz` reports: connected to the broker and consuming, able to publish
/// results, circuit breaker closed.
#[derive(Debug, Default)]
pub struct Readiness {
    consuming: AtomicBool,
    breaker_open: AtomicBool,
    /// Set while no result can be published (the publish channel is down).
    cannot_publish: AtomicBool,
    /// Set while the ledger cannot be reached and holds jobs.
    ledger_down: AtomicBool,
    /// The broker node last connected to, password masked.
    broker: std::sync::Mutex<String>,
}

impl Readiness {
    pub fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::SeqCst);
    }

    /// Open or half-open: Pushwoosh is failing.
    pub fn set_breaker_open(&self, open: bool) {
        self.breaker_open.store(open, Ordering::SeqCst);
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker_open.load(Ordering::SeqCst)
    }

    pub fn set_publishing(&self, publishing: bool) {
        self.cannot_publish.store(!publishing, Ordering::SeqCst);
    }

    /// No result can be published: the worker takes no jobs.
    pub fn cannot_publish(&self) -> bool {
        self.cannot_publish.load(Ordering::SeqCst)
    }

    pub fn set_ledger_down(&self, down: bool) {
        self.ledger_down.store(down, Ordering::SeqCst);
    }

    /// The ledger's Redis does not answer and the worker holds jobs until it does.
    pub fn ledger_down(&self) -> bool {
        self.ledger_down.load(Ordering::SeqCst)
    }

    pub fn set_broker(&self, endpoint: &str) {
        endpoint.clone_into(
            &mut self
                .broker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }

    /// The broker node last connected to, password masked ("" before the first).
    pub fn broker(&self) -> String {
        self.broker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn is_ready(&self) -> bool {
        self.consuming.load(Ordering::SeqCst)
            && !self.breaker_open()
            && !self.cannot_publish()
            && !self.ledger_down()
    }
}
