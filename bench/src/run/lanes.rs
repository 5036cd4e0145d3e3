//! One run of the lanes scenario: a campaign of push jobs queued on the bulk lane before
//! the worker starts (its rate limiter and batching on their defaults), urgent jobs
//! published one every interval while the worker works through it, until the campaign's
//! results are all in; then every urgent job's result.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::super::broker::{
    LaneCollected, LaneCollector, Names, Producer, Stamps, UrgentKind, UrgentResult, UrgentStamps,
    id_prefix, publish_urgent,
};
use super::super::procs::{MachineCpu, Proc, metric_sum};
use super::{Bench, STALL};

/// Urgent jobs during a run: what, how often, and with which routing key.
#[derive(Debug, Clone)]
pub struct UrgentLoad {
    pub kind: UrgentKind,
    pub interval: Duration,
    pub routing_key: String,
}

#[derive(Debug, Clone)]
pub struct LanesSpec {
    pub label: String,
    /// Push jobs queued before the worker starts.
    pub campaign: usize,
    /// amqp.prefetch (the bulk lane's; the urgent lane keeps its own).
    pub prefetch: u16,
    pub api_latency: Duration,
    /// None: the campaign alone.
    pub urgent: Option<UrgentLoad>,
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct LanesMeasured {
    pub label: String,
    pub campaign: usize,
    pub collected: LaneCollected,
    /// Campaign results a second, from its first result to its last.
    pub bulk_per_s: f64,
    pub bulk_seconds: f64,
    pub urgent_published: usize,
    /// The urgent results' publish-to-result times, ms, sorted.
    pub urgent_ms: Vec<f64>,
    /// The worker's calls by method, and its 429s.
    pub create_message: Option<f64>,
    pub create_sms: Option<f64>,
    pub http_429: Option<f64>,
    pub cpu_ms: Option<f64>,
    pub peak_rss_kb: Option<u64>,
    pub machine_busy: Option<f64>,
}

impl LanesMeasured {
    /// The `p` quantile of the urgent jobs' publish-to-result, ms (nearest rank).
    pub fn urgent_pct(&self, p: f64) -> Option<f64> {
        percentile(&self.urgent_ms, p)
    }

    /// The median publish-to-result of the urgent jobs published in each quarter of the
    /// run, in publish order: whether the lane's wait grows as the run goes on.
    pub fn quarter_p50s(&self) -> Vec<f64> {
        let mut by_index: Vec<&UrgentResult> = self.collected.urgent.iter().collect();
        by_index.sort_unstable_by_key(|r| r.index);
        if by_index.len() < 8 {
            return Vec::new();
        }
        by_index
            .chunks(by_index.len().div_ceil(4))
            .map(|q| {
                let mut ms: Vec<f64> = q.iter().map(|r| r.latency_us as f64 / 1000.0).collect();
                ms.sort_by(f64::total_cmp);
                percentile(&ms, 0.5).unwrap_or(0.0)
            })
            .collect()
    }

    /// Urgent jobs that shared their call with others (campaign pushes), and the mean
    /// number of jobs in the calls that carried urgent jobs.
    pub fn urgent_batched(&self) -> (usize, f64) {
        let u = &self.collected.urgent;
        let shared = u.iter().filter(|r| r.batch_jobs > 1).count();
        let mean = u.iter().map(|r| r.batch_jobs as f64).sum::<f64>() / u.len().max(1) as f64;
        (shared, mean)
    }

