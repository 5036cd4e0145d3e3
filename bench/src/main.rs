//! The benchmark: the real worker binary, as its own process, against the local RabbitMQ
//! and a mock Pushwoosh with a set latency. It publishes push jobs, waits for their
//! results and prints jobs/s, publish-to-result latency, the worker's peak RSS and CPU per
//! job, next to a consume → publish-confirmed-result → ack loop with no HTTP call (the
//! broker's own ceiling) measured in the same run. Run it with `scripts/bench`;
//! docs/performance.md says what each scenario measures.

mod broker;
mod ceiling;
mod mock;
mod procs;
mod report;
mod run;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

// The bench chooses the worker's allocator, jemalloc with one arena (src/main.rs): its
// no-HTTP ceiling loop runs in a process of this binary and is compared with the worker,
// so the two should pay the same for their allocations.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's `malloc_conf`, a C string read once at start-up.
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
#[used]
static MALLOC_CONF: &u8 = &b"narenas:1\0"[0];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 0 ms mock, `--jobs` push jobs, `--prefetch`: the worker's cost vs the no-HTTP loop.
    Efficiency,
    /// 50 ms mock, each `--latency-prefetch`: jobs/s vs prefetch / 51.5 ms and the ceiling.
    Latency,
    /// A steady `--service-rate` jobs/s with a 50 ms mock: p50/p99 publish to result.
    Service,
    /// Peak RSS with `--memory-prefetch` (256) jobs in flight at 50 ms.
    Memory,
    /// A mock allowing `--api-limit` createMessage calls a minute: push jobs per minute.
    ApiBudget,
    /// `--replica-counts` worker processes on one queue at 50 ms, each against the ceiling.
    Replicas,
    /// `--budget-processes` workers sharing one account's budget in Redis, one killed mid-run.
    SharedBudget,
    /// A campaign on the bulk lane with urgent jobs on the urgent lane (not in `all`: ~12 min).
    Lanes,
    All,
}

/// How jobs reach the consumer in the efficiency scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A producer publishes (confirmed, as fast as it can) while the consumer runs.
    Concurrent,
    /// The queue is filled first, then the consumer drains it.
    Drain,
}

/// The jobs queue's type (`amqp.queue_type`), for the ceiling and the worker alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueKind {
    /// Replicated; a settled delivery goes through the Raft log (the worker's default).
    Quorum,
    Classic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MockKind {
    /// The project's sandbox (`pushwoosh-worker sandbox`), in a thread of the bench.
    Sandbox,
    /// A bare axum responder (one code per notification, no state), in a thread of the bench.
    Minimal,
}

/// Benchmark pushwoosh-worker against RabbitMQ and a mock Pushwoosh (docs/performance.md).
#[derive(Debug, Parser)]
#[command(name = "bench")]
pub struct Args {
    /// Scenarios to run, in order; none means all.
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Push jobs per efficiency and latency measurement.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// amqp.prefetch for the efficiency scenario (the worker's default is 64).
    #[arg(long, default_value_t = 64)]
    pub prefetch: u16,
    /// Efficiency modes to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "concurrent,drain"
    )]
    pub modes: Vec<Mode>,
    /// Latency-hiding modes to run (the issue names none for this target: both are shown).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "concurrent,drain"
    )]
    pub latency_modes: Vec<Mode>,
    /// Mock latency (ms) for the latency, service and memory scenarios.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// amqp.prefetch values for the latency-hiding scenario.
    #[arg(long, value_delimiter = ',', default_value = "256,1024")]
    pub latency_prefetch: Vec<u16>,
    /// Publish rate (jobs/s) of the service-latency scenario.
    #[arg(long, default_value_t = 1000)]
    pub service_rate: u32,
    /// Seconds of steady publishing in the service-latency scenario (the first is warm-up).
    #[arg(long, default_value_t = 10)]
    pub service_secs: u64,
    /// amqp.prefetch values for the service-latency scenario.
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    pub service_prefetch: Vec<u16>,
    /// amqp.prefetch (jobs in flight) for the memory scenario.
    #[arg(long, default_value_t = 256)]
    pub memory_prefetch: u16,
    /// Push jobs in the memory scenario.
    #[arg(long, default_value_t = 5_000)]
    pub memory_jobs: usize,
    /// Length of the API-budget window, seconds.
    #[arg(long, default_value_t = 60)]
    pub api_secs: u64,
    /// Publish rate (jobs/s) during the API-budget window.
    #[arg(long, default_value_t = 1000)]
    pub api_rate: u32,
    /// createMessage calls a minute the mock allows (HTTP 429 beyond), and the worker's limiter setting.
    #[arg(long, default_value_t = 600)]
    pub api_limit: u32,
    /// amqp.prefetch for the API-budget scenario (jobs waiting for a batch hold a slot).
    #[arg(long, default_value_t = 1024)]
    pub api_prefetch: u16,
    /// Mock latency (ms) for the API-budget scenario.
    #[arg(long, default_value_t = 50)]
    pub api_latency_ms: u64,
    #[command(flatten)]
    pub replicas: scenarios::ReplicaArgs,
    #[command(flatten)]
    pub budget: scenarios::BudgetArgs,
    #[command(flatten)]
    pub lanes: scenarios::LanesArgs,
    /// Extra worker environment, KEY=VALUE (repeatable); applied last, to every worker start.
    #[arg(long = "worker-env", value_name = "KEY=VALUE", value_parser = key_value)]
    pub worker_env: Vec<(String, String)>,
    /// Skip the no-HTTP ceiling runs (e.g. to compare two worker builds quickly).
    #[arg(long)]
    pub no_ceiling: bool,
    /// Let the ceiling coalesce its acks as the worker does (`amqp.ack_coalesce_ms`);
    /// 0, the default, acks each job on its own, the loop as issue #5 defines it.
    #[arg(long, default_value_t = 0)]
    pub ceiling_ack_coalesce_ms: u64,
    /// Repeat each measurement this many times (the machine is shared: numbers are noisy).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// The mock Pushwoosh of scenarios 1-4 and replicas (api-budget and shared-budget always
    /// use the sandbox). The sandbox checks and records every call, so it takes more CPU per
    /// call than the minimal responder, on the cores the worker needs.
    #[arg(long, value_enum, default_value_t = MockKind::Minimal)]
    pub mock: MockKind,
    /// The jobs queue's type.
    #[arg(long, value_enum, default_value_t = QueueKind::Quorum)]
    pub queue_type: QueueKind,
    /// The worker binary (default: pushwoosh-worker next to this bench binary).
    #[arg(long)]
    pub worker_bin: Option<PathBuf>,
    /// Where worker and ceiling logs go (default: target/bench-logs/<unix time>).
    #[arg(long)]
    pub logs: Option<PathBuf>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn main() -> ExitCode {
    // The ceiling loop runs as a child process of the bench, like the worker does.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(ceiling::SUBCOMMAND) {
        return ceiling::main(&argv[2..]);
    }
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(scenarios::run_all(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
