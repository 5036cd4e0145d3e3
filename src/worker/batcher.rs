//! Batching: push jobs for one application that are ready at the same moment share one
//! `createMessage` call, so Pushwoosh's per-minute call budget carries many pushes.
//!
//! Each application has a lane: a task that gathers the jobs submitted to it (up to
//! `batch.max_size` notifications, waiting `batch.linger_ms` for company, waiting up to
//! `batch.busy_linger_ms` more while the application's calls under way already cover a
//! call's latency, and filling further while the call waits for a rate-limit slot), then
//! sends them in one call and answers every job with its own verdict:
//!
//! - success: each job gets its own message codes, by position. If the answer does not
//!   carry exactly one code per notification, no job gets codes: the worker does not
//!   guess, and each result says so (`batch.codes_mapped: false`);
//! - 210 or HTTP 400 for a batch of several jobs: split in halves and sent again, until
//!   the bad job(s) stand alone; only they are rejected. Nothing was sent by the rejected
//!   call, and every notification keeps its transactionId, so this is safe;
//! - anything else (5xx, time-out, 429, refused token): every job gets the same verdict
//!   and goes its own way (retry budget, parking, dead letter) in `process`.
//!
//! A job whose task gave up waiting (the worker is stopping and handed it back to the
//! queue) is dropped from its batch before the call: it is not sent.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::breaker::CircuitBreaker;
use super::process::{Accounts, Answered};
use crate::job::{Job, JobKind};
use crate::metrics::Metrics;
use crate::pushwoosh::{HttpAnswer, PushwooshClient, RateLimiter, TransportError, Verdict};
use crate::result_event::BatchInfo;
use crate::settings::BatchSettings;

const METHOD: &str = "createMessage";

/// A lane with no job for this long ends; the next job for its application starts a new one.
const LANE_IDLE: Duration = Duration::from_secs(30);

/// What a batched job learns from its call.
#[derive(Debug, Clone)]
pub struct Batched {
    /// The call's answer, this job's own: for a success, a `response` holding only its codes.
    pub answered: Answered,
    pub batch: BatchInfo,
}

/// A push job ready for a batch: its notifications, serialized once.
pub struct Batchable {
    application: String,
    /// The notification objects, comma-separated, without the enclosing brackets.
    notifications: Bytes,
    count: usize,
}

struct Entry {
    notifications: Bytes,
    count: usize,
    reply: oneshot::Sender<Batched>,
}

/// Makes one HTTP call to Pushwoosh: the client, or a fake in tests.
pub trait Caller: Send + Sync + 'static {
    fn call(
        &self,
        method: &'static str,
        body: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<HttpAnswer, TransportError>> + Send + '_>>;
}

impl Caller for PushwooshClient {
    fn call(
        &self,
        method: &'static str,
        body: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<HttpAnswer, TransportError>> + Send + '_>> {
        Box::pin(PushwooshClient::call(self, method, body))
    }
}

/// What every lane shares.
struct Shared {
    settings: BatchSettings,
    client: Arc<dyn Caller>,
    limiter: Arc<RateLimiter>,
    metrics: Arc<Metrics>,
    breaker: Arc<CircuitBreaker>,
}

type Lanes = Mutex<HashMap<String, mpsc::UnboundedSender<Entry>>>;

pub struct Batcher {
    shared: Arc<Shared>,
    lanes: Arc<Lanes>,
}

impl Batcher {
    pub fn new(
        settings: &BatchSettings,
        client: Arc<dyn Caller>,
        limiter: Arc<RateLimiter>,
        metrics: Arc<Metrics>,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                settings: settings.clone(),
                client,
                limiter,
                metrics,
                breaker,
            }),
            lanes: Arc::default(),
        }
    }

    /// The job's notifications, when the job can share a call: batching is on, it is a
    /// push whose request is only `application` and `notifications`, and it fits a batch.
    /// Call it after the transactionIds were added.
    pub fn batchable(&self, job: &Job) -> Option<Batchable> {
        if !self.shared.settings.enabled || job.kind != JobKind::Push {
            return None;
        }
        batchable(&job.request, self.shared.settings.max_size)
    }

    /// Hands the job to its application's lane; resolves with its verdict, or `None` if the
    /// worker is going away.
    /// `shared_token`: the token is the default one (for the breaker: a refused shared
    /// token stops every job).
    pub async fn submit(
        &self,
        job: Batchable,
        token: &SecretString,
        shared_token: bool,
    ) -> Option<Batched> {
        let (reply, answer) = oneshot::channel();
        let entry = Entry {
            notifications: job.notifications,
            count: job.count,
            reply,
        };
        {
            // Never held across an await.
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            let entry = match lanes.get(&job.application) {
                Some(lane) => match lane.send(entry) {
                    Ok(()) => None,
                    Err(mpsc::error::SendError(entry)) => Some(entry),
                },
                None => Some(entry),
            };
            if let Some(entry) = entry {
                let (tx, rx) = mpsc::unbounded_channel();
                // A fresh channel's receiver is alive: this send cannot fail.
                let _ = tx.send(entry);
                lanes.insert(job.application.clone(), tx);
                let (ended_tx, ended) = mpsc::unbounded_channel();
                let lane = Lane {
                    shared: self.shared.clone(),
                    lanes: Arc::downgrade(&self.lanes),
                    application: job.application,
                    token: token.clone(),
                    shared_token,
                    rx,
                    carry: None,
                    ended_tx,
                    ended,
                    in_flight: 0,
                    latency: None,
                };
                tokio::spawn(lane.run());
            }
        }
        answer.await.ok()
    }
}

