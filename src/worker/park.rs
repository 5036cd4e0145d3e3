//! Parking a job in a retry queue, for its next call or while the circuit breaker holds
//! it: the broker keeps it, not the worker's memory.

use lapin::message::Delivery;
use tracing::error;

use super::acks::HandBack;
use super::context::WorkerContext;
use super::fate::Fate;
use crate::broker::publisher::{ParkedRetry, PublishError};

/// Parks the job. `Ok` with the delivery's fate: parked, or handed back when there is no
/// channel to park it on (the connection is gone, or the worker is stopping). `Err` with
/// the broker's reason when it refused to hold this job: the caller decides instead.
pub(super) async fn park(
    ctx: &WorkerContext,
    delivery: &Delivery,
    parked: &ParkedRetry<'_>,
) -> Result<Fate, String> {
    match ctx
        .publisher
        .park_retry(&delivery.data, &delivery.properties, parked)
        .await
    {
        Ok(()) => Ok(Fate::Parked),
        Err(PublishError::Unavailable(why)) => {
            error!(error = %why, "could not park the job: handed back");
            Ok(Fate::HandBack(HandBack::CannotPublish))
        }
        Err(PublishError::Refused(why)) => {
            error!(error = %why, "the broker refused to hold the job");
            Err(why)
        }
    }
}
