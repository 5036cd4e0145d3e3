//! The bench's side of RabbitMQ: fresh names per run (deleted afterwards), a producer of
//! push jobs with publisher confirms (as fast as confirms allow, or paced), and a
//! collector that matches every result to its job's publish time by `job_id`.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use pushwoosh_worker::bench_support::{QueueType, Settings, Topology};
use serde::Deserialize;

/// Confirms a producer may wait for at once.
const CONFIRM_WINDOW: usize = 1024;
const JOB_ID_PREFIX: &str = "bench-";

/// One run's exchanges and queues, named at random so runs and people never collide.
pub struct Names {
    pub settings: Settings,
}

impl Names {
    pub fn fresh(amqp_url: &str, queue_type: QueueType) -> Self {
        let prefix = format!("bench{:012x}", fastrand::u64(..) >> 16);
        let mut settings = Settings::default();
        let a = &mut settings.amqp;
        a.url = amqp_url.to_owned();
        a.jobs_exchange = format!("{prefix}.jobs");
        a.jobs_queue = format!("{prefix}.jobs");
        a.results_exchange = format!("{prefix}.results");
        a.dead_letter_queue = format!("{prefix}.dead");
        a.retry_queue_prefix = format!("{prefix}.retry");
        a.queue_type = queue_type;
        Self { settings }
    }

    pub fn topology(&self) -> Topology {
        Topology::new(&self.settings)
    }

    /// The worker's environment that points it at these names (as tests/common does).
    pub fn worker_env(&self) -> Vec<(String, String)> {
        let a = &self.settings.amqp;
        let queue_type = match a.queue_type {
            QueueType::Quorum => "quorum".to_owned(),
            QueueType::Classic => "classic".to_owned(),
        };
        [
            ("AMQP__JOBS_EXCHANGE", &a.jobs_exchange),
            ("AMQP__JOBS_QUEUE", &a.jobs_queue),
            ("AMQP__RESULTS_EXCHANGE", &a.results_exchange),
            ("AMQP__DEAD_LETTER_QUEUE", &a.dead_letter_queue),
            ("AMQP__RETRY_QUEUE_PREFIX", &a.retry_queue_prefix),
            ("AMQP__QUEUE_TYPE", &queue_type),
        ]
        .into_iter()
        .map(|(k, v)| (format!("PUSHWOOSH_WORKER__{k}"), v.clone()))
        .collect()
    }

    /// Declares the topology exactly as the worker does (so a queue can be filled first).
    pub async fn declare(&self) -> anyhow::Result<()> {
        let conn = connect(&self.settings.amqp.url).await?;
        self.topology().declare(&conn).await?;
        let _ = conn.close(200, "declared".into()).await;
        Ok(())
    }

    pub async fn delete(&self) -> anyhow::Result<()> {
        let conn = connect(&self.settings.amqp.url).await?;
        let channel = conn.create_channel().await?;
        let topology = self.topology();
        for queue in topology.queues() {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for exchange in &topology.exchanges() {
            let _ = channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = conn.close(200, "deleted".into()).await;
        Ok(())
    }
}

pub async fn connect(url: &str) -> anyhow::Result<Connection> {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| format!("connecting to RabbitMQ at {}", mask(url)))
}

fn mask(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

/// A push job as a backend would publish it; `i` makes it unique.
pub fn job_body(i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"{JOB_ID_PREFIX}{i}","kind":"push","application":"ABCDE-12345","notifications":[{{"send_date":"now","content":{{"en":"Your order {i} has shipped","de":"Ihre Bestellung {i} ist unterwegs"}},"users":["user-{i}"],"data":{{"order":{i}}}}}]}}"#
    )
    .into_bytes()
}

pub fn job_id(i: usize) -> String {
    format!("{JOB_ID_PREFIX}{i}")
}

fn job_index(id: &str) -> Option<usize> {
    id.strip_prefix(JOB_ID_PREFIX)?.parse().ok()
}

