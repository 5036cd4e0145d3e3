//! The benchmark's scenarios, each printing one labelled block: what was run, one
//! row per run, and where the worker stands against the target.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use pushwoosh_worker::bench_support::QueueType;

mod budget;
mod lanes;
mod latency;
mod replicas;
mod resources;
mod throughput;

pub use budget::BudgetArgs;
use budget::shared_budget;
pub use lanes::LanesArgs;
use lanes::lanes;
use latency::{latency, service};
pub use replicas::ReplicaArgs;
use replicas::replicas;
use resources::{api_budget, memory};
use throughput::efficiency;

use super::mock::Mock;
use super::report::{
    self, each_ms, each_percent, mean, median, paired_ratios, spread, thousands, verdict,
};
use super::run::{Bench, Consumer, Load, Measured, RunSpec, measure};
use super::{Args, MockKind, Mode, QueueKind, Scenario};

/// The configuration file of the tree this bench was built from: it names every key the
/// worker accepts (the worker refuses unknown keys at start).
const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// What the worker is held to in the efficiency and service scenarios. The ledger (on
/// by default) adds a Redis round trip before each call and one after it, so with it on
/// the targets are its own; with `--worker-env PUSHWOOSH_WORKER__LEDGER__ENABLED=false`,
/// the worker's without it.
struct Targets {
    /// Share of the ceiling's jobs/s, both load modes.
    efficiency_share: f64,
    service_p50_ms: f64,
    service_p99_ms: f64,
}

impl Targets {
    fn of(args: &Args) -> Self {
        let ledger_off = args.worker_env.iter().any(|(key, value)| {
            key == "PUSHWOOSH_WORKER__LEDGER__ENABLED" && value.eq_ignore_ascii_case("false")
        });
        if ledger_off {
            Self {
                efficiency_share: 0.85,
                service_p50_ms: 54.0,
                service_p99_ms: 60.0,
            }
        } else {
            Self {
                efficiency_share: 0.80,
                service_p50_ms: 55.0,
                service_p99_ms: 62.0,
            }
        }
    }
}

/// The one place that says how the worker runs in scenarios 1-4, which measure its own
/// cost: the client-side rate limiter (createMessage 600 a minute by default) would cap
/// them at 10 calls a second, so it is switched off, once the worker has it.
fn own_cost_env() -> Vec<(String, String)> {
    let mut env = Vec::new();
    if has_section("rate_limit") {
        env.push(kv("PUSHWOOSH_WORKER__RATE_LIMIT__ENABLED", "false"));
    }
    env
}

/// Scenario 5: the limiter set to the account's limit and request batching on. Set even
/// when the worker does not know these keys yet: it then refuses to start, and says so.
fn api_budget_env(limit: u32) -> Vec<(String, String)> {
    vec![
        kv("PUSHWOOSH_WORKER__RATE_LIMIT__ENABLED", "true"),
        kv(
            "PUSHWOOSH_WORKER__RATE_LIMIT__CREATE_MESSAGE_PER_MINUTE",
            &limit.to_string(),
        ),
        kv("PUSHWOOSH_WORKER__BATCH__ENABLED", "true"),
    ]
}

/// `pushwoosh-worker` next to this binary (a workspace builds both into one target/).
fn sibling_worker() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the bench binary")?;
    Ok(exe.with_file_name("pushwoosh-worker"))
}

fn has_section(name: &str) -> bool {
    let header = format!("[{name}]");
    DEFAULT_TOML.lines().any(|l| l.trim() == header)
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

pub async fn run_all(args: Args) -> anyhow::Result<bool> {
    let scenarios: Vec<Scenario> =
        if args.scenarios.is_empty() || args.scenarios.contains(&Scenario::All) {
            vec![
                Scenario::Efficiency,
                Scenario::Latency,
                Scenario::Service,
                Scenario::Memory,
                Scenario::ApiBudget,
                Scenario::Replicas,
                Scenario::SharedBudget,
            ]
        } else {
            args.scenarios.clone()
        };
    let amqp_url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let worker_bin = args.worker_bin.clone().map_or_else(sibling_worker, Ok)?;
    anyhow::ensure!(
        worker_bin.exists(),
        "no worker binary at {} (build it: cargo build --release)",
        worker_bin.display()
    );
    let logs = args.logs.clone().unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // The workspace root's target/, where the worker and the bench are built.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new(".."));
        root.join("target/bench-logs")
            .join(now.as_secs().to_string())
    });
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mock = Mock::start(args.mock)?;
    let sandbox = match args.mock {
        MockKind::Sandbox => None,
        MockKind::Minimal
            if scenarios.contains(&Scenario::ApiBudget)
                || scenarios.contains(&Scenario::SharedBudget) =>
        {
            Some(Mock::start(MockKind::Sandbox)?)
        }
        MockKind::Minimal => None,
    };
    preamble(&args, &worker_bin, &logs, &mock);
    let queue_type = match args.queue_type {
        QueueKind::Quorum => QueueType::Quorum,
        QueueKind::Classic => QueueType::Classic,
    };
    let mut bench = Bench::new(
        amqp_url,
        queue_type,
        worker_bin,
        logs,
        mock,
        sandbox,
        args.worker_env.clone(),
    );
    bench.ceiling_ack_coalesce_ms = args.ceiling_ack_coalesce_ms;

    let mut all_ran = true;
    for scenario in scenarios {
        let outcome = match scenario {
            Scenario::Efficiency => efficiency(&bench, &args).await,
            Scenario::Latency => latency(&bench, &args).await,
            Scenario::Service => service(&bench, &args).await,
            Scenario::Memory => memory(&bench, &args).await,
            Scenario::ApiBudget => api_budget(&bench, &args).await,
            Scenario::Replicas => replicas(&bench, &args).await,
            Scenario::SharedBudget => shared_budget(&bench, &args).await,
            Scenario::Lanes => lanes(&bench, &args).await,
            Scenario::All => Ok(()),
        };
        if let Err(e) = outcome {
            all_ran = false;
            println!("  FAILED: {e:#}");
        }
    }
    println!("\nlogs: {}", bench.logs.display());
    Ok(all_ran)
}

