//! The worker's Prometheus metrics, all named `pushwoosh_worker_*`, in a registry owned by
//! the application (no global state, so tests can run several workers in one process).
//!
//! The label sets known in advance (jobs by kind and outcome, dead letters by reason,
//! breaker transitions) start at 0, so that `rate()` and `increase()` see their first
//! increment: a series born at 1 looks like no change.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::broker::DeadReason;
use crate::job::JobKind;
use crate::pushwoosh::{HttpAnswer, TransportError};
use crate::worker::acks::HandBack;

mod lanes;
mod ledger;
pub use lanes::{LaneLabels, LaneMetrics};
pub use ledger::{KindLabels, LEDGER_OPERATIONS, LedgerMetrics, OperationLabels, RedisErrorLabels};

const OUTCOMES: [&str; 3] = ["ok", "rejected", "failed"];
const BREAKER_STATES: [&str; 3] = ["open", "half_open", "closed"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub method: &'static str,
    /// `200`, `210`, `http_500`, `timeout`, `connect`, …
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub kind: &'static str,
    /// See [`retry_reason`].
    pub reason: String,
}

/// The `reason` of a retry: the status that caused it (`500`, `503`, `429`, …: HTTP's, or
/// Pushwoosh's inside an HTTP 200), else what went wrong instead of an answer: `timeout`,
/// `connect` (refused, DNS, TLS), `transport` (connection lost mid-call) or `unreadable`
/// (an HTTP 200 that is not a Pushwoosh answer).
pub fn retry_reason(
    answer: &Result<HttpAnswer, TransportError>,
    status_code: Option<i64>,
) -> String {
    match (status_code, answer) {
        (Some(code), _) => code.to_string(),
        (None, Err(e)) => e.label().to_owned(),
        (None, Ok(_)) => "unreadable".to_owned(),
    }
}

