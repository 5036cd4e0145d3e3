//! `[amqp]`: the broker, the names of the topology, and the bounds of what the worker
//! takes and publishes.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Quorum,
    Classic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    /// Broker URL; `AMQP_URL` overrides it.
    pub url: String,
    /// Jobs in flight per worker process (the consumer's prefetch).
    pub prefetch: u16,
    pub jobs_exchange: String,
    pub jobs_queue: String,
    pub queue_type: QueueType,
    pub results_exchange: String,
    pub dead_letter_queue: String,
    /// Retry queues are named `<prefix>.<delay>ms`, one per backoff tier.
    pub retry_queue_prefix: String,
    /// How long `run` keeps trying to reach the broker at start before it gives up.
    pub startup_timeout_ms: u64,
    /// Quorum queues: a job delivered this many times without being settled (its worker
    /// crashed or hung each time) is a poison job: it fails, with a result, instead of
    /// looping forever.
    pub delivery_limit: u32,
    /// How long a finished job's ack may wait for the jobs delivered before it, so that
    /// one multiple ack settles them all; 0 acks every job on its own.
    pub ack_coalesce_ms: u64,
    /// A job body larger than this is rejected without being decoded, and dead-lettered.
    pub max_job_bytes: usize,
    /// A result event larger than this goes out without Pushwoosh's `response`
    /// (`"truncated": ["response"]`); keep it well under the broker's `max_message_size`.
    pub max_result_bytes: usize,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefetch: 64,
            jobs_exchange: "pushwoosh.jobs".into(),
            jobs_queue: "pushwoosh.jobs".into(),
            queue_type: QueueType::Quorum,
            results_exchange: "pushwoosh.results".into(),
            dead_letter_queue: "pushwoosh.dead".into(),
            retry_queue_prefix: "pushwoosh.retry".into(),
            startup_timeout_ms: 30_000,
            delivery_limit: 10,
            ack_coalesce_ms: 5,
            max_job_bytes: 4 * 1024 * 1024,
            max_result_bytes: 4 * 1024 * 1024,
        }
    }
}

impl AmqpSettings {
    pub fn ack_coalesce(&self) -> Duration {
        Duration::from_millis(self.ack_coalesce_ms)
    }
}
