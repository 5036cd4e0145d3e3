//! Settling the consume channel's deliveries in as few commands as the broker allows.
//!
//! Each ack is a command the broker's channel and queue process on their own; with a
//! result published and confirmed for every job, they are a good part of the broker's
//! cost per job. Jobs that finish together are acked together: one `basic.ack` with
//! `multiple` settles every delivery up to its tag. Such an ack must never pass a
//! delivery that is still being worked on (it would be acked, and lost if the worker then
//! died), nor one handed back (its requeue must reach the broker first). So every
//! settlement of the channel goes through one [`Acks`] task, in the order the jobs
//! finished, and a [`Ledger`] decides what to send:
//!
//! - a hand-back (`nack`, requeue) or a reject (`reject`, to the queue's dead-letter
//!   exchange) goes out at once, on its own;
//! - the run of finished deliveries from the oldest unsettled one on goes out as one
//!   multiple ack, as soon as the task gets to it (it wakes once for whatever finished
//!   meanwhile, and lets the jobs finishing in the same turn of the runtime join: under
//!   load, many; when quiet, one, at once);
//! - a finished delivery behind one still at work waits at most `amqp.ack_coalesce_ms`
//!   for it, then is acked on its own, so a slow job does not hold the prefetch credit
//!   of the jobs after it.
//!
//! Delivery tags are the channel's: they start at 1 and count every delivery
//! (`basic.deliver` and `basic.get-ok` alike), so a tag the ledger has not heard of yet
//! is a job still at work. Each channel has its own ledger and task; [`Acks::flush`]
//! sends whatever waits before the channel is closed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::metrics::{Metrics, ReasonLabels, SettleLabels};

/// How a job's delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Done with (result published, parked for a retry, or dead-lettered): ack.
    Ack(u64),
    /// Give it back to the queue untouched: nack with requeue.
    Requeue(u64),
    /// Refuse it without requeue: the broker moves it to the queue's dead-letter
    /// exchange. The last resort for a job none of whose results the broker accepts.
    Reject(u64),
}

/// A command for the broker, in the order it must be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `basic.ack` of this delivery alone.
    Ack(u64),
    /// `basic.ack` with `multiple`: every delivery up to and including this tag.
    AckUpTo(u64),
    /// `basic.nack` with requeue, of this delivery alone.
    Requeue(u64),
    /// `basic.reject` without requeue, of this delivery alone.
    Reject(u64),
}

impl Command {
    /// The `command` label of `settle_commands_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Ack(_) => "ack",
            Self::AckUpTo(_) => "ack_multiple",
            Self::Requeue(_) => "requeue",
            Self::Reject(_) => "reject",
        }
    }
}

/// Which deliveries of a channel are settled and which acks are owed.
///
/// A delivery at work for long (waiting minutes for a rate-limit slot, say) keeps every
/// later tag in the window: a byte each, and the acks owed (at most `prefetch`) in a map
/// of their own, so a wake-up costs the same however long the window grows.
#[derive(Debug)]
pub struct Ledger {
    /// Every tag below `base` is settled with the broker.
    base: u64,
    /// Whether tags `base`, `base + 1`, … are settled (finished or handed back).
    settled: VecDeque<bool>,
    /// Finished deliveries whose ack is not sent yet: since when.
    owed: BTreeMap<u64, Instant>,
    /// How long a finished delivery waits for the ones before it; `None`: acks go out one
    /// by one, at once.
    hold: Option<Duration>,
}

impl Ledger {
    /// A new channel's ledger (tags start at 1). `hold` zero turns coalescing off.
    pub fn new(hold: Duration) -> Self {
        Self {
            base: 1,
            settled: VecDeque::new(),
            owed: BTreeMap::new(),
            hold: (!hold.is_zero()).then_some(hold),
        }
    }

    /// Notes a settlement; a hand-back's command comes back at once.
    pub fn settle(&mut self, settlement: Settlement, now: Instant) -> Option<Command> {
        let (Settlement::Ack(tag) | Settlement::Requeue(tag) | Settlement::Reject(tag)) =
            settlement;
        let index = tag
            .checked_sub(self.base)
            .map(|i| i as usize)
            .filter(|&i| self.settled.get(i) != Some(&true));
        let Some(index) = index else {
            warn!(
                delivery_tag = tag,
                "a delivery was settled twice: the second time is ignored"
            );
            return None;
        };
        if index >= self.settled.len() {
            self.settled.resize(index + 1, false);
        }
        self.settled[index] = true;
        match settlement {
            Settlement::Ack(_) => {
                self.owed.insert(tag, now);
                None
            }
            Settlement::Requeue(_) => Some(Command::Requeue(tag)),
            Settlement::Reject(_) => Some(Command::Reject(tag)),
        }
    }

