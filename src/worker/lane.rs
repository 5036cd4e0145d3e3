//! The lanes a worker consumes: the jobs queue (`bulk`) and each lane that is on
//! (`urgent`, …), each with its own channel, prefetch, consumer and metrics label.

use std::sync::Arc;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::acks::Acks;
use super::consumer::{BROKER_WAIT, ConsumerSetup, connection_name};
use super::context::WorkerContext;
use super::process::process;
use crate::broker::{Publisher, Topology};
use crate::pushwoosh::Priority;
use crate::settings::Settings;

#[derive(Debug, Clone)]
pub struct Lane {
    /// `None`: the jobs queue.
    name: Option<String>,
    pub queue: String,
    pub prefetch: u16,
    /// `bulk` or the lane's name: the metrics' `lane` label (made once per process).
    label: &'static str,
}

impl Lane {
    /// The jobs queue, then every lane that is on. Lanes with the most urgent work first,
    /// so that a half-open breaker probes with those.
    pub fn all(settings: &Settings, topology: &Topology) -> Vec<Lane> {
        let mut out: Vec<Lane> = topology
            .lanes
            .iter()
            .map(|lane| Lane {
                name: Some(lane.name.clone()),
                queue: lane.queue.clone(),
                prefetch: settings.lanes.get(&lane.name).map_or(16, |l| l.prefetch),
                label: Box::leak(lane.name.clone().into_boxed_str()),
            })
            .collect();
        out.push(Lane::bulk(settings));
        out
    }

    pub fn bulk(settings: &Settings) -> Lane {
        Lane {
            name: None,
            queue: settings.amqp.jobs_queue.clone(),
            prefetch: settings.amqp.prefetch,
            label: "bulk",
        }
    }

    /// The lane's name, `None` for the jobs queue.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn label(&self) -> &'static str {
        self.label
    }

    /// A lane of its own: first in line at the rate limiter, never waiting for a batch.
    pub fn is_urgent(&self) -> bool {
        self.name.is_some()
    }

    /// A lane's jobs come first at the rate limiter, within their reserved share.
    pub fn priority(&self) -> Priority {
        if self.is_urgent() {
            Priority::Urgent
        } else {
            Priority::Bulk
        }
    }
}

/// One task per delivery. The job's future is boxed first: it is several kilobytes, and
/// tokio would otherwise copy all of it on spawn, into the task cell, and again on
/// completion.
pub(super) fn spawn_process(
    tasks: &TaskTracker,
    delivery: lapin::message::Delivery,
    ctx: &Arc<WorkerContext>,
) -> tokio::task::JoinHandle<()> {
    tasks.spawn(Box::pin(process(delivery, ctx.clone())))
}

/// Cancels the consumers. Deliveries already on their way before the cancel are
/// processed too, so that none comes back marked as redelivered without a reason, and
/// none is left unsettled on its channel (it would hold a prefetch slot, and every
/// multiple ack after it, until the channel closes): each lane's stream ends when the
/// broker confirms its cancel, after the last of them; a broker silent for 5 s ends the
/// wait.
pub(super) async fn stop_consuming(
    lanes: &[LaneChannel],
    tags: &[String],
    deliveries: &mut Deliveries,
    tasks: &TaskTracker,
) {
    for (lane, tag) in lanes.iter().zip(tags) {
        if let Err(e) = lane
            .channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await
        {
            warn!(error = %e, queue = %lane.ctx.lane.queue, "could not cancel the consumer");
        }
    }
    while let Ok(Some((lane, delivery))) =
        tokio::time::timeout(BROKER_WAIT, deliveries.next()).await
    {
        if let Some(Ok(delivery)) = delivery {
            spawn_process(tasks, delivery, &lanes[lane].ctx);
        }
    }
}

/// Every lane's deliveries, tagged with the lane's index; `None` once a lane's consumer
/// has ended.
pub(super) type Deliveries = futures_util::stream::SelectAll<
    futures_util::stream::BoxStream<
        'static,
        (usize, Option<lapin::Result<lapin::message::Delivery>>),
    >,
>;

/// Starts a consumer on every lane's queue.
pub(super) async fn consume(lanes: &[LaneChannel]) -> anyhow::Result<(Vec<String>, Deliveries)> {
    let mut tags = Vec::with_capacity(lanes.len());
    let mut streams = Vec::with_capacity(lanes.len());
    for (index, lane) in lanes.iter().enumerate() {
        let tag = format!("{}-{}", connection_name(), fastrand::u32(..));
        let queue = lane.ctx.lane.queue.as_str();
        let consumer: Consumer = lane
            .channel
            .basic_consume(
                queue.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming {queue}"))?;
        info!(
            queue,
            prefetch = lane.ctx.lane.prefetch,
            lane = lane.ctx.lane.label(),
            "consuming jobs"
        );
        tags.push(tag);
        streams.push(
            consumer
                .map(move |delivery| (index, Some(delivery)))
                .chain(futures_util::stream::once(async move { (index, None) }))
                .boxed(),
        );
    }
    Ok((tags, futures_util::stream::select_all(streams)))
}

/// A lane's consume channel and the context its jobs are processed with.
pub(super) struct LaneChannel {
    pub channel: Channel,
    pub ctx: Arc<WorkerContext>,
}

impl LaneChannel {
    pub(super) async fn open(
        setup: &ConsumerSetup,
        conn: &Connection,
        lane: &Lane,
        publisher: &Publisher,
        hand_back: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let channel = conn.create_channel().await.context("opening a channel")?;
        channel
            .basic_qos(lane.prefetch, BasicQosOptions::default())
            .await
            .with_context(|| format!("setting the prefetch of {}", lane.queue))?;
        setup.metrics.lanes.announce(lane.label());
        let ctx = Arc::new(WorkerContext {
            settings: setup.settings.clone(),
            client: setup.client.clone(),
            publisher: publisher.clone(),
            retry: setup.retry.clone(),
            metrics: setup.metrics.clone(),
            hand_back: hand_back.clone(),
            breaker: setup.breaker.clone(),
            limiter: setup.limiter.clone(),
            batcher: setup.batcher.clone(),
            acks: Acks::start(
                channel.clone(),
                setup.settings.amqp.ack_coalesce(),
                setup.metrics.clone(),
            ),
            ledger: setup.ledger.clone(),
            lane: lane.clone(),
        });
        Ok(Self { channel, ctx })
    }
}
