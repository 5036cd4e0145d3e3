//! One connection's worth of consuming: the channels, the consumer, and the tasks of the
//! deliveries; paused while the circuit breaker is open or no result can be published,
//! stopped gracefully on request.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::Connection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::breaker::BreakerState;
use super::consumer::{BROKER_WAIT, ConsumerSetup, SessionEnd};
use super::lane::{LaneChannel, consume, spawn_process, stop_consuming};
use super::probe::{HoldEnd, hold_and_probe};
use super::returns::Returns;
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
    setup.topology.declare(conn).await?;

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
    // One channel per lane, with its own prefetch: an urgent job never waits for a slot
    // that bulk jobs hold.
    let mut lanes = Vec::with_capacity(setup.lanes.len());
    for lane in &setup.lanes {
        lanes.push(LaneChannel::open(setup, conn, lane, &publisher, &hand_back).await?);
    }
    // Parked retries come back through the worker (see returns), whatever the lanes do.
    let returns = Returns::start(
        conn.clone(),
        setup.topology.retry_returns(),
        publisher.clone(),
        setup.metrics.retries_held.clone(),
    );
    let tasks = TaskTracker::new();
    let mut breaker = setup.breaker.subscribe();

    let lost = loop {
        if !*publishing.borrow_and_update() {
            match wait_for_publisher(setup, conn, &mut publishing, shutdown).await {
                Ok(true) => {}
                Ok(false) => break None,
                Err(e) => break Some(e),
            }
        } else {
            // A pause for it may have found the channel back already.
            setup.readiness.set_publishing(true);
        }
        if holding_for_ledger(setup) {
            match wait_for_ledger(setup, shutdown).await {
                true => {}
                false => break None,
            }
        } else {
            setup.readiness.set_ledger_down(false);
        }
        if *breaker.borrow_and_update() != BreakerState::Closed {
            match hold_and_probe(setup, &lanes, &tasks, shutdown).await {
                Ok(HoldEnd::Closed) => continue,
                Ok(HoldEnd::Stopped) => break None,
                Err(e) => break Some(e),
            }
        }
        let (tags, mut deliveries) = match consume(&lanes).await {
            Ok(consuming) => consuming,
            Err(e) => break Some(e),
        };
        setup.readiness.set_consuming(true);
        setup.metrics.consuming.set(1);

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
                next = deliveries.next() => match next {
                    Some((lane, Some(Ok(delivery)))) => {
                        spawn_process(&tasks, delivery, &lanes[lane].ctx);
                    }
                    Some((lane, Some(Err(e)))) => break Pause::Lost(
                        anyhow::Error::new(e).context(format!("consuming {}", lanes[lane].ctx.lane.queue)),
                    ),
                    Some((lane, None)) => break Pause::Lost(anyhow::anyhow!(
                        "the broker cancelled the consumer of {}", lanes[lane].ctx.lane.queue
                    )),
                    None => break Pause::Lost(anyhow::anyhow!("the broker cancelled the consumers")),
                },
            }
        };
        // The reason first, so that /readyz never says less than why it is not ready.
        match pause {
            Pause::LedgerDown => setup.readiness.set_ledger_down(true),
            Pause::CannotPublish => setup.readiness.set_publishing(false),
            _ => {}
        }
        setup.readiness.set_consuming(false);
        setup.metrics.consuming.set(0);
        match pause {
            Pause::Lost(e) => break Some(e),
            Pause::Shutdown => {
                info!(
                    in_flight = tasks.len(),
                    "stopping: no new jobs, finishing the ones in flight"
                );
                stop_consuming(&lanes, &tags, &mut deliveries, &tasks).await;
                break None;
            }
            Pause::BreakerOpen => {
                info!(
                    in_flight = tasks.len(),
                    "circuit breaker open: no new jobs until Pushwoosh answers again"
                );
                // Deliveries already here are held by the breaker without being sent.
                stop_consuming(&lanes, &tags, &mut deliveries, &tasks).await;
            }
            Pause::LedgerDown => {
                warn!(
                    in_flight = tasks.len(),
                    "the ledger's Redis does not answer: no new jobs until it does (ledger.on_unavailable = hold)"
                );
                stop_consuming(&lanes, &tags, &mut deliveries, &tasks).await;
            }
            Pause::CannotPublish => {
                warn!(
                    in_flight = tasks.len(),
                    "cannot publish results: no new jobs until the publish channel is back"
                );
                // Jobs in flight wait for the channel to publish their results; none is
                // handed back for it (that would only spend its delivery count).
                stop_consuming(&lanes, &tags, &mut deliveries, &tasks).await;
            }
        }
    };

    returns.stop().await;
    if let Some(error) = lost {
        // Deliveries of a broken channel cannot be settled: the broker requeues them.
        // Let the tasks notice, then start over.
        hand_back.cancel();
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
        hand_back.cancel();
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
    let flushes = futures_util::future::join_all(lanes.iter().map(|l| l.ctx.acks.flush()));
    if tokio::time::timeout(BROKER_WAIT, flushes).await.is_err() {
        warn!("the last acks could not be sent in time: the broker will redeliver those jobs");
    }
    // Bounded like the connection's close after it: a broker that does not answer does
    // not keep the worker from exiting (everything is settled by now).
    let closes = async {
        for lane in &lanes {
            let _ = lane.channel.close(200, "worker stopping".into()).await;
        }
        publisher.close().await;
    };
    if tokio::time::timeout(BROKER_WAIT, closes).await.is_err() {
        warn!("the broker did not answer the channels' close in time");
    }
    info!("stopped cleanly");
    Ok(SessionEnd::Stopped)
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
