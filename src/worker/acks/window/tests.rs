//! Tests of the ack window: what goes out when, and a model of the broker that checks
//! every command it is sent, whatever order the jobs finish in.

use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::{AckWindow, Command, Settlement};

const HOLD: Duration = Duration::from_millis(5);

#[test]
fn a_long_job_at_the_head_costs_a_byte_per_later_delivery_and_no_acks_held() {
    let t0 = Instant::now();
    let mut l = AckWindow::new(HOLD);
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

fn due(ledger: &mut AckWindow, now: Instant) -> (Vec<Command>, Option<Instant>) {
    let mut out = Vec::new();
    let next = ledger.due(now, &mut out);
    (out, next)
}

#[test]
fn a_run_from_the_oldest_goes_out_as_one_multiple_ack() {
    let now = Instant::now();
    let mut l = AckWindow::new(HOLD);
    for tag in [3, 1, 2, 4] {
        assert_eq!(l.settle(Settlement::Ack(tag), now), None);
    }
    assert_eq!(due(&mut l, now), (vec![Command::AckUpTo(4)], None));
    assert_eq!(due(&mut l, now), (vec![], None), "nothing owed twice");
}

#[test]
fn an_ack_never_passes_a_delivery_at_work() {
    let now = Instant::now();
    let mut l = AckWindow::new(HOLD);
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
    let mut l = AckWindow::new(HOLD);
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
    let mut l = AckWindow::new(HOLD);
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
    let mut l = AckWindow::new(HOLD);
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
    let mut l = AckWindow::new(HOLD);
    l.settle(Settlement::Ack(2), now);
    l.settle(Settlement::Ack(3), now);
    let mut out = Vec::new();
    l.all(&mut out);
    assert_eq!(out, vec![Command::Ack(2), Command::Ack(3)]);
}

#[test]
fn a_zero_hold_acks_each_delivery_alone() {
    let now = Instant::now();
    let mut l = AckWindow::new(Duration::ZERO);
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
        let mut ledger = AckWindow::new(Duration::from_millis(hold_ms));
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
