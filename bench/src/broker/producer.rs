//! The producer: push jobs published with publisher confirms, as fast as confirms allow
//! or paced, each one's publish time stamped.

use super::*;

/// When each job was published, ns after `base` (0: not yet).
pub struct Stamps {
    base: Instant,
    /// The wall clock at `base`, to place the worker's `received_at`/`completed_at`.
    wall_base: std::time::SystemTime,
    pub(super) at: Vec<AtomicU64>,
    /// This run's job ids are this and the job's index ([`id_prefix`]).
    ids: String,
}

impl Stamps {
    pub fn new(jobs: usize, ids: String) -> Self {
        Self {
            base: Instant::now(),
            wall_base: std::time::SystemTime::now(),
            at: (0..jobs).map(|_| AtomicU64::new(0)).collect(),
            ids,
        }
    }

    pub fn job_id(&self, i: usize) -> String {
        format!("{}{i}", self.ids)
    }

    /// The index of one of this run's job ids.
    pub(super) fn index_of(&self, id: &str) -> Option<usize> {
        id.strip_prefix(self.ids.as_str())?.parse().ok()
    }

    /// A wall-clock RFC 3339 time from a result event, on this run's monotonic clock.
    pub(super) fn instant_of(&self, rfc3339: &str) -> Option<Instant> {
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
            let id = stamps.job_id(i);
            let body = job_body(&id, i);
            let properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_message_id(id.into());
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
