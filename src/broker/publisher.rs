//! Publishing with publisher confirms: result events, dead letters and parked retries.
//! Every method returns only once the broker has confirmed, so the caller may then ack
//! the job it came from.
//!
//! The channel heals itself. When the broker closes it (a channel error is not a
//! connection error), every publish then under way fails with the same error, whichever
//! message caused it. So a publish that failed that way waits for the channel to be
//! opened again (the topology declared again first, in case an exchange or queue went
//! away), then is tried once more alone, with no other publish on the channel: if it
//! fails alone, for a reason that is about a message (too large, a nack), it was this
//! message, and the caller hears [`PublishError::Refused`]; every other message goes
//! through. While the channel cannot be opened again the publishes wait, the worker
//! takes no jobs ([`Publisher::available`]), and only a lost connection or a stopping
//! worker ends the wait ([`PublishError::Unavailable`]).

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ErrorKind};
use tokio::sync::{RwLock, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::DeadReason;
use super::topology::Topology;
use crate::metrics::{ChannelLabels, Metrics};
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
    /// Why a job was dead-lettered: `unparseable`, `retries_exhausted`, `delivery_unknown`,
    /// `failed`, `no_token`, `poison`.
    pub const DEAD_REASON: &str = "x-pushwoosh-dead-reason";
    pub const DEAD_AT: &str = "x-pushwoosh-dead-at";
    pub const JOB_ID: &str = "x-pushwoosh-job-id";
    pub const KIND: &str = "x-pushwoosh-kind";
    pub const ORIGINAL_EXCHANGE: &str = "x-pushwoosh-original-exchange";
    pub const ORIGINAL_ROUTING_KEY: &str = "x-pushwoosh-original-routing-key";
    /// Set by `replay`: when the dead letter was last put back, ms since the Unix epoch.
    pub const REPLAYED_AT: &str = "x-pushwoosh-replayed-at";
    /// Set by `replay`: how many times the job has been put back from the dead-letter queue.
    pub const REPLAY_COUNT: &str = "x-pushwoosh-replay-count";
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
    pub received_at_ms: i64,
    pub last_error: &'a str,
    pub tier: Duration,
    pub delay: Duration,
}

/// Why a message was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The broker refused this very message (too large for it, nacked): publishing it
    /// again as it is would be refused again. Another message may go through.
    #[error("the broker refused the message: {0}")]
    Refused(String),
    /// No channel to publish on: the connection is gone, or the worker is stopping.
    #[error("cannot publish: {0}")]
    Unavailable(String),
}

/// The channel in use, and how many times it has been opened again.
struct Slot {
    channel: Channel,
    generation: u64,
}

struct Shared {
    connection: Arc<Connection>,
    topology: Topology,
    /// The largest result body published with its `response`.
    max_result_bytes: usize,
    /// Publishes share it; a publish tried again alone, and the reopening of the
    /// channel, hold it for themselves.
    slot: RwLock<Slot>,
    available: watch::Sender<bool>,
    /// Cancelled when waiting for a channel is no longer worth it: the worker's jobs are
    /// being handed back.
    stop: CancellationToken,
    metrics: Arc<Metrics>,
}

#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

/// How one try at publishing ended.
enum Attempt {
    Confirmed,
    Nacked,
    /// The channel broke under the publish: the error says why.
    Broken(lapin::Error),
}

impl Publisher {
    /// Opens a channel in confirm mode on `connection`. `stop`: see [`PublishError::Unavailable`].
    pub async fn open(
        connection: Arc<Connection>,
        topology: Topology,
        max_result_bytes: usize,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let channel = confirm_channel(&connection).await?;
        metrics.publisher_available.set(1);
        let (available, _) = watch::channel(true);
        Ok(Self {
            shared: Arc::new(Shared {
                connection,
                topology,
                max_result_bytes,
                slot: RwLock::new(Slot {
                    channel,
                    generation: 0,
                }),
                available,
                stop,
                metrics,
            }),
        })
    }