fn preamble(args: &Args, worker_bin: &std::path::Path, logs: &std::path::Path, mock: &Mock) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "pushwoosh-worker benchmark, {date}, {cores} cores, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "worker: {} (RUST_LOG unset: info, logs to files)",
        worker_bin.display()
    );
    println!("mock Pushwoosh: {} (in a thread of the bench)", mock.name());
    if has_section("rate_limit") {
        println!(
            "scenarios 1-4: the worker's rate limiter off (PUSHWOOSH_WORKER__RATE_LIMIT__ENABLED=false)"
        );
    } else {
        println!(
            "scenarios 1-4: this worker has no rate limiter (no [rate_limit] in config/default.toml)"
        );
    }
    if !args.worker_env.is_empty() {
        let extra: Vec<String> = args
            .worker_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("extra worker env: {}", extra.join(" "));
    }
    println!(
        "jobs queue: {:?}; runs per measurement: {}; logs: {}",
        args.queue_type,
        args.runs,
        logs.display()
    );
}

fn spec(
    label: String,
    consumer: Consumer,
    load: Load,
    jobs: usize,
    prefetch: u16,
    latency_ms: u64,
) -> RunSpec {
    RunSpec {
        label,
        consumer,
        load,
        jobs,
        prefetch,
        api_latency: Duration::from_millis(latency_ms),
        api_limit: None,
        warmup: 0,
        sample_in_flight: false,
        use_sandbox: false,
        processes: 1,
        kill_at: None,
        calls_timeline: false,
    }
}

async fn run_row(bench: &Bench, spec: &RunSpec) -> anyhow::Result<Measured> {
    let m = measure(bench, spec)
        .await
        .with_context(|| format!("run {:?}", spec.label))?;
    report::row(&m);
    Ok(m)
}

/// The ceiling (unless `--no-ceiling`) and the worker, the same jobs the same way, one
/// right after the other. The order alternates with `run` (the ceiling first in run 0,
/// the worker first in run 1, ...): this VM's speed drifts within minutes, and a fixed
/// order would hand any steady drift to one side of every pair.
async fn pair(
    bench: &Bench,
    args: &Args,
    name: &str,
    run: usize,
    load: Load,
    prefetch: u16,
    latency_ms: u64,
) -> anyhow::Result<(Option<Measured>, Measured)> {
    let ceiling = (!args.no_ceiling).then(|| {
        spec(
            format!("ceiling, {name}"),
            Consumer::Ceiling(Duration::ZERO),
            load,
            args.jobs,
            prefetch,
            0,
        )
    });
    let w = spec(
        format!("worker, {name}"),
        Consumer::Worker(own_cost_env()),
        load,
        args.jobs,
        prefetch,
        latency_ms,
    );
    let worker_first = match run % 2 {
        1 => Some(run_row(bench, &w).await?),
        _ => None,
    };
    let ceiling = match ceiling {
        Some(c) => Some(run_row(bench, &c).await?),
        None => None,
    };
    let worker = match worker_first {
        Some(worker) => worker,
        None => run_row(bench, &w).await?,
    };
    Ok((ceiling, worker))
}

/// The worker's share of its ceiling: the median of the per-pair ratios (each worker run
/// against the ceiling run next to it), with each run's ratio when there were several.
fn share_of_ceiling(worker: &[Measured], ceiling: &[Measured]) -> (f64, String) {
    let ratios = paired_ratios(&rates(worker), &rates(ceiling));
    let detail = if ratios.len() > 1 {
        format!(
            ", the median of {} paired runs{}",
            ratios.len(),
            each_percent(&ratios)
        )
    } else {
        String::new()
    };
    (median(&ratios), detail)
}

fn rates(runs: &[Measured]) -> Vec<f64> {
    runs.iter().map(|m| m.jobs_per_s).collect()
}
