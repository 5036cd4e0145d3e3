//! Publishing with publisher confirms: result events, dead letters and parked retries.
//! Every method returns only once the broker has confirmed, so the caller may then ack
//! the job it came from. The channel under it heals itself: see [`super::confirm_channel`].

use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use tokio::sync::watch;
use tracing::warn;

use super::DeadReason;
pub use super::confirm_channel::{HealingChannel, PublishError};
use super::topology::Topology;
use crate::result_event::ResultEvent;
use crate::trace_context::{TRACEPARENT, TRACESTATE};

/// Headers the worker reads and writes on jobs and dead letters.
pub mod headers {
    /// Calls made to Pushwoosh so far (on a parked retry).
    pub const ATTEMPTS: &str = "x-pushwoosh-attempts";
    /// When the worker first received the job, ms since the Unix epoch.
    pub const RECEIVED_AT: &str = "x-pushwoosh-received-at";
    /// The last transient error (on a parked retry) or the final one (on a dead letter).
    pub const LAST_ERROR: &str = "x-pushwoosh-last-error";
    /// Why a job was dead-lettered: a [`crate::broker::DeadReason`].
    pub const DEAD_REASON: &str = "x-pushwoosh-dead-reason";
    pub const DEAD_AT: &str = "x-pushwoosh-dead-at";
    pub const JOB_ID: &str = "x-pushwoosh-job-id";
    pub const KIND: &str = "x-pushwoosh-kind";
    pub const ORIGINAL_EXCHANGE: &str = "x-pushwoosh-original-exchange";
    pub const ORIGINAL_ROUTING_KEY: &str = "x-pushwoosh-original-routing-key";
    /// Identifies one processing of a job for the ledger (a random number), kept on
    /// its parked retries so that they are known as the same processing.
    pub const OWNER: &str = "x-pushwoosh-owner";
    /// Set by `replay`: when the dead letter was last put back, ms since the Unix epoch.
    pub const REPLAYED_AT: &str = "x-pushwoosh-replayed-at";
    /// Set by `replay`: how many times the job has been put back from the dead-letter queue.
    pub const REPLAY_COUNT: &str = "x-pushwoosh-replay-count";
    /// On a parked retry: when it is due back in its queue, ms since the Unix epoch.
    pub const DUE_AT: &str = "x-pushwoosh-due-at";
}

const PERSISTENT: u8 = 2;

/// What a dead letter says about itself, in headers.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub reason: DeadReason,
    pub error: &'a str,
    pub job_id: Option<&'a str>,
    pub kind: &'a str,
    pub attempts: u32,
    pub original_exchange: &'a str,
    pub original_routing_key: &'a str,
}

/// A retry to park: how many calls were made, since when, the error, and the wait.
#[derive(Debug, Clone, Copy)]
pub struct ParkedRetry<'a> {
    pub attempts: u32,
    /// See [`headers::OWNER`].
    pub owner: u64,
    pub received_at_ms: i64,
    pub last_error: &'a str,
    pub tier: Duration,
    pub delay: Duration,
    /// The lane the job came from (`None`: the jobs queue), which its retry goes back to.
    pub lane: Option<&'a str>,
}

#[derive(Clone)]
pub struct Publisher {
    channel: HealingChannel,
    topology: Topology,
    /// The largest result body published with its `response`.
    max_result_bytes: usize,
}

impl Publisher {
    /// Publishes on `channel`. `max_result_bytes`: see [`Publisher::publish_result`].
    pub fn new(channel: HealingChannel, topology: Topology, max_result_bytes: usize) -> Self {
        Self {
            channel,
            topology,
            max_result_bytes,
        }
    }

    /// See [`HealingChannel::available`].
    pub fn available(&self) -> watch::Receiver<bool> {
        self.channel.available()
    }

    /// Closes the channel once nothing more will be published on it.
    pub async fn close(&self) {
        self.channel.close().await;
    }

    /// Publishes a result to the results exchange and, when asked, to `reply_to`. A
    /// result over `amqp.max_result_bytes` goes out without its `response`.
    pub async fn publish_result(
        &self,
        event: &ResultEvent,
        correlation_id: &str,
        reply_to: Option<&str>,
    ) -> Result<(), PublishError> {
        let mut body = event.to_json();
        if body.len() > self.max_result_bytes {
            warn!(
                bytes = body.len(),
                max_result_bytes = self.max_result_bytes,
                "the result is over amqp.max_result_bytes: published without its response"
            );
            body = event.without_response().to_json();
        }
        let routing_key = event.routing_key();
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(PERSISTENT)
            .with_correlation_id(correlation_id.into())
            .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
            .with_type(ShortString::from(routing_key.as_str()));
        if let Some(trace) = &event.trace {
            // The job's trace goes on, with the worker's span as the result's parent.
            let mut table = FieldTable::default();
            put_str(&mut table, TRACEPARENT, &trace.traceparent().to_string());
            if let Some(state) = &trace.tracestate {
                put_str(&mut table, TRACESTATE, state);
            }
            properties = properties.with_headers(table);
        }
        let exchange = &self.topology.results_exchange;
        match reply_to {
            Some(queue) if !queue.is_empty() => {
                let (a, b) = tokio::join!(
                    self.channel
                        .publish(exchange, &routing_key, &body, properties.clone()),
                    self.channel.publish("", queue, &body, properties)
                );
                a.and(b)
            }
            // The common case: the properties go to the one publish, not a copy of them.
            _ => {
                self.channel
                    .publish(exchange, &routing_key, &body, properties)
                    .await
            }
        }
    }

