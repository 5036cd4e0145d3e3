//! Lane scheduling: one task per application gathers the jobs submitted to it into
//! batches and decides when each batch goes (linger window, busy linger, rate-limit slot).
//! An urgent job's batch goes at once, on an urgent slot, carrying whatever of its
//! application's jobs are ready: one call, so the campaign it joins loses nothing.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::mpsc;
use tracing::debug;

use super::call::Call;
use super::{Entry, Lanes, Shared};
use crate::ledger::Account;
use crate::pushwoosh::Priority;

/// A lane with no job for this long ends; the next job for its application starts a new one.
const LANE_IDLE: Duration = Duration::from_secs(30);

pub(super) struct Lane {
    shared: Arc<Shared>,
    lanes: Weak<Lanes>,
    application: String,
    token: SecretString,
    /// The token's account, whose budget the lane's calls take.
    account: Account,
    shared_token: bool,
    rx: Receivers,
    /// Jobs that did not fit the last batch (or made room for an urgent one there): the
    /// first of the next ones, in order.
    carry: VecDeque<Entry>,
    /// Each call of this lane says here how long it took, when it ends.
    ended_tx: mpsc::UnboundedSender<Duration>,
    ended: mpsc::UnboundedReceiver<Duration>,
    /// Calls of this lane under way.
    in_flight: usize,
    /// How long this lane's calls take (a moving average); `None` before the first ends.
    latency: Option<Duration>,
}

/// The jobs submitted to a lane: urgent ones are read first, whatever bulk ones wait.
pub(super) struct Receivers {
    pub(super) bulk: mpsc::UnboundedReceiver<Entry>,
    pub(super) urgent: mpsc::UnboundedReceiver<Entry>,
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

    /// Whether it holds an urgent job: it leaves at once, on an urgent slot.
    fn priority(&self) -> Priority {
        if self.entries.iter().any(Entry::is_urgent) {
            Priority::Urgent
        } else {
            Priority::Bulk
        }
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

    /// Takes bulk jobs out, the last first, until `count` more notifications fit (or
    /// only urgent ones are left); returns them in their order.
    fn make_room(&mut self, count: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        while self.notifications + count > self.max {
            let Some(i) = self.entries.iter().rposition(|e| !e.is_urgent()) else {
                break;
            };
            let entry = self.entries.remove(i);
            self.notifications -= entry.count;
            out.push(entry);
        }
        out.reverse();
        out
    }
}

impl Lane {
    /// The lane of `application`, reading the jobs submitted to it from `rx`; `lanes` is
    /// the batcher's map, which the lane leaves when it ends.
    pub(super) fn new(
        shared: Arc<Shared>,
        lanes: Weak<Lanes>,
        application: String,
        token: SecretString,
        shared_token: bool,
        rx: Receivers,
    ) -> Self {
        let (ended_tx, ended) = mpsc::unbounded_channel();
        Self {
            shared,
            lanes,
            application,
            account: Account::of_token(&token),
            token,
            shared_token,
            rx,
            carry: VecDeque::new(),
            ended_tx,
            ended,
            in_flight: 0,
            latency: None,
        }
    }

