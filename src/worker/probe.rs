//! While the circuit breaker is open the worker takes no jobs; once the open period is
//! over it probes Pushwoosh with one job at a time until an answer decides.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lapin::options::BasicGetOptions;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::breaker::BreakerState;
use super::consumer::ConsumerSetup;
use super::context::WorkerContext;
use super::lane::{LaneChannel, spawn_process};

/// How holding off ended.
pub(super) enum HoldEnd {
    /// Pushwoosh answered a probe: consume again.
    Closed,
    /// Asked to stop.
    Stopped,
}

/// While the breaker is open, takes nothing; once the open period is over, takes one job
/// at a time (basic.get) and processes it, until an answer closes or reopens the breaker.
/// A job that is not a call (rejected by validation, unparseable) decides nothing: the
/// next one probes.
pub(super) async fn hold_and_probe(
    setup: &ConsumerSetup,
    lanes: &[LaneChannel],
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<HoldEnd> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(HoldEnd::Stopped),
            () = setup.breaker.wait_for_probe() => {}
        }
        while setup.breaker.state() == BreakerState::HalfOpen {
            match probe(lanes).await? {
                Some((message, ctx)) => {
                    let done = spawn_process(tasks, message.delivery, ctx);
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(HoldEnd::Stopped),
                        _ = done => {}
                    }
                }
                None => tokio::select! {
                    () = shutdown.cancelled() => return Ok(HoldEnd::Stopped),
                    () = tokio::time::sleep(PROBE_POLL) => {}
                },
            }
        }
        if setup.breaker.state() == BreakerState::Closed {
            return Ok(HoldEnd::Closed);
        }
    }
}

/// The next job of the first lane that has one (lanes come urgent first).
async fn probe(
    lanes: &[LaneChannel],
) -> anyhow::Result<Option<(lapin::message::BasicGetMessage, &Arc<WorkerContext>)>> {
    for lane in lanes {
        let queue = lane.ctx.lane.queue.as_str();
        let got = lane
            .channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .with_context(|| format!("taking a probe job from {queue}"))?;
        if let Some(message) = got {
            return Ok(Some((message, &lane.ctx)));
        }
    }
    Ok(None)
}

/// How often a half-open breaker looks for a probe job in an empty queue.
const PROBE_POLL: Duration = Duration::from_millis(250);
