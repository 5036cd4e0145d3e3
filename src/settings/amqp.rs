//! `[amqp]`: the broker, the names of the topology, and the bounds of what the worker
//! takes and publishes.

use std::path::PathBuf;
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
    /// Broker URL; `AMQP_URL` overrides it. Several URLs separated by commas are the
    /// nodes of one cluster (as `urls`).
    pub url: String,
    /// The nodes of one cluster: the worker connects to one that answers and moves to
    /// another when it fails. When set, `url` is not read.
    pub urls: Vec<String>,
    /// `amqps://` URLs: what to trust and how to present itself.
    pub tls: AmqpTlsSettings,
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
            urls: Vec::new(),
            tls: AmqpTlsSettings::default(),
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

/// `[amqp.tls]`, for `amqps://` URLs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpTlsSettings {
    /// PEM file of CA certificates to trust besides the system's roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), for a broker that asks for one; with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl AmqpSettings {
    pub fn ack_coalesce(&self) -> Duration {
        Duration::from_millis(self.ack_coalesce_ms)
    }

    /// The broker endpoints, in the order they are tried: `urls`, else `url` split at
    /// commas.
    pub fn endpoints(&self) -> Vec<String> {
        let urls: Vec<&str> = if self.urls.is_empty() {
            self.url.split(',').collect()
        } else {
            self.urls.iter().map(String::as_str).collect()
        };
        urls.into_iter()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The first endpoint, for what reaches one node only (the management API's host).
    pub fn first_endpoint(&self) -> String {
        self.endpoints().into_iter().next().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_urls_or_from_a_comma_separated_url() {
        let mut s = AmqpSettings {
            url: "amqp://a:5672, amqp://b:5672,,amqp://c:5672".into(),
            ..AmqpSettings::default()
        };
        assert_eq!(
            s.endpoints(),
            ["amqp://a:5672", "amqp://b:5672", "amqp://c:5672"]
        );
        s.urls = vec!["amqps://x:5671".into()];
        assert_eq!(s.endpoints(), ["amqps://x:5671"]);
        assert_eq!(AmqpSettings::default().endpoints().len(), 1);
    }
}
