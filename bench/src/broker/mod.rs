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

mod collector;
mod lanes;
mod producer;

pub use collector::{Collector, Legs};
pub use lanes::{
    LaneCollected, LaneCollector, UrgentKind, UrgentResult, UrgentStamps, publish_urgent,
};
pub use producer::{Producer, Stamps};

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
            // The ledger remembers job ids for a day: each run's ids (bench-0, bench-1, …)
            // are its own, or a second run would be answered as duplicates of the first.
            ("LEDGER__KEY_PREFIX", &self.ledger_key_prefix()),
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

    /// The run's own `ledger.key_prefix`.
    fn ledger_key_prefix(&self) -> String {
        format!("{}:", self.settings.amqp.jobs_queue)
    }

    /// Forgets the run's job ids in the ledger (the keys under its key prefix), so that
    /// every run finds Redis as the first one did, not holding every earlier run's ids for
    /// a day (hundreds of thousands of keys after a few scenarios, whose growing tables
    /// cost the runs after them). Returns how many keys it deleted.
    pub async fn forget_ledger_keys(&self) -> anyhow::Result<u64> {
        let client = redis::Client::open(crate::procs::redis_url()).context("REDIS_URL")?;
        let mut redis = client.get_multiplexed_async_connection().await?;
        let pattern = format!("{}*", self.ledger_key_prefix());
        let (mut cursor, mut deleted) = (0u64, 0u64);
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut redis)
                .await?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut redis)
                    .await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
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

/// Job ids `bench-<i>`; against the sandbox, `bench-<tag>-<i>` with a tag of the run's
/// own: the sandbox remembers each transactionId (derived from the job id) for five
/// minutes, and would take a later run's pushes for repeats of an earlier run's.
pub fn id_prefix(tagged: bool) -> String {
    if tagged {
        format!("{JOB_ID_PREFIX}{:06x}-", fastrand::u32(..1 << 24))
    } else {
        JOB_ID_PREFIX.to_owned()
    }
}

/// The index of an untagged job id (`bench-<i>`), as the lanes scenario's campaign has.
pub fn job_index(id: &str) -> Option<usize> {
    id.strip_prefix(JOB_ID_PREFIX)?.parse().ok()
}

/// A push job as a backend would publish it, with the id `id`; `i` makes its content unique.
pub fn job_body(id: &str, i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","kind":"push","application":"ABCDE-12345","notifications":[{{"send_date":"now","content":{{"en":"Your order {i} has shipped","de":"Ihre Bestellung {i} ist unterwegs"}},"users":["user-{i}"],"data":{{"order":{i}}}}}]}}"#
    )
    .into_bytes()
}