    /// Puts the job's original bytes in the dead-letter queue, with headers saying why.
    pub async fn dead_letter(
        &self,
        body: &[u8],
        original: &BasicProperties,
        letter: &DeadLetter<'_>,
    ) -> Result<(), PublishError> {
        let mut table = original.headers().clone().unwrap_or_default();
        put_str(&mut table, headers::DEAD_REASON, letter.reason.as_str());
        put_str(&mut table, headers::LAST_ERROR, letter.error);
        put_str(&mut table, headers::KIND, letter.kind);
        if let Some(id) = letter.job_id {
            put_str(&mut table, headers::JOB_ID, id);
        }
        put_int(&mut table, headers::ATTEMPTS, i64::from(letter.attempts));
        put_int(
            &mut table,
            headers::DEAD_AT,
            chrono::Utc::now().timestamp_millis(),
        );
        put_str(
            &mut table,
            headers::ORIGINAL_EXCHANGE,
            letter.original_exchange,
        );
        put_str(
            &mut table,
            headers::ORIGINAL_ROUTING_KEY,
            letter.original_routing_key,
        );
        let properties = original
            .clone()
            .with_headers(table)
            .with_delivery_mode(PERSISTENT);
        self.channel
            .publish("", &self.topology.dead_letter_queue, body, properties)
            .await
    }

    /// Parks a job in the retry tier queue; a worker gives it back to its queue after
    /// `delay` (see `worker::returns`).
    pub async fn park_retry(
        &self,
        body: &[u8],
        original: &BasicProperties,
        retry: &ParkedRetry<'_>,
    ) -> Result<(), PublishError> {
        let ParkedRetry {
            attempts,
            owner,
            received_at_ms,
            last_error,
            tier,
            delay,
            lane,
        } = *retry;
        let mut table = original.headers().clone().unwrap_or_default();
        put_int(&mut table, headers::ATTEMPTS, i64::from(attempts));
        put_int(&mut table, headers::RECEIVED_AT, received_at_ms);
        put_int(&mut table, headers::OWNER, owner as i64);
        put_str(&mut table, headers::LAST_ERROR, last_error);
        let due_at = chrono::Utc::now().timestamp_millis()
            + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
        put_int(&mut table, headers::DUE_AT, due_at);
        let properties = without_expiration(original)
            .with_headers(table)
            .with_delivery_mode(PERSISTENT);
        let queue = self.topology.retry_queue(lane, tier);
        self.channel.publish("", &queue, body, properties).await
    }

    /// Publishes a parked retry again, as it was parked: to its lane's queue when it is
    /// due (`due` dropped), or to its retry queue again (`due` kept).
    pub async fn republish_parked(
        &self,
        queue: &str,
        body: &[u8],
        parked: &BasicProperties,
        due: Due,
    ) -> Result<(), PublishError> {
        let mut properties = without_expiration(parked);
        if let (Due::Drop, Some(table)) = (due, parked.headers()) {
            let kept: std::collections::BTreeMap<_, _> = table
                .inner()
                .iter()
                .filter(|(key, _)| key.as_str() != headers::DUE_AT)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            properties = properties.with_headers(FieldTable::from(kept));
        }
        self.channel.publish("", queue, body, properties).await
    }
}

/// What a parked retry published again keeps of its due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Back in its lane's queue: it is due.
    Drop,
    /// Parked again: due when it was.
    Keep,
}

/// The properties without `expiration`. A version before the worker gave retries back
/// itself parked them with one (their delay); back in a jobs queue it would dead-letter
/// the job unread.
pub fn without_expiration(p: &BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default();
    macro_rules! keep {
        ($($get:ident => $set:ident),* ; $($get_copy:ident => $set_copy:ident),*) => {
            $(if let Some(v) = p.$get() { out = out.$set(v.clone()); })*
            $(if let Some(v) = p.$get_copy() { out = out.$set_copy(*v); })*
        };
    }
    keep!(
        content_type => with_content_type, content_encoding => with_content_encoding,
        headers => with_headers, correlation_id => with_correlation_id,
        reply_to => with_reply_to, message_id => with_message_id, kind => with_type,
        user_id => with_user_id, app_id => with_app_id, cluster_id => with_cluster_id;
        delivery_mode => with_delivery_mode, priority => with_priority,
        timestamp => with_timestamp
    );
    out
}

fn put_str(table: &mut FieldTable, key: &str, value: &str) {
    table.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
}

fn put_int(table: &mut FieldTable, key: &str, value: i64) {
    table.insert(key.into(), AMQPValue::LongLongInt(value));
}

/// Reads an integer header whatever integer type the sender used.
pub fn header_int(properties: &BasicProperties, key: &str) -> Option<i64> {
    match properties.headers().as_ref()?.inner().get(key)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        _ => None,
    }
}

/// Reads a string header.
pub fn header_str(properties: &BasicProperties, key: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}
