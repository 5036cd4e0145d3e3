//! Printing: one table row per run, a line of context under it (how busy the machine
//! was, what the broker and the bench cost), and verdicts against issue #5's targets.

use super::run::Measured;

pub fn header() {
    println!(
        "  {:<30} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>6}",
        "run", "jobs/s", "p50 ms", "p99 ms", "peak RSS", "CPU ms/job", "API calls", "429s"
    );
}

pub fn row(m: &Measured) {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let rss = m.peak_rss_kb.map_or_else(
        || "-".to_owned(),
        |kb| format!("{:.1} MB", kb as f64 / 1024.0),
    );
    let cpu = m
        .cpu_ms_per_job()
        .map_or_else(|| "-".to_owned(), |c| format!("{c:.3}"));
    let (calls, throttled) = if m.is_worker {
        (
            thousands(m.api_calls as f64),
            m.http_429.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        )
    } else {
        ("-".to_owned(), "-".to_owned())
    };
    println!(
        "  {:<30} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>6}",
        m.label,
        thousands(m.jobs_per_s),
        ms(m.p50_ms),
        ms(m.p99_ms),
        rss,
        cpu,
        calls,
        throttled
    );
    let per_job = |v: Option<f64>| v.map(|v| v / m.results.max(1) as f64);
    let mut notes = Vec::new();
    if let Some(b) = m.machine_busy {
        notes.push(format!("machine CPU {:.0}% busy", b * 100.0));
    }
    if let Some(b) = per_job(m.broker_cpu_ms) {
        notes.push(format!("broker {b:.3} ms/job"));
    }
    if let Some(r) = per_job(m.redis_cpu_ms) {
        notes.push(format!("Redis {r:.3} ms/job"));
    }
    if let Some(b) = per_job(m.bench_cpu_ms) {
        let mock = per_job(m.mock_cpu_ms).map_or_else(String::new, |x| format!(" (mock {x:.3})"));
        notes.push(format!("bench {b:.3} ms/job{mock}"));
    }
    if let Some(p) = m.publish_per_s {
        notes.push(format!("published {}/s", thousands(p)));
    }
    if let (Some(j), Some(c), Some(p)) = (m.job_ms, m.call_ms, m.confirm_ms) {
        notes.push(format!(
            "a job {j:.1} ms in the worker on average (a call {c:.1}, a result's confirm {p:.1})"
        ));
    }
    if let Some((n, to, inside, back)) = m.tail_legs {
        notes.push(format!(
            "the slowest {n} jobs: {to:.1} ms to the worker, {inside:.1} in it, {back:.1} back"
        ));
    }
    if let Some(a) = m.acks {
        notes.push(format!(
            "{:.2} acks/job",
            a as f64 / m.results.max(1) as f64
        ));
    }
    if let Some(l) = m.log_bytes.filter(|_| m.is_worker) {
        notes.push(format!(
            "log {:.0} B/job",
            l as f64 / m.results.max(1) as f64
        ));
    }
    if let Some(s) = m.sends {
        notes.push(format!(
            "the sandbox created {} messages",
            thousands(s as f64)
        ));
    }
    if m.processes > 1 {
        notes.push(format!("{} processes", m.processes));
    }
    if let Some(k) = m.killed_at {
        notes.push(format!("one SIGKILLed at {k:.1} s"));
    }
    if m.marked_duplicate > 0 {
        notes.push(format!(
            "{} answered from the ledger (\"duplicate\": true)",
            m.marked_duplicate
        ));
    }
    notes.push(format!(
        "{} results in {:.2} s",
        thousands(m.results as f64),
        m.seconds
    ));
    println!("      {}", notes.join(", "));
    let mut problems = Vec::new();
    if m.results < m.expected && m.stopped_short.is_some() {
        problems.push(format!("only {} of {} results", m.results, m.expected));
    }
    if let Some(why) = &m.stopped_short {
        problems.push(why.clone());
    }
    if m.not_ok > 0 {
        problems.push(format!("{} results not ok", m.not_ok));
    }
    if m.duplicates > 0 {
        problems.push(format!("{} duplicate results", m.duplicates));
    }
    if !problems.is_empty() {
        println!("      WARNING: {}", problems.join("; "));
    }
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// ` (runs: 7,100 to 7,480)` when there was more than one run.
pub fn spread(values: &[f64]) -> String {
    if values.len() < 2 {
        return String::new();
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(" (runs: {} to {})", thousands(lo), thousands(hi))
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none. A
/// verdict on the median of paired runs is not swung by one run on a slow moment of the VM.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Each run's ratio to the run it was paired with (run i of one against run i of the other).
pub fn paired_ratios(numerators: &[f64], denominators: &[f64]) -> Vec<f64> {
    numerators
        .iter()
        .zip(denominators)
        .filter(|&(_, &d)| d > 0.0)
        .map(|(n, d)| n / d)
        .collect()
}

/// `, each run 84, 91, 85%` when there was more than one run.
pub fn each_percent(ratios: &[f64]) -> String {
    if ratios.len() < 2 {
        return String::new();
    }
    let each: Vec<String> = ratios.iter().map(|r| format!("{:.0}", r * 100.0)).collect();
    format!(", each run {}%", each.join(", "))
}

/// ` (runs: 54.5, 54.4, 55.1)` when there was more than one run.
pub fn each_ms(values: &[f64]) -> String {
    if values.len() < 2 {
        return String::new();
    }
    let each: Vec<String> = values.iter().map(|v| format!("{v:.1}")).collect();
    format!(" (runs: {})", each.join(", "))
}

/// `meets` / `MISSES` a target.
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "meets the target"
    } else {
        "MISSES the target"
    }
}

pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_run_or_the_mean_of_the_two_middle_ones() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[0.84]), 0.84);
        assert_eq!(median(&[0.95, 0.81, 0.85]), 0.85);
        assert_eq!(median(&[90.0, 80.0, 70.0, 100.0]), 85.0);
    }

    #[test]
    fn ratios_pair_runs_by_position_and_skip_an_empty_denominator() {
        assert_eq!(
            paired_ratios(&[90.0, 80.0, 50.0], &[100.0, 0.0, 100.0]),
            vec![0.9, 0.5]
        );
        assert_eq!(paired_ratios(&[1.0, 2.0], &[1.0]), vec![1.0]);
    }

    #[test]
    fn each_run_is_listed_only_when_there_were_several() {
        assert_eq!(each_percent(&[0.844]), "");
        assert_eq!(each_percent(&[0.844, 0.91]), ", each run 84, 91%");
    }
}
