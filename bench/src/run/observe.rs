//! What a run reads while and after it runs: the worker's /metrics, the ceiling's log,
//! the slowest jobs' legs.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::super::broker::Legs;
use super::super::mock::Mock;
use super::super::procs::metric_sum;

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

/// Scrapes the workers' jobs_in_flight gauges every 50 ms until `stop`; the highest sum seen.
pub(super) async fn sample_in_flight(urls: Vec<String>, stop: &CancellationToken) -> u64 {
    let http = reqwest::Client::new();
    let mut max = 0u64;
    while !stop.is_cancelled() {
        let mut sum = 0u64;
        for url in &urls {
            if let Ok(r) = http.get(url).send().await
                && let Ok(text) = r.text().await
            {
                sum += metric_sum(&text, "pushwoosh_worker_jobs_in_flight", &[]) as u64;
            }
        }
        max = max.max(sum);
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    max
}

/// The mock's createMessage requests every 250 ms until `stop`: (seconds after
/// `started`, requests so far).
pub(super) async fn sample_calls(
    mock: &Mock,
    started: Instant,
    stop: &CancellationToken,
) -> Vec<(f64, u64)> {
    let mut timeline = vec![(0.0, mock.create_message_calls())];
    while !stop.is_cancelled() {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        timeline.push((started.elapsed().as_secs_f64(), mock.create_message_calls()));
    }
    timeline
}
