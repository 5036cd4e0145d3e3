//! Memory and the API budget: what the worker holds, and how much of an account's limit it uses.

use super::*;

/// 4. Peak RSS with `memory_prefetch` jobs in flight.
pub(super) async fn memory(bench: &Bench, args: &Args) -> anyhow::Result<()> {
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
pub(super) async fn api_budget(bench: &Bench, args: &Args) -> anyhow::Result<()> {
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
