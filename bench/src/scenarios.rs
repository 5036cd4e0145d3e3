//! The five scenarios of issue #5, each printing one labelled block: what was run, one
//! row per run, and where the worker stands against the target.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use pushwoosh_worker::bench_support::QueueType;

use super::mock::Mock;
use super::report::{self, each_percent, mean, median, paired_ratios, spread, thousands, verdict};
use super::run::{Bench, Consumer, Load, Measured, RunSpec, measure};
use super::{Args, MockKind, Mode, QueueKind, Scenario};

/// The configuration file of the tree this bench was built from: it names every key the
/// worker accepts (the worker refuses unknown keys at start).
const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

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
        MockKind::Minimal if scenarios.contains(&Scenario::ApiBudget) => {
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

/// 1. The worker's own cost with a 0 ms mock, against the no-HTTP loop, in each mode.
async fn efficiency(bench: &Bench, args: &Args) -> anyhow::Result<()> {
    println!(
        "\n== 1. efficiency: {} push jobs, 0 ms mock, prefetch {} ==",
        thousands(args.jobs as f64),
        args.prefetch
    );
    report::header();
    let mut cpu = Vec::new();
    let mut lines = Vec::new();
    for &mode in &args.modes {
        let (load, name) = mode_load(mode);
        let mut ceiling = Vec::new();
        let mut worker = Vec::new();
        for run in 0..args.runs {
            let (c, w) = pair(bench, args, name, run, load, args.prefetch, 0).await?;
            ceiling.extend(c);
            worker.push(w);
        }
        let w = mean(&rates(&worker));
        let vs_ceiling = if ceiling.is_empty() {
            " (ceiling skipped)".to_owned()
        } else {
            let (share, detail) = share_of_ceiling(&worker, &ceiling);
            format!(
                " = {:.1}% of the ceiling's {} jobs/s{}{detail} (target >= 85%: {})",
                share * 100.0,
                thousands(mean(&rates(&ceiling))),
                spread(&rates(&ceiling)),
                verdict(share >= 0.85)
            )
        };
        lines.push(format!(
            "  {name}: worker {} jobs/s{}{vs_ceiling}",
            thousands(w),
            spread(&rates(&worker)),
        ));
        cpu.extend(worker.iter().filter_map(Measured::cpu_ms_per_job));
    }
    for line in lines {
        println!("{line}");
    }
    let c = mean(&cpu);
    println!(
        "  worker CPU per job: {c:.3} ms (target <= 0.1 ms: {})",
        verdict(c <= 0.1)
    );
    Ok(())
}

/// Scenario 2, latency hiding: a 50 ms mock, each mode and prefetch, against
/// prefetch / 51.5 ms and the ceiling.
async fn latency(bench: &Bench, args: &Args) -> anyhow::Result<()> {
    println!(
        "\n== 2. latency hiding: {} push jobs, {} ms mock, {:?}, prefetch {:?} ==",
        thousands(args.jobs as f64),
        args.latency_ms,
        args.latency_modes,
        args.latency_prefetch
    );
    report::header();
    let mut lines = Vec::new();
    for &mode in &args.latency_modes {
        let (load, mode_name) = mode_load(mode);
        for &prefetch in &args.latency_prefetch {
            let mut ceiling = Vec::new();
            let mut held = Vec::new();
            let mut worker = Vec::new();
            for run in 0..args.runs {
                let name = format!("{mode_name}, prefetch {prefetch}");
                if !args.no_ceiling {
                    // The broker's share of the turnaround: the ceiling, holding each job
                    // as long as the model's call.
                    let h = spec(
                        format!("ceiling holding {:.1} ms, {name}", model_call_ms(args)),
                        Consumer::Ceiling(Duration::from_secs_f64(model_call_ms(args) / 1000.0)),
                        load,
                        args.jobs,
                        prefetch,
                        0,
                    );
                    held.push(run_row(bench, &h).await?);
                }
                let (c, w) = pair(bench, args, &name, run, load, prefetch, args.latency_ms).await?;
                ceiling.extend(c);
                worker.push(w);
            }
            lines.push(latency_line(
                args, mode_name, prefetch, &worker, &ceiling, &held,
            ));
        }
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

fn mode_load(mode: Mode) -> (Load, &'static str) {
    match mode {
        Mode::Concurrent => (Load::Concurrent, "producer-concurrent"),
        Mode::Drain => (Load::Drain, "drain"),
    }
}

/// The model of a call: the mock's latency plus ~1.5 ms of overhead, in ms.
fn model_call_ms(args: &Args) -> f64 {
    args.latency_ms as f64 + 1.5
}

/// One prefetch's verdicts: against the model, against the ceiling, and what the
/// ceiling made of the model when it held each job for a model call.
fn latency_line(
    args: &Args,
    mode_name: &str,
    prefetch: u16,
    worker: &[Measured],
    ceiling: &[Measured],
    held: &[Measured],
) -> String {
    // Little's law: a slot holds its job for at least the call, so no consumer with this
    // prefetch goes faster than prefetch / call, however fast the broker.
    let theory = f64::from(prefetch) / (model_call_ms(args) / 1000.0);
    let w = mean(&rates(worker));
    let of_theory: Vec<f64> = rates(worker).iter().map(|r| r / theory).collect();
    let share_of_theory = median(&of_theory);
    let mut line = format!(
        "  {mode_name}, prefetch {prefetch}: worker {} jobs/s{} = {:.1}% of {prefetch}/{:.1} ms = {} jobs/s{}",
        thousands(w),
        spread(&rates(worker)),
        share_of_theory * 100.0,
        model_call_ms(args),
        thousands(theory),
        if of_theory.len() > 1 {
            format!(" (the median run{})", each_percent(&of_theory))
        } else {
            String::new()
        },
    );
    // The targets are for a 50 ms API.
    let targets = args.latency_ms == 50;
    if targets && prefetch == 256 {
        line += &format!(
            " (target >= 90% of it: {})",
            verdict(share_of_theory >= 0.90)
        );
    }
    // What a slot spends beyond its call (the worker) or its hold (the holding ceiling):
    // Little's law, prefetch / rate, less the call. The holding ceiling's is the broker's
    // share alone; at exactly the model's call it would reach prefetch / (call + that).
    let beyond = |runs: &[Measured], held: fn(&Measured) -> Option<f64>| {
        let each: Vec<f64> = runs
            .iter()
            .filter_map(|m| Some(f64::from(prefetch) / m.jobs_per_s * 1000.0 - held(m)?))
            .collect();
        (!each.is_empty()).then(|| mean(&each))
    };
    if let Some(b) = beyond(held, |m| m.hold_ms) {
        let hold = mean(&held.iter().filter_map(|m| m.hold_ms).collect::<Vec<_>>());
        let at_model = f64::from(prefetch) / ((model_call_ms(args) + b) / 1000.0);
        line += &format!(
            "; the ceiling holding each job {hold:.2} ms: {} jobs/s, a slot {b:.1} ms beyond its hold, \
             so {:.0}% at exactly {:.1} ms",
            thousands(mean(&rates(held))),
            at_model / theory * 100.0,
            model_call_ms(args),
        );
        if let Some(w) = beyond(worker, |m| m.call_ms) {
            line += &format!("; the worker's slot {w:.1} ms beyond its call");
        }
    }
    if !ceiling.is_empty() {
        let c = mean(&rates(ceiling));
        let (share, detail) = share_of_ceiling(worker, ceiling);
        line += &format!(
            ", {:.1}% of the ceiling's {} jobs/s{detail}",
            share * 100.0,
            thousands(c)
        );
        if targets && prefetch == 1024 {
            line += &format!(
                " (target >= 85% of the ceiling: {})",
                verdict(share >= 0.85)
            );
            if 0.85 * c > theory {
                line += &format!(
                    "; out of reach at this prefetch: 85% of the ceiling is {} jobs/s, above \
                     {prefetch}/{:.1} ms = {}, the most any consumer can do while each job \
                     takes {:.1} ms; against that bound the worker is at {:.1}%",
                    thousands(0.85 * c),
                    model_call_ms(args),
                    thousands(theory),
                    model_call_ms(args),
                    share_of_theory * 100.0,
                );
            }
        }
    }
    line
}

/// 3. Service latency at a steady publish rate with a 50 ms mock.
async fn service(bench: &Bench, args: &Args) -> anyhow::Result<()> {
    let jobs = (u64::from(args.service_rate) * args.service_secs) as usize;
    println!(
        "\n== 3. service latency: a steady {} jobs/s for {} s ({} jobs, the first second is warm-up), {} ms mock ==",
        thousands(f64::from(args.service_rate)),
        args.service_secs,
        thousands(jobs as f64),
        args.latency_ms
    );
    report::header();
    let mut lines = Vec::new();
    for &prefetch in &args.service_prefetch {
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            let mut s = spec(
                format!("worker, prefetch {prefetch}"),
                Consumer::Worker(own_cost_env()),
                Load::Paced(args.service_rate),
                jobs,
                prefetch,
                args.latency_ms,
            );
            s.warmup = args.service_rate as usize;
            runs.push(run_row(bench, &s).await?);
        }
        let p50: Vec<f64> = runs.iter().filter_map(|m| m.p50_ms).collect();
        let p99: Vec<f64> = runs.iter().filter_map(|m| m.p99_ms).collect();
        let max: Vec<f64> = runs.iter().filter_map(|m| m.max_ms).collect();
        let (p50, p99, max) = (mean(&p50), mean(&p99), mean(&max));
        lines.push(format!(
            "  prefetch {prefetch}: p50 {p50:.1} ms (target <= 54: {}), p99 {p99:.1} ms (target <= 60: {}), max {max:.1} ms",
            verdict(p50 <= 54.0),
            verdict(p99 <= 60.0)
        ));
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// 4. Peak RSS with `memory_prefetch` jobs in flight.
async fn memory(bench: &Bench, args: &Args) -> anyhow::Result<()> {
    println!(
        "\n== 4. memory: {} push jobs, {} ms mock, prefetch {} (jobs in flight) ==",
        thousands(args.memory_jobs as f64),
        args.latency_ms,
        args.memory_prefetch
    );
    report::header();
    let mut peaks = Vec::new();
    for _ in 0..args.runs {
        let mut s = spec(
            format!("worker, prefetch {}", args.memory_prefetch),
            Consumer::Worker(own_cost_env()),
            Load::Concurrent,
            args.memory_jobs,
            args.memory_prefetch,
            args.latency_ms,
        );
        s.sample_in_flight = true;
        let m = run_row(bench, &s).await?;
        println!(
            "      RSS when ready {}, peak {}; most jobs in flight seen: {}",
            mb(m.idle_rss_kb),
            mb(m.peak_rss_kb),
            m.max_in_flight
                .map_or_else(|| "?".to_owned(), |n| n.to_string())
        );
        peaks.extend(m.peak_rss_kb.map(|kb| kb as f64));
    }
    let peak = mean(&peaks);
    println!(
        "  peak RSS {:.1} MB (VmHWM {} kB) with {} in flight (target <= 24 MB = 24,576 kB: {})",
        peak / 1024.0,
        thousands(peak),
        args.memory_prefetch,
        verdict(peak <= 24_576.0)
    );
    Ok(())
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "?".to_owned(),
        |kb| format!("{:.1} MB", kb as f64 / 1024.0),
    )
}

/// 5. Push jobs a minute through a mock that allows `api_limit` createMessage calls a minute.
async fn api_budget(bench: &Bench, args: &Args) -> anyhow::Result<()> {
    let jobs = (u64::from(args.api_rate) * args.api_secs) as usize;
    let env = api_budget_env(args.api_limit);
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "\n== 5. API budget: the sandbox allows {} createMessage calls a minute (429 beyond); {} jobs/s published for {} s, {} ms mock, prefetch {} ==",
        args.api_limit, args.api_rate, args.api_secs, args.api_latency_ms, args.api_prefetch
    );
    println!("  worker env: {}", shown.join(" "));
    report::header();
    let mut per_minute = Vec::new();
    let mut throttled = 0;
    for _ in 0..args.runs {
        let mut s = spec(
            "worker, limiter + batching".to_owned(),
            Consumer::Worker(env.clone()),
            Load::Window(args.api_rate, args.api_secs),
            jobs,
            args.api_prefetch,
            args.api_latency_ms,
        );
        s.api_limit = Some(args.api_limit);
        s.use_sandbox = true;
        let m = match measure(bench, &s).await {
            Ok(m) => m,
            Err(e) => {
                println!("  the worker could not run this scenario: {e:#}");
                anyhow::bail!(
                    "API budget: the worker refused the limiter/batching settings (built before them?)"
                );
            }
        };
        report::row(&m);
        let jpm = m.results as f64 / (args.api_secs as f64 / 60.0);
        println!(
            "      {} push jobs in {} s = {} a minute, {} createMessage calls ({:.1} jobs per call), {} answered 429",
            thousands(m.results as f64),
            args.api_secs,
            thousands(jpm),
            thousands(m.api_calls as f64),
            m.results as f64 / m.api_calls.max(1) as f64,
            m.http_429.map_or_else(|| "?".to_owned(), |n| n.to_string())
        );
        per_minute.push(jpm);
        throttled += m.http_429.unwrap_or(0);
    }
    let jpm = mean(&per_minute);
    let times = jpm / f64::from(args.api_limit.max(1));
    println!(
        "  {} push jobs a minute = {times:.1}x the {} a minute of one call per job (target >= 50x: {}); 429s: {throttled} (target 0: {})",
        thousands(jpm),
        args.api_limit,
        verdict(times >= 50.0),
        verdict(throttled == 0)
    );
    Ok(())
}