/// When each job was published, ns after `base` (0: not yet).
pub struct Stamps {
    base: Instant,
    /// The wall clock at `base`, to place the worker's `received_at`/`completed_at`.
    wall_base: std::time::SystemTime,
    at: Vec<AtomicU64>,
}

impl Stamps {
    pub fn new(jobs: usize) -> Self {
        Self {
            base: Instant::now(),
            wall_base: std::time::SystemTime::now(),
            at: (0..jobs).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A wall-clock RFC 3339 time from a result event, on this run's monotonic clock.
    fn instant_of(&self, rfc3339: &str) -> Option<Instant> {
        let wall: std::time::SystemTime = chrono::DateTime::parse_from_rfc3339(rfc3339)
            .ok()?
            .with_timezone(&chrono::Utc)
            .into();
        Some(self.base + wall.duration_since(self.wall_base).ok()?)
    }

    fn set(&self, i: usize, at: Instant) {
        let ns = at.duration_since(self.base).as_nanos().max(1) as u64;
        self.at[i].store(ns, Ordering::Relaxed);
    }

    pub fn get(&self, i: usize) -> Option<Instant> {
        match self.at.get(i)?.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.base + Duration::from_nanos(ns)),
        }
    }
}

/// A confirm-mode channel publishing push jobs to a jobs exchange.
pub struct Producer {
    _conn: Connection,
    channel: Channel,
    exchange: String,
}

/// What a producer managed.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub jobs: usize,
    pub seconds: f64,
}

