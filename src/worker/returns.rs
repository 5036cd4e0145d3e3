//! Giving parked retries back. Every worker consumes the retry queues, holds each parked
//! job until it is due (its `x-pushwoosh-due-at`), publishes it to the queue it was
//! parked for with a publisher confirm, and acks it only then: a worker that dies while
//! holding a retry leaves it with the broker, which hands it to another worker.
//!
//! The broker keeps the jobs; the worker only decides when they go back. Before, retry
//! queues had a TTL and dead-lettered expired jobs into their queue, which put every
//! retry in the hands of RabbitMQ's dead-letter worker: on 3.10 that process could hold
//! expired retries for minutes after losing the node that led both a retry queue and its
//! target. This publish is the worker's own: confirmed, on its own connection, which
//! moves to another node when one is lost.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use prometheus_client::metrics::gauge::Gauge;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::consumer::{BROKER_WAIT, connection_name};
use crate::broker::Publisher;
use crate::broker::publisher::{Due, header_int, headers};
use crate::broker::topology::RetryReturn;

/// Parked retries a worker holds at once from each retry queue. A retry queue is in the
/// order its jobs were parked, each with about the same delay, so the first ones are the
/// first due.
const HELD_PER_QUEUE: u16 = 128;
/// The longest a delivery is held. The broker closes a channel that holds one longer
/// than its `consumer_timeout` (30 minutes by default); a retry due later than this is
/// parked again as it is, due at the same time.
const MAX_HOLD: Duration = Duration::from_secs(600);
/// How long a retry that could not be published waits before it is tried again.
const PUBLISH_RETRY: Duration = Duration::from_secs(1);

/// The task giving parked retries back, for as long as a session lasts.
pub(super) struct Returns {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Returns {
    pub(super) fn start(
        conn: Arc<Connection>,
        returns: Vec<RetryReturn>,
        publisher: Publisher,
        held: Gauge,
    ) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(conn, returns, publisher, held, stop.clone()));
        Self { stop, task }
    }

    /// Stops consuming the retry queues. Retries waiting for their time stay with the
    /// broker (their channel is closed unacked); one being published is finished first.
    pub(super) async fn stop(self) {
        self.stop.cancel();
        // `serve` bounds its own waits; this bounds a broker that answers nothing.
        let _ = tokio::time::timeout(BROKER_WAIT * 3, self.task).await;
    }
}

/// Consumes the retry queues until stopped, opening the channel again when the broker
/// closes it. A lost connection ends it: the session notices that on its own channels
/// and starts a new session, with new returns.
async fn run(
    conn: Arc<Connection>,
    returns: Vec<RetryReturn>,
    publisher: Publisher,
    held: Gauge,
    stop: CancellationToken,
) {
    loop {
        let error = match serve(&conn, &returns, &publisher, &held, &stop).await {
            Ok(()) => return,
            Err(e) => e,
        };
        if stop.is_cancelled() || !conn.status().connected() {
            return;
        }
        warn!(
            error = format!("{error:#}"),
            "the retry queues' channel closed: consuming them again in a second"
        );
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PUBLISH_RETRY) => {}
        }
    }
}

