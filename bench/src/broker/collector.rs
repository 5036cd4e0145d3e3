//! The collector: watches the results exchange and matches every result to its job's
//! publish time by `job_id`.

use super::*;

/// The results exchange, watched through a queue of the bench's own.
pub struct ResultStream {
    _conn: Connection,
    consumer: Consumer,
}

/// Why no result came.
pub enum Quiet {
    /// The consumer failed, with the broker's words.
    Failed(String),
    /// The broker closed the consumer.
    Closed,
    /// None came within the wait.
    Silent,
}

impl Quiet {
    /// What to report, `progress` saying how many results were in.
    pub fn describe(&self, stall: Duration, progress: &str) -> String {
        match self {
            Self::Failed(e) => format!("results consumer failed: {e}"),
            Self::Closed => "results consumer closed".into(),
            Self::Silent => format!("no result for {} s ({progress})", stall.as_secs()),
        }
    }
}

impl ResultStream {
    pub async fn start(url: &str, results_exchange: &str) -> anyhow::Result<Self> {
        let conn = connect(url).await?;
        let channel = conn.create_channel().await?;
        let consumer = pushwoosh_worker::bench_support::watch_results(&channel, results_exchange)
            .await
            .context("watching the results")?;
        Ok(Self {
            _conn: conn,
            consumer,
        })
    }

    /// The next result, waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<lapin::message::Delivery, Quiet> {
        match tokio::time::timeout(wait, self.consumer.next()).await {
            Ok(Some(Ok(d))) => Ok(d),
            Ok(Some(Err(e))) => Err(Quiet::Failed(e.to_string())),
            Ok(None) => Err(Quiet::Closed),
            Err(_) => Err(Quiet::Silent),
        }
    }
}

/// Watches the results exchange and matches results to jobs.
pub struct Collector {
    results: ResultStream,
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
    /// Results saying `"duplicate": true`: the ledger answered them from an earlier
    /// processing's record, without a call (e.g. a job redelivered after its worker died).
    pub marked_duplicate: usize,
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
    #[serde(default)]
    duplicate: bool,
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
        Ok(Self {
            results: ResultStream::start(url, results_exchange).await?,
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
            let delivery = match self.results.next(wait).await {
                Ok(d) => d,
                Err(Quiet::Silent) if deadline.is_some_and(|d| Instant::now() >= d) => break,
                Err(why) => {
                    out.stopped_short =
                        Some(why.describe(stall, &format!("{} of {expected} in", out.results)));
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
            if lite.as_ref().is_some_and(|r| r.duplicate) {
                out.marked_duplicate += 1;
            }
            let Some((index, ok)) =
                lite.and_then(|r| Some((self.stamps.index_of(r.job_id?)?, r.outcome == "ok")))
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
