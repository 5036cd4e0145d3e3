//! The ledger's metrics, `pushwoosh_worker_ledger_*`: what it answered, and how Redis
//! answered it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::job::JobKind;

/// Every `operation` of the Redis metrics.
pub const LEDGER_OPERATIONS: [&str; 5] = ["claim", "record", "release", "rate_limit", "ping"];
/// Every `error` of `ledger_redis_errors_total`.
const ERRORS: [&str; 2] = ["unavailable", "unexpected"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// `claim`, `record`, `release`, `rate_limit`, `ping`.
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedisErrorLabels {
    pub operation: &'static str,
    /// `unavailable` (no answer in time, unreachable, failing over) or `unexpected`.
    pub error: &'static str,
}

type OperationHistograms = Family<OperationLabels, Histogram, fn() -> Histogram>;

#[derive(Clone)]
pub struct LedgerMetrics {
    pub hits: Family<KindLabels, Counter>,
    pub duplicates_refused: Family<KindLabels, Counter>,
    pub unknown_deliveries: Family<KindLabels, Counter>,
    pub unrecorded: Family<KindLabels, Counter>,
    pub redis_errors: Family<RedisErrorLabels, Counter>,
    pub redis_duration: OperationHistograms,
    pub available: Gauge,
}

fn redis_histogram() -> Histogram {
    // 100 µs to ~3.3 s: a round trip to a nearby Redis takes well under a millisecond.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl LedgerMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let hits = Family::<KindLabels, Counter>::default();
        registry.register(
            "ledger_hits",
            "Claims that found Pushwoosh's answer for the job id already recorded, by kind",
            hits.clone(),
        );
        let duplicates_refused = Family::<KindLabels, Counter>::default();
        registry.register(
            "ledger_duplicates_refused",
            "Jobs not sent because their id already went out (published twice, redelivered, or a copy held elsewhere): their result is a duplicate, by kind",
            duplicates_refused.clone(),
        );
        let unknown_deliveries = Family::<KindLabels, Counter>::default();
        registry.register(
            "ledger_unknown_deliveries",
            "Jobs whose earlier call may have reached Pushwoosh with no answer recorded (a worker died mid-call): failed with delivery unknown, by kind",
            unknown_deliveries.clone(),
        );
        let unrecorded = Family::<KindLabels, Counter>::default();
        registry.register(
            "ledger_unrecorded",
            "Jobs sent without the ledger because Redis did not answer (ledger.on_unavailable = send), by kind",
            unrecorded.clone(),
        );
        let redis_errors = Family::<RedisErrorLabels, Counter>::default();
        registry.register(
            "ledger_redis_errors",
            "Redis round trips that failed, by operation and error (unavailable: no answer in time or unreachable)",
            redis_errors.clone(),
        );
        let redis_duration: OperationHistograms = Family::new_with_constructor(redis_histogram);
        registry.register(
            "ledger_redis_duration_seconds",
            "Redis round trip latency (one per batch of jobs), by operation",
            redis_duration.clone(),
        );
        let available = Gauge::default();
        registry.register(
            "ledger_available",
            "1 while Redis answers the ledger; 0 after a round trip or probe failed, until one succeeds",
            available.clone(),
        );
        for kind in JobKind::ALL.map(JobKind::as_str) {
            let labels = KindLabels { kind };
            for family in [&hits, &duplicates_refused, &unknown_deliveries, &unrecorded] {
                let _ = family.get_or_create(&labels);
            }
        }
        for operation in LEDGER_OPERATIONS {
            let _ = redis_duration.get_or_create(&OperationLabels { operation });
            for error in ERRORS {
                let _ = redis_errors.get_or_create(&RedisErrorLabels { operation, error });
            }
        }
        Self {
            hits,
            duplicates_refused,
            unknown_deliveries,
            unrecorded,
            redis_errors,
            redis_duration,
            available,
        }
    }

    /// A job answered from a record (a duplicate).
    pub fn hit(&self, kind: JobKind) {
        self.hits.get_or_create(&kind_labels(kind)).inc();
    }

    /// A job not sent because another processing holds its claim.
    pub fn duplicate_refused(&self, kind: JobKind) {
        self.duplicates_refused
            .get_or_create(&kind_labels(kind))
            .inc();
    }

    /// A job failed with delivery unknown because of an unanswered claim.
    pub fn unknown_delivery(&self, kind: JobKind) {
        self.unknown_deliveries
            .get_or_create(&kind_labels(kind))
            .inc();
    }

    /// A job sent while Redis did not answer (`on_unavailable = send`).
    pub fn unrecorded(&self, kind: JobKind) {
        self.unrecorded.get_or_create(&kind_labels(kind)).inc();
    }

    pub fn round_trip(&self, operation: &'static str, seconds: f64) {
        self.redis_duration
            .get_or_create(&OperationLabels { operation })
            .observe(seconds);
    }

    pub fn redis_error(&self, operation: &'static str, error: &'static str) {
        self.redis_errors
            .get_or_create(&RedisErrorLabels { operation, error })
            .inc();
    }

    pub fn set_available(&self, available: bool) {
        self.available.set(i64::from(available));
    }
}

fn kind_labels(kind: JobKind) -> KindLabels {
    KindLabels {
        kind: kind.as_str(),
    }
}
