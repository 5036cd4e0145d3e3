//! The shared budget: several worker processes, one account, one ledger. Their rate
//! limiter is then the account's, in Redis: together they should use the whole budget
//! and never exceed it, and go on using all of it when one of them dies.

use super::*;

/// The shared-budget scenario's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BudgetArgs {
    /// Worker processes in the shared-budget scenario, all on one queue and one ledger.
    #[arg(long, default_value_t = 3)]
    pub budget_processes: usize,
    /// Push jobs of the shared-budget scenario (one call each: about 2.5 minutes at 600 a minute).
    #[arg(long, default_value_t = 1_500)]
    pub budget_jobs: usize,
    /// amqp.prefetch of each process in the shared-budget scenario.
    #[arg(long, default_value_t = 64)]
    pub budget_prefetch: u16,
    /// SIGKILL one of the processes this many seconds after the first publish (0: none).
    #[arg(long, default_value_t = 60)]
    pub kill_at_secs: u64,
    /// The window after the kill whose calls a minute are shown, seconds.
    #[arg(long, default_value_t = 30)]
    pub after_kill_secs: u64,
}

/// The ledger on (the worker's default), so the limiter is the account's, in Redis; every
/// process set to the account's whole limit; one call per job.
fn shared_budget_env(limit: u32) -> Vec<(String, String)> {
    vec![
        kv("PUSHWOOSH_WORKER__LEDGER__ENABLED", "true"),
        kv("PUSHWOOSH_WORKER__RATE_LIMIT__ENABLED", "true"),
        kv(
            "PUSHWOOSH_WORKER__RATE_LIMIT__CREATE_MESSAGE_PER_MINUTE",
            &limit.to_string(),
        ),
        kv("PUSHWOOSH_WORKER__BATCH__ENABLED", "false"),
    ]
}

/// Shared budget: calls a minute of `budget_processes` workers against the sandbox's
/// `api_limit`, before and after one of them is killed, and one result per job.
pub(super) async fn shared_budget(bench: &Bench, args: &Args) -> anyhow::Result<()> {
    let b = &args.budget;
    let limit = f64::from(args.api_limit.max(1));
    let env = shared_budget_env(args.api_limit);
    let kill = (b.kill_at_secs > 0 && b.budget_processes > 1).then_some(b.kill_at_secs);
    println!(
        "\n== shared budget: {} worker processes on one queue and one ledger, the sandbox allowing {} createMessage \
         calls a minute (429 beyond); {} push jobs, one call each, {} ms mock, prefetch {} a process{} ==",
        b.budget_processes,
        args.api_limit,
        thousands(b.budget_jobs as f64),
        args.api_latency_ms,
        b.budget_prefetch,
        kill.map_or_else(String::new, |s| format!("; one process SIGKILLed at {s} s")),
    );
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("  every worker's env: {}", shown.join(" "));
    report::header();
    let (mut whole, mut before, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let (mut throttled, mut exactly_once) = (0, true);
    for _ in 0..args.runs {
        let mut s = spec(
            format!("worker x{}, shared budget", b.budget_processes),
            Consumer::Worker(env.clone()),
            Load::Concurrent,
            b.budget_jobs,
            b.budget_prefetch,
            args.api_latency_ms,
        );
        s.processes = b.budget_processes;
        s.api_limit = Some(args.api_limit);
        s.use_sandbox = true;
        s.kill_at = kill.map(Duration::from_secs);
        s.calls_timeline = true;
        let m = run_row(bench, &s).await?;
        let t = &m.calls_timeline;
        // Up to the last call: a tail without calls (the last results) is no unused budget.
        let end = t
            .iter()
            .find(|&&(_, c)| c == m.api_calls)
            .map_or(m.seconds, |&(at, _)| at);
        let w = per_minute(t, 0.0, end);
        println!(
            "      {} createMessage calls in {end:.1} s: {} a minute = {:.1}% of {}",
            thousands(m.api_calls as f64),
            thousands(w),
            w / limit * 100.0,
            args.api_limit
        );
        whole.push(w / limit);
        if let Some(k) = m.killed_at {
            let (pre, post) = (
                per_minute(t, 0.0, k),
                per_minute(t, k, k + b.after_kill_secs as f64),
            );
            println!(
                "      {} processes until the kill at {k:.1} s: {} a minute = {:.1}%; the {} left, the {} s after it: {} a minute = {:.1}%",
                b.budget_processes,
                thousands(pre),
                pre / limit * 100.0,
                b.budget_processes - 1,
                b.after_kill_secs,
                thousands(post),
                post / limit * 100.0,
            );
            before.push(pre / limit);
            after.push(post / limit);
        }
        let once = m.results == m.expected && m.duplicates == 0;
        println!(
            "      {} of {} jobs answered, {} twice; {} answered by the ledger from an earlier processing (\"duplicate\": true); \
             the sandbox created {} messages; {} requests repeated a transactionId or got a 429; 429s {}",
            thousands(m.results as f64),
            thousands(m.expected as f64),
            m.duplicates,
            m.marked_duplicate,
            m.sends
                .map_or_else(|| "?".to_owned(), |n| thousands(n as f64)),
            m.api_calls.saturating_sub(m.sends.unwrap_or(m.api_calls)),
            m.http_429.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        );
        throttled += m.http_429.unwrap_or(0);
        exactly_once &= once && m.sends == Some(m.expected as u64);
    }
    let mut line = format!(
        "  calls a minute: {:.1}% of {} over each run{}",
        median(&whole) * 100.0,
        args.api_limit,
        each_percent(&whole)
    );
    if !after.is_empty() {
        line += &format!(
            "; {:.1}% before the kill{}, {:.1}% in the {} s after it{}",
            median(&before) * 100.0,
            each_percent(&before),
            median(&after) * 100.0,
            b.after_kill_secs,
            each_percent(&after),
        );
    }
    let lowest = whole.iter().chain(&before).chain(&after).copied();
    line += &format!(
        " (target >= 90%: {}); 429s: {throttled} (target 0: {}); every job answered once and sent once: {}",
        verdict(lowest.fold(f64::INFINITY, f64::min) >= 0.90),
        verdict(throttled == 0),
        if exactly_once { "yes" } else { "NO" },
    );
    println!("{line}");
    Ok(())
}

/// createMessage calls a minute between `from` and `to` seconds, read off the timeline
/// at the samples nearest those times.
fn per_minute(timeline: &[(f64, u64)], from: f64, to: f64) -> f64 {
    let at = |t: f64| {
        timeline
            .iter()
            .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
            .copied()
    };
    match (at(from), at(to)) {
        (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => (c1 - c0) as f64 / (t1 - t0) * 60.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::per_minute;

    #[test]
    fn calls_a_minute_are_read_between_the_nearest_samples() {
        let timeline = [(0.0, 0), (10.0, 99), (20.1, 200), (30.0, 297)];
        assert_eq!(per_minute(&timeline, 0.0, 30.0), 297.0 * 2.0);
        assert!((per_minute(&timeline, 10.0, 20.0) - 101.0 / 10.1 * 60.0).abs() < 1e-9);
        assert_eq!(per_minute(&timeline, 5.0, 5.0), 0.0);
        assert_eq!(per_minute(&[], 0.0, 1.0), 0.0);
    }
}