impl Producer {
    pub async fn connect(url: &str, exchange: &str) -> anyhow::Result<Self> {
        let conn = connect(url).await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            _conn: conn,
            channel,
            exchange: exchange.to_owned(),
        })
    }

    /// Publishes jobs `range`, stamping each one's publish time. `per_second` paces them;
    /// `None` publishes as fast as `CONFIRM_WINDOW` outstanding confirms allow.
    pub async fn publish(
        &self,
        range: Range<usize>,
        per_second: Option<u32>,
        stamps: &Stamps,
    ) -> anyhow::Result<Published> {
        let started = Instant::now();
        let mut confirms = FuturesUnordered::new();
        let jobs = range.len();
        for (n, i) in range.enumerate() {
            if let Some(rate) = per_second {
                let due = started + Duration::from_secs_f64(n as f64 / f64::from(rate));
                tokio::time::sleep_until(due.into()).await;
            }
            while confirms.len() >= CONFIRM_WINDOW {
                confirmed(confirms.next().await)?;
            }
            let body = job_body(i);
            let properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_message_id(job_id(i).into());
            stamps.set(i, Instant::now());
            let confirm = self
                .channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    "jobs.bench".into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await
                .context("publishing a job")?;
            confirms.push(confirm);
        }
        while let Some(c) = confirms.next().await {
            confirmed(Some(c))?;
        }
        Ok(Published {
            jobs,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

fn confirmed(c: Option<lapin::Result<lapin::Confirmation>>) -> anyhow::Result<()> {
    if let Some(c) = c {
        anyhow::ensure!(c?.is_ack(), "the broker refused a job (nack)");
    }
    Ok(())
}

/// Watches the results exchange and matches results to jobs.
pub struct Collector {
    _conn: Connection,
    consumer: Consumer,
    stamps: Arc<Stamps>,
    /// Split each result's time at the worker's timestamps (`Collected::legs`): two
    /// timestamp parses a result, on the cores the worker needs, so only when asked.
    pub split_legs: bool,
}

/// What came back.
#[derive(Debug, Default)]
pub struct Collected {
    /// Distinct jobs with a result.
    pub results: usize,
    pub duplicates: usize,
    /// Results whose outcome was not `ok` (or that could not be read).
    pub not_ok: usize,
    /// Publish-to-result, µs, for jobs from index `warmup` on.
    pub latencies_us: Vec<u64>,
    /// The same jobs' publish-to-result split at the worker's `received_at` and
    /// `completed_at` (ms precision), where the result carries them.
    pub legs: Vec<Legs>,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Why collecting stopped short, if it did.
    pub stopped_short: Option<String>,
}

#[derive(Deserialize)]
struct ResultLite<'a> {
    #[serde(borrow)]
    job_id: Option<&'a str>,
    #[serde(borrow)]
    outcome: &'a str,
    #[serde(borrow)]
    received_at: Option<&'a str>,
    #[serde(borrow)]
    completed_at: Option<&'a str>,
}

/// One job's publish-to-result time and its three legs, µs: from the publish to the
/// worker's receipt (the queue and the broker's delivery), in the worker (receipt to the
/// result's creation: decode, batching, the call), and from there to the bench (the
/// result's publish and the broker's delivery of it).
#[derive(Debug, Clone, Copy)]
pub struct Legs {
    pub total_us: u64,
    pub to_worker_us: i64,
    pub in_worker_us: i64,
    pub back_us: i64,
}

impl Collector {
    pub async fn start(
        url: &str,
        results_exchange: &str,
        stamps: Arc<Stamps>,
    ) -> anyhow::Result<Self> {
        let conn = connect(url).await?;
        let channel = conn.create_channel().await?;
        let consumer = pushwoosh_worker::bench_support::watch_results(&channel, results_exchange)
            .await
            .context("watching the results")?;
        Ok(Self {
            _conn: conn,
            consumer,
            stamps,
            split_legs: false,
        })
    }

    /// Waits for `expected` distinct results, until `deadline`, or until none came for `stall`.
    pub async fn collect(
        &mut self,
        expected: usize,
        warmup: usize,
        deadline: Option<Instant>,
        stall: Duration,
    ) -> Collected {
        let mut seen = vec![false; self.stamps.at.len()];
        let mut out = Collected {
            latencies_us: Vec::with_capacity(expected),
            ..Collected::default()
        };
        while out.results < expected {
            let mut wait = stall;
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(Instant::now()));
            }
            let delivery = match tokio::time::timeout(wait, self.consumer.next()).await {
                Ok(Some(Ok(d))) => d,
                Ok(Some(Err(e))) => {
                    out.stopped_short = Some(format!("results consumer failed: {e}"));
                    break;
                }
                Ok(None) => {
                    out.stopped_short = Some("results consumer closed".into());
                    break;
                }
                Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => break,
                Err(_) => {
                    out.stopped_short = Some(format!(
                        "no result for {} s ({} of {expected} in)",
                        stall.as_secs(),
                        out.results
                    ));
                    break;
                }
            };
            let now = Instant::now();
            let lite: Option<ResultLite> = serde_json::from_slice(&delivery.data).ok();
            let times = lite
                .as_ref()
                .filter(|_| self.split_legs)
                .and_then(|r| Some((r.received_at?, r.completed_at?)))
                .and_then(|(r, c)| Some((self.stamps.instant_of(r)?, self.stamps.instant_of(c)?)));
            let Some((index, ok)) =
                lite.and_then(|r| Some((job_index(r.job_id?)?, r.outcome == "ok")))
            else {
                out.not_ok += 1;
                continue;
            };
            match seen.get_mut(index) {
                Some(s) if !*s => *s = true,
                _ => {
                    out.duplicates += 1;
                    continue;
                }
            }
            out.results += 1;
            out.first.get_or_insert(now);
            out.last = Some(now);
            if !ok {
                out.not_ok += 1;
            }
            if index >= warmup
                && let Some(at) = self.stamps.get(index)
            {
                let total_us = now.duration_since(at).as_micros() as u64;
                out.latencies_us.push(total_us);
                if let Some((received, completed)) = times {
                    let us = |a: Instant, b: Instant| {
                        if b >= a {
                            b.duration_since(a).as_micros() as i64
                        } else {
                            -(a.duration_since(b).as_micros() as i64)
                        }
                    };
                    out.legs.push(Legs {
                        total_us,
                        to_worker_us: us(at, received),
                        in_worker_us: us(received, completed),
                        back_us: us(completed, now),
                    });
                }
            }
        }
        out
    }
}
