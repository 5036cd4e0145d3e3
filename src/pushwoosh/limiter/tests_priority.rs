//! Urgent and bulk calls in paused tokio time: who gets the next slot, what bulk calls
//! keep of the budget, how long an urgent call can wait, and the reserve.
//!
//! Two budgets whose slots fall on whole milliseconds (tokio's timer rounds up to the
//! next one, which would blur exact counts): 600 a minute without the slack, one slot
//! per 100 ms; and 400 a minute (150 ms) with a reserve of 0.061, i.e. 24 reserve cells
//! a minute (one per 2.5 s) and 400 - 24 - 1 = 375 main cells (one per 160 ms).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::tests::{Callers, PUSH, between, busiest_minute, exact, limiter, sample};
use super::{Priority, RateLimiter};
use crate::settings::RateLimitSettings;

const SHARE: f64 = 0.061;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// 400 createMessage calls a minute, one per 150 ms.
fn four_hundred() -> RateLimitSettings {
    RateLimitSettings {
        create_message_per_minute: 400,
        ..exact()
    }
}

/// The 400-a-minute limiter with the reserve.
fn reserved() -> Arc<RateLimiter> {
    let (limiter, _) = limiter(&four_hundred());
    let limiter = Arc::into_inner(limiter).unwrap().with_reserve(SHARE);
    assert_eq!(limiter.urgent_reserve(PUSH), 24);
    Arc::new(limiter)
}

/// One call of `priority`; its grant time since `start`.
fn one(limiter: &Arc<RateLimiter>, priority: Priority, start: Instant) -> JoinHandle<Duration> {
    let limiter = limiter.clone();
    tokio::spawn(async move {
        limiter.acquire(PUSH, priority).await;
        start.elapsed()
    })
}

/// Urgent calls asked at `times` (since `start`), one after the other: how long each waited.
fn urgent_at(
    limiter: &Arc<RateLimiter>,
    times: Vec<Duration>,
    start: Instant,
) -> JoinHandle<Vec<Duration>> {
    let limiter = limiter.clone();
    tokio::spawn(async move {
        let mut waits = Vec::new();
        for at in times {
            sleep_until(start + at).await;
            let asked = Instant::now();
            limiter.acquire(PUSH, Priority::Urgent).await;
            waits.push(asked.elapsed());
        }
        waits
    })
}

async fn all(tasks: Vec<JoinHandle<Duration>>) -> Vec<Duration> {
    let mut grants = Vec::new();
    for task in tasks {
        grants.push(task.await.unwrap());
    }
    grants.sort();
    grants
}

#[tokio::test(start_paused = true)]
async fn an_urgent_call_takes_the_next_slot_before_500_waiting_bulk_calls() {
    let (limiter, _) = limiter(&exact());
    let start = Instant::now();
    let bulk: Vec<_> = (0..500)
        .map(|_| one(&limiter, Priority::Bulk, start))
        .collect();
    sleep(ms(250)).await;
    let urgent = one(&limiter, Priority::Urgent, start).await.unwrap();
    assert_eq!(urgent, ms(300));
    // The slots at 0, 100 and 200 ms went to bulk calls, the one at 300 ms to the urgent
    // call, and the bulk line went on at 400 ms: no slot lost, none given twice.
    let expected: Vec<Duration> = (0..=500)
        .filter(|slot| *slot != 3)
        .map(|slot| ms(100 * slot))
        .collect();
    let bulk = timeout(ms(60_000), all(bulk)).await.expect("bulk went on");
    assert_eq!(bulk, expected);
}

#[tokio::test(start_paused = true)]
async fn with_a_reserve_an_urgent_call_does_not_wait_behind_500_bulk_calls() {
    let limiter = reserved();
    let start = Instant::now();
    let bulk: Vec<_> = (0..500)
        .map(|_| one(&limiter, Priority::Bulk, start))
        .collect();
    sleep(ms(250)).await;
    let urgent = one(&limiter, Priority::Urgent, start).await.unwrap();
    assert_eq!(urgent, ms(250), "the reserve's kept cell, at once");
    let bulk = all(bulk).await;
    // Bulk calls took the main cells (0, 160, …, 9920 ms: 63) and the spare reserve cells
    // at 0, 5 and 7.5 s; the one at 2.5 s went to the urgent call, which moved the rest on.
    assert_eq!(between(&bulk, Duration::ZERO, ms(10_000)), 63 + 3);
    assert_eq!(between(&bulk, Duration::ZERO, ms(1)), 2);
}

