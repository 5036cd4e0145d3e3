//! The limiter in paused tokio time: rates over simulated minutes, the pause and the
//! slow-down after a 429, recovery, the replicas' share, cancellation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};

use super::{Priority, RateLimiter};
use crate::metrics::Metrics;
use crate::settings::RateLimitSettings;

pub(super) const PUSH: &str = "createMessage";
const SMS: &str = "createSMSMessage";
const SECOND: Duration = Duration::from_secs(1);

/// The defaults, without the slack, so that 600/min is exactly one call per 100 ms.
pub(super) fn exact() -> RateLimitSettings {
    RateLimitSettings {
        window_slack_ms: 0,
        ..RateLimitSettings::default()
    }
}

pub(super) fn limiter(settings: &RateLimitSettings) -> (Arc<RateLimiter>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (
        Arc::new(RateLimiter::new(settings, metrics.clone())),
        metrics,
    )
}

/// Grant times (since `start`) of `tasks` callers of `method` that acquire in a loop.
pub(super) struct Callers {
    grants: Arc<Mutex<Vec<Duration>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Callers {
    fn spawn(
        limiter: &Arc<RateLimiter>,
        method: &'static str,
        tasks: usize,
        start: Instant,
    ) -> Self {
        Self::spawn_at(limiter, method, Priority::Bulk, tasks, start)
    }

    pub(super) fn spawn_at(
        limiter: &Arc<RateLimiter>,
        method: &'static str,
        priority: Priority,
        tasks: usize,
        start: Instant,
    ) -> Self {
        let grants = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..tasks)
            .map(|_| {
                let limiter = limiter.clone();
                let grants = grants.clone();
                tokio::spawn(async move {
                    loop {
                        limiter.acquire(method, priority).await;
                        grants.lock().unwrap().push(start.elapsed());
                    }
                })
            })
            .collect();
        Self { grants, tasks }
    }

    /// Stops the callers; the sorted grant times.
    pub(super) fn stop(self) -> Vec<Duration> {
        for task in &self.tasks {
            task.abort();
        }
        let mut grants = self.grants.lock().unwrap().clone();
        grants.sort();
        grants
    }
}

pub(super) fn between(grants: &[Duration], from: Duration, to: Duration) -> usize {
    grants.iter().filter(|t| **t >= from && **t < to).count()
}