    /// The acks owed now, in order, and when the next one falls due (a finished delivery
    /// that has waited long enough behind one at work).
    pub fn due(&mut self, now: Instant, out: &mut Vec<Command>) -> Option<Instant> {
        self.collect(Some(now), out)
    }

    /// Every finished delivery's ack, whatever is still at work: before the channel
    /// closes.
    pub fn all(&mut self, out: &mut Vec<Command>) {
        self.collect(None, out);
    }

    /// `now`: `None` takes every ack, however short its wait.
    fn collect(&mut self, now: Option<Instant>, out: &mut Vec<Command>) -> Option<Instant> {
        // The run of settled deliveries from the oldest on.
        while self.settled.front() == Some(&true) {
            self.settled.pop_front();
            self.base += 1;
        }
        let Some(hold) = self.hold else {
            out.extend(self.owed.keys().map(|&tag| Command::Ack(tag)));
            self.owed.clear();
            return None;
        };
        // One multiple ack for the whole run, if it holds any ack not yet sent (those
        // sent on their own, or handed back, are no longer the broker's to ack: a
        // multiple ack passes over them).
        let mut up_to = None;
        while let Some(entry) = self.owed.first_entry() {
            if *entry.key() >= self.base {
                break;
            }
            up_to = Some(entry.remove_entry().0);
        }
        if let Some(tag) = up_to {
            out.push(Command::AckUpTo(tag));
        }
        // Behind a delivery at work: alone, once they have waited long enough.
        let mut next = None::<Instant>;
        self.owed.retain(|&tag, &mut since| {
            let at = since + hold;
            if now.is_none_or(|now| at <= now) {
                out.push(Command::Ack(tag));
                false
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
                true
            }
        });
        next
    }

    /// Finished deliveries whose ack is not sent yet.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.owed.len()
    }
}

/// See [`Acks::pending`].
pub struct Pending {
    acks: Acks,
    tag: u64,
    settled: bool,
}

impl Pending {
    /// Done with: ack.
    pub fn ack(mut self) {
        self.settled = true;
        self.acks.settle(Settlement::Ack(self.tag));
    }

    /// Give the job back to the queue, for `reason` (counted in `hand_backs_total`).
    pub fn requeue(mut self, reason: HandBack) {
        self.settled = true;
        self.acks.hand_back(self.tag, reason);
    }

    /// Refuse the job without requeue: the broker dead-letters it through the queue's
    /// dead-letter exchange, a route that needs no publish of the worker's.
    pub fn reject(mut self) {
        self.settled = true;
        self.acks.settle(Settlement::Reject(self.tag));
    }
}

/// Why a job went back to the queue unfinished: the `reason` of `hand_backs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandBack {
    /// The worker is stopping (or its session with the broker ended) before the job's
    /// call: another worker takes it.
    Stopping,
    /// The result could not be published: no channel could be had (the connection is
    /// gone, so the broker requeues the job anyway).
    CannotPublish,
    /// The job's task ended without saying how (a bug): never silently lost.
    Unsettled,
}

impl HandBack {
    pub const ALL: [HandBack; 3] = [Self::Stopping, Self::CannotPublish, Self::Unsettled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopping => "stopping",
            Self::CannotPublish => "cannot_publish",
            Self::Unsettled => "unsettled",
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.settled {
            warn!(
                delivery_tag = self.tag,
                "a job ended without settling its delivery: handed back to the queue"
            );
            self.acks.hand_back(self.tag, HandBack::Unsettled);
        }
    }
}

enum Message {
    Settle(Settlement),
    Flush(oneshot::Sender<()>),
}

/// The handle jobs settle their deliveries through; the task behind it sends the
/// commands on the consume channel.
#[derive(Clone)]
pub struct Acks {
    tx: mpsc::UnboundedSender<Message>,
    metrics: Option<Arc<Metrics>>,
}