#[tokio::test(start_paused = true)]
async fn bulk_calls_get_every_slot_urgent_calls_leave() {
    let (limiter, _) = limiter(&exact());
    let start = Instant::now();
    let bulk = Callers::spawn_at(&limiter, PUSH, Priority::Bulk, 64, start);
    // One urgent call every 2 s, 50 ms into a slot.
    let times = (0..60).map(|k| ms(2_000 * k + 50)).collect();
    let urgent = urgent_at(&limiter, times, start);
    let waits = urgent.await.unwrap();
    sleep_until(start + ms(120_000)).await;
    let bulk = bulk.stop();
    assert_eq!(waits, vec![ms(50); 60]);
    // Two minutes of 600 slots: 60 to urgent calls, every other one to bulk calls.
    assert_eq!(between(&bulk, Duration::ZERO, ms(120_000)), 1_200 - 60);
    assert_eq!(between(&bulk, Duration::ZERO, ms(60_000)), 600 - 30);
}

#[tokio::test(start_paused = true)]
async fn bulk_calls_borrow_what_urgent_calls_leave_of_the_reserve() {
    let limiter = reserved();
    let start = Instant::now();
    let bulk = Callers::spawn_at(&limiter, PUSH, Priority::Bulk, 64, start);
    // 20 urgent calls a minute, fewer than the reserve's 24.
    let times = (0..60).map(|k| ms(3_000 * k + 50)).collect();
    let waits = urgent_at(&limiter, times, start).await.unwrap();
    sleep_until(start + ms(180_000)).await;
    let bulk = bulk.stop();
    assert_eq!(waits, vec![Duration::ZERO; 60], "each found the kept cell");
    // Each minute: the 375 main cells and the 4 reserve cells urgent calls left.
    for minute in 0..3 {
        let from = ms(60_000 * minute);
        assert_eq!(
            between(&bulk, from, from + ms(60_000)),
            375 + 4,
            "minute {minute}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_urgent_calls_bulk_gets_all_but_one_call_a_minute() {
    let ten_minutes = ms(600_000);
    let (plain, _) = limiter(&four_hundred());
    // With the reserve: all the main cells and every reserve cell but the one kept,
    // 400 - 1 a minute. What is promised is less: never under (1 - share) of the budget.
    for (limiter, per_minute) in [(reserved(), 399), (plain, 400)] {
        let start = Instant::now();
        let bulk = Callers::spawn_at(&limiter, PUSH, Priority::Bulk, 64, start);
        sleep(ten_minutes).await;
        let bulk = bulk.stop();
        let calls = between(&bulk, Duration::ZERO, ten_minutes);
        assert_eq!(calls, 10 * per_minute);
        assert!(calls as f64 >= (1.0 - SHARE) * 4_000.0);
        assert_eq!(busiest_minute(&bulk), per_minute);
    }
}

#[tokio::test(start_paused = true)]
async fn under_saturating_bulk_an_urgent_call_waits_at_most_one_slot() {
    let (limiter, _) = limiter(&exact());
    let start = Instant::now();
    let bulk = Callers::spawn_at(&limiter, PUSH, Priority::Bulk, 64, start);
    // Asked `o` ms into a slot (at `o` s + `o` ms); the last one at a slot's very start.
    let offsets = [1, 25, 50, 75, 99, 100];
    let times = offsets.iter().map(|o| ms(1_000 * o + o)).collect();
    let waits = urgent_at(&limiter, times, start).await.unwrap();
    bulk.stop();
    // The next slot, 100 - o ms later.
    let expected: Vec<Duration> = offsets[..5].iter().map(|o| ms(100 - o)).collect();
    assert_eq!(waits[..5], expected);
    // At a slot's start a bulk call woken at the same instant may take it first: then the
    // next one, a whole slot later, and never more.
    assert!(
        waits[5] == Duration::ZERO || waits[5] == ms(100),
        "{waits:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn urgent_calls_beyond_the_reserve_wait_at_most_one_main_slot_each() {
    let limiter = reserved();
    let start = Instant::now();
    let bulk = Callers::spawn_at(&limiter, PUSH, Priority::Bulk, 64, start);
    sleep(ms(10_050)).await;
    let urgent: Vec<_> = (0..5)
        .map(|_| one(&limiter, Priority::Urgent, start))
        .collect();
    let urgent = all(urgent).await;
    sleep(ms(1_000)).await;
    let bulk = bulk.stop();
    // The kept reserve cell at once, then each next main cell (every 160 ms): the reserve's
    // next one is not due before 12.5 s.
    assert_eq!(urgent, [10_050, 10_080, 10_240, 10_400, 10_560].map(ms));
    // Bulk calls had the main cell at 9.92 s and the spare reserve cell at 10 s.
    assert_eq!(between(&bulk, ms(10_001), ms(10_720)), 0);
    assert_eq!(between(&bulk, ms(10_720), ms(10_721)), 1);
}

#[tokio::test(start_paused = true)]
async fn both_lanes_together_keep_the_limit() {
    let limiter = reserved();
    let start = Instant::now();
    let urgent = Callers::spawn_at(&limiter, PUSH, Priority::Urgent, 8, start);
    let bulk = Callers::spawn_at(&limiter, PUSH, Priority::Bulk, 8, start);
    sleep(ms(180_000)).await;
    let grants = urgent.stop();
    let bulk = bulk.stop();
    // Urgent calls come first, so a flood of them leaves bulk calls nothing.
    assert!(bulk.is_empty(), "{bulk:?}");
    // 375 main cells and the reserve's 24, plus its second cell at the start: the
    // figure, as without a reserve, never more.
    assert_eq!(busiest_minute(&grants), 400);
    assert_eq!(between(&grants, ms(60_000), ms(120_000)), 399);
}

#[tokio::test(start_paused = true)]
async fn a_429_pause_holds_urgent_calls_too_then_they_go_first() {
    let (limiter, _) = limiter(&exact());
    let start = Instant::now();
    let bulk = Callers::spawn_at(&limiter, PUSH, Priority::Bulk, 8, start);
    sleep(ms(5_050)).await;
    limiter.throttled(PUSH, Some(Duration::from_secs(3)));
    sleep(ms(950)).await;
    let urgent = one(&limiter, Priority::Urgent, start).await.unwrap();
    sleep(ms(1_000)).await;
    let bulk = bulk.stop();
    // The pause ends at 8.05 s; a call now costs two cells (8.05 and 8.15 s).
    assert_eq!(urgent, ms(8_150));
    assert_eq!(between(&bulk, ms(5_051), ms(8_350)), 0);
    assert_eq!(between(&bulk, ms(8_350), ms(8_351)), 1);
}

#[tokio::test(start_paused = true)]
async fn an_urgent_caller_that_gives_up_does_not_hold_bulk_calls_back() {
    let (limiter, _) = limiter(&exact());
    let start = Instant::now();
    limiter.acquire(PUSH, Priority::Bulk).await; // the slot at 0 ms
    let bulk = one(&limiter, Priority::Bulk, start);
    sleep(ms(10)).await;
    let first = one(&limiter, Priority::Urgent, start);
    let quitter = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let acquire = limiter.acquire(PUSH, Priority::Urgent);
            assert!(timeout(ms(140), acquire).await.is_err(), "gave up");
        })
    };
    // At 100 ms the first urgent call takes the slot and the bulk head waits for the
    // second, which gives up at 150 ms: the bulk call gets the slot at 200 ms.
    assert_eq!(first.await.unwrap(), ms(100));
    quitter.await.unwrap();
    let bulk = timeout(ms(5_000), bulk).await.expect("bulk was woken");
    assert_eq!(bulk.unwrap(), ms(200));
}

