//! The lanes scenario's side of RabbitMQ: urgent jobs published one every interval with
//! a routing key of the run's choosing (`urgent.otp` reaches the urgent lane, `otp` the
//! jobs queue behind the campaign), and a collector that tells their results from the
//! campaign's by job id (`urgent-N` against `bench-N`).

use std::collections::HashSet;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use super::collector::ResultStream;
use super::*;

pub const URGENT_PREFIX: &str = "urgent-";

/// What an urgent job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UrgentKind {
    /// A one-time code by SMS (`createSMSMessage`, a rate-limit budget of its own).
    Sms,
    /// A push for the campaign's application (`createMessage`, the campaign's budget).
    Push,
}

impl UrgentKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sms => "SMS",
            Self::Push => "push",
        }
    }
}

/// Urgent job `i` of `kind`; a push is for the campaign's application (`job_body`'s).
pub fn urgent_body(kind: UrgentKind, i: usize) -> Vec<u8> {
    let id = format!("{URGENT_PREFIX}{i}");
    let code = i % 1_000_000;
    match kind {
        UrgentKind::Sms => format!(
            r#"{{"id":"{id}","kind":"sms","application":"ABCDE-12345","notifications":[{{"send_date":"now","content":"Your code is {code:06}","devices":["+1555{:07}"]}}]}}"#,
            i % 10_000_000
        ),
        UrgentKind::Push => format!(
            r#"{{"id":"{id}","kind":"push","application":"ABCDE-12345","notifications":[{{"send_date":"now","content":{{"en":"Your code is {code:06}"}},"users":["urgent-user-{i}"]}}]}}"#
        ),
    }
    .into_bytes()
}

/// When each urgent job was published, by its number (the list grows as they go out).
#[derive(Default)]
pub struct UrgentStamps {
    at: Mutex<Vec<Instant>>,
}

impl UrgentStamps {
    fn stamp(&self, at: Instant) -> usize {
        let mut all = self.at.lock().unwrap_or_else(|e| e.into_inner());
        all.push(at);
        all.len() - 1
    }

    pub fn get(&self, i: usize) -> Option<Instant> {
        let all = self.at.lock().unwrap_or_else(|e| e.into_inner());
        all.get(i).copied()
    }
}

/// Publishes an urgent job of `kind` every `interval` with `routing_key` (confirmed, the
/// confirms awaited alongside, so a slow one never delays the next job) until `stop`;
/// returns how many went out.
pub async fn publish_urgent(
    url: &str,
    exchange: &str,
    kind: UrgentKind,
    routing_key: &str,
    interval: Duration,
    stamps: &UrgentStamps,
    stop: CancellationToken,
) -> anyhow::Result<usize> {
    let conn = connect(url).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let started = Instant::now();
    let mut confirms = FuturesUnordered::new();
    let mut n = 0;
    loop {
        let due = started + interval * n as u32;
        tokio::select! {
            () = stop.cancelled() => break,
            Some(c) = confirms.next(), if !confirms.is_empty() => {
                let c: lapin::Result<lapin::Confirmation> = c;
                anyhow::ensure!(c?.is_ack(), "the broker refused an urgent job (nack)");
                continue;
            }
            () = tokio::time::sleep_until(due.into()) => {}
        }
        let i = stamps.stamp(Instant::now());
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(format!("{URGENT_PREFIX}{i}").into());
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                &urgent_body(kind, i),
                properties,
            )
            .await
            .context("publishing an urgent job")?;
        confirms.push(confirm);
        n += 1;
    }
    while let Some(c) = confirms.next().await {
        anyhow::ensure!(c?.is_ack(), "the broker refused an urgent job (nack)");
    }
    let _ = conn.close(200, "published".into()).await;
    Ok(n)
}

/// Watches the results exchange and sorts results into the campaign's and the urgent jobs'.
pub struct LaneCollector {
    results: ResultStream,
}

/// One urgent job's result.
#[derive(Debug, Clone, Copy)]
pub struct UrgentResult {
    /// Its number, in publish order.
    pub index: usize,
    /// Publish to result, µs.
    pub latency_us: u64,
    pub ok: bool,
    /// Jobs in the call that carried it (1: a call of its own).
    pub batch_jobs: u64,
}

/// What came back so far.
#[derive(Debug, Default)]
pub struct LaneCollected {
    /// Distinct campaign jobs with a result, the first and the last one's arrival.
    pub bulk: usize,
    pub bulk_not_ok: usize,
    pub bulk_first: Option<Instant>,
    pub bulk_last: Option<Instant>,
    pub urgent: Vec<UrgentResult>,
    pub duplicates: usize,
    /// Results that were neither (unreadable, or no job id of this run).
    pub unknown: usize,
    pub stopped_short: Option<String>,
    seen_bulk: HashSet<usize>,
    seen_urgent: HashSet<usize>,
}

