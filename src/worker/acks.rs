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
//! - a hand-back (`nack`, requeue) goes out at once, on its own;
//! - the run of finished deliveries from the oldest unsettled one on goes out as one
//!   multiple ack, as soon as the task gets to it (it wakes once for whatever finished
//!   meanwhile: under load, many; when quiet, one, at once);
//! - a finished delivery behind one still at work waits at most `amqp.ack_coalesce_ms`
//!   for it, then is acked on its own, so a slow job does not hold the prefetch credit
//!   of the jobs after it.
//!
//! Delivery tags are the channel's: they start at 1 and count every delivery
//! (`basic.deliver` and `basic.get-ok` alike), so a tag the ledger has not heard of yet
//! is a job still at work. Each channel has its own ledger and task; [`Acks::flush`]
//! sends whatever waits before the channel is closed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::metrics::{Metrics, SettleLabels};

/// How a job's delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Done with (result published, parked for a retry, or dead-lettered): ack.
    Ack(u64),
    /// Give it back to the queue untouched: nack with requeue.
    Requeue(u64),
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
}

impl Command {
    /// The `command` label of `settle_commands_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Ack(_) => "ack",
            Self::AckUpTo(_) => "ack_multiple",
            Self::Requeue(_) => "requeue",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Still at work (or not heard of yet).
    Open,
    /// Finished, its ack not sent yet; since when.
    Finished(Instant),
    /// Its command has been sent.
    Sent,
}

/// Which deliveries of a channel are settled and which acks are owed.
#[derive(Debug)]
pub struct Ledger {
    /// Every tag below `base` is settled with the broker.
    base: u64,
    /// The state of tags `base`, `base + 1`, …
    slots: VecDeque<Slot>,
    /// How long a finished delivery waits for the ones before it; `None`: acks go out one
    /// by one, at once.
    hold: Option<Duration>,
}

impl Ledger {
    /// A new channel's ledger (tags start at 1). `hold` zero turns coalescing off.
    pub fn new(hold: Duration) -> Self {
        Self {
            base: 1,
            slots: VecDeque::new(),
            hold: (!hold.is_zero()).then_some(hold),
        }
    }

    /// Notes a settlement; a hand-back's command comes back at once.
    pub fn settle(&mut self, settlement: Settlement, now: Instant) -> Option<Command> {
        let (tag, slot, command) = match settlement {
            Settlement::Ack(tag) => (tag, Slot::Finished(now), None),
            Settlement::Requeue(tag) => (tag, Slot::Sent, Some(Command::Requeue(tag))),
        };
        let Some(index) = tag.checked_sub(self.base) else {
            warn!(
                delivery_tag = tag,
                "a delivery was settled twice: the second time is ignored"
            );
            return None;
        };
        let index = index as usize;
        if index >= self.slots.len() {
            self.slots.resize(index + 1, Slot::Open);
        }
        if self.slots[index] != Slot::Open {
            warn!(
                delivery_tag = tag,
                "a delivery was settled twice: the second time is ignored"
            );
            return None;
        }
        self.slots[index] = slot;
        command
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
        let Some(hold) = self.hold else {
            for (i, slot) in self.slots.iter_mut().enumerate() {
                if let Slot::Finished(_) = slot {
                    out.push(Command::Ack(self.base + i as u64));
                    *slot = Slot::Sent;
                }
            }
            self.advance();
            return None;
        };
        // The run of settled deliveries from the oldest: one multiple ack for all of it
        // (those already sent on their own are no longer the broker's to ack, so a
        // multiple ack passes over them), if it holds any ack not yet sent.
        let mut last_finished = None;
        while let Some(slot) = self.slots.front().copied() {
            if slot == Slot::Open {
                break;
            }
            if let Slot::Finished(_) = slot {
                last_finished = Some(self.base);
            }
            self.slots.pop_front();
            self.base += 1;
        }
        if let Some(tag) = last_finished {
            out.push(Command::AckUpTo(tag));
        }
        // Behind a delivery at work: alone, once they have waited long enough.
        let mut next = None::<Instant>;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::Finished(since) = *slot {
                let at = since + hold;
                if now.is_none_or(|now| at <= now) {
                    out.push(Command::Ack(self.base + i as u64));
                    *slot = Slot::Sent;
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        next
    }

    /// Drops the settled deliveries at the front.
    fn advance(&mut self) {
        while self.slots.front() == Some(&Slot::Sent) {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    /// Deliveries heard of and not yet sent a command for (a gauge for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Finished(_)))
            .count()
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
}

impl Acks {
    /// Starts the channel's ack task.
    pub fn start(channel: Channel, hold: Duration, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(channel, Ledger::new(hold), rx, metrics));
        Self { tx }
    }

    /// Settles a delivery; returns at once (the command follows as the ledger allows).
    /// On a broken channel the settlement is moot: the broker requeues the delivery.
    pub fn settle(&self, settlement: Settlement) {
        let _ = self.tx.send(Message::Settle(settlement));
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOLD: Duration = Duration::from_millis(5);

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
        assert!(l.slots.is_empty() && l.base == 5);
    }

    /// What the broker does with the commands (RabbitMQ's `collect_acks`): a multiple ack
    /// settles every unsettled delivery up to its tag, which must itself be unsettled;
    /// anything else closes the channel.
    #[derive(Default)]
    struct Broker {
        unsettled: std::collections::BTreeSet<u64>,
        acked: std::collections::BTreeSet<u64>,
        requeued: std::collections::BTreeSet<u64>,
    }

    impl Broker {
        fn apply(&mut self, command: Command) -> Result<(), String> {
            let (tag, multiple, requeue) = match command {
                Command::Ack(t) => (t, false, false),
                Command::AckUpTo(t) => (t, true, false),
                Command::Requeue(t) => (t, false, true),
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
                if requeue {
                    self.requeued.insert(t);
                } else {
                    self.acked.insert(t);
                }
            }
            Ok(())
        }
    }

    proptest! {
        /// Whatever order jobs finish in, and however the task's wake-ups fall: every
        /// command is valid for the broker, a job is acked only once it finished with an
        /// ack, a handed-back one is requeued and never acked, and nothing is left over.
        #[test]
        fn the_broker_sees_exactly_what_the_jobs_decided(
            fates in prop::collection::vec(any::<bool>(), 1..60),
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
                let ack = fates[tag as usize - 1];
                let settlement = if ack { Settlement::Ack(tag) } else { Settlement::Requeue(tag) };
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
                let ack = fates[tag as usize - 1];
                prop_assert_eq!(broker.acked.contains(&tag), ack, "tag {}", tag);
                prop_assert_eq!(broker.requeued.contains(&tag), !ack, "tag {}", tag);
            }
        }
    }
}