#[tokio::test(start_paused = true)]
async fn the_wait_of_both_priorities_shows_in_the_metrics() {
    let (limiter, metrics) = limiter(&exact());
    let start = Instant::now();
    limiter.acquire(PUSH, Priority::Bulk).await;
    let bulk = one(&limiter, Priority::Bulk, start);
    sleep(ms(10)).await;
    let urgent = one(&limiter, Priority::Urgent, start);
    assert_eq!(urgent.await.unwrap(), ms(100));
    let bulk = timeout(ms(5_000), bulk).await.expect("bulk went on");
    assert_eq!(bulk.unwrap(), ms(200));
    // Waits of 0, 0.09 (urgent) and 0.2 s (bulk).
    let sum = sample(
        &metrics,
        r#"rate_limit_wait_seconds_sum{method="createMessage"}"#,
    );
    assert!((sum - 0.29).abs() < 1e-6, "{sum}");
    assert_eq!(
        sample(
            &metrics,
            r#"rate_limit_wait_seconds_count{method="createMessage"}"#
        ),
        3.0
    );
}

#[tokio::test(start_paused = true)]
async fn with_reserve_clamps_the_share() {
    let reserve = |share: f64| {
        let (limiter, _) = limiter(&exact());
        Arc::into_inner(limiter)
            .unwrap()
            .with_reserve(share)
            .urgent_reserve(PUSH)
    };
    // 600 a minute: 0.1 keeps 60; anything above 0.9 keeps 540, leaving 59 main cells.
    assert_eq!(reserve(0.1), 60);
    assert_eq!(reserve(0.9), 540);
    assert_eq!(reserve(5.0), 540);
    assert_eq!(reserve(f64::INFINITY), 540);
    assert_eq!(reserve(0.0), 0);
    assert_eq!(reserve(-1.0), 0);
    assert_eq!(reserve(f64::NAN), 0);
    let (limiter, _) = limiter(&exact());
    let limiter = Arc::into_inner(limiter).unwrap().with_reserve(0.5);
    assert_eq!(
        limiter.urgent_reserve("cancelMessage"),
        0,
        "no limit, no reserve"
    );
    assert_eq!(limiter.urgent_reserve("noSuchMethod"), 0);
}
