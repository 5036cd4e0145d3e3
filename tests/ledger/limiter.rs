//! The account-wide rate limiter against the real Redis: two limiters stand for two
//! processes. Grant times are Redis's clock (the one the limiter uses), so the checks
//! count slots, not wall-clock time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushwoosh_worker::ledger::{Account, CallLimiter, Granted, SharedLimiter};
use pushwoosh_worker::metrics::Metrics;
use pushwoosh_worker::pushwoosh::Priority;
use pushwoosh_worker::settings::RateLimitSettings;
use secrecy::SecretString;

use crate::support::Prefix;

const METHOD: &str = "createMessage";

fn limits(configure: impl FnOnce(&mut RateLimitSettings)) -> RateLimitSettings {
    let mut s = RateLimitSettings::default();
    configure(&mut s);
    s
}

/// Microseconds between two calls at 600 a minute with the default slack (60.5 s / 600).
const SPACING_US: f64 = 100_834.0;

async fn limiter(prefix: &Prefix, settings: &RateLimitSettings) -> SharedLimiter {
    let (ledger, metrics) = prefix.ledger().await;
    SharedLimiter::new(settings, ledger, metrics)
}

fn at(granted: Granted) -> i64 {
    match granted {
        Granted::Shared { at_us } => at_us,
        other => panic!("not a shared slot: {other:?}"),
    }
}

#[tokio::test]
async fn two_processes_share_one_budget_and_use_nearly_all_of_it() {
    let prefix = Prefix::new();
    let settings = limits(|_| {});
    let account = Account::of_token(&SecretString::from("token-of-one-account"));
    let processes = [
        limiter(&prefix, &settings).await,
        limiter(&prefix, &settings).await,
    ];
    let processes = Arc::new(processes);
    let until = Instant::now() + Duration::from_secs(6);
    let mut callers = Vec::new();
    for p in 0..2 {
        for _ in 0..4 {
            let (processes, account) = (processes.clone(), account.clone());
            callers.push(tokio::spawn(async move {
                let mut grants = Vec::new();
                while Instant::now() < until {
                    grants.push((
                        at(processes[p].acquire(&account, METHOD, Priority::Bulk).await),
                        p,
                    ));
                }
                grants
            }));
        }
    }
    let mut grants = Vec::new();
    for caller in callers {
        grants.extend(caller.await.unwrap());
    }
    grants.sort();
    let times: Vec<f64> = grants.iter().map(|(t, _)| *t as f64).collect();
    // Never more than the budget: any span of Redis time holds at most burst (1) call
    // plus one per spacing.
    for i in 0..times.len() {
        for j in i + 1..times.len() {
            let allowed = 1.0 + (times[j] - times[i]) / SPACING_US;
            let calls = (j - i + 1) as f64;
            assert!(
                calls <= allowed + 1e-9,
                "{calls} calls in {} µs",
                times[j] - times[i]
            );
        }
    }
    // Nearly all of it: the slots between the first and the last call were used.
    let slots = 1.0 + (times[times.len() - 1] - times[0]) / SPACING_US;
    let used = times.len() as f64 / slots;
    assert!(used >= 0.8, "{} calls in {slots:.1} slots", times.len());
    for p in 0..2 {
        assert!(
            grants.iter().any(|(_, q)| *q == p),
            "process {p} got no call"
        );
    }
}

#[tokio::test]
async fn a_429_pauses_every_process_and_spaces_their_calls_further_apart() {
    let prefix = Prefix::new();
    let settings = limits(|_| {});
    let account = Account::named("acme");
    let a = limiter(&prefix, &settings).await;
    let b = limiter(&prefix, &settings).await;
    let before = at(a.acquire(&account, METHOD, Priority::Bulk).await);
    a.throttled(&account, METHOD, Some(Duration::from_millis(1500)))
        .await;
    for p in [&a, &b] {
        let (slowdown, pause) = p.slowdown(&account, METHOD).await.unwrap();
        assert_eq!(slowdown, 2);
        assert!(pause > Duration::ZERO && pause <= Duration::from_millis(1500));
    }
    let after = at(b.acquire(&account, METHOD, Priority::Bulk).await);
    assert!(
        after - before >= 1_500_000,
        "b went {} µs after a",
        after - before
    );
    let next = at(a.acquire(&account, METHOD, Priority::Bulk).await);
    assert!(
        (next - after) as f64 >= 2.0 * SPACING_US - 1.0,
        "spaced {} µs",
        next - after
    );
    // A 429 that answers a call made before this step is the same congestion.
    b.throttled(&account, METHOD, Some(Duration::from_millis(1)))
        .await;
    b.throttled(&account, METHOD, Some(Duration::from_millis(1)))
        .await;
    assert_eq!(a.slowdown(&account, METHOD).await.unwrap().0, 4);
}

#[tokio::test]
async fn the_slow_down_comes_back_step_by_step() {
    let prefix = Prefix::new();
    let settings = limits(|s| {
        s.recovery_interval_ms = 400;
        s.default_pause_ms = 1;
    });
    let account = Account::named("recovering");
    let a = limiter(&prefix, &settings).await;
    for _ in 0..3 {
        a.acquire(&account, METHOD, Priority::Bulk).await;
        a.throttled(&account, METHOD, None).await;
    }
    let mut seen = vec![a.slowdown(&account, METHOD).await.unwrap().0];
    assert_eq!(seen, [8]);
    let started = Instant::now();
    while seen.last() != Some(&1) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never back to the configured rate: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = a.slowdown(&account, METHOD).await.unwrap().0;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
    }
    // One halving per quiet interval: no level skipped while it was watched this often.
    assert!(seen.windows(2).all(|w| w[1] < w[0]), "{seen:?}");
    assert!(seen.len() >= 3, "{seen:?}");
}