fn batchable(request: &Map<String, Value>, max_size: usize) -> Option<Batchable> {
    if request.len() != 2 {
        return None;
    }
    let application = request.get("application")?.as_str()?;
    let notifications = request.get("notifications")?.as_array()?;
    let count = notifications.len();
    if count == 0 || count > max_size || !notifications.iter().all(Value::is_object) {
        return None;
    }
    let raw = Bytes::from(serde_json::to_vec(notifications).ok()?);
    Some(Batchable {
        application: application.to_owned(),
        // `[a,b]` → `a,b`, without a copy
        notifications: raw.slice(1..raw.len() - 1),
        count,
    })
}

struct Lane {
    shared: Arc<Shared>,
    lanes: Weak<Lanes>,
    application: String,
    token: SecretString,
    shared_token: bool,
    rx: mpsc::UnboundedReceiver<Entry>,
    /// A job that did not fit the last batch: the first of the next.
    carry: Option<Entry>,
    /// Each call of this lane says here how long it took, when it ends.
    ended_tx: mpsc::UnboundedSender<Duration>,
    ended: mpsc::UnboundedReceiver<Duration>,
    /// Calls of this lane under way.
    in_flight: usize,
    /// How long this lane's calls take (a moving average); `None` before the first ends.
    latency: Option<Duration>,
}

/// Reports a call's end to its lane, however the call ends.
struct CallEnd {
    /// tokio's clock, like every wait of the lane.
    started: tokio::time::Instant,
    tx: mpsc::UnboundedSender<Duration>,
}

impl Drop for CallEnd {
    fn drop(&mut self) {
        // A lane that ended no longer counts.
        let _ = self.tx.send(self.started.elapsed());
    }
}

/// The jobs of one call.
struct Batch {
    entries: Vec<Entry>,
    notifications: usize,
    max: usize,
}

impl Batch {
    fn new(first: Entry, max: usize) -> Self {
        Self {
            notifications: first.count,
            entries: vec![first],
            max,
        }
    }

    fn full(&self) -> bool {
        self.notifications >= self.max
    }

    /// Adds the entry, or gives it back when it would not fit.
    fn add(&mut self, entry: Entry) -> Result<(), Entry> {
        if self.notifications + entry.count > self.max {
            return Err(entry);
        }
        self.notifications += entry.count;
        self.entries.push(entry);
        Ok(())
    }
}

impl Lane {
    async fn run(mut self) {
        debug!(application = %self.application, "batch lane started");
        while let Some(first) = self.next_first().await {
            let mut batch = Batch::new(first, self.shared.settings.max_size);
            self.gather(&mut batch).await;
            let call = Call {
                shared: self.shared.clone(),
                application: self.application.clone(),
                token: self.token.clone(),
                shared_token: self.shared_token,
            };
            self.in_flight += 1;
            let end = CallEnd {
                started: tokio::time::Instant::now(),
                tx: self.ended_tx.clone(),
            };
            tokio::spawn(async move {
                call.send(batch.entries, true).await;
                drop(end);
            });
        }
        debug!(application = %self.application, "batch lane ended");
    }

    /// The first job of the next batch; `None` when the lane is idle or the batcher gone.
    async fn next_first(&mut self) -> Option<Entry> {
        if let Some(entry) = self.carry.take() {
            return Some(entry);
        }
        loop {
            let next = tokio::time::timeout(LANE_IDLE, async {
                loop {
                    tokio::select! {
                        Some(took) = self.ended.recv() => self.call_ended(took),
                        entry = self.rx.recv() => return entry,
                    }
                }
            });
            match next.await {
                Ok(entry) => return entry,
                Err(_) => {
                    let lanes = self.lanes.upgrade()?;
                    let mut lanes = lanes.lock().unwrap_or_else(|e| e.into_inner());
                    // Submitters send under this lock: with it held and nothing queued,
                    // no job can be left behind.
                    if self.rx.is_empty() {
                        lanes.remove(&self.application);
                        return None;
                    }
                }
            }
        }
    }

