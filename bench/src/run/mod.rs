//! One measured run: fresh names, a mock set up, a consumer (the worker or the ceiling)
//! started, jobs published in the run's way, every result matched, the numbers read
//! from Linux and the worker's /metrics, then everything stopped and deleted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use pushwoosh_worker::bench_support::QueueType;

mod consumers;
mod lanes;
mod observe;
mod spec;

pub use lanes::{LanesMeasured, LanesSpec, UrgentLoad, measure_lanes};
pub use spec::{Consumer, Load, Measured, RunSpec};

use consumers::Consumers;
use observe::{held_ms, mean_ms, sample_calls, sample_in_flight, tail_legs};
use tokio_util::sync::CancellationToken;

use super::broker::{Collector, Names, Producer, Stamps, id_prefix};
use super::mock::Mock;
use super::procs::{self, MachineCpu, metric_sum};

/// No result for this long ends a run as failed.
const STALL: Duration = Duration::from_secs(30);

/// What the bench shares between runs.
pub struct Bench {
    pub amqp_url: String,
    pub queue_type: QueueType,
    pub worker_bin: PathBuf,
    pub logs: PathBuf,
    pub mock: Mock,
    /// A sandbox for runs that need one when `mock` is the minimal responder.
    pub sandbox: Option<Mock>,
    /// `--worker-env`, applied last to every worker start.
    pub extra_env: Vec<(String, String)>,
    /// `--ceiling-ack-coalesce-ms`: the ceiling acks as the worker does (0: each job alone).
    pub ceiling_ack_coalesce_ms: u64,
    runs: AtomicUsize,
}

impl Bench {
    pub fn new(
        amqp_url: String,
        queue_type: QueueType,
        worker_bin: PathBuf,
        logs: PathBuf,
        mock: Mock,
        sandbox: Option<Mock>,
        extra_env: Vec<(String, String)>,
    ) -> Self {
        Self {
            amqp_url,
            queue_type,
            worker_bin,
            logs,
            mock,
            sandbox,
            extra_env,
            ceiling_ack_coalesce_ms: 0,
            runs: AtomicUsize::new(0),
        }
    }

    /// A worker process's environment: the broker, `mock`, `prefetch`, the run's `names`
    /// (with the ledger's key prefix: one per run, shared by all its processes, one
    /// account's budget and one memory of job ids), then `own`, then `--worker-env`.
    fn worker_env(
        &self,
        mock: &Mock,
        names: &Names,
        prefetch: u16,
        own: &[(String, String)],
    ) -> Vec<(String, String)> {
        let mut all = vec![
            ("AMQP_URL".to_owned(), self.amqp_url.clone()),
            ("PUSHWOOSH_API_URL".to_owned(), mock.base_url().to_owned()),
            ("PUSHWOOSH_AUTH_TOKEN".to_owned(), "bench-token".to_owned()),
            (
                "PUSHWOOSH_WORKER__AMQP__PREFETCH".to_owned(),
                prefetch.to_string(),
            ),
            // Jobs still waiting at the end (e.g. for a rate-limit slot) go back to a
            // queue about to be deleted: no need to wait the default 25 s for them.
            (
                "PUSHWOOSH_WORKER__SHUTDOWN__GRACE_PERIOD_MS".to_owned(),
                "2000".to_owned(),
            ),
        ];
        all.extend(names.worker_env());
        all.extend(own.iter().cloned());
        all.extend(self.extra_env.iter().cloned());
        all
    }
}

pub async fn measure(bench: &Bench, spec: &RunSpec) -> anyhow::Result<Measured> {
    with_fresh_names(bench, async |names| measure_on(bench, spec, names).await).await
}