#[derive(Deserialize)]
struct LaneResult<'a> {
    #[serde(borrow)]
    job_id: Option<&'a str>,
    #[serde(borrow)]
    outcome: &'a str,
    batch: Option<BatchLite>,
}

#[derive(Deserialize)]
struct BatchLite {
    jobs: u64,
}

/// Whose a job id is: the campaign's job `i`, or urgent job `i`.
#[derive(Debug, PartialEq, Eq)]
pub enum Whose {
    Bulk(usize),
    Urgent(usize),
}

pub fn whose(job_id: &str) -> Option<Whose> {
    if let Some(i) = job_id.strip_prefix(URGENT_PREFIX) {
        return i.parse().ok().map(Whose::Urgent);
    }
    job_index(job_id).map(Whose::Bulk)
}

impl LaneCollector {
    pub async fn start(url: &str, results_exchange: &str) -> anyhow::Result<Self> {
        Ok(Self {
            results: ResultStream::start(url, results_exchange).await?,
        })
    }

    /// Takes results into `out` until `done` says so, or until none came for `stall`.
    pub async fn collect(
        &mut self,
        out: &mut LaneCollected,
        stamps: &UrgentStamps,
        done: impl Fn(&LaneCollected) -> bool,
        stall: Duration,
    ) {
        while !done(out) {
            let delivery = match self.results.next(stall).await {
                Ok(d) => d,
                Err(why) => {
                    let progress = format!(
                        "{} campaign and {} urgent results in",
                        out.bulk,
                        out.urgent.len()
                    );
                    out.stopped_short = Some(why.describe(stall, &progress));
                    return;
                }
            };
            let now = Instant::now();
            let Some(r) = serde_json::from_slice::<LaneResult>(&delivery.data).ok() else {
                out.unknown += 1;
                continue;
            };
            let ok = r.outcome == "ok";
            match r.job_id.and_then(whose) {
                Some(Whose::Bulk(i)) if out.seen_bulk.insert(i) => {
                    out.bulk += 1;
                    out.bulk_first.get_or_insert(now);
                    out.bulk_last = Some(now);
                    out.bulk_not_ok += usize::from(!ok);
                }
                Some(Whose::Urgent(i)) if out.seen_urgent.insert(i) => match stamps.get(i) {
                    Some(at) => out.urgent.push(UrgentResult {
                        index: i,
                        latency_us: now.duration_since(at).as_micros() as u64,
                        ok,
                        batch_jobs: r.batch.map_or(1, |b| b.jobs),
                    }),
                    None => out.unknown += 1,
                },
                Some(_) => out.duplicates += 1,
                None => out.unknown += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_and_campaign_ids_are_told_apart() {
        assert_eq!(whose("bench-17"), Some(Whose::Bulk(17)));
        assert_eq!(whose("urgent-3"), Some(Whose::Urgent(3)));
        assert_eq!(whose("urgent-x"), None);
        assert_eq!(whose("other-1"), None);
    }

    #[test]
    fn an_urgent_job_is_a_job_of_its_kind_for_the_campaigns_application() {
        for (kind, name) in [(UrgentKind::Sms, "sms"), (UrgentKind::Push, "push")] {
            let job: serde_json::Value = serde_json::from_slice(&urgent_body(kind, 42)).unwrap();
            let campaign: serde_json::Value =
                serde_json::from_slice(&job_body("bench-42", 42)).unwrap();
            assert_eq!(job["id"], "urgent-42");
            assert_eq!(job["kind"], name);
            assert_eq!(job["application"], campaign["application"]);
            assert_eq!(job["notifications"].as_array().map(Vec::len), Some(1));
        }
        let sms: serde_json::Value =
            serde_json::from_slice(&urgent_body(UrgentKind::Sms, 42)).unwrap();
        assert_eq!(sms["notifications"][0]["devices"][0], "+15550000042");
    }

    #[test]
    fn a_runs_names_cover_the_urgent_lanes_queues_and_exchanges() {
        let names = Names::fresh("amqp://127.0.0.1", QueueType::Quorum);
        let topology = names.topology();
        let jobs = &names.settings.amqp.jobs_queue;
        let queues = topology.queues();
        assert!(queues.contains(&format!("{jobs}.urgent")), "{queues:?}");
        assert!(
            queues.iter().any(|q| q.contains(".retry.urgent.")),
            "{queues:?}"
        );
        let exchanges = topology.exchanges();
        let ex = &names.settings.amqp.jobs_exchange;
        for e in [format!("{ex}.lanes"), format!("{ex}.bulk")] {
            assert!(exchanges.contains(&e), "{exchanges:?}");
        }
    }
}