/// One channel's worth of giving retries back. `Ok` once stopped.
async fn serve(
    conn: &Connection,
    returns: &[RetryReturn],
    publisher: &Publisher,
    held: &Gauge,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let channel = conn.create_channel().await.context("opening a channel")?;
    channel
        .basic_qos(HELD_PER_QUEUE, BasicQosOptions::default())
        .await
        .context("setting the retry queues' prefetch")?;
    let mut streams = Vec::with_capacity(returns.len());
    for (index, retry) in returns.iter().enumerate() {
        let tag = format!("{}-retries-{}", connection_name(), fastrand::u32(..));
        let consumer = channel
            .basic_consume(
                retry.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming {}", retry.queue))?;
        streams.push(consumer.map(move |delivery| (index, delivery)).boxed());
    }
    info!(
        queues = returns.len(),
        "giving parked retries back when they are due"
    );
    let mut deliveries = futures_util::stream::select_all(streams);
    // Cancelled when this channel's deliveries can no longer be settled.
    let abandon = stop.child_token();
    let tasks = TaskTracker::new();
    let end = loop {
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            next = deliveries.next() => match next {
                Some((index, Ok(delivery))) => {
                    let back_to = returns[index].clone();
                    let holding = Holding::new(held);
                    tasks.spawn(give_back(delivery, back_to, publisher.clone(), abandon.clone(), holding));
                }
                Some((index, Err(e))) => {
                    break Err(anyhow::Error::new(e).context(format!("consuming {}", returns[index].queue)));
                }
                None => break Err(anyhow::anyhow!("the broker cancelled the consumers of the retry queues")),
            },
        }
    };
    abandon.cancel();
    tasks.close();
    let _ = tokio::time::timeout(BROKER_WAIT, tasks.wait()).await;
    // Whatever is still held goes back to its retry queue, unacked.
    let _ = tokio::time::timeout(BROKER_WAIT, channel.close(200, "retries stopped".into())).await;
    end
}

/// Holds one parked retry until it is due, publishes it to its queue, then acks it.
async fn give_back(
    delivery: Delivery,
    retry: RetryReturn,
    publisher: Publisher,
    abandon: CancellationToken,
    _holding: Holding,
) {
    let wait = wait_for(&delivery.properties, chrono::Utc::now().timestamp_millis());
    // Due later than a delivery may be held: parked again as it is.
    let (wait, to, due) = if wait > MAX_HOLD {
        (MAX_HOLD, retry.queue.as_str(), Due::Keep)
    } else {
        (wait, retry.back_to.as_str(), Due::Drop)
    };
    tokio::select! {
        () = abandon.cancelled() => return,
        () = tokio::time::sleep(wait) => {}
    }
    // From here the publish and its ack go together, even while stopping: a retry
    // published and left unacked would come back a second time.
    loop {
        let published = publisher
            .republish_parked(to, &delivery.data, &delivery.properties, due)
            .await;
        match published {
            Ok(()) => break,
            Err(e) => {
                warn!(error = %e, queue = to, "could not give a parked retry back: trying again");
                tokio::select! {
                    () = abandon.cancelled() => return,
                    () = tokio::time::sleep(PUBLISH_RETRY) => {}
                }
            }
        }
    }
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        warn!(error = %e, queue = %retry.queue, "a retry given back could not be acked: the broker gives it back again, and the ledger knows its job");
    }
}

/// One parked retry counted in `retries_held` for as long as it is held.
struct Holding(Gauge);

impl Holding {
    fn new(held: &Gauge) -> Self {
        held.inc();
        Self(held.clone())
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How long a parked retry has yet to wait at `now_ms`: until its due time, none if it has
/// none (parked by an earlier version, or by hand).
fn wait_for(properties: &BasicProperties, now_ms: i64) -> Duration {
    header_int(properties, headers::DUE_AT)
        .and_then(|due| u64::try_from(due.saturating_sub(now_ms)).ok())
        .map_or(Duration::ZERO, Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use lapin::types::AMQPValue;

    use super::*;

    fn due_at(value: AMQPValue) -> BasicProperties {
        let mut table = FieldTable::default();
        table.insert(headers::DUE_AT.into(), value);
        BasicProperties::default().with_headers(table)
    }

    #[test]
    fn a_retry_waits_until_its_due_time_and_one_without_goes_at_once() {
        let now = 1_700_000_000_000;
        let props = due_at(AMQPValue::LongLongInt(now + 4_000));
        assert_eq!(wait_for(&props, now), Duration::from_millis(4_000));
        assert_eq!(wait_for(&props, now + 4_000), Duration::ZERO);
        assert_eq!(wait_for(&props, now + 60_000), Duration::ZERO);
        assert_eq!(wait_for(&BasicProperties::default(), now), Duration::ZERO);
        let text = due_at(AMQPValue::LongString((now + 250).to_string().into()));
        assert_eq!(wait_for(&text, now), Duration::from_millis(250));
    }
}
