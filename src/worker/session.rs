//! One connection's worth of consuming: the channels, the consumer, and the tasks of the
//! deliveries; paused while the circuit breaker is open or no result can be published,
//! stopped gracefully on request.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::acks::Acks;
use super::breaker::BreakerState;
use super::consumer::{BROKER_WAIT, ConsumerSetup, SessionEnd, connection_name};
use super::context::WorkerContext;
use super::probe::{HoldEnd, hold_and_probe};
use super::process::process;
use crate::broker::Publisher;
use crate::broker::publisher::HealingChannel;
use crate::settings::OnUnavailable;

/// Why consuming paused.
enum Pause {
    Shutdown,
    BreakerOpen,
    /// No result can be published: taking jobs would only hold them.
    CannotPublish,
    /// The ledger cannot be reached and holds jobs until it can.
    LedgerDown,
    Lost(anyhow::Error),
}

/// One connection's worth of consuming: consume while the circuit breaker is closed,
/// hold off and probe while it is not, stop gracefully on request.
pub(super) async fn session(
    setup: &ConsumerSetup,
    conn: &Arc<Connection>,
    shutdown: &CancellationToken,
) -> anyhow::Result<SessionEnd> {
    let amqp = &setup.settings.amqp;
    let admin = conn.create_channel().await.context("opening a channel")?;
    setup.topology.declare(&admin).await?;
    let _ = admin.close(200, "declared".into()).await;

    // Cancelled when the jobs not yet sent go back to the queue: a publish waiting for a
    // channel then gives up too.
    let hand_back = CancellationToken::new();
    let channel = HealingChannel::open(
        conn.clone(),
        setup.topology.clone(),
        setup.metrics.clone(),
        hand_back.clone(),
    )
    .await?;
    let publisher = Publisher::new(channel, setup.topology.clone(), amqp.max_result_bytes);
    let mut publishing = publisher.available();
    setup.readiness.set_publishing(true);
    let consume_channel = conn.create_channel().await.context("opening a channel")?;
    consume_channel
        .basic_qos(amqp.prefetch, BasicQosOptions::default())
        .await
        .context("setting the prefetch")?;

    let ctx = Arc::new(WorkerContext {
        settings: setup.settings.clone(),
        client: setup.client.clone(),
        publisher,
        retry: setup.retry.clone(),
        metrics: setup.metrics.clone(),
        hand_back,
        breaker: setup.breaker.clone(),
        limiter: setup.limiter.clone(),
        batcher: setup.batcher.clone(),
        acks: Acks::start(
            consume_channel.clone(),
            amqp.ack_coalesce(),
            setup.metrics.clone(),
        ),
        ledger: setup.ledger.clone(),
    });
    let tasks = TaskTracker::new();
    let mut breaker = setup.breaker.subscribe();

    let lost = loop {
        if !*publishing.borrow_and_update() {
            match wait_for_publisher(setup, conn, &mut publishing, shutdown).await {
                Ok(true) => {}
                Ok(false) => break None,
                Err(e) => break Some(e),
            }
        }
        if holding_for_ledger(setup) {
            match wait_for_ledger(setup, shutdown).await {
                true => {}
                false => break None,
            }
        }
        if *breaker.borrow_and_update() != BreakerState::Closed {
            match hold_and_probe(setup, &consume_channel, &ctx, &tasks, shutdown).await {
                Ok(HoldEnd::Closed) => continue,
                Ok(HoldEnd::Stopped) => break None,
                Err(e) => break Some(e),
            }
        }
        let tag = format!("{}-{}", connection_name(), fastrand::u32(..));
        let mut consumer = match consume_channel
            .basic_consume(
                amqp.jobs_queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming {}", amqp.jobs_queue))
        {
            Ok(consumer) => consumer,
            Err(e) => break Some(e),
        };
        setup.readiness.set_consuming(true);
        setup.metrics.consuming.set(1);
        info!(queue = %amqp.jobs_queue, prefetch = amqp.prefetch, "consuming jobs");

        // One clock for the whole consuming spell: deliveries do not put the check off.
        let mut ledger_check = tokio::time::interval(LEDGER_CHECK);
        ledger_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let pause = loop {
            tokio::select! {
                () = shutdown.cancelled() => break Pause::Shutdown,
                Ok(()) = breaker.changed() => {
                    if *breaker.borrow_and_update() != BreakerState::Closed {
                        break Pause::BreakerOpen;
                    }
                }
                Ok(()) = publishing.changed() => {
                    if !*publishing.borrow_and_update() {
                        break Pause::CannotPublish;
                    }
                }
                _ = ledger_check.tick(), if setup.ledger.is_some() => {
                    if holding_for_ledger(setup) {
                        break Pause::LedgerDown;
                    }
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => { spawn_process(&tasks, delivery, &ctx); }
                    Some(Err(e)) => break Pause::Lost(anyhow::Error::new(e).context("consuming")),
                    None => break Pause::Lost(anyhow::anyhow!("the broker cancelled the consumer")),
                },
            }
        };
        setup.readiness.set_consuming(false);
        setup.metrics.consuming.set(0);
        match pause {
            Pause::Lost(e) => break Some(e),
            Pause::Shutdown => {
                info!(
                    in_flight = tasks.len(),
                    "stopping: no new jobs, finishing the ones in flight"
                );
                stop_consuming(&consume_channel, &tag, &mut consumer, &ctx, &tasks).await;
                break None;
            }
            Pause::BreakerOpen => {
                info!(
                    in_flight = tasks.len(),
                    "circuit breaker open: no new jobs until Pushwoosh answers again"
                );
                // Deliveries already here are held by the breaker without being sent.
                stop_consuming(&consume_channel, &tag, &mut consumer, &ctx, &tasks).await;
            }
            Pause::LedgerDown => {
                warn!(
                    in_flight = tasks.len(),
                    "the ledger's Redis does not answer: no new jobs until it does (ledger.on_unavailable = hold)"
                );
                stop_consuming(&consume_channel, &tag, &mut consumer, &ctx, &tasks).await;
            }
            Pause::CannotPublish => {
                warn!(
                    in_flight = tasks.len(),
                    "cannot publish results: no new jobs until the publish channel is back"
                );
                // Jobs in flight wait for the channel to publish their results; none is
                // handed back for it (that would only spend its delivery count).
                stop_consuming(&consume_channel, &tag, &mut consumer, &ctx, &tasks).await;
            }
        }
    };

    if let Some(error) = lost {
        // Deliveries of a broken channel cannot be settled: the broker requeues them.
        // Let the tasks notice, then start over.
        ctx.hand_back.cancel();
        tasks.close();
        let _ = tokio::time::timeout(
            setup.client_timeout() + Duration::from_secs(5),
            tasks.wait(),
        )
        .await;
        return Ok(SessionEnd::Lost(error));
    }

    tasks.close();
    let grace = Duration::from_millis(setup.settings.shutdown.grace_period_ms);
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        warn!(
            in_flight = tasks.len(),
            "grace period over: handing back the jobs not yet sent"
        );
        ctx.hand_back.cancel();
        // Calls already under way for SMS and WhatsApp are allowed to end (bounded by
        // the HTTP time-out) rather than risk sending twice.
        let _ = tokio::time::timeout(
            setup.client_timeout() + Duration::from_secs(5),
            tasks.wait(),
        )
        .await;
    }
    // Every delivery is settled: send the acks still owed, then close the channels
    // before the connection.
    if tokio::time::timeout(BROKER_WAIT, ctx.acks.flush())
        .await
        .is_err()
    {
        warn!("the last acks could not be sent in time: the broker will redeliver those jobs");
    }
    // Bounded like the connection's close after it: a broker that does not answer does
    // not keep the worker from exiting (everything is settled by now).
    let closes = async {
        let _ = consume_channel.close(200, "worker stopping".into()).await;
        ctx.publisher.close().await;
    };
    if tokio::time::timeout(BROKER_WAIT, closes).await.is_err() {
        warn!("the broker did not answer the channels' close in time");
    }
    info!("stopped cleanly");
    Ok(SessionEnd::Stopped)
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

/// Cancels the consumer. Deliveries already on their way before the cancel are processed
/// too, so that none comes back marked as redelivered without a reason, and none is left
/// unsettled on the channel (it would hold a prefetch slot, and every multiple ack after
/// it, until the channel closes): the stream ends when the broker confirms the cancel,
/// after the last of them; a broker silent for 5 s ends the wait.
async fn stop_consuming(
    channel: &Channel,
    tag: &str,
    consumer: &mut Consumer,
    ctx: &Arc<WorkerContext>,
    tasks: &TaskTracker,
) {
    if let Err(e) = channel
        .basic_cancel(tag.into(), BasicCancelOptions::default())
        .await
    {
        warn!(error = %e, "could not cancel the consumer");
    }
    while let Ok(Some(Ok(delivery))) = tokio::time::timeout(BROKER_WAIT, consumer.next()).await {
        spawn_process(tasks, delivery, ctx);
    }
}

/// Waits for the publisher to have a channel again, with `/readyz` saying why meanwhile.
/// `Ok(false)`: asked to stop; an error: the connection is gone.
async fn wait_for_publisher(
    setup: &ConsumerSetup,
    conn: &lapin::Connection,
    publishing: &mut tokio::sync::watch::Receiver<bool>,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    setup.readiness.set_publishing(false);
    while !*publishing.borrow_and_update() {
        if !conn.status().connected() {
            anyhow::bail!("the connection to the broker is lost");
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(false),
            _ = publishing.changed() => {}
            // The publisher says when it is back; the connection's loss is looked at.
            () = tokio::time::sleep(CONNECTION_CHECK) => {}
        }
    }
    setup.readiness.set_publishing(true);
    info!("the publish channel is back: taking jobs again");
    Ok(true)
}

/// How often a paused consumer looks at whether its connection is still up.
const CONNECTION_CHECK: Duration = Duration::from_millis(500);

/// How often a consuming worker looks at whether the ledger still answers.
const LEDGER_CHECK: Duration = Duration::from_millis(500);

/// The ledger cannot be reached and `ledger.on_unavailable` is `hold`.
fn holding_for_ledger(setup: &ConsumerSetup) -> bool {
    setup.ledger.as_ref().is_some_and(|ledger| {
        !ledger.is_available() && ledger.on_unavailable() == OnUnavailable::Hold
    })
}

/// Waits for the ledger to answer again, with `/readyz` saying why meanwhile. `false`:
/// asked to stop.
async fn wait_for_ledger(setup: &ConsumerSetup, shutdown: &CancellationToken) -> bool {
    let Some(ledger) = &setup.ledger else {
        return true;
    };
    setup.readiness.set_ledger_down(true);
    let back = tokio::select! {
        () = shutdown.cancelled() => false,
        () = ledger.wait_available(LEDGER_CHECK) => true,
    };
    setup.readiness.set_ledger_down(false);
    if back {
        info!("the ledger answers again: taking jobs again");
    }
    back
}
