//! `pushwoosh-worker publish [FILE|-]`: publishes jobs to the jobs exchange with
//! publisher confirms; with `--wait`, prints each job's result as it arrives.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};

use crate::broker::{self, Topology};
use crate::settings::Settings;

#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// Jobs file: one JSON job, an array of jobs, or NDJSON; `-` or nothing for stdin.
    pub file: Option<PathBuf>,
    /// Wait for each job's result and print it (one JSON line each).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Routing key of the published jobs.
    #[arg(long, default_value = "job")]
    pub routing_key: String,
    /// Publish to the urgent lane: the routing key gets `urgent.` in front (`urgent.job`).
    #[arg(long)]
    pub urgent: bool,
    /// Give every job without an `expires_at` one this many seconds from now: a job not
    /// sent by then is not sent (its result says `"expired": true`).
    #[arg(long, value_name = "SECS")]
    pub expires_in: Option<u64>,
}

impl PublishArgs {
    fn routing_key(&self) -> String {
        if self.urgent {
            format!("urgent.{}", self.routing_key)
        } else {
            self.routing_key.clone()
        }
    }
}

/// Checks every job's `expires_at` before anything is published (a bad one would only
/// be rejected by the worker), and gives `--expires-in` to the jobs without one.
fn deadlines(
    entries: &mut [super::jobs_file::JobEntry],
    expires_in: Option<u64>,
) -> anyhow::Result<()> {
    let expires_at = expires_in.map(|secs| {
        let at = chrono::Utc::now()
            + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000));
        serde_json::Value::String(crate::result_event::timestamp(at))
    });
    for entry in entries {
        let Some(job) = entry.value.as_object_mut() else {
            continue; // the worker rejects it, with its reason
        };
        match job.get("expires_at") {
            None | Some(serde_json::Value::Null) => {
                if let Some(at) = &expires_at {
                    job.insert("expires_at".to_owned(), at.clone());
                }
            }
            Some(value) => {
                if let Err(why) = crate::job::parse_expires_at(value) {
                    anyhow::bail!("{}: {why}; nothing was published", entry.location);
                }
            }
        }
    }
    Ok(())
}

pub async fn run(settings: &Settings, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let (name, bytes) = super::jobs_file::read(args.file.as_deref())?;
    let mut entries = super::jobs_file::parse(&name, &bytes)?;
    deadlines(&mut entries, args.expires_in)?;
    let routing_key = args.routing_key();
    let conn = broker::connect(
        &settings.amqp,
        "pushwoosh-worker publish",
        Duration::from_millis(settings.amqp.startup_timeout_ms),
    )
    .await?
    .connection;
    Topology::new(settings).declare(&conn).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let run_id = format!("{:08x}", fastrand::u32(..));
    let mut results = None;
    if args.wait {
        results = Some(broker::watch_results(&channel, &settings.amqp.results_exchange).await?);
    }

    let mut progress = Progress::new(entries.len(), args.wait);
    let mut pending = HashSet::new();
    let mut confirms = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let body = serde_json::to_vec(&entry.value)?;
        let correlation = format!("publish-{run_id}-{i}");
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_correlation_id(correlation.as_str().into())
            // The start of the job's queue wait in the lane metrics.
            .with_timestamp(u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0));
        if let Some(id) = entry.value.get("id").and_then(|v| v.as_str()) {
            properties = properties.with_message_id(id.into());
        }
        let confirm = channel
            .basic_publish(
                settings.amqp.jobs_exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .with_context(|| format!("{}: publishing", entry.location))?;
        confirms.push((entry.location.clone(), confirm));
        pending.insert(correlation);
        progress.published(i + 1);
    }
    progress.clear();
    let mut refused = 0;
    for (location, confirm) in confirms {
        if !confirm.await?.is_ack() {
            eprintln!("{location}: the broker refused the job");
            refused += 1;
        }
    }
    eprintln!(
        "published {} job(s) to {}, {} confirmed",
        entries.len(),
        settings.amqp.jobs_exchange,
        entries.len() - refused
    );
    if refused > 0 {
        return Ok(ExitCode::FAILURE);
    }
    let Some(mut results) = results else {
        return Ok(ExitCode::SUCCESS);
    };

    let mut all_ok = true;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    while !pending.is_empty() {
        let next = tokio::time::timeout_at(deadline, results.next()).await;
        let Ok(Some(Ok(delivery))) = next else {
            progress.clear();
            eprintln!("timed out waiting for {} result(s)", pending.len());
            return Ok(ExitCode::from(2));
        };
        let correlation = delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default();
        if !pending.remove(&correlation) {
            continue; // another producer's result
        }
        let text = String::from_utf8_lossy(&delivery.data);
        progress.clear();
        println!("{text}");
        progress.result(entries.len() - pending.len());
        let outcome: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap_or_default();
        all_ok &= outcome["outcome"] == "ok";
    }
    progress.clear();
    let _ = conn.close(200, "done".into()).await;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Progress on stderr for large files: a bar redrawn in place on a terminal (at most ten
/// times a second), a line every 1,000 jobs otherwise (logs, CI).
struct Progress {
    total: usize,
    published: usize,
    results: Option<usize>,
    terminal: bool,
    drawn: bool,
    last_draw: Option<std::time::Instant>,
}

/// Smaller files finish before a bar would help.
const PROGRESS_FROM: usize = 200;

impl Progress {
    fn new(total: usize, wait: bool) -> Self {
        Self {
            total,
            published: 0,
            results: wait.then_some(0),
            terminal: std::io::stderr().is_terminal(),
            drawn: false,
            last_draw: None,
        }
    }

    fn published(&mut self, n: usize) {
        self.published = n;
        if !self.terminal {
            if self.total >= PROGRESS_FROM && n.is_multiple_of(1000) {
                eprintln!("published {n}/{}", self.total);
            }
            return;
        }
        self.draw(n == self.total);
    }

    fn result(&mut self, n: usize) {
        self.results = Some(n);
        if self.terminal {
            self.draw(n == self.total);
        }
    }

    fn draw(&mut self, force: bool) {
        if self.total < PROGRESS_FROM {
            return;
        }
        let now = std::time::Instant::now();
        if !force
            && self
                .last_draw
                .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(now);
        self.drawn = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{}", self.line());
        let _ = err.flush();
    }

    /// `[##########----------] published 500/1000, results 120/1000`
    fn line(&self) -> String {
        let done = self.results.unwrap_or(self.published);
        let width = 30;
        let filled = (done * width).checked_div(self.total).unwrap_or(width);
        let mut line = format!(
            "[{}{}] published {}/{}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.published,
            self.total
        );
        if let Some(results) = self.results {
            line.push_str(&format!(", results {results}/{}", self.total));
        }
        line
    }

    /// Wipes the bar so that other output starts on a clean line.
    fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
            self.drawn = false;
            self.last_draw = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_follows_results_when_waiting_and_publishes_otherwise() {
        let mut p = Progress::new(1000, true);
        p.published = 1000;
        p.results = Some(250);
        assert_eq!(
            p.line(),
            "[#######-----------------------] published 1000/1000, results 250/1000"
        );
        let mut p = Progress::new(400, false);
        p.published = 400;
        assert_eq!(
            p.line(),
            "[##############################] published 400/400"
        );
    }
}