    /// Fills the batch: the linger window, whatever is ready, the wait while the lane is
    /// busy, and whatever arrives while the call waits for its rate-limit slot.
    async fn gather(&mut self, batch: &mut Batch) {
        let linger = self.shared.settings.linger();
        if !linger.is_zero() {
            let deadline = tokio::time::Instant::now() + linger;
            while !batch.full() {
                tokio::select! {
                    entry = self.rx.recv() => match entry {
                        Some(entry) => if !self.add(batch, entry) { return },
                        None => return,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        if !self.take_ready(batch) {
            return;
        }
        // The jobs this runtime is about to hand over: let the tasks already woken run
        // first (they may be jobs for this application), then take what they submitted.
        // No timer: it costs a quiet application's job one turn of the scheduler.
        if !batch.full() {
            tokio::task::yield_now().await;
            if !self.take_ready(batch) {
                return;
            }
        }
        self.while_busy(batch).await;
        // Waiting for a rate-limit slot: jobs that arrive meanwhile join the batch.
        let shared = self.shared.clone();
        let slot = shared.slot();
        tokio::pin!(slot);
        loop {
            tokio::select! {
                biased;
                () = &mut slot => return,
                Some(took) = self.ended.recv() => self.call_ended(took),
                Some(entry) = self.rx.recv(), if !batch.full() && self.carry.is_none() => {
                    if !self.add(batch, entry) {
                        // Leave the rest for the next batch, but still wait for this slot.
                        continue;
                    }
                }
            }
        }
    }

    /// While the lane's calls under way already cover one call's latency (as many calls as
    /// the latency holds `busy_linger`s), the batch waits for one of them to end, for more
    /// jobs, or for `busy_linger` at most. A lane with no call under way sends at once, so
    /// a quiet application's job never waits; a busy one sends fewer, fuller calls, with
    /// no job waiting longer than `busy_linger` for company.
    async fn while_busy(&mut self, batch: &mut Batch) {
        let wait = self.shared.settings.busy_linger();
        if wait.is_zero() || batch.full() || self.carry.is_some() {
            return;
        }
        let deadline = tokio::time::Instant::now() + wait;
        while self.busy(wait) && !batch.full() {
            tokio::select! {
                biased;
                Some(took) = self.ended.recv() => self.call_ended(took),
                entry = self.rx.recv() => match entry {
                    Some(entry) => if !self.add(batch, entry) { return },
                    None => return,
                },
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Adds what is already queued, up to a full batch; false when an entry did not fit.
    fn take_ready(&mut self, batch: &mut Batch) -> bool {
        while !batch.full() {
            match self.rx.try_recv() {
                Ok(entry) => {
                    if !self.add(batch, entry) {
                        return false;
                    }
                }
                Err(_) => break,
            }
        }
        true
    }

    /// Whether enough calls are under way that the next may wait: one call per `wait` of
    /// the calls' latency (at least one).
    fn busy(&self, wait: Duration) -> bool {
        let enough = self.latency.map_or(1, |latency| {
            let covered = latency.as_nanos().div_ceil(wait.as_nanos().max(1));
            usize::try_from(covered).unwrap_or(usize::MAX).max(1)
        });
        self.in_flight >= enough
    }

    fn call_ended(&mut self, took: Duration) {
        self.in_flight = self.in_flight.saturating_sub(1);
        // An average over the last few calls: a slow spell shows quickly, one outlier does not stay.
        self.latency = Some(match self.latency {
            None => took,
            Some(latency) => (latency * 3 + took) / 4,
        });
    }

    /// Adds the entry to the batch, or keeps it for the next one; false when it did not fit.
    fn add(&mut self, batch: &mut Batch, entry: Entry) -> bool {
        match batch.add(entry) {
            Ok(()) => true,
            Err(entry) => {
                self.carry = Some(entry);
                false
            }
        }
    }
}

impl Shared {
    /// Waits for a slot in the createMessage rate limit.
    async fn slot(&self) {
        self.limiter.acquire(METHOD).await;
    }
}

/// One call of a lane; its splits are clones.
#[derive(Clone)]
struct Call {
    shared: Arc<Shared>,
    application: String,
    token: SecretString,
    shared_token: bool,
}

impl Call {
    /// Sends the entries in one call and answers each of them. `has_slot`: the lane already
    /// waited for this call's rate-limit slot.
    async fn send(self, mut entries: Vec<Entry>, has_slot: bool) {
        // Jobs handed back to the queue meanwhile are not sent.
        entries.retain(|e| !e.reply.is_closed());
        if entries.is_empty() {
            return;
        }
        if !has_slot {
            self.shared.slot().await;
        }
        let notifications: usize = entries.iter().map(|e| e.count).sum();
        let body = self.body(&entries);
        let started = Instant::now();
        let answer = self.shared.client.call(METHOD, body).await;
        let accounts = Accounts {
            metrics: &self.shared.metrics,
            limiter: &self.shared.limiter,
            breaker: &self.shared.breaker,
        };
        let answered = accounts.answered(METHOD, started, &answer, self.shared_token);
        self.shared.metrics.batch_jobs.observe(entries.len() as f64);
        debug!(
            application = %self.application,
            jobs = entries.len(),
            notifications,
            verdict = answered.verdict.label(),
            "batched call answered"
        );
        match answered.verdict {
            Verdict::Success {
                ref status_message,
                ref response,
            } => answer_success(entries, notifications, status_message, response, &answered),
            Verdict::Rejected { .. } if entries.len() > 1 => {
                self.shared.metrics.batch_splits.inc();
                info!(
                    application = %self.application,
                    jobs = entries.len(),
                    "batch rejected: split in halves to find the bad job"
                );
                let right = entries.split_off(entries.len() / 2);
                tokio::join!(
                    Box::pin(self.clone().send(entries, false)),
                    Box::pin(self.send(right, false)),
                );
            }
            _ => {
                let mut position = 0;
                let jobs = entries.len();
                for entry in entries {
                    let batch = BatchInfo {
                        jobs,
                        notifications,
                        position,
                        codes_mapped: false,
                    };
                    position += entry.count;
                    let _ = entry.reply.send(Batched {
                        answered: answered.clone(),
                        batch,
                    });
                }
            }
        }
    }

    /// `{"request":{"auth":…,"application":…,"notifications":[…]}}`, the jobs' notifications
    /// copied in as they were serialized.
    fn body(&self, entries: &[Entry]) -> Bytes {
        let raw: usize = entries.iter().map(|e| e.notifications.len() + 1).sum();
        let mut body = BytesMut::with_capacity(raw + self.application.len() + 96);
        body.put_slice(br#"{"request":{"auth":"#);
        write_json_string(&mut body, self.token.expose_secret());
        body.put_slice(br#","application":"#);
        write_json_string(&mut body, &self.application);
        body.put_slice(br#","notifications":["#);
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                body.put_u8(b',');
            }
            body.put_slice(&entry.notifications);
        }
        body.put_slice(b"]}}");
        body.freeze()
    }
}

fn write_json_string(out: &mut BytesMut, s: &str) {
    // Serializing a str cannot fail.
    let _ = serde_json::to_writer(out.writer(), s);
}

/// Hands each job its own codes, by position, when the answer has one per notification.
fn answer_success(
    entries: Vec<Entry>,
    notifications: usize,
    status_message: &str,
    response: &Value,
    answered: &Answered,
) {
    let jobs = entries.len();
    let all_codes = response.get("Messages").and_then(Value::as_array);
    let answered_codes = all_codes.map_or(0, Vec::len);
    let codes: Option<&[Value]> = all_codes
        .filter(|codes| codes.len() == notifications)
        .map(Vec::as_slice);
    if codes.is_none() {
        warn!(
            jobs,
            notifications,
            answered_codes,
            "Pushwoosh's answer to a batched call does not carry one message code per notification: codes not attributed"
        );
    }
    let mut position = 0;
    for entry in entries {
        let batch = BatchInfo {
            jobs,
            notifications,
            position,
            codes_mapped: codes.is_some(),
        };
        let verdict = match codes {
            Some(codes) => Verdict::Success {
                status_message: status_message.to_owned(),
                response: own_response(response, &codes[position..position + entry.count]),
            },
            None => Verdict::Success {
                status_message: format!(
                    "{status_message}; Pushwoosh accepted the batched call of {jobs} jobs but answered {answered_codes} message codes for its {notifications} notifications, so this job's codes are not known"
                ),
                response: response.clone(),
            },
        };
        position += entry.count;
        let _ = entry.reply.send(Batched {
            answered: Answered {
                verdict,
                breaker: answered.breaker,
                retry_reason: None,
            },
            batch,
        });
    }
}

/// The call's `response` as this job would have had it alone: its own `Messages`, and the
/// entries of code-keyed objects (such as `UnknownDevices`) that belong to its codes.
fn own_response(response: &Value, codes: &[Value]) -> Value {
    let Value::Object(fields) = response else {
        return response.clone();
    };
    let mine = |code: &str| codes.iter().any(|c| c.as_str() == Some(code));
    let mut own = Map::with_capacity(fields.len());
    for (key, value) in fields {
        let value = match (key.as_str(), value) {
            ("Messages", _) => Value::Array(codes.to_vec()),
            (_, Value::Object(by_code)) if by_code.keys().all(|k| k.contains('-')) => {
                Value::Object(
                    by_code
                        .iter()
                        .filter(|(k, _)| mine(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            }
            (_, other) => other.clone(),
        };
        own.insert(key.clone(), value);
    }
    Value::Object(own)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::decode;
    use crate::settings::{BreakerSettings, RateLimitSettings};
    use crate::worker::Readiness;
    use serde_json::json;

    /// A Pushwoosh that answers one code per notification (`C-<content>`), 210 when a
    /// notification has `"bad": true`, and, if `short`, one code too few.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<Vec<String>>>,
        short: bool,
        latency: Duration,
    }

    impl Fake {
        fn calls(&self) -> Vec<Vec<String>> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Caller for Fake {
        fn call(
            &self,
            method: &'static str,
            body: Bytes,
        ) -> Pin<Box<dyn Future<Output = Result<HttpAnswer, TransportError>> + Send + '_>> {
            Box::pin(async move {
                assert_eq!(method, "createMessage");
                let request: Value = serde_json::from_slice(&body).expect("a JSON body");
                assert_eq!(request["request"]["auth"], "tok");
                assert_eq!(request["request"]["application"], "APP");
                let notifications = request["request"]["notifications"].as_array().unwrap();
                let contents: Vec<String> = notifications
                    .iter()
                    .map(|n| n["content"].as_str().unwrap().to_owned())
                    .collect();
                self.calls.lock().unwrap().push(contents.clone());
                tokio::time::sleep(self.latency).await;
                let answer = if notifications.iter().any(|n| n["bad"] == true) {
                    json!({"status_code": 210, "status_message": "Invalid content", "response": {"Messages": []}})
                } else {
                    let mut codes: Vec<String> =
                        contents.iter().map(|c| format!("C-{c}")).collect();
                    if self.short {
                        codes.pop();
                    }
                    json!({"status_code": 200, "status_message": "OK", "response": {"Messages": codes}})
                };
                Ok(HttpAnswer {
                    status: 200,
                    retry_after: None,
                    body: serde_json::to_vec(&answer).unwrap().into(),
                })
            })
        }
    }

    fn new_batcher(fake: Arc<Fake>, max_size: usize, linger_ms: u64) -> Arc<Batcher> {
        with_settings(
            fake,
            BatchSettings {
                enabled: true,
                max_size,
                linger_ms,
                busy_linger_ms: 0,
            },
        )
    }

    fn with_settings(fake: Arc<Fake>, settings: BatchSettings) -> Arc<Batcher> {
        let unlimited = RateLimitSettings {
            enabled: false,
            ..RateLimitSettings::default()
        };
        with_limits(fake, settings, &unlimited)
    }

    fn with_limits(
        fake: Arc<Fake>,
        settings: BatchSettings,
        limits: &RateLimitSettings,
    ) -> Arc<Batcher> {
        let metrics = Arc::new(Metrics::new());
        let limiter = Arc::new(RateLimiter::new(limits, metrics.clone()));
        let breaker = Arc::new(CircuitBreaker::new(
            &BreakerSettings::default(),
            metrics.clone(),
            Arc::new(Readiness::default()),
        ));
        Arc::new(Batcher::new(&settings, fake, limiter, metrics, breaker))
    }

    /// A push job with one notification per content; `bad` marks them invalid.
    fn job(id: &str, contents: &[&str], bad: bool) -> Job {
        let notifications: Vec<Value> = contents
            .iter()
            .map(|c| json!({"send_date": "now", "content": c, "bad": bad}))
            .collect();
        let body =
            json!({"id": id, "kind": "push", "application": "APP", "notifications": notifications});
        decode(body.to_string().as_bytes(), None).unwrap()
    }

    fn submit(batcher: &Arc<Batcher>, job: Job) -> tokio::task::JoinHandle<Batched> {
        let batcher = batcher.clone();
        tokio::spawn(async move {
            let batchable = batcher.batchable(&job).expect("batchable");
            batcher
                .submit(batchable, &SecretString::from("tok"), true)
                .await
                .expect("an answer")
        })
    }

    fn codes(batched: &Batched) -> Vec<String> {
        match &batched.answered.verdict {
            Verdict::Success { response, .. } => response["Messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect(),
            other => panic!("not a success: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_within_the_linger_window_share_one_call_and_get_their_own_codes() {
        let fake = Arc::new(Fake::default());
        let batcher = new_batcher(fake.clone(), 100, 20);
        let a = submit(&batcher, job("a", &["a1", "a2"], false));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let b = submit(&batcher, job("b", &["b1"], false));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert_eq!(fake.calls(), [vec!["a1", "a2", "b1"]]);
        assert_eq!(codes(&a), ["C-a1", "C-a2"]);
        assert_eq!(codes(&b), ["C-b1"]);
        assert_eq!(
            (a.batch.jobs, a.batch.notifications, a.batch.position),
            (2, 3, 0)
        );
        assert_eq!(b.batch.position, 2);
        assert!(a.batch.codes_mapped && b.batch.codes_mapped);

        // After the window, a job goes in a call of its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let c = submit(&batcher, job("c", &["c1"], false)).await.unwrap();
        assert_eq!(codes(&c), ["C-c1"]);
        assert_eq!(fake.calls().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_linger_window_is_waited_for_and_not_longer() {
        let fake = Arc::new(Fake::default());
        let batcher = new_batcher(fake.clone(), 100, 20);
        let started = tokio::time::Instant::now();
        submit(&batcher, job("a", &["a"], false)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_never_exceeds_its_size_and_the_rest_waits_for_the_next() {
        let fake = Arc::new(Fake::default());
        let batcher = new_batcher(fake.clone(), 3, 20);
        let handles: Vec<_> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|id| submit(&batcher, job(id, &[id], false)))
            .collect();
        for (handle, id) in handles.into_iter().zip(["a", "b", "c", "d", "e"]) {
            assert_eq!(codes(&handle.await.unwrap()), [format!("C-{id}")]);
        }
        assert_eq!(fake.calls(), [vec!["a", "b", "c"], vec!["d", "e"]]);

        // A job that would overflow the batch starts the next one, whole.
        let fake = Arc::new(Fake::default());
        let batcher = new_batcher(fake.clone(), 3, 20);
        let a = submit(&batcher, job("a", &["a1", "a2"], false));
        tokio::task::yield_now().await;
        let b = submit(&batcher, job("b", &["b1", "b2"], false));
        assert_eq!(codes(&a.await.unwrap()), ["C-a1", "C-a2"]);
        assert_eq!(codes(&b.await.unwrap()), ["C-b1", "C-b2"]);
        assert_eq!(fake.calls(), [vec!["a1", "a2"], vec!["b1", "b2"]]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_linger_a_call_takes_whatever_is_ready() {
        let fake = Arc::new(Fake {
            latency: Duration::from_millis(50),
            ..Fake::default()
        });
        let batcher = new_batcher(fake.clone(), 100, 0);
        let handles: Vec<_> = (0..10)
            .map(|i| submit(&batcher, job(&format!("j{i}"), &[&format!("n{i}")], false)))
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        let calls = fake.calls();
        assert_eq!(calls.iter().map(Vec::len).sum::<usize>(), 10);
        assert!(calls.len() < 10, "no batching at all: {calls:?}");
    }

    /// The worker's runtime (one thread by default) runs a task woken by another task's
    /// send next, ahead of the tasks already queued; this is that runtime.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn without_linger_a_call_still_takes_the_jobs_woken_in_the_same_turn() {
        let fake = Arc::new(Fake::default());
        let batcher = new_batcher(fake.clone(), 100, 0);
        // The lane exists and is idle.
        submit(&batcher, job("w", &["w"], false)).await.unwrap();
        // As the consumer does with a burst of deliveries: a task each, spawned in one go.
        // The first to submit wakes the lane while the others wait their turn.
        let consumer = tokio::spawn({
            let batcher = batcher.clone();
            async move {
                (0..10)
                    .map(|i| submit(&batcher, job(&format!("j{i}"), &[&format!("n{i}")], false)))
                    .collect::<Vec<_>>()
            }
        });
        for handle in consumer.await.unwrap() {
            handle.await.unwrap();
        }
        // One call for the burst (the tasks run in the scheduler's order, not the spawns').
        let mut calls = fake.calls();
        calls[1..].iter_mut().for_each(|call| call.sort());
        let burst: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        assert_eq!(calls, [vec!["w".to_owned()], burst]);
    }

    fn busy_batcher(fake: Arc<Fake>, busy_linger_ms: u64) -> Arc<Batcher> {
        with_settings(
            fake,
            BatchSettings {
                enabled: true,
                max_size: 100,
                linger_ms: 0,
                busy_linger_ms,
            },
        )
    }

    fn submit_at(
        batcher: &Arc<Batcher>,
        at_ms: u64,
        id: &str,
    ) -> tokio::task::JoinHandle<(Batched, Duration)> {
        let batcher = batcher.clone();
        let job = job(id, &[id], false);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(at_ms)).await;
            let submitted = tokio::time::Instant::now();
            let batchable = batcher.batchable(&job).expect("batchable");
            let answer = batcher
                .submit(batchable, &SecretString::from("tok"), true)
                .await
                .expect("an answer");
            (answer, submitted.elapsed())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_application_s_job_goes_at_once_whatever_the_busy_linger() {
        let fake = Arc::new(Fake {
            latency: Duration::from_millis(50),
            ..Fake::default()
        });
        let batcher = busy_batcher(fake.clone(), 20);
        let (_, took) = submit_at(&batcher, 0, "a").await.unwrap();
        assert_eq!(took, Duration::from_millis(50));
        // Its call has ended: the next job finds the lane quiet again.
        let (_, took) = submit_at(&batcher, 0, "b").await.unwrap();
        assert_eq!(took, Duration::from_millis(50));
        assert_eq!(fake.calls(), [vec!["a"], vec!["b"]]);
    }

    #[tokio::test(start_paused = true)]
    async fn while_a_call_is_under_way_the_next_batch_waits_for_company_at_most_the_busy_linger() {
        let fake = Arc::new(Fake {
            latency: Duration::from_millis(50),
            ..Fake::default()
        });
        let batcher = busy_batcher(fake.clone(), 5);
        let a = submit_at(&batcher, 0, "a");
        let b = submit_at(&batcher, 1, "b");
        let c = submit_at(&batcher, 3, "c");
        let (a, b, c) = (a.await.unwrap(), b.await.unwrap(), c.await.unwrap());
        assert_eq!(fake.calls(), [vec!["a"], vec!["b", "c"]]);
        assert_eq!(a.1, Duration::from_millis(50), "a went at once");
        assert_eq!(
            b.1,
            Duration::from_millis(5 + 50),
            "b waited 5 ms, not more"
        );
        assert_eq!(c.1, Duration::from_millis(3 + 50), "c joined b's batch");
        assert_eq!(codes(&b.0), ["C-b"]);
        assert_eq!(codes(&c.0), ["C-c"]);
        assert_eq!((c.0.batch.jobs, c.0.batch.position), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_batch_goes_as_soon_as_the_call_under_way_ends() {
        let fake = Arc::new(Fake {
            latency: Duration::from_millis(2),
            ..Fake::default()
        });
        let batcher = busy_batcher(fake.clone(), 20);
        let a = submit_at(&batcher, 0, "a");
        let b = submit_at(&batcher, 1, "b");
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert_eq!(fake.calls(), [vec!["a"], vec!["b"]]);
        assert_eq!(a.1, Duration::from_millis(2));
        // b waited 1 ms for a's call to end, not the 20 ms of the busy linger.
        assert_eq!(b.1, Duration::from_millis(1 + 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_lane_keeps_as_many_calls_under_way_as_their_latency_holds_busy_lingers() {
        let fake = Arc::new(Fake {
            latency: Duration::from_millis(50),
            ..Fake::default()
        });
        // 50 ms calls, 10 ms busy linger: up to 5 calls under way before a batch waits.
        let batcher = busy_batcher(fake.clone(), 10);
        submit_at(&batcher, 0, "warm-up").await.unwrap();
        let handles: Vec<_> = (0..7)
            .map(|i| submit_at(&batcher, i, &format!("j{i}")))
            .collect();
        let mut took = Vec::new();
        for handle in handles {
            took.push(handle.await.unwrap().1.as_millis());
        }
        assert_eq!(
            fake.calls(),
            [
                vec!["warm-up"],
                vec!["j0"],
                vec!["j1"],
                vec!["j2"],
                vec!["j3"],
                vec!["j4"],
                vec!["j5", "j6"],
            ]
        );
        // j5 waited its 10 ms (no call ended meanwhile); j6 joined it at 6 ms.
        assert_eq!(took, [50, 50, 50, 50, 50, 60, 59]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_keeps_filling_while_its_call_waits_for_a_rate_limit_slot() {
        let fake = Arc::new(Fake::default());
        // 600 a minute: one call every ~100 ms; no linger at all.
        let batcher = with_limits(
            fake.clone(),
            BatchSettings {
                enabled: true,
                max_size: 100,
                linger_ms: 0,
                busy_linger_ms: 0,
            },
            &RateLimitSettings::default(),
        );
        let started = tokio::time::Instant::now();
        submit(&batcher, job("first", &["first"], false))
            .await
            .unwrap();
        let handles: Vec<_> = (0..30)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(2 * i)).await;
                    submit(&batcher, job(&format!("j{i}"), &[&format!("n{i}")], false))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.await.unwrap().batch.jobs, 30);
        }
        // The second call waited for its slot (100 ms after the first) and took them all.
        assert_eq!(fake.calls().len(), 2);
        assert_eq!(fake.calls()[1].len(), 30);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejected_batch_is_split_until_only_the_bad_jobs_are_rejected() {
        let fake = Arc::new(Fake::default());
        let batcher = new_batcher(fake.clone(), 100, 10);
        let ids = ["a", "b", "c", "d", "e"];
        let handles: Vec<_> = ids
            .iter()
            .map(|id| submit(&batcher, job(id, &[id], *id == "d")))
            .collect();
        let mut answers = Vec::new();
        for handle in handles {
            answers.push(handle.await.unwrap());
        }
        for (id, answer) in ids.iter().zip(&answers) {
            if *id == "d" {
                assert!(
                    matches!(&answer.answered.verdict, Verdict::Rejected { status_code: 210, status_message, .. } if status_message == "Invalid content"),
                    "{answer:?}"
                );
                assert_eq!(answer.batch.jobs, 1);
            } else {
                assert_eq!(codes(answer), [format!("C-{id}")]);
            }
        }
        let calls = fake.calls();
        // [a b c d e] → [a b] ok, [c d e] → [c] ok, [d e] → [d] rejected, [e] ok
        assert_eq!(calls[0], ["a", "b", "c", "d", "e"]);
        assert_eq!(calls.len(), 7, "{calls:?}");
        let sent_ok: usize = calls
            .iter()
            .filter(|c| !c.contains(&"d".to_owned()))
            .map(Vec::len)
            .sum();
        assert_eq!(sent_ok, 4, "each good job sent exactly once: {calls:?}");
        assert_eq!(batcher.shared.metrics.batch_splits.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_without_one_code_per_notification_attributes_none() {
        let fake = Arc::new(Fake {
            short: true,
            ..Fake::default()
        });
        let batcher = new_batcher(fake.clone(), 100, 10);
        let a = submit(&batcher, job("a", &["a1"], false));
        let b = submit(&batcher, job("b", &["b1", "b2"], false));
        for answer in [a.await.unwrap(), b.await.unwrap()] {
            assert!(!answer.batch.codes_mapped);
            let Verdict::Success {
                status_message,
                response,
            } = &answer.answered.verdict
            else {
                panic!("{answer:?}")
            };
            assert!(
                status_message.contains("answered 2 message codes for its 3 notifications"),
                "{status_message}"
            );
            // The whole answer, for a human to sort out; not a slice that might be wrong.
            assert_eq!(response["Messages"], json!(["C-a1", "C-b1"]));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_given_up_before_its_call_is_not_sent() {
        let fake = Arc::new(Fake::default());
        let batcher = new_batcher(fake.clone(), 100, 20);
        let gone = submit(&batcher, job("gone", &["gone"], false));
        let kept = submit(&batcher, job("kept", &["kept"], false));
        tokio::time::sleep(Duration::from_millis(5)).await;
        gone.abort(); // what the worker does when it hands a job back while stopping
        assert_eq!(codes(&kept.await.unwrap()), ["C-kept"]);
        assert_eq!(fake.calls(), [vec!["kept"]]);
    }

    #[test]
    fn only_plain_push_requests_are_batched() {
        let fake = Arc::new(Fake::default());
        let batcher = new_batcher(fake, 2, 0);
        assert!(batcher.batchable(&job("a", &["1", "2"], false)).is_some());
        assert!(
            batcher
                .batchable(&job("a", &["1", "2", "3"], false))
                .is_none()
        );
        let sms = decode(
            br#"{"id":"s","kind":"sms","application":"APP","notifications":[{"content":"x"}]}"#,
            None,
        )
        .unwrap();
        assert!(batcher.batchable(&sms).is_none());
        let grouped = decode(
            br#"{"id":"g","kind":"push","application":"APP","applications_group":"G","notifications":[{"content":"x"}]}"#,
            None,
        )
        .unwrap();
        assert!(batcher.batchable(&grouped).is_none());
        let off = with_settings(
            Arc::new(Fake::default()),
            BatchSettings {
                enabled: false,
                ..BatchSettings::default()
            },
        );
        assert!(off.batchable(&job("a", &["1"], false)).is_none());
    }

    #[test]
    fn a_jobs_own_response_keeps_only_its_codes() {
        let response = json!({"Messages": ["A-1", "B-2"], "UnknownDevices": {"A-1": ["x"], "B-2": ["y"]}, "other": 1});
        let own = own_response(&response, &[json!("B-2")]);
        assert_eq!(
            own,
            json!({"Messages": ["B-2"], "UnknownDevices": {"B-2": ["y"]}, "other": 1})
        );
    }
}