/// Runs `run` on a run's own exchanges and queues, declared first and deleted after,
/// whatever `run` answered.
pub(super) async fn with_fresh_names<T>(
    bench: &Bench,
    run: impl AsyncFnOnce(&Names) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let names = Names::fresh(&bench.amqp_url, bench.queue_type);
    names.declare().await?;
    let result = run(&names).await;
    if let Err(e) = names.delete().await {
        eprintln!(
            "bench: could not delete {}: {e:#}",
            names.settings.amqp.jobs_queue
        );
    }
    if let Err(e) = names.forget_ledger_keys().await {
        eprintln!(
            "bench: could not delete the ledger keys of {}: {e:#}",
            names.settings.amqp.jobs_queue
        );
    }
    result
}

async fn measure_on(bench: &Bench, spec: &RunSpec, names: &Names) -> anyhow::Result<Measured> {
    let amqp = &names.settings.amqp;
    let mock = match &bench.sandbox {
        Some(sandbox) if spec.use_sandbox => sandbox,
        _ => &bench.mock,
    };
    mock.set_latency(spec.api_latency);
    mock.set_create_message_limit(spec.api_limit)?;
    let ids = id_prefix(mock.sends().is_some());
    let stamps = Arc::new(Stamps::new(spec.jobs, ids));
    let mut collector =
        Collector::start(&bench.amqp_url, &amqp.results_exchange, stamps.clone()).await?;
    // At a steady rate the tail says something about the worker; when the producer
    // outruns the consumer it is the queue, by design.
    collector.split_legs = matches!(spec.load, Load::Paced(_) | Load::Window(..));
    let producer = Producer::connect(&bench.amqp_url, &amqp.jobs_exchange).await?;

    if spec.load == Load::Drain {
        producer.publish(0..spec.jobs, None, &stamps).await?;
    }
    let calls_before = mock.create_message_calls();
    let sends_before = mock.sends();
    let n = bench.runs.fetch_add(1, Ordering::Relaxed) + 1;
    let slug: String = spec
        .label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let (broker, redis) = (procs::broker_pid(&bench.amqp_url), procs::redis_pid());
    let cpu_of = |pid: Option<u32>| pid.and_then(|p| procs::cpu_ms_of(&format!("/proc/{p}/stat")));
    let around = || (MachineCpu::now(), cpu_of(broker), cpu_of(redis));
    let before_start = around();
    let mut consumers =
        Consumers::start(bench, spec, names, mock, &format!("{n:02}-{slug}")).await?;
    // A drain counts the start-up too (the worker consumes as soon as it can).
    let (cpu0, around0) = if spec.load == Load::Drain {
        (0.0, before_start)
    } else {
        (consumers.cpu_ms().unwrap_or(0.0), around())
    };
    let idle_rss_kb = consumers.rss_kb();
    let bench0 = procs::own_cpu_ms();
    let mock0 = mock.cpu_ms();

    let started = Instant::now();
    let publishing = match spec.load {
        Load::Drain => None,
        Load::Concurrent => Some(None),
        Load::Paced(rate) | Load::Window(rate, _) => Some(Some(rate)),
    }
    .map(|rate| {
        let stamps = stamps.clone();
        let jobs = spec.jobs;
        tokio::spawn(async move { producer.publish(0..jobs, rate, &stamps).await })
    });
    let deadline = match spec.load {
        Load::Window(_, secs) => Some(started + Duration::from_secs(secs)),
        _ => None,
    };
    // Collect; meanwhile sample, and kill a consumer, as the run asks.
    let stop = CancellationToken::new();
    let urls = consumers.metrics_urls();
    let (collected, max_in_flight, timeline, killed_at) = tokio::join!(
        async {
            let c = collector
                .collect(spec.jobs, spec.warmup, deadline, STALL)
                .await;
            stop.cancel();
            c
        },
        async {
            if spec.sample_in_flight {
                Some(sample_in_flight(urls, &stop).await)
            } else {
                None
            }
        },
        async {
            if spec.calls_timeline {
                sample_calls(mock, started, &stop).await
            } else {
                Vec::new()
            }
        },
        async {
            match spec.kill_at {
                Some(after) => consumers.kill_one(started, after, &stop).await,
                None => None,
            }
        },
    );

    let cpu1 = consumers.cpu_ms();
    let peak_rss_kb = consumers.peak_rss_kb();
    let (machine1, broker1, redis1) = around();
    let metrics = consumers.metrics().await;
    let calls = mock.create_message_calls() - calls_before;
    let sends = sends_before.zip(mock.sends()).map(|(a, b)| b - a);
    let logs = consumers.logs();
    consumers.stop().await;
    let published = match publishing {
        Some(task) => {
            if deadline.is_some() {
                task.abort();
                None
            } else {
                Some(task.await.context("the producer task")??)
            }
        }
        None => None,
    };

    let from = match spec.load {
        Load::Drain => collected.first,
        _ => Some(started),
    };
    let seconds = match (deadline, from, collected.last) {
        (Some(d), _, _) => d.duration_since(started).as_secs_f64(),
        (None, Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let counted = if spec.load == Load::Drain {
        collected.results.saturating_sub(1)
    } else {
        collected.results
    };
    let mut latencies = collected.latencies_us.clone();
    latencies.sort_unstable();
    let pct = |p: f64| -> Option<f64> {
        if spec.load == Load::Drain || latencies.is_empty() {
            return None;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        Some(latencies[i] as f64 / 1000.0)
    };
    let metric = |name: &str, labels: &[&str]| {
        metrics
            .as_deref()
            .map(|m| metric_sum(m, name, labels) as u64)
    };
    let mean = |histogram: &str| metrics.as_deref().and_then(|m| mean_ms(m, histogram));
    let holds: Vec<f64> = logs.iter().filter_map(|l| held_ms(l)).collect();
    let (machine0, broker0, redis0) = around0;
    Ok(Measured {
        label: spec.label.clone(),
        is_worker: matches!(spec.consumer, Consumer::Worker(_)),
        processes: spec.processes.max(1),
        expected: spec.jobs,
        results: collected.results,
        not_ok: collected.not_ok,
        duplicates: collected.duplicates,
        marked_duplicate: collected.marked_duplicate,
        seconds,
        jobs_per_s: if seconds > 0.0 {
            counted as f64 / seconds
        } else {
            0.0
        },
        tail_legs: tail_legs(&collected.legs, spec.load == Load::Drain),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        publish_per_s: published.map(|p| p.jobs as f64 / p.seconds.max(1e-9)),
        peak_rss_kb,
        idle_rss_kb,
        cpu_ms: cpu1.map(|c| c - cpu0),
        api_calls: calls,
        sends,
        calls_timeline: timeline
            .into_iter()
            .map(|(t, c)| (t, c - calls_before))
            .collect(),
        killed_at,
        http_429: metric("pushwoosh_worker_api_calls_total", &["status=\"http_429\""]),
        acks: metric("pushwoosh_worker_settle_commands_total", &["command=\"ack"]),
        call_ms: mean("pushwoosh_worker_api_call_duration_seconds"),
        job_ms: mean("pushwoosh_worker_job_duration_seconds"),
        confirm_ms: mean("pushwoosh_worker_result_publish_seconds"),
        hold_ms: (!holds.is_empty()).then(|| holds.iter().sum::<f64>() / holds.len() as f64),
        max_in_flight,
        machine_busy: machine0.zip(machine1).map(|(a, b)| a.busy_since(b)),
        broker_cpu_ms: broker0.zip(broker1).map(|(a, b)| b - a),
        redis_cpu_ms: redis0.zip(redis1).map(|(a, b)| b - a),
        bench_cpu_ms: bench0.zip(procs::own_cpu_ms()).map(|(a, b)| b - a),
        mock_cpu_ms: mock0.zip(mock.cpu_ms()).map(|(a, b)| b - a),
        log_bytes: logs
            .iter()
            .map(|l| std::fs::metadata(l).ok().map(|m| m.len()))
            .sum(),
        stopped_short: collected.stopped_short.clone(),
    })
}
