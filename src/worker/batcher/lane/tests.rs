//! Tests of lane scheduling, on paused time: when a batch goes, what it holds.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::settings::{BatchSettings, RateLimitSettings};
use crate::worker::batcher::caller::fake::{
    Fake, codes, job, new_batcher, submit, submit_urgent, with_limits, with_settings,
};
use crate::worker::batcher::{Batched, Batcher};

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

/// A batcher on the default limits (600 a minute: one call every ~100 ms), batches of
/// `max_size` notifications, no linger at all.
fn paced(fake: Arc<Fake>, max_size: usize) -> Arc<Batcher> {
    with_limits(
        fake,
        BatchSettings {
            enabled: true,
            max_size,
            linger_ms: 0,
            busy_linger_ms: 0,
        },
        &RateLimitSettings::default(),
    )
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
            .submit(batchable, &SecretString::from("tok"), true, 1, None)
            .await
            .expect("an answer")
            .expect("no ledger, no word of its own");
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
    let batcher = paced(fake.clone(), 100);
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
async fn an_urgent_job_does_not_linger_and_takes_the_jobs_waiting_with_it() {
    let fake = Arc::new(Fake::default());
    // A long linger window: a bulk job alone would wait a second for company.
    let batcher = new_batcher(fake.clone(), 100, 1_000);
    let started = tokio::time::Instant::now();
    let bulk = submit(&batcher, job("bulk", &["bulk"], false));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let urgent = submit_urgent(&batcher, job("urgent", &["urgent"], false));
    let (bulk, urgent) = (bulk.await.unwrap(), urgent.await.unwrap());
    assert_eq!(started.elapsed(), Duration::from_millis(10));
    assert_eq!(fake.calls(), [vec!["bulk".to_owned(), "urgent".to_owned()]]);
    assert_eq!((bulk.batch.jobs, urgent.batch.jobs), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn an_urgent_job_takes_a_place_in_the_full_batch_waiting_for_its_slot() {
    let fake = Arc::new(Fake::default());
    // 600 a minute: one call every ~100 ms; batches of 10.
    let batcher = paced(fake.clone(), 10);
    submit(&batcher, job("first", &["first"], false))
        .await
        .unwrap();
    // A campaign of 25: the next batch (10) waits for its slot, the rest queue behind it.
    let campaign: Vec<_> = (0..25)
        .map(|i| submit(&batcher, job(&format!("c{i}"), &[&format!("c{i}")], false)))
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let urgent = submit_urgent(&batcher, job("urgent", &["urgent"], false));
    let urgent = urgent.await.unwrap();
    for c in campaign {
        c.await.unwrap();
    }
    let calls = fake.calls();
    // The urgent job went in the very next call, in the place of the batch's last bulk
    // job, which went in the call after; every call full, nothing lost or doubled.
    assert_eq!(urgent.batch.jobs, 10);
    assert!(calls[1].contains(&"urgent".to_owned()), "{calls:?}");
    assert!(!calls[1].contains(&"c9".to_owned()), "{calls:?}");
    assert_eq!(
        calls.iter().map(Vec::len).collect::<Vec<_>>(),
        [1, 10, 10, 6],
        "{calls:?}"
    );
    let mut sent: Vec<String> = calls.into_iter().flatten().collect();
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), 27);
}

#[tokio::test(start_paused = true)]
async fn a_batch_that_an_entry_overflowed_still_waits_for_its_slot() {
    let fake = Arc::new(Fake::default());
    // 600 a minute: one call every ~100 ms; batches of 3 notifications.
    let batcher = paced(fake.clone(), 3);
    let started = tokio::time::Instant::now();
    submit(&batcher, job("first", &["first"], false))
        .await
        .unwrap();
    // Two notifications each: the second does not fit beside the first.
    let a = submit(&batcher, job("a", &["a1", "a2"], false));
    let b = submit(&batcher, job("b", &["b1", "b2"], false));
    a.await.unwrap();
    let after_a = started.elapsed();
    b.await.unwrap();
    let after_b = started.elapsed();
    assert_eq!(fake.calls().len(), 3);
    assert!(after_a >= Duration::from_millis(100), "{after_a:?}");
    assert!(after_b >= Duration::from_millis(200), "{after_b:?}");
}