impl Acks {
    /// Starts the channel's ack task.
    pub fn start(channel: Channel, hold: Duration, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(channel, Ledger::new(hold), rx, metrics.clone()));
        Self {
            tx,
            metrics: Some(metrics),
        }
    }

    fn hand_back(&self, tag: u64, reason: HandBack) {
        if let Some(metrics) = &self.metrics {
            metrics
                .hand_backs
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str(),
                })
                .inc();
        }
        self.settle(Settlement::Requeue(tag));
    }

    /// Settles a delivery; returns at once (the command follows as the ledger allows).
    /// On a broken channel the settlement is moot: the broker requeues the delivery.
    pub fn settle(&self, settlement: Settlement) {
        let _ = self.tx.send(Message::Settle(settlement));
    }

    /// A delivery taken for a job: settled once, when the job says how, or handed back
    /// if the job ends without saying (its task panicked or was cancelled). Unsettled, it
    /// would hold back every multiple ack after it until the channel closes.
    pub fn pending(&self, tag: u64) -> Pending {
        Pending {
            acks: self.clone(),
            tag,
            settled: false,
        }
    }

    /// Sends every ack owed, and returns once they are out: before closing the channel.
    pub async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = sent.await;
        }
    }
}

async fn run(
    channel: Channel,
    mut ledger: Ledger,
    mut rx: mpsc::UnboundedReceiver<Message>,
    metrics: Arc<Metrics>,
) {
    let mut messages = Vec::with_capacity(256);
    let mut commands = Vec::with_capacity(64);
    let mut next: Option<Instant> = None;
    let mut broken = false;
    loop {
        let got = match next {
            Some(at) => tokio::select! {
                n = rx.recv_many(&mut messages, 1024) => n,
                () = tokio::time::sleep_until(at) => usize::MAX,
            },
            None => rx.recv_many(&mut messages, 1024).await,
        };
        if got == 0 {
            // Every handle is gone: the session is over.
            return;
        }
        if got != usize::MAX {
            // The jobs finishing in this same turn of the runtime go in the same ack.
            tokio::task::yield_now().await;
            while let Ok(message) = rx.try_recv() {
                messages.push(message);
            }
        }
        let now = Instant::now();
        let mut flushed = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Settle(settlement) => {
                    if let Some(command) = ledger.settle(settlement, now) {
                        commands.push(command);
                    }
                }
                Message::Flush(done) => flushed.push(done),
            }
        }
        if flushed.is_empty() {
            next = ledger.due(now, &mut commands);
        } else {
            ledger.all(&mut commands);
            next = None;
        }
        for command in commands.drain(..) {
            if broken {
                break;
            }
            match send(&channel, command).await {
                Ok(()) => {
                    metrics
                        .settle_commands
                        .get_or_create(&SettleLabels {
                            command: command.label(),
                        })
                        .inc();
                }
                Err(e) => {
                    // The channel is gone, and with it every unsettled delivery: the
                    // broker requeues them. Nothing more can be settled on it.
                    warn!(error = %e, ?command, "could not settle a delivery: the broker will requeue it");
                    broken = true;
                }
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

async fn send(channel: &Channel, command: Command) -> lapin::Result<()> {
    debug!(?command, "settling");
    match command {
        Command::Ack(tag) => channel.basic_ack(tag, BasicAckOptions::default()).await,
        Command::AckUpTo(tag) => {
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
        }
        Command::Requeue(tag) => {
            let options = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            channel.basic_nack(tag, options).await
        }
        Command::Reject(tag) => {
            channel
                .basic_reject(tag, BasicRejectOptions { requeue: false })
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOLD: Duration = Duration::from_millis(5);

    fn detached() -> (Acks, mpsc::UnboundedReceiver<Message>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Acks { tx, metrics: None }, rx)
    }

    fn settlements(rx: &mut mpsc::UnboundedReceiver<Message>) -> Vec<Settlement> {
        let mut out = Vec::new();
        while let Ok(Message::Settle(s)) = rx.try_recv() {
            out.push(s);
        }
        out
    }

    #[test]
    fn a_job_settles_its_delivery_once_and_one_that_never_says_hands_it_back() {
        let (acks, mut rx) = detached();
        acks.pending(1).ack();
        acks.pending(2).requeue(HandBack::Stopping);
        drop(acks.pending(3));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _pending = acks.pending(4);
            panic!("a bug in a job");
        }));
        assert!(panicked.is_err());
        assert_eq!(
            settlements(&mut rx),
            vec![
                Settlement::Ack(1),
                Settlement::Requeue(2),
                Settlement::Requeue(3),
                Settlement::Requeue(4)
            ]
        );
    }

    #[test]
    fn a_long_job_at_the_head_costs_a_byte_per_later_delivery_and_no_acks_held() {
        let t0 = Instant::now();
        let mut l = Ledger::new(HOLD);
        for tag in 2..=100_001 {
            l.settle(Settlement::Ack(tag), t0);
        }
        let (out, next) = due(&mut l, t0 + HOLD);
        assert_eq!(out.len(), 100_000, "each acked alone behind tag 1");
        assert_eq!(next, None);
        assert_eq!(l.waiting(), 0);
        assert_eq!(l.settled.len(), 100_001);
        l.settle(Settlement::Ack(1), t0 + HOLD);
        assert_eq!(due(&mut l, t0 + HOLD).0, vec![Command::AckUpTo(1)]);
        assert!(l.settled.is_empty() && l.base == 100_002);
    }

    fn due(ledger: &mut Ledger, now: Instant) -> (Vec<Command>, Option<Instant>) {
        let mut out = Vec::new();
        let next = ledger.due(now, &mut out);
        (out, next)
    }

    #[test]
    fn a_run_from_the_oldest_goes_out_as_one_multiple_ack() {
        let now = Instant::now();
        let mut l = Ledger::new(HOLD);
        for tag in [3, 1, 2, 4] {
            assert_eq!(l.settle(Settlement::Ack(tag), now), None);
        }
        assert_eq!(due(&mut l, now), (vec![Command::AckUpTo(4)], None));
        assert_eq!(due(&mut l, now), (vec![], None), "nothing owed twice");
    }

    #[test]
    fn an_ack_never_passes_a_delivery_at_work() {
        let now = Instant::now();
        let mut l = Ledger::new(HOLD);
        for tag in [1, 2, 4, 5] {
            l.settle(Settlement::Ack(tag), now);
        }
        // 3 is at work: 1-2 go, 4-5 wait for it.
        assert_eq!(
            due(&mut l, now),
            (vec![Command::AckUpTo(2)], Some(now + HOLD))
        );
        l.settle(Settlement::Ack(3), now + Duration::from_millis(1));
        assert_eq!(
            due(&mut l, now + Duration::from_millis(1)),
            (vec![Command::AckUpTo(5)], None)
        );
    }

    #[test]
    fn a_job_behind_a_slow_one_is_acked_alone_after_the_hold() {
        let t0 = Instant::now();
        let mut l = Ledger::new(HOLD);
        l.settle(Settlement::Ack(2), t0);
        l.settle(Settlement::Ack(4), t0 + Duration::from_millis(2));
        assert_eq!(due(&mut l, t0), (vec![], Some(t0 + HOLD)));
        assert_eq!(
            due(&mut l, t0 + HOLD),
            (
                vec![Command::Ack(2)],
                Some(t0 + Duration::from_millis(2) + HOLD)
            )
        );
        // 1 finishes: the run 1-2 holds 1 only (2 is sent), and stops before 3.
        l.settle(Settlement::Ack(1), t0 + HOLD);
        assert_eq!(
            due(&mut l, t0 + HOLD),
            (
                vec![Command::AckUpTo(1)],
                Some(t0 + Duration::from_millis(2) + HOLD)
            )
        );
        l.settle(Settlement::Ack(3), t0 + HOLD);
        assert_eq!(due(&mut l, t0 + HOLD), (vec![Command::AckUpTo(4)], None));
        assert_eq!(l.waiting(), 0);
    }

    #[test]
    fn a_hand_back_goes_out_at_once_and_before_any_ack_that_passes_it() {
        let now = Instant::now();
        let mut l = Ledger::new(HOLD);
        l.settle(Settlement::Ack(1), now);
        assert_eq!(
            l.settle(Settlement::Requeue(2), now),
            Some(Command::Requeue(2))
        );
        l.settle(Settlement::Ack(3), now);
        assert_eq!(due(&mut l, now), (vec![Command::AckUpTo(3)], None));
        // A run made only of hand-backs owes no ack.
        l.settle(Settlement::Requeue(4), now);
        assert_eq!(due(&mut l, now), (vec![], None));
    }

    #[test]
    fn settling_twice_or_below_the_base_is_ignored() {
        let now = Instant::now();
        let mut l = Ledger::new(HOLD);
        l.settle(Settlement::Ack(1), now);
        assert_eq!(due(&mut l, now).0, vec![Command::AckUpTo(1)]);
        assert_eq!(l.settle(Settlement::Requeue(1), now), None);
        l.settle(Settlement::Ack(3), now);
        assert_eq!(l.settle(Settlement::Requeue(3), now), None);
        assert_eq!(l.waiting(), 1);
    }

    #[test]
    fn flushing_sends_every_finished_ack_even_behind_one_at_work() {
        let now = Instant::now();
        let mut l = Ledger::new(HOLD);
        l.settle(Settlement::Ack(2), now);
        l.settle(Settlement::Ack(3), now);
        let mut out = Vec::new();
        l.all(&mut out);
        assert_eq!(out, vec![Command::Ack(2), Command::Ack(3)]);
    }

    #[test]
    fn a_zero_hold_acks_each_delivery_alone() {
        let now = Instant::now();
        let mut l = Ledger::new(Duration::ZERO);
        for tag in [2, 1, 4] {
            l.settle(Settlement::Ack(tag), now);
        }
        assert_eq!(
            due(&mut l, now),
            (
                vec![Command::Ack(1), Command::Ack(2), Command::Ack(4)],
                None
            )
        );
        l.settle(Settlement::Ack(3), now);
        assert_eq!(due(&mut l, now).0, vec![Command::Ack(3)]);
        assert!(l.settled.is_empty() && l.base == 5);
    }

    /// What the broker does with the commands (RabbitMQ's `collect_acks`): a multiple ack
    /// settles every unsettled delivery up to its tag, which must itself be unsettled;
    /// anything else closes the channel.
    #[derive(Default)]
    struct Broker {
        unsettled: std::collections::BTreeSet<u64>,
        acked: std::collections::BTreeSet<u64>,
        requeued: std::collections::BTreeSet<u64>,
        rejected: std::collections::BTreeSet<u64>,
    }

    impl Broker {
        fn apply(&mut self, command: Command) -> Result<(), String> {
            let (tag, multiple, into) = match command {
                Command::Ack(t) => (t, false, &mut self.acked),
                Command::AckUpTo(t) => (t, true, &mut self.acked),
                Command::Requeue(t) => (t, false, &mut self.requeued),
                Command::Reject(t) => (t, false, &mut self.rejected),
            };
            if !self.unsettled.contains(&tag) {
                return Err(format!("unknown delivery tag {tag}"));
            }
            let settled: Vec<u64> = if multiple {
                self.unsettled.range(..=tag).copied().collect()
            } else {
                vec![tag]
            };
            for t in settled {
                self.unsettled.remove(&t);
                into.insert(t);
            }
            Ok(())
        }
    }

    proptest! {
        /// Whatever order jobs finish in, and however the task's wake-ups fall: every
        /// command is valid for the broker, a job is acked only once it finished with an
        /// ack, a handed-back one is requeued and a rejected one rejected, never acked, and
        /// nothing is left over.
        #[test]
        fn the_broker_sees_exactly_what_the_jobs_decided(
            fates in prop::collection::vec(0u8..3, 1..60),
            order in any::<u64>(),
            wakes in prop::collection::vec(0u64..4, 60),
            hold_ms in 0u64..4,
        ) {
            let n = fates.len() as u64;
            let mut tags: Vec<u64> = (1..=n).collect();
            let mut rng = fastrand::Rng::with_seed(order);
            rng.shuffle(&mut tags);

            let mut broker = Broker { unsettled: (1..=n).collect(), ..Broker::default() };
            let mut ledger = Ledger::new(Duration::from_millis(hold_ms));
            let mut now = Instant::now();
            let mut finished = std::collections::BTreeSet::new();
            for (i, tag) in tags.iter().copied().enumerate() {
                let settlement = match fates[tag as usize - 1] {
                    0 => Settlement::Ack(tag),
                    1 => Settlement::Requeue(tag),
                    _ => Settlement::Reject(tag),
                };
                if let Some(c) = ledger.settle(settlement, now) {
                    broker.apply(c).map_err(TestCaseError::fail)?;
                }
                finished.insert(tag);
                now += Duration::from_millis(wakes[i % wakes.len()]);
                if wakes[i % wakes.len()] > 0 || i + 1 == tags.len() {
                    let mut out = Vec::new();
                    ledger.due(now, &mut out);
                    for c in out {
                        broker.apply(c).map_err(TestCaseError::fail)?;
                        // Never past a job still at work.
                        prop_assert!(broker.acked.iter().all(|t| finished.contains(t)));
                    }
                }
            }
            let mut out = Vec::new();
            ledger.all(&mut out);
            for c in out {
                broker.apply(c).map_err(TestCaseError::fail)?;
            }
            prop_assert!(broker.unsettled.is_empty(), "left unsettled: {:?}", broker.unsettled);
            for tag in 1..=n {
                let fate = fates[tag as usize - 1];
                prop_assert_eq!(broker.acked.contains(&tag), fate == 0, "tag {}", tag);
                prop_assert_eq!(broker.requeued.contains(&tag), fate == 1, "tag {}", tag);
                prop_assert_eq!(broker.rejected.contains(&tag), fate == 2, "tag {}", tag);
            }
        }
    }
}
