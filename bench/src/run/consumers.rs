//! A run's consumers: one or more processes of the worker or of the ceiling loop on the
//! run's one jobs queue (competing consumers), read together, and one of them killed
//! mid-run when the run asks for it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::super::broker::Names;
use super::super::mock::Mock;
use super::super::procs::Proc;
use super::{Bench, Consumer, RunSpec};

pub(super) struct Consumers {
    procs: Vec<Proc>,
    killed: Option<Killed>,
}

/// What a killed process had done when it was killed.
struct Killed {
    cpu_ms: Option<f64>,
    peak_rss_kb: Option<u64>,
    /// Its /metrics, read just before the kill.
    metrics: Option<String>,
    log: PathBuf,
}

impl Consumers {
    /// Starts `spec.processes` consumers, one after the other, each ready before the next;
    /// their logs are `<log>` for one and `<log>-<i>` (from 1) for several.
    pub(super) async fn start(
        bench: &Bench,
        spec: &RunSpec,
        names: &Names,
        mock: &Mock,
        log: &str,
    ) -> anyhow::Result<Self> {
        let amqp = &names.settings.amqp;
        let n = spec.processes.max(1);
        let mut procs = Vec::with_capacity(n);
        for i in 1..=n {
            let log = match n {
                1 => bench.logs.join(format!("{log}.log")),
                _ => bench.logs.join(format!("{log}-{i}.log")),
            };
            let proc = match &spec.consumer {
                Consumer::Worker(env) => {
                    let all = bench.worker_env(mock, names, spec.prefetch, env);
                    Proc::worker(&bench.worker_bin, &all, log).await?
                }
                Consumer::Ceiling(hold) => {
                    Proc::ceiling(
                        &bench.amqp_url,
                        &amqp.jobs_queue,
                        &amqp.results_exchange,
                        spec.prefetch,
                        bench.ceiling_ack_coalesce_ms,
                        *hold,
                        log,
                    )
                    .await?
                }
            };
            eprintln!(
                "  [{} pid {}, log {}]",
                spec.label,
                proc.pid(),
                proc.log.display()
            );
            procs.push(proc);
        }
        Ok(Self {
            procs,
            killed: None,
        })
    }

    /// CPU time of all of them so far (a killed one's until its kill), ms.
    pub(super) fn cpu_ms(&self) -> Option<f64> {
        let live: Option<f64> = self.procs.iter().map(Proc::cpu_ms).sum();
        let killed = self.killed.as_ref().map_or(Some(0.0), |k| k.cpu_ms);
        Some(live? + killed?)
    }

    /// The highest resident set size of one of them now, kB.
    pub(super) fn rss_kb(&self) -> Option<u64> {
        self.procs.iter().filter_map(Proc::rss_kb).max()
    }

    /// The highest peak resident set size of one of them, kB.
    pub(super) fn peak_rss_kb(&self) -> Option<u64> {
        let killed = self.killed.as_ref().and_then(|k| k.peak_rss_kb);
        self.procs
            .iter()
            .filter_map(Proc::peak_rss_kb)
            .chain(killed)
            .max()
    }

    pub(super) fn metrics_urls(&self) -> Vec<String> {
        self.procs.iter().filter_map(Proc::metrics_url).collect()
    }

    /// Every worker's Prometheus text, one after the other (a killed one's as read just
    /// before its kill), so that a sum over them is the fleet's; `None` for the ceiling.
    pub(super) async fn metrics(&self) -> Option<String> {
        let mut all = self.killed.as_ref().and_then(|k| k.metrics.clone());
        for proc in &self.procs {
            if let Some(text) = proc.metrics().await {
                let all = all.get_or_insert_with(String::new);
                all.push_str(&text);
                all.push('\n');
            }
        }
        all
    }

    pub(super) fn logs(&self) -> Vec<PathBuf> {
        let killed = self.killed.as_ref().map(|k| k.log.clone());
        self.procs
            .iter()
            .map(|p| p.log.clone())
            .chain(killed)
            .collect()
    }

    /// At `started + after`, SIGKILLs the last process (never the only one), unless `stop`
    /// comes first; returns when it was killed, in seconds after `started`.
    pub(super) async fn kill_one(
        &mut self,
        started: Instant,
        after: Duration,
        stop: &CancellationToken,
    ) -> Option<f64> {
        tokio::select! {
            () = tokio::time::sleep_until((started + after).into()) => {}
            () = stop.cancelled() => return None,
        }
        if self.procs.len() < 2 {
            return None;
        }
        let proc = self.procs.pop()?;
        let metrics = proc.metrics().await;
        let (cpu_ms, peak_rss_kb) = (proc.cpu_ms(), proc.peak_rss_kb());
        let log = proc.log.clone();
        let at = started.elapsed().as_secs_f64();
        eprintln!("  [SIGKILL pid {} at {at:.1} s]", proc.pid());
        proc.kill().await;
        self.killed = Some(Killed {
            cpu_ms,
            peak_rss_kb,
            metrics,
            log,
        });
        Some(at)
    }

    /// Stops the live ones (SIGTERM), together.
    pub(super) async fn stop(self) {
        futures_util::future::join_all(self.procs.into_iter().map(Proc::stop)).await;
    }
}