/// The most grants in any 60-second window `[t, t + 60 s)`, as Pushwoosh's (and the
/// sandbox's) sliding minute counts them.
pub(super) fn busiest_minute(grants: &[Duration]) -> usize {
    let minute = Duration::from_secs(60);
    let mut end = 0;
    let mut most = 0;
    for (start, t) in grants.iter().enumerate() {
        while end < grants.len() && grants[end] < *t + minute {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A sample's value from the Prometheus text, e.g. `rate_limit_slowdown{method="createMessage"}`.
pub(super) fn sample(metrics: &Metrics, name_and_labels: &str) -> f64 {
    let text = metrics.render();
    let prefix = format!("pushwoosh_worker_{name_and_labels} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn six_hundred_a_minute_hold_over_simulated_minutes() {
    let (limiter, _) = limiter(&RateLimitSettings::default());
    let start = Instant::now();
    let callers = Callers::spawn(&limiter, PUSH, 64, start);
    sleep(Duration::from_secs(150)).await;
    let grants = callers.stop();
    let first_minute = between(&grants, Duration::ZERO, Duration::from_secs(60));
    // 60 s / (60.5 s / 600) = 595.04: the slack costs under 1% of the figure.
    assert!(
        (590..=600).contains(&first_minute),
        "{first_minute} calls in the first minute"
    );
    let busiest = busiest_minute(&grants);
    assert!(busiest <= 600, "{busiest} calls in one sliding minute");
    assert!(busiest >= 590, "{busiest} calls in the busiest minute");
}

#[tokio::test(start_paused = true)]
async fn a_burst_adds_at_most_burst_minus_one_calls_to_any_minute() {
    for burst in [1, 5] {
        let (limiter, _) = limiter(&RateLimitSettings { burst, ..exact() });
        let start = Instant::now();
        let callers = Callers::spawn(&limiter, PUSH, 64, start);
        sleep(Duration::from_secs(130)).await;
        let grants = callers.stop();
        assert_eq!(
            between(&grants, Duration::ZERO, Duration::from_millis(1)),
            burst as usize,
            "a full burst at once"
        );
        assert_eq!(
            busiest_minute(&grants),
            600 + burst as usize - 1,
            "burst {burst}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_429_pauses_every_caller_of_the_method_then_halves_its_rate() {
    let (limiter, metrics) = limiter(&exact());
    let start = Instant::now();
    let pushes = Callers::spawn(&limiter, PUSH, 8, start);
    let sms = Callers::spawn(&limiter, SMS, 2, start);
    sleep(secs(5.05)).await;
    limiter.throttled(PUSH, Some(Duration::from_secs(3)));
    sleep(secs(15.0 - 5.05)).await;
    let pushes = pushes.stop();
    let sms = sms.stop();

    // Before: 10 a second. During the pause (until 8.05 s): none, from any caller.
    assert_eq!(between(&pushes, secs(4.0), secs(5.0)), 10);
    assert_eq!(between(&pushes, secs(5.06), secs(8.05)), 0, "{pushes:?}");
    // After: every call costs two slots, 5 a second.
    assert_eq!(between(&pushes, secs(8.05), secs(10.05)), 10, "{pushes:?}");
    assert_eq!(between(&pushes, secs(10.05), secs(15.0)), 25);
    // Other methods are not held.
    assert_eq!(between(&sms, secs(5.06), secs(8.05)), 30);
    assert_eq!(limiter.slowdown(PUSH), 2);
    assert_eq!(limiter.slowdown(SMS), 1);
    assert_eq!(
        sample(&metrics, r#"rate_limit_slowdown{method="createMessage"}"#),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"rate_limit_throttled_total{method="createMessage"}"#
        ),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn several_429s_from_calls_in_flight_count_as_one_step() {
    let (limiter, _) = limiter(&exact());
    limiter.acquire(PUSH, Priority::Bulk).await;
    // Five calls were in flight; all five answer 429 together.
    for _ in 0..5 {
        limiter.throttled(PUSH, None);
    }
    assert_eq!(limiter.slowdown(PUSH), 2);
    // A late 429 after the pause, with no call made since: still the same step.
    sleep(secs(1.5)).await;
    limiter.throttled(PUSH, Some(Duration::ZERO));
    assert_eq!(limiter.slowdown(PUSH), 2);
    // A call made at the slower rate that is refused too: one more step.
    limiter.acquire(PUSH, Priority::Bulk).await;
    limiter.throttled(PUSH, None);
    limiter.throttled(PUSH, None);
    assert_eq!(limiter.slowdown(PUSH), 4);
    // Never slower than max_slowdown.
    for _ in 0..10 {
        limiter.acquire(PUSH, Priority::Bulk).await;
        limiter.throttled(PUSH, Some(Duration::ZERO));
    }
    assert_eq!(limiter.slowdown(PUSH), 16);
}

#[tokio::test(start_paused = true)]
async fn the_rate_recovers_step_by_step_without_429s() {
    let (limiter, _) = limiter(&exact());
    for _ in 0..3 {
        limiter.acquire(PUSH, Priority::Bulk).await;
        limiter.throttled(PUSH, None);
    }
    assert_eq!(limiter.slowdown(PUSH), 8);
    let start = Instant::now();
    // The pause ends at 1 s; the factor halves after each 10 s without a 429.
    sleep(secs(10.9)).await;
    assert_eq!(limiter.slowdown(PUSH), 8);
    sleep(secs(0.2)).await;
    assert_eq!(limiter.slowdown(PUSH), 4);
    sleep(Duration::from_secs(10)).await;
    assert_eq!(limiter.slowdown(PUSH), 2);
    // A 429 in the meantime starts the count again, and (with a call made) slows down.
    limiter.acquire(PUSH, Priority::Bulk).await;
    limiter.throttled(PUSH, None);
    assert_eq!(limiter.slowdown(PUSH), 4);
    sleep(Duration::from_secs(31)).await;
    assert_eq!(limiter.slowdown(PUSH), 1);
    // And the configured rate is back.
    let from = start.elapsed();
    let callers = Callers::spawn(&limiter, PUSH, 16, start);
    sleep(Duration::from_secs(10)).await;
    let grants = callers.stop();
    let calls = between(&grants, from, from + Duration::from_secs(10));
    assert!((100..=101).contains(&calls), "{calls} calls in 10 s");
}

#[tokio::test(start_paused = true)]
async fn a_disabled_limiter_never_waits_but_counts_429s() {
    let (limiter, metrics) = limiter(&RateLimitSettings {
        enabled: false,
        ..RateLimitSettings::default()
    });
    let start = Instant::now();
    for _ in 0..10_000 {
        limiter.acquire(PUSH, Priority::Bulk).await;
    }
    limiter.throttled(PUSH, Some(Duration::from_secs(30)));
    limiter.acquire(PUSH, Priority::Bulk).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(limiter.slowdown(PUSH), 1);
    assert_eq!(
        sample(
            &metrics,
            r#"rate_limit_throttled_total{method="createMessage"}"#
        ),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn replicas_share_the_figure() {
    let (limiter, _) = limiter(&RateLimitSettings {
        replicas: 3,
        ..exact()
    });
    let start = Instant::now();
    let callers = Callers::spawn(&limiter, PUSH, 64, start);
    sleep(Duration::from_secs(130)).await;
    let grants = callers.stop();
    assert_eq!(
        between(&grants, Duration::ZERO, Duration::from_secs(60)),
        200
    );
    assert_eq!(busiest_minute(&grants), 200);
}

#[tokio::test(start_paused = true)]
async fn unlimited_methods_never_wait_but_a_429_pauses_them() {
    let (limiter, _) = limiter(&exact());
    let start = Instant::now();
    for _ in 0..10_000 {
        limiter.acquire("cancelMessage", Priority::Bulk).await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    limiter.throttled("cancelMessage", None);
    limiter.acquire("cancelMessage", Priority::Bulk).await;
    // rate_limit.default_pause_ms, and no slow-down to apply to an unlimited rate.
    assert_eq!(start.elapsed(), SECOND);
    assert_eq!(limiter.slowdown("cancelMessage"), 1);
    limiter.acquire("cancelMessage", Priority::Bulk).await;
    assert_eq!(start.elapsed(), SECOND);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_is_capped_by_max_pause() {
    let (limiter, _) = limiter(&RateLimitSettings {
        max_pause_ms: 5_000,
        ..exact()
    });
    let start = Instant::now();
    limiter.throttled("getMessageDetails", Some(Duration::from_secs(3600)));
    limiter.acquire("getMessageDetails", Priority::Bulk).await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_loses_no_slot_and_the_line_keeps_its_order() {
    let (limiter, _) = limiter(&exact());
    let start = Instant::now();
    limiter.acquire(PUSH, Priority::Bulk).await; // the slot at 0 ms
    let order = Arc::new(Mutex::new(Vec::new()));
    let waiter = |name: &'static str, give_up: Option<Duration>| {
        let limiter = limiter.clone();
        let order = order.clone();
        tokio::spawn(async move {
            let acquire = limiter.acquire(PUSH, Priority::Bulk);
            match give_up {
                Some(after) => {
                    assert!(timeout(after, acquire).await.is_err(), "{name} gave up");
                }
                None => {
                    acquire.await;
                    order.lock().unwrap().push((name, start.elapsed()));
                }
            }
        })
    };
    // First in line, then cancelled while it waits for the slot at 100 ms.
    let quitter = waiter("quitter", Some(Duration::from_millis(50)));
    sleep(Duration::from_millis(1)).await;
    let a = waiter("a", None);
    sleep(Duration::from_millis(1)).await;
    let b = waiter("b", None);
    sleep(Duration::from_millis(1)).await;
    let c = waiter("c", None);
    for task in [quitter, a, b, c] {
        task.await.unwrap();
    }
    let ms = Duration::from_millis;
    assert_eq!(
        *order.lock().unwrap(),
        vec![("a", ms(100)), ("b", ms(200)), ("c", ms(300))]
    );
}

#[tokio::test(start_paused = true)]
async fn the_time_spent_waiting_shows_in_the_metrics() {
    let (limiter, metrics) = limiter(&exact());
    let calls: Vec<_> = (0..11)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire(PUSH, Priority::Bulk).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    // Waits of 0, 0.1, …, 1.0 s.
    let sum = sample(
        &metrics,
        r#"rate_limit_wait_seconds_sum{method="createMessage"}"#,
    );
    assert!((sum - 5.5).abs() < 1e-6, "{sum}");
    assert_eq!(
        sample(
            &metrics,
            r#"rate_limit_wait_seconds_count{method="createMessage"}"#
        ),
        11.0
    );
}
