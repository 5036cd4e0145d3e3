//! Settling the consume channel's deliveries in as few commands as the broker allows.
//!
//! Each ack is a command the broker's channel and queue process on their own; with a
//! result published and confirmed for every job, they are a good part of the broker's
//! cost per job. Jobs that finish together are acked together: one `basic.ack` with
//! `multiple` settles every delivery up to its tag. Such an ack must never pass a
//! delivery that is still being worked on (it would be acked, and lost if the worker then
//! died), nor one handed back (its requeue must reach the broker first). So every
//! settlement of the channel goes through one [`Acks`] task, in the order the jobs
//! finished, and an [`AckWindow`] decides what to send:
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
//! is a job still at work. Each channel has its own window and task; [`Acks::flush`]
//! sends whatever waits before the channel is closed.

mod window;

use std::sync::Arc;
use std::time::Duration;

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

pub use window::{AckWindow, Command, Settlement};

use crate::metrics::{Metrics, ReasonLabels, SettleLabels};

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
        tokio::spawn(run(channel, AckWindow::new(hold), rx, metrics.clone()));
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
    mut window: AckWindow,
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
                    if let Some(command) = window.settle(settlement, now) {
                        commands.push(command);
                    }
                }
                Message::Flush(done) => flushed.push(done),
            }
        }
        if flushed.is_empty() {
            next = window.due(now, &mut commands);
        } else {
            window.all(&mut commands);
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
}