#[tokio::test]
async fn accounts_and_methods_do_not_share_a_budget() {
    let prefix = Prefix::new();
    let settings = limits(|_| {});
    let a = limiter(&prefix, &settings).await;
    let one = Account::of_token(&SecretString::from("token-one"));
    let two = Account::of_token(&SecretString::from("token-two"));
    for (account, method) in [(&one, METHOD), (&two, METHOD), (&one, "createSMSMessage")] {
        a.acquire(account, method, Priority::Bulk).await;
    }
    let mut redis = prefix.redis();
    for (account, method) in [(&one, METHOD), (&two, METHOD), (&one, "createSMSMessage")] {
        let key = format!("{}rate:{}:{method}", prefix.prefix, account.as_str());
        let slots: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&key)
            .arg("tat")
            .arg("slow")
            .query(&mut redis)
            .unwrap();
        assert!(slots[0].is_some(), "{key} holds its own state");
        assert_eq!(slots[1].as_deref(), Some("1"));
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", prefix.prefix))
        .query(&mut redis)
        .unwrap();
    assert!(keys.iter().all(|k| !k.contains("token")), "{keys:?}");
}

#[tokio::test]
async fn a_method_without_a_figure_still_pauses_after_a_429() {
    let prefix = Prefix::new();
    let account = Account::named("free");
    let a = limiter(&prefix, &limits(|_| {})).await;
    let before = at(a.acquire(&account, "getPushHistory", Priority::Bulk).await);
    a.throttled(&account, "getPushHistory", Some(Duration::from_millis(300)))
        .await;
    let after = at(a.acquire(&account, "getPushHistory", Priority::Bulk).await);
    assert!(after - before >= 300_000, "{} µs", after - before);
    // No figure, no spacing to double.
    assert_eq!(a.slowdown(&account, "getPushHistory").await.unwrap().0, 1);
    assert_eq!(
        a.acquire(&account, "noSuchMethod", Priority::Bulk).await,
        Granted::Unlimited
    );
    let off = limiter(&prefix, &limits(|s| s.enabled = false)).await;
    assert_eq!(
        off.acquire(&account, METHOD, Priority::Bulk).await,
        Granted::Unlimited
    );
}

#[tokio::test]
async fn without_a_ledger_the_per_process_limiter_is_used() {
    let local = CallLimiter::new(&limits(|_| {}), None, Arc::new(Metrics::new()), 0.0);
    assert!(matches!(local, CallLimiter::Local(_)));
    local
        .acquire(&Account::named("any"), METHOD, Priority::Bulk)
        .await;
    local
        .throttled(
            &Account::named("any"),
            METHOD,
            Some(Duration::from_millis(1)),
        )
        .await;
}

#[tokio::test]
async fn an_urgent_call_is_granted_ahead_of_a_saturating_bulk_stream_of_another_process() {
    let prefix = Prefix::new();
    // 120 a minute, no slack: 500 ms a call; a reserve of half: 60 reserve cells a
    // minute (1 s apart), the main stream 59 (about 1,017 ms apart).
    let settings = limits(|s| {
        s.create_message_per_minute = 120;
        s.window_slack_ms = 0;
    });
    let account = Account::of_token(&SecretString::from("token-of-one-account"));
    let (bulk, urgent) = (
        Arc::new(limiter(&prefix, &settings).await.with_reserve(0.5)),
        limiter(&prefix, &settings).await.with_reserve(0.5),
    );
    // Bulk alone: both streams, every cell (a main cell, then the reserve's spare one).
    let first = at(bulk.acquire(&account, METHOD, Priority::Bulk).await);
    let second = at(bulk.acquire(&account, METHOD, Priority::Bulk).await);
    // (The main stream's next cell is 1,017 ms away.)
    assert!(
        (second - first) < 900_000,
        "bulk did not take the reserve's spare cell: {} µs",
        second - first
    );
    // Bulk saturates: four callers of the other process wait in line.
    let mut waiting = Vec::new();
    for _ in 0..4 {
        let (bulk, account) = (bulk.clone(), account.clone());
        waiting.push(tokio::spawn(async move {
            at(bulk.acquire(&account, METHOD, Priority::Bulk).await)
        }));
    }
    tokio::task::yield_now().await;
    // Bulk left the reserve's last cell: the urgent call takes it, before any bulk call
    // that was waiting when it asked.
    let urgent_at = at(urgent.acquire(&account, METHOD, Priority::Urgent).await);
    let mut bulk_at = Vec::new();
    for w in waiting {
        bulk_at.push(w.await.unwrap());
    }
    bulk_at.sort_unstable();
    assert!(
        urgent_at < bulk_at[0],
        "the urgent call came at {urgent_at}, after bulk at {}",
        bulk_at[0]
    );
    // And the budget held: 7 calls, at most burst 1 + reserve 2 at once, one a cell after.
    let mut all = vec![first, second, urgent_at];
    all.extend(bulk_at);
    all.sort_unstable();
    let span = (all[all.len() - 1] - all[0]) as f64;
    assert!(
        all.len() as f64 <= 3.0 + span / 500_000.0,
        "{} calls in {span} µs",
        all.len()
    );
}
