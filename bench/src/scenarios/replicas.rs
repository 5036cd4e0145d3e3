//! Replicas: 1, 2, 4 worker processes consuming one queue, each count against as many
//! ceiling processes holding each job as long as the API takes: where adding a replica
//! stops paying on this machine, and which process's CPU says why.

use super::latency::model_call_ms;
use super::*;

/// The replicas scenario's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicaArgs {
    /// Worker processes on the one jobs queue, each count measured (with `--jobs` push
    /// jobs at `--latency-ms`).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub replica_counts: Vec<usize>,
    /// amqp.prefetch of each process in the replicas scenario (the worker's default is 64).
    #[arg(long, default_value_t = 64)]
    pub replicas_prefetch: u16,
}

/// Replicas: jobs/s of 1, 2, 4 processes, each count paired with the ceiling's.
pub(super) async fn replicas(bench: &Bench, args: &Args) -> anyhow::Result<()> {
    let r = &args.replicas;
    let prefetch = r.replicas_prefetch;
    let counts: Vec<usize> = r.replica_counts.iter().map(|&n| n.max(1)).collect();
    println!(
        "\n== replicas: {} push jobs, {} ms mock, prefetch {prefetch} a process, {} worker processes on one queue, \
         each count against as many ceiling processes holding each job {} ms ==",
        thousands(args.jobs as f64),
        args.latency_ms,
        counts
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        args.latency_ms,
    );
    report::header();
    let mut worker: Vec<Vec<Measured>> = vec![Vec::new(); counts.len()];
    let mut ceiling: Vec<Vec<Measured>> = vec![Vec::new(); counts.len()];
    for run in 0..args.runs {
        // Interleaved: every run goes through every count, forwards in even runs and
        // backwards in odd ones, the ceiling first in even runs and the worker first in
        // odd ones, so that the machine's drift favours no count and no side.
        let order: Vec<usize> = match run % 2 {
            0 => (0..counts.len()).collect(),
            _ => (0..counts.len()).rev().collect(),
        };
        for i in order {
            let n = counts[i];
            let mut w = spec(
                format!("worker x{n}"),
                Consumer::Worker(own_cost_env()),
                Load::Concurrent,
                args.jobs,
                prefetch,
                args.latency_ms,
            );
            w.processes = n;
            let mut c = spec(
                format!("ceiling x{n} holding {} ms", args.latency_ms),
                Consumer::Ceiling(Duration::from_millis(args.latency_ms)),
                Load::Concurrent,
                args.jobs,
                prefetch,
                0,
            );
            c.processes = n;
            if run % 2 == 1 {
                worker[i].push(run_row(bench, &w).await?);
            }
            if !args.no_ceiling {
                ceiling[i].push(run_row(bench, &c).await?);
            }
            if run % 2 == 0 {
                worker[i].push(run_row(bench, &w).await?);
            }
        }
    }
    let one = median(&rates(&worker[0]));
    for (i, &n) in counts.iter().enumerate() {
        let (w, c) = (&worker[i], &ceiling[i]);
        let rate = median(&rates(w));
        let bound = (n * usize::from(prefetch)) as f64 / (model_call_ms(args) / 1000.0);
        let mut line = format!(
            "  {n} process{}: worker {} jobs/s{} (median)",
            if n == 1 { "" } else { "es" },
            thousands(rate),
            spread(&rates(w)),
        );
        if !c.is_empty() {
            let (share, detail) = share_of_ceiling(w, c);
            line += &format!(
                " = {:.1}% of the ceiling's {}{}{detail}",
                share * 100.0,
                thousands(median(&rates(c))),
                spread(&rates(c)),
            );
        }
        line += &format!(
            "; {n} x {prefetch} / {:.1} ms = {}",
            model_call_ms(args),
            thousands(bound),
        );
        if i > 0 {
            let before = median(&rates(&worker[i - 1]));
            line += &format!(
                "; x{:.2} the jobs/s of {} (x{:.1} ideally)",
                rate / before.max(1e-9),
                counts[i - 1],
                n as f64 / counts[i - 1] as f64,
            );
        }
        if i > 1 {
            line += &format!(
                ", x{:.2} those of {} (x{:.1})",
                rate / one.max(1e-9),
                counts[0],
                n as f64 / counts[0] as f64,
            );
        }
        println!("{line}");
        println!("      {}", cpu_line("workers", w));
        if !c.is_empty() {
            println!("      {}", cpu_line("ceiling", c));
        }
    }
    Ok(())
}

/// Where the cores went during the runs (medians): each part's CPU time over the run's
/// wall time, in cores, and the machine's busy share.
fn cpu_line(name: &str, runs: &[Measured]) -> String {
    let cores = |f: fn(&Measured) -> Option<f64>| {
        let each: Vec<f64> = runs
            .iter()
            .filter_map(|m| Some(f(m)? / 1000.0 / m.seconds.max(1e-9)))
            .collect();
        (!each.is_empty()).then(|| median(&each))
    };
    let show = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.2}"));
    let busy: Vec<f64> = runs.iter().filter_map(|m| m.machine_busy).collect();
    let per_job: Vec<f64> = runs.iter().filter_map(Measured::cpu_ms_per_job).collect();
    let cores_total = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{name}: cores busy {} ({:.3} ms a job), broker {}, Redis {}, bench {} (mock {}); \
         the machine {:.0}% busy of {cores_total} cores",
        show(cores(|m| m.cpu_ms)),
        median(&per_job),
        show(cores(|m| m.broker_cpu_ms)),
        show(cores(|m| m.redis_cpu_ms)),
        show(cores(|m| m.bench_cpu_ms)),
        show(cores(|m| m.mock_cpu_ms)),
        median(&busy) * 100.0,
    )
}
