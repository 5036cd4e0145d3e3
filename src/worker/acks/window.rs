//! Which deliveries of a channel are settled and which acks are owed: the pure part of
//! settling, decided without the broker (see the module above for the rules).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

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
    pub(super) fn label(self) -> &'static str {
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
pub struct AckWindow {
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

impl AckWindow {
    /// A new channel's window (tags start at 1). `hold` zero turns coalescing off.
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

#[cfg(test)]
mod tests;
