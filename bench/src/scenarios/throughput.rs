//! Efficiency: the worker's jobs/s against the ceiling, the best loop doing the same broker work.

use super::latency::mode_load;
use super::*;

/// 1. The worker's own cost with a 0 ms mock, against the no-HTTP loop, in each mode.
pub(super) async fn efficiency(bench: &Bench, args: &Args) -> anyhow::Result<()> {
    println!(
        "\n== 1. efficiency: {} push jobs, 0 ms mock, prefetch {} ==",
        thousands(args.jobs as f64),
        args.prefetch
    );
    report::header();
    let mut cpu = Vec::new();
    let target = Targets::of(args).efficiency_share;
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
                " = {:.1}% of the ceiling's {} jobs/s{}{detail} (target >= {:.0}%: {})",
                share * 100.0,
                thousands(mean(&rates(&ceiling))),
                spread(&rates(&ceiling)),
                target * 100.0,
                verdict(share >= target)
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