    /// `true` while the publisher has a channel; `false` while it is trying to open one
    /// again and failing (the worker then takes no jobs).
    pub fn available(&self) -> watch::Receiver<bool> {
        self.shared.available.subscribe()
    }

    /// Closes the channel once nothing more will be published on it.
    pub async fn close(&self) {
        let slot = self.shared.slot.read().await;
        let _ = slot.channel.close(200, "worker stopping".into()).await;
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
        if body.len() > self.shared.max_result_bytes {
            warn!(
                bytes = body.len(),
                max_result_bytes = self.shared.max_result_bytes,
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
        let exchange = &self.shared.topology.results_exchange;
        match reply_to {
            Some(queue) if !queue.is_empty() => {
                let (a, b) = tokio::join!(
                    self.publish(exchange, &routing_key, &body, properties.clone()),
                    self.publish("", queue, &body, properties)
                );
                a.and(b)
            }
            // The common case: the properties go to the one publish, not a copy of them.
            _ => {
                self.publish(exchange, &routing_key, &body, properties)
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
        self.publish(
            "",
            &self.shared.topology.dead_letter_queue,
            body,
            properties,
        )
        .await
    }

    /// Parks a job in the retry tier queue; it comes back to the jobs queue after `delay`.
    pub async fn park_retry(
        &self,
        body: &[u8],
        original: &BasicProperties,
        retry: &ParkedRetry<'_>,
    ) -> Result<(), PublishError> {
        let ParkedRetry {
            attempts,
            received_at_ms,
            last_error,
            tier,
            delay,
        } = *retry;
        let mut table = original.headers().clone().unwrap_or_default();
        put_int(&mut table, headers::ATTEMPTS, i64::from(attempts));
        put_int(&mut table, headers::RECEIVED_AT, received_at_ms);
        put_str(&mut table, headers::LAST_ERROR, last_error);
        // The queue's own TTL is the tier; the message's expiration is its jittered delay.
        let properties = original
            .clone()
            .with_headers(table)
            .with_delivery_mode(PERSISTENT)
            .with_expiration(ShortString::from(delay.as_millis().to_string()));
        let queue = self.shared.topology.retry_queue(tier);
        self.publish("", &queue, body, properties).await
    }

    /// Publishes and waits for the confirm; see the module's doc for what happens when
    /// the channel breaks.
    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let shared = &self.shared;
        let (generation, first) = {
            let slot = shared.slot.read().await;
            let attempt = attempt(
                &slot.channel,
                exchange,
                routing_key,
                body,
                properties.clone(),
            )
            .await;
            (slot.generation, attempt)
        };
        let cause = match first {
            Attempt::Confirmed => return Ok(()),
            Attempt::Nacked => return Err(nacked()),
            Attempt::Broken(cause) => cause,
        };
        // Alone from here on: no other message can break the channel under this one.
        let mut slot = shared.slot.write().await;
        if slot.generation == generation {
            shared.reopen(&mut slot, &cause).await?;
        }
        let mut delays = backoff();
        loop {
            let error = match attempt(
                &slot.channel,
                exchange,
                routing_key,
                body,
                properties.clone(),
            )
            .await
            {
                Attempt::Confirmed => {
                    shared.set_available(true);
                    return Ok(());
                }
                Attempt::Nacked => return Err(nacked()),
                Attempt::Broken(error) => error,
            };
            shared.reopen(&mut slot, &error).await?;
            if about_the_message(&error) {
                return Err(PublishError::Refused(describe(&error)));
            }
            // The channel broke for a reason of its own (a permission, say) that opening
            // it again did not mend: no jobs until it is, and no hammering meanwhile.
            shared.set_available(false);
            let delay = delays.next().unwrap_or(MAX_WAIT);
            error!(
                error = %describe(&error),
                retry_in_ms = delay.as_millis() as u64,
                "cannot publish: the broker refuses every message on the channel; taking no jobs until it takes one"
            );
            shared.wait(delay).await?;
        }
    }
}

/// The longest wait between two tries at opening the channel or publishing again.
const MAX_WAIT: Duration = Duration::from_secs(5);

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(MAX_WAIT)
        .with_jitter()
        .without_max_times()
        .build()
}

impl Shared {
    /// Opens the channel again after `cause` broke it, declaring the topology first,
    /// retried with backoff for as long as the connection lasts and the worker wants it.
    async fn reopen(&self, slot: &mut Slot, cause: &lapin::Error) -> Result<(), PublishError> {
        warn!(error = %describe(cause), "the broker closed the publish channel: opening it again");
        let mut delays = backoff();
        loop {
            if !self.connection.status().connected() {
                self.set_available(false);
                return Err(PublishError::Unavailable(
                    "the connection to the broker is lost".into(),
                ));
            }
            match self.open_declared().await {
                Ok(channel) => {
                    let _ = slot.channel.close(200, "replaced".into()).await;
                    slot.channel = channel;
                    slot.generation += 1;
                    self.metrics
                        .channel_reopens
                        .get_or_create(&ChannelLabels { channel: "publish" })
                        .inc();
                    if !*self.available.borrow() {
                        info!("the publish channel is open again");
                    }
                    self.set_available(true);
                    return Ok(());
                }
                Err(e) => {
                    let delay = delays.next().unwrap_or(MAX_WAIT);
                    error!(
                        error = format!("{e:#}"),
                        retry_in_ms = delay.as_millis() as u64,
                        "cannot publish: the publish channel could not be opened again; taking no jobs until it is"
                    );
                    self.set_available(false);
                    self.wait(delay).await?;
                }
            }
        }
    }

    /// Waits `delay`, unless the worker stops meanwhile.
    async fn wait(&self, delay: Duration) -> Result<(), PublishError> {
        tokio::select! {
            () = self.stop.cancelled() => Err(PublishError::Unavailable("the worker is stopping".into())),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }

    async fn open_declared(&self) -> anyhow::Result<Channel> {
        let admin = self.connection.create_channel().await?;
        self.topology.declare(&admin).await?;
        let _ = admin.close(200, "declared".into()).await;
        confirm_channel(&self.connection).await
    }

    fn set_available(&self, available: bool) {
        self.metrics.publisher_available.set(i64::from(available));
        self.available.send_if_modified(|now| {
            let changed = *now != available;
            *now = available;
            changed
        });
    }
}

async fn confirm_channel(connection: &Connection) -> anyhow::Result<Channel> {
    use anyhow::Context;
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("enabling publisher confirms")?;
    Ok(channel)
}

async fn attempt(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Attempt {
    let published = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await;
    let confirm = match published {
        Ok(confirm) => confirm.await,
        Err(e) => Err(e),
    };
    match confirm {
        Ok(confirmation) if confirmation.is_nack() => Attempt::Nacked,
        Ok(_) => Attempt::Confirmed,
        Err(e) => Attempt::Broken(e),
    }
}

fn nacked() -> PublishError {
    PublishError::Refused("the broker refused the message (nack)".into())
}

/// Whether the broker closed the channel over the message itself rather than over the
/// channel's state: a message over its `max_message_size` (406), content too large
/// (311). (A frame it cannot parse closes the whole connection instead.)
fn about_the_message(error: &lapin::Error) -> bool {
    match error.kind() {
        ErrorKind::ProtocolError(e) => matches!(
            e.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::CONTENTTOOLARGE)
        ),
        _ => false,
    }
}

/// The broker's own words where it gave some.
fn describe(error: &lapin::Error) -> String {
    match error.kind() {
        ErrorKind::ProtocolError(e) => e.get_message().to_string(),
        _ => error.to_string(),
    }
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
