//! `pushwoosh-worker publish [FILE|-]`: publishes jobs to the jobs exchange with
//! publisher confirms; with `--wait`, prints each job's result as it arrives.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};

use crate::broker::{self, Topology};
use crate::retry::RetryPolicy;
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
}

pub async fn run(settings: &Settings, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let (name, bytes) = super::jobs_file::read(args.file.as_deref())?;
    let entries = super::jobs_file::parse(&name, &bytes)?;
    let conn = broker::connect(
        &settings.amqp.url,
        "pushwoosh-worker publish",
        Duration::from_millis(settings.amqp.startup_timeout_ms),
    )
    .await?;
    let channel = conn.create_channel().await?;
    Topology::new(&settings.amqp, &RetryPolicy::new(&settings.retry))
        .declare(&channel)
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let run_id = format!("{:08x}", fastrand::u32(..));
    let mut results = None;
    if args.wait {
        results = Some(broker::watch_results(&channel, &settings.amqp.results_exchange).await?);
    }

    let mut pending = HashSet::new();
    let mut confirms = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let body = serde_json::to_vec(&entry.value)?;
        let correlation = format!("publish-{run_id}-{i}");
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_correlation_id(correlation.as_str().into());
        if let Some(id) = entry.value.get("id").and_then(|v| v.as_str()) {
            properties = properties.with_message_id(id.into());
        }
        let confirm = channel
            .basic_publish(
                settings.amqp.jobs_exchange.as_str().into(),
                args.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .with_context(|| format!("{}: publishing", entry.location))?;
        confirms.push((entry.location.clone(), confirm));
        pending.insert(correlation);
        if (i + 1) % 1000 == 0 {
            eprintln!("published {}/{}", i + 1, entries.len());
        }
    }
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
        println!("{text}");
        let outcome: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap_or_default();
        all_ok &= outcome["outcome"] == "ok";
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
