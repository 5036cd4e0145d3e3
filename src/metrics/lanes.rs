//! Each lane's metrics, `{lane="bulk"|"urgent"|…}`: how long its jobs wait in the queue,
//! how long they take to their result, and how many expired.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    /// `bulk` (the jobs queue) or a lane's name.
    pub lane: &'static str,
}

type LaneHistograms = Family<LaneLabels, Histogram, fn() -> Histogram>;

fn lane_histogram() -> Histogram {
    // 5 ms to ~5.5 min: an urgent job's seconds and a campaign backlog's minutes.
    Histogram::new(exponential_buckets(0.005, 2.0, 17))
}

#[derive(Clone)]
pub struct LaneMetrics {
    pub queue_wait: LaneHistograms,
    pub time_to_result: LaneHistograms,
    pub expired: Family<LaneLabels, Counter>,
}

impl LaneMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let queue_wait: LaneHistograms = Family::new_with_constructor(lane_histogram);
        registry.register(
            "queue_wait_seconds",
            "Time from a job's publish to its first receipt by a worker, by lane (jobs published with an AMQP timestamp or a timestamp_in_ms header only)",
            queue_wait.clone(),
        );
        let time_to_result: LaneHistograms = Family::new_with_constructor(lane_histogram);
        registry.register(
            "time_to_result_seconds",
            "Time from a job's publish (its receipt when the publish time is unknown) to its result event, by lane",
            time_to_result.clone(),
        );
        let expired = Family::<LaneLabels, Counter>::default();
        registry.register(
            "jobs_expired",
            "Jobs not sent because their expires_at passed, by lane",
            expired.clone(),
        );
        Self {
            queue_wait,
            time_to_result,
            expired,
        }
    }

    /// Makes the lane's series exist from the start, at zero.
    pub fn announce(&self, lane: &'static str) {
        let labels = LaneLabels { lane };
        let _ = self.queue_wait.get_or_create(&labels);
        let _ = self.time_to_result.get_or_create(&labels);
        let _ = self.expired.get_or_create(&labels);
    }
}