/// The `reason` a transient verdict would be retried for; `None` for other verdicts.
pub fn transient_reason(
    answer: &Result<HttpAnswer, TransportError>,
    verdict: &crate::pushwoosh::Verdict,
) -> Option<String> {
    match verdict {
        crate::pushwoosh::Verdict::Transient { status_code, .. } => {
            Some(retry_reason(answer, *status_code))
        }
        _ => None,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SettleLabels {
    /// `ack` (one delivery), `ack_multiple` (every delivery up to one), `requeue` (a job
    /// handed back to the queue), `reject` (a job dead-lettered by the broker, the last
    /// resort when none of its results could be published).
    pub command: &'static str,
}

/// Every `command` of `settle_commands_total`.
pub const SETTLE_COMMANDS: [&str; 4] = ["ack", "ack_multiple", "requeue", "reject"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// `publish` or `consume`.
    pub channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// `open`, `half_open`, `closed`.
    pub to: &'static str,
}

type HistogramFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub jobs: Family<JobLabels, Counter>,
    pub api_calls: Family<CallLabels, Counter>,
    pub api_call_duration: HistogramFamily,
    pub retries: Family<RetryLabels, Counter>,
    pub dead_letters: Family<ReasonLabels, Counter>,
    pub jobs_in_flight: Gauge,
    /// Parked retries this worker holds from the retry queues until they are due.
    pub retries_held: Gauge,
    pub runtime_worker_threads: Gauge,
    pub broker_connected: Gauge,
    pub consuming: Gauge,
    pub breaker_open: Gauge,
    pub breaker_transitions: Family<TransitionLabels, Counter>,
    pub breaker_held_jobs: Counter,
    pub rate_limit_wait: HistogramFamily,
    pub rate_limit_throttled: Family<MethodLabels, Counter>,
    pub rate_limit_slowdown: Family<MethodLabels, Gauge>,
    pub batch_jobs: Histogram,
    pub batch_splits: Counter,
    pub settle_commands: Family<SettleLabels, Counter>,
    pub job_duration: Histogram,
    pub result_publish: Histogram,
    pub hand_backs: Family<ReasonLabels, Counter>,
    pub publisher_available: Gauge,
    pub channel_reopens: Family<ChannelLabels, Counter>,
    pub results_refused: Counter,
    pub ledger: LedgerMetrics,
    pub lanes: LaneMetrics,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn wait_histogram() -> Histogram {
    // 5 ms to ~2.7 min: a job may wait for its method's slot for a long time.
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pushwoosh_worker");
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register("jobs", "Jobs finished, by kind and outcome", jobs.clone());
        let api_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "api_calls",
            "Pushwoosh API calls, by method and answer",
            api_calls.clone(),
        );
        let api_call_duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "api_call_duration_seconds",
            "Pushwoosh API call latency, by method",
            api_call_duration.clone(),
        );
        let retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "retries",
            "Jobs scheduled for another call, by kind and reason",
            retries.clone(),
        );
        let dead_letters = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "dead_letters",
            "Jobs sent to the dead-letter queue, by reason",
            dead_letters.clone(),
        );
        let jobs_in_flight = Gauge::default();
        registry.register(
            "jobs_in_flight",
            "Jobs taken off the queue and not yet settled",
            jobs_in_flight.clone(),
        );
        let retries_held = Gauge::default();
        registry.register(
            "retries_held",
            "Parked retries taken from the retry queues and held until they are due",
            retries_held.clone(),
        );
        let runtime_worker_threads = Gauge::default();
        registry.register(
            "runtime_worker_threads",
            "Threads running the worker's tasks (runtime.worker_threads)",
            runtime_worker_threads.clone(),
        );
        let broker_connected = Gauge::default();
        registry.register(
            "broker_connected",
            "1 while connected to RabbitMQ",
            broker_connected.clone(),
        );
        let consuming = Gauge::default();
        registry.register(
            "consuming",
            "1 while consuming the jobs queue",
            consuming.clone(),
        );
        let breaker_open = Gauge::default();
        registry.register(
            "breaker_open",
            "1 while the circuit breaker is open or half-open (Pushwoosh failing)",
            breaker_open.clone(),
        );
        let breaker_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "breaker_transitions",
            "Circuit breaker state changes, by the state entered",
            breaker_transitions.clone(),
        );
        let breaker_held_jobs = Counter::default();
        registry.register(
            "breaker_held_jobs",
            "Jobs parked by the open circuit breaker without using their attempts",
            breaker_held_jobs.clone(),
        );
        let rate_limit_wait: HistogramFamily = Family::new_with_constructor(wait_histogram);
        registry.register(
            "rate_limit_wait_seconds",
            "Time calls waited for a slot of the client-side rate limiter, by method",
            rate_limit_wait.clone(),
        );
        let rate_limit_throttled = Family::<MethodLabels, Counter>::default();
        registry.register(
            "rate_limit_throttled",
            "HTTP 429 answers seen, by method",
            rate_limit_throttled.clone(),
        );
        let rate_limit_slowdown = Family::<MethodLabels, Gauge>::default();
        registry.register(
            "rate_limit_slowdown",
            "How many times slower than configured the rate limiter runs a method after 429s (1 = the configured rate)",
            rate_limit_slowdown.clone(),
        );
        // 1 to 512 jobs per call.
        let batch_jobs = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "batch_jobs",
            "Push jobs carried by one batched createMessage call",
            batch_jobs.clone(),
        );
        let batch_splits = Counter::default();
        registry.register(
            "batch_splits",
            "Batched calls rejected with 210 and split in halves to find the bad job",
            batch_splits.clone(),
        );
        let settle_commands = Family::<SettleLabels, Counter>::default();
        registry.register(
            "settle_commands",
            "Commands sent to the broker to settle job deliveries, by command (requeue: a job handed back to the queue)",
            settle_commands.clone(),
        );
        let job_duration = latency_histogram();
        registry.register(
            "job_duration_seconds",
            "Time from a job's delivery to its settlement (decode, calls, result, retry parking), per delivery",
            job_duration.clone(),
        );
        let result_publish = latency_histogram();
        registry.register(
            "result_publish_seconds",
            "Time from publishing a result event to the broker's confirm",
            result_publish.clone(),
        );
        let hand_backs = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "hand_backs",
            "Jobs handed back to the queue unfinished, by reason (stopping, cannot_publish, unsettled)",
            hand_backs.clone(),
        );
        let publisher_available = Gauge::default();
        registry.register(
            "publisher_available",
            "1 while the worker has a channel to publish results on; 0 while it cannot publish (it then takes no jobs)",
            publisher_available.clone(),
        );
        let channel_reopens = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "channel_reopens",
            "Channels the broker closed under the worker and that it opened again on the same connection, by channel",
            channel_reopens.clone(),
        );
        let results_refused = Counter::default();
        registry.register(
            "results_refused",
            "Result events the broker refused as they were (too large for it, nacked); the job got a shortened result instead",
            results_refused.clone(),
        );
        let ledger = LedgerMetrics::register(&mut registry);
        let lanes = LaneMetrics::register(&mut registry);
        for reason in HandBack::ALL {
            let _ = hand_backs.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        for channel in ["publish", "consume"] {
            let _ = channel_reopens.get_or_create(&ChannelLabels { channel });
        }
        for command in SETTLE_COMMANDS {
            let _ = settle_commands.get_or_create(&SettleLabels { command });
        }
        for kind in JobKind::ALL.map(JobKind::as_str) {
            for outcome in OUTCOMES {
                let _ = jobs.get_or_create(&JobLabels { kind, outcome });
            }
        }
        // A body without a kind the worker knows is rejected, or failed as poison.
        for outcome in ["rejected", "failed"] {
            let _ = jobs.get_or_create(&JobLabels {
                kind: "unknown",
                outcome,
            });
        }
        for reason in DeadReason::ALL {
            let _ = dead_letters.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        for to in BREAKER_STATES {
            let _ = breaker_transitions.get_or_create(&TransitionLabels { to });
        }
        Self {
            registry,
            jobs,
            api_calls,
            api_call_duration,
            retries,
            dead_letters,
            jobs_in_flight,
            retries_held,
            runtime_worker_threads,
            broker_connected,
            consuming,
            breaker_open,
            breaker_transitions,
            breaker_held_jobs,
            rate_limit_wait,
            rate_limit_throttled,
            rate_limit_slowdown,
            batch_jobs,
            batch_splits,
            settle_commands,
            job_duration,
            result_publish,
            hand_backs,
            publisher_available,
            channel_reopens,
            results_refused,
            ledger,
            lanes,
        }
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