    pub(super) async fn run(mut self) {
        debug!(application = %self.application, "batch lane started");
        while let Some(first) = self.next_first().await {
            let mut batch = Batch::new(first, self.shared.settings.max_size);
            self.fill(&mut batch).await;
            self.wait_for_slot(&mut batch).await;
            let call = Call {
                shared: self.shared.clone(),
                application: self.application.clone(),
                token: self.token.clone(),
                account: self.account.clone(),
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

    /// The first job of the next batch (an urgent one first); `None` when the lane is
    /// idle or the batcher gone.
    async fn next_first(&mut self) -> Option<Entry> {
        if let Ok(entry) = self.rx.urgent.try_recv() {
            return Some(entry);
        }
        if let Some(entry) = self.carry.pop_front() {
            return Some(entry);
        }
        loop {
            let next = tokio::time::timeout(LANE_IDLE, async {
                loop {
                    tokio::select! {
                        biased;
                        Some(entry) = self.rx.urgent.recv() => return Some(entry),
                        Some(took) = self.ended.recv() => self.call_ended(took),
                        entry = self.rx.bulk.recv() => return entry,
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
                    if self.rx.bulk.is_empty() && self.rx.urgent.is_empty() {
                        lanes.remove(&self.application);
                        return None;
                    }
                }
            }
        }
    }

    /// Fills the batch before it asks for its slot: the linger window, whatever is ready,
    /// the wait while the lane is busy. An urgent job cuts it short: its batch takes what
    /// is ready and goes.
    async fn fill(&mut self, batch: &mut Batch) {
        let linger = self.shared.settings.linger();
        if !linger.is_zero() && batch.priority() == Priority::Bulk {
            let deadline = tokio::time::Instant::now() + linger;
            while !batch.full() {
                tokio::select! {
                    biased;
                    Some(entry) = self.rx.urgent.recv() => {
                        self.add_urgent(batch, entry);
                        break;
                    }
                    entry = self.rx.bulk.recv() => match entry {
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
    }

    /// Waits for the batch's rate-limit slot; jobs that arrive meanwhile join the batch.
    /// An urgent job that arrives makes room for itself (bulk jobs move to the next
    /// batch), and a bulk batch it joins asks again for an urgent slot.
    async fn wait_for_slot(&mut self, batch: &mut Batch) {
        loop {
            let priority = batch.priority();
            let shared = self.shared.clone();
            let account = self.account.clone();
            let slot = async move { shared.slot(&account, priority).await };
            tokio::pin!(slot);
            loop {
                tokio::select! {
                    biased;
                    () = &mut slot => return,
                    Some(took) = self.ended.recv() => self.call_ended(took),
                    Some(entry) = self.rx.urgent.recv() => {
                        self.add_urgent(batch, entry);
                        if priority == Priority::Bulk && batch.priority() == Priority::Urgent {
                            // The bulk slot's place in line is given up for an urgent one.
                            break;
                        }
                    }
                    Some(entry) = self.rx.bulk.recv(), if !batch.full() && self.carry.is_empty() => {
                        // One that does not fit is carried to the next batch; this one
                        // still waits for its slot.
                        self.add(batch, entry);
                    }
                }
            }
        }
    }

    /// While the lane's calls under way already cover one call's latency (as many calls as
    /// the latency holds `busy_linger`s), the batch waits for one of them to end, for more
    /// jobs, or for `busy_linger` at most. A lane with no call under way sends at once, so
    /// a quiet application's job never waits; a busy one sends fewer, fuller calls, with
    /// no job waiting longer than `busy_linger` for company. An urgent batch never waits.
    async fn while_busy(&mut self, batch: &mut Batch) {
        let wait = self.shared.settings.busy_linger();
        if wait.is_zero()
            || batch.full()
            || !self.carry.is_empty()
            || batch.priority() == Priority::Urgent
        {
            return;
        }
        let deadline = tokio::time::Instant::now() + wait;
        while self.busy(wait) && !batch.full() {
            tokio::select! {
                biased;
                Some(entry) = self.rx.urgent.recv() => {
                    self.add_urgent(batch, entry);
                    return;
                }
                Some(took) = self.ended.recv() => self.call_ended(took),
                entry = self.rx.bulk.recv() => match entry {
                    Some(entry) => if !self.add(batch, entry) { return },
                    None => return,
                },
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Adds what is already queued (urgent jobs first), up to a full batch; false when an
    /// entry did not fit.
    fn take_ready(&mut self, batch: &mut Batch) -> bool {
        while let Ok(entry) = self.rx.urgent.try_recv() {
            self.add_urgent(batch, entry);
        }
        while !batch.full() {
            match self.rx.bulk.try_recv() {
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

    /// Adds the entry to the batch, or carries it to the next one; false when it did not fit.
    fn add(&mut self, batch: &mut Batch, entry: Entry) -> bool {
        match batch.add(entry) {
            Ok(()) => true,
            Err(entry) => {
                self.carry.push_back(entry);
                false
            }
        }
    }

    /// Adds an urgent entry, moving bulk jobs to the next batch to make room; one that
    /// still does not fit (the batch is all urgent) is the next batch's first.
    fn add_urgent(&mut self, batch: &mut Batch, entry: Entry) {
        for moved in batch.make_room(entry.count).into_iter().rev() {
            self.carry.push_front(moved);
        }
        if let Err(entry) = batch.add(entry) {
            self.carry.push_front(entry);
        }
    }
}

#[cfg(test)]
mod tests;