    pub fn urgent_not_ok(&self) -> usize {
        self.collected.urgent.iter().filter(|r| !r.ok).count()
    }
}

/// Nearest-rank quantile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

pub async fn measure_lanes(bench: &Bench, spec: &LanesSpec) -> anyhow::Result<LanesMeasured> {
    super::with_fresh_names(bench, async |names| {
        measure_lanes_on(bench, spec, names).await
    })
    .await
}

async fn measure_lanes_on(
    bench: &Bench,
    spec: &LanesSpec,
    names: &Names,
) -> anyhow::Result<LanesMeasured> {
    let amqp = &names.settings.amqp;
    let mock = &bench.mock;
    mock.set_latency(spec.api_latency);
    mock.set_create_message_limit(None)?;
    // The campaign, queued before the worker starts (routing key jobs.bench: the bulk lane).
    let producer = Producer::connect(&bench.amqp_url, &amqp.jobs_exchange).await?;
    producer
        .publish(
            0..spec.campaign,
            None,
            &Stamps::new(spec.campaign, id_prefix(false)),
        )
        .await
        .context("queueing the campaign")?;
    drop(producer);
    let mut collector = LaneCollector::start(&bench.amqp_url, &amqp.results_exchange).await?;

    let n = bench.runs.fetch_add(1, Ordering::Relaxed) + 1;
    let slug: String = spec
        .label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let log = bench.logs.join(format!("{n:02}-{slug}.log"));
    // A run's 100,000 job ids are its own (its own key prefix), deleted after the run; a
    // quarter of an hour instead of a day keeps them from filling the shared Redis when
    // the bench is stopped before that. Only the keys' expiry changes.
    let window = [(
        "PUSHWOOSH_WORKER__LEDGER__WINDOW_MS".to_owned(),
        "900000".to_owned(),
    )];
    let env = bench.worker_env(mock, names, spec.prefetch, &window);
    let machine0 = MachineCpu::now();
    let worker = Proc::worker(&bench.worker_bin, &env, log).await?;
    eprintln!(
        "  [{} pid {}, log {}]",
        spec.label,
        worker.pid(),
        worker.log.display()
    );
    let cpu0 = worker.cpu_ms();

    let stamps = Arc::new(UrgentStamps::default());
    let stop = CancellationToken::new();
    let publisher = spec.urgent.clone().map(|u| {
        let (url, exchange) = (bench.amqp_url.clone(), amqp.jobs_exchange.clone());
        let (stamps, stop) = (stamps.clone(), stop.clone());
        tokio::spawn(async move {
            publish_urgent(
                &url,
                &exchange,
                u.kind,
                &u.routing_key,
                u.interval,
                &stamps,
                stop,
            )
            .await
        })
    });
    let mut collected = LaneCollected::default();
    let campaign = spec.campaign;
    collector
        .collect(&mut collected, &stamps, |c| c.bulk >= campaign, STALL)
        .await;
    // The campaign is in (or stalled): no more urgent jobs; then the ones published.
    stop.cancel();
    let published = match publisher {
        Some(task) => task.await.context("the urgent publisher")??,
        None => 0,
    };
    if collected.stopped_short.is_none() {
        collector
            .collect(
                &mut collected,
                &stamps,
                |c| c.urgent.len() >= published,
                STALL,
            )
            .await;
    }
    let cpu1 = worker.cpu_ms();
    let peak_rss_kb = worker.peak_rss_kb();
    let machine1 = MachineCpu::now();
    let metrics = worker.metrics().await;
    worker.stop().await;

    let calls = |method: &str| {
        let label = format!("method=\"{method}\"");
        metrics
            .as_deref()
            .map(|m| metric_sum(m, "pushwoosh_worker_api_calls_total", &[label.as_str()]))
    };
    let bulk_seconds = match (collected.bulk_first, collected.bulk_last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let mut urgent_ms: Vec<f64> = collected
        .urgent
        .iter()
        .map(|r| r.latency_us as f64 / 1000.0)
        .collect();
    urgent_ms.sort_by(f64::total_cmp);
    Ok(LanesMeasured {
        label: spec.label.clone(),
        campaign,
        bulk_per_s: if bulk_seconds > 0.0 {
            collected.bulk.saturating_sub(1) as f64 / bulk_seconds
        } else {
            0.0
        },
        bulk_seconds,
        urgent_published: published,
        urgent_ms,
        create_message: calls("createMessage"),
        create_sms: calls("createSMSMessage"),
        http_429: metrics.as_deref().map(|m| {
            metric_sum(
                m,
                "pushwoosh_worker_api_calls_total",
                &["status=\"http_429\""],
            )
        }),
        cpu_ms: cpu0.zip(cpu1).map(|(a, b)| b - a),
        peak_rss_kb,
        machine_busy: machine0.zip(machine1).map(|(a, b)| a.busy_since(b)),
        collected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn quarters_follow_publish_order() {
        let mut m = LanesMeasured::default();
        for i in 0..8 {
            m.collected.urgent.push(UrgentResult {
                index: 7 - i,
                latency_us: (7 - i as u64) * 1000,
                ok: true,
                batch_jobs: 1,
            });
        }
        assert_eq!(m.quarter_p50s(), vec![0.0, 2.0, 4.0, 6.0]);
    }
}
