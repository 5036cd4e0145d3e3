//! What a run reads while and after it runs: the worker's /metrics, the ceiling's log,
//! the slowest jobs' legs.

use std::time::Duration;

use super::super::broker::Legs;
use super::super::procs::{Proc, metric_sum};

/// Where the slowest 1% of jobs spent their time (not for a drain: jobs waited in the
/// queue by design).
pub(super) fn tail_legs(legs: &[Legs], drain: bool) -> Option<(usize, f64, f64, f64)> {
    if drain || legs.len() < 100 {
        return None;
    }
    let mut legs = legs.to_vec();
    legs.sort_unstable_by_key(|l| std::cmp::Reverse(l.total_us));
    let tail = &legs[..legs.len() / 100];
    let mean = |f: fn(&Legs) -> i64| {
        tail.iter().map(|l| f(l) as f64).sum::<f64>() / tail.len() as f64 / 1000.0
    };
    Some((
        tail.len(),
        mean(|l| l.to_worker_us),
        mean(|l| l.in_worker_us),
        mean(|l| l.back_us),
    ))
}

/// A holding ceiling's last "held N jobs, X ms each on average" log line: X.
pub(super) fn held_ms(log: &std::path::Path) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|l| l.starts_with("held "))?;
    line.split(", ").nth(1)?.split(' ').next()?.parse().ok()
}

/// A histogram's mean, in ms.
pub(super) fn mean_ms(metrics: &str, histogram: &str) -> Option<f64> {
    let count = metric_sum(metrics, &format!("{histogram}_count"), &[]);
    let sum = metric_sum(metrics, &format!("{histogram}_sum"), &[]);
    (count > 0.0).then(|| sum / count * 1000.0)
}

/// Scrapes the worker's jobs_in_flight gauge every 50 ms; the task returns the highest seen.
pub(super) fn sample_in_flight(
    consumer: &Proc,
) -> (
    tokio::task::JoinHandle<u64>,
    tokio_util::sync::CancellationToken,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let url = consumer.metrics_url();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut max = 0u64;
        while !token.is_cancelled() {
            if let Some(url) = &url
                && let Ok(r) = http.get(url).send().await
                && let Ok(text) = r.text().await
            {
                max = max.max(metric_sum(&text, "pushwoosh_worker_jobs_in_flight", &[]) as u64);
            }
            tokio::select! {
                () = token.cancelled() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        max
    });
    (task, stop)
}
