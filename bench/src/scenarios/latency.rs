//! Latency and service: how long a job takes from publish to result, under load and at a steady rate.

use super::*;

/// Scenario 2, latency hiding: a 50 ms mock, each mode and prefetch, against
/// prefetch / 51.5 ms and the ceiling.
pub(super) async fn latency(bench: &Bench, args: &Args) -> anyhow::Result<()> {
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

pub(super) fn mode_load(mode: Mode) -> (Load, &'static str) {
    match mode {
        Mode::Concurrent => (Load::Concurrent, "producer-concurrent"),
        Mode::Drain => (Load::Drain, "drain"),
    }
}

/// The model of a call: the mock's latency plus ~1.5 ms of overhead, in ms.
pub(super) fn model_call_ms(args: &Args) -> f64 {
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
pub(super) async fn service(bench: &Bench, args: &Args) -> anyhow::Result<()> {
    let jobs = (u64::from(args.service_rate) * args.service_secs) as usize;
    let targets = Targets::of(args);
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
        // The median run's, as every verdict here: one run on a slow moment of the
        // machine does not swing it, and each run's figure is printed beside it.
        let p50s: Vec<f64> = runs.iter().filter_map(|m| m.p50_ms).collect();
        let p99s: Vec<f64> = runs.iter().filter_map(|m| m.p99_ms).collect();
        let maxes: Vec<f64> = runs.iter().filter_map(|m| m.max_ms).collect();
        let (p50, p99, max) = (median(&p50s), median(&p99s), median(&maxes));
        lines.push(format!(
            "  prefetch {prefetch}: p50 {p50:.1} ms{} (target <= {}: {}), p99 {p99:.1} ms{} (target <= {}: {}), max {max:.1} ms (the median run's)",
            each_ms(&p50s),
            targets.service_p50_ms,
            verdict(p50 <= targets.service_p50_ms),
            each_ms(&p99s),
            targets.service_p99_ms,
            verdict(p99 <= targets.service_p99_ms),
        ));
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
