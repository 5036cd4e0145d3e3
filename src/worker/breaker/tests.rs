//! Tests of the breaker's states, on paused time: when it opens, probes and closes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{BreakerState, CircuitBreaker, Signal};
use crate::metrics::Metrics;
use crate::pushwoosh::Verdict;
use crate::settings::BreakerSettings;
use crate::worker::context::Readiness;

fn breaker() -> CircuitBreaker {
    CircuitBreaker::new(
        &BreakerSettings {
            enabled: true,
            failure_threshold: 3,
            initial_open_ms: 1_000,
            max_open_ms: 4_000,
        },
        Arc::new(Metrics::new()),
        Arc::new(Readiness::default()),
    )
}

fn down() -> Signal {
    Signal::Down("HTTP 500 internal error".into())
}

fn open(b: &CircuitBreaker) {
    for _ in 0..3 {
        b.record(&down());
    }
    assert_eq!(b.state(), BreakerState::Open);
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Waits for the probe and returns how long that took.
async fn time_to_probe(b: &CircuitBreaker) -> Duration {
    let started = Instant::now();
    b.wait_for_probe().await;
    assert_eq!(b.state(), BreakerState::HalfOpen);
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn the_threshold_opens_it() {
    let b = breaker();
    let mut watch = b.subscribe();
    assert_eq!(b.record(&down()), BreakerState::Closed);
    assert_eq!(b.record(&down()), BreakerState::Closed);
    assert!(b.admits());
    assert_eq!(b.record(&down()), BreakerState::Open);
    assert!(!b.admits());
    assert!(watch.has_changed().unwrap());
    assert_eq!(*watch.borrow_and_update(), BreakerState::Open);
    assert!(!b.readiness.is_ready());
    assert!(b.readiness.breaker_open());
    let text = b.metrics.render();
    assert!(
        text.contains(r#"pushwoosh_worker_breaker_transitions_total{to="open"} 1"#),
        "{text}"
    );
    assert!(text.contains("pushwoosh_worker_breaker_open 1"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn an_answer_resets_the_count_and_neutral_answers_do_not() {
    let b = breaker();
    b.record(&down());
    b.record(&down());
    b.record(&Signal::Answered);
    b.record(&down());
    assert_eq!(b.record(&down()), BreakerState::Closed);
    assert_eq!(b.record(&Signal::Neutral), BreakerState::Closed);
    assert_eq!(b.record(&down()), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn it_turns_half_open_after_the_period_not_before() {
    let b = breaker();
    open(&b);
    assert!(
        tokio::time::timeout(ms(749), b.wait_for_probe())
            .await
            .is_err()
    );
    assert_eq!(b.state(), BreakerState::Open);
    // Stragglers' answers while open change nothing.
    assert_eq!(b.record(&Signal::Answered), BreakerState::Open);
    assert_eq!(b.record(&down()), BreakerState::Open);
    let waited = ms(749) + time_to_probe(&b).await;
    assert!(waited >= ms(750) && waited <= ms(1_000), "{waited:?}");
    assert!(b.admits(), "half-open lets the probe through");
    assert!(
        b.metrics
            .render()
            .contains(r#"pushwoosh_worker_breaker_transitions_total{to="half_open"} 1"#)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_doubles_the_period_up_to_the_max() {
    let b = breaker();
    open(&b);
    let first = time_to_probe(&b).await;
    assert!(first <= ms(1_000), "{first:?}");
    for nominal in [2_000, 4_000, 4_000, 4_000] {
        assert_eq!(b.record(&down()), BreakerState::Open);
        let waited = time_to_probe(&b).await;
        assert!(
            waited >= ms(nominal * 3 / 4) && waited <= ms(nominal),
            "nominal {nominal} ms, waited {waited:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_good_probe_closes_it_and_resets_the_period() {
    let b = breaker();
    open(&b);
    time_to_probe(&b).await;
    b.record(&down());
    time_to_probe(&b).await;
    assert_eq!(b.record(&Signal::Answered), BreakerState::Closed);
    assert!(b.admits());
    assert!(!b.readiness.breaker_open());
    let text = b.metrics.render();
    assert!(
        text.contains(r#"pushwoosh_worker_breaker_transitions_total{to="closed"} 1"#),
        "{text}"
    );
    assert!(text.contains("pushwoosh_worker_breaker_open 0"), "{text}");
    // Closed again: the count starts over and the period is the initial one.
    b.record(&down());
    b.record(&down());
    assert_eq!(b.state(), BreakerState::Closed);
    b.record(&down());
    assert!(time_to_probe(&b).await <= ms(1_000));
    // Rejected answers are answers too.
    let rejected = Verdict::Rejected {
        status_code: 210,
        status_message: "bad".into(),
        response: Value::Null,
    };
    assert_eq!(b.record(&Signal::of(&rejected, true)), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_disabled_breaker_never_opens() {
    let b = CircuitBreaker::new(
        &BreakerSettings {
            enabled: false,
            ..BreakerSettings::default()
        },
        Arc::new(Metrics::new()),
        Arc::new(Readiness::default()),
    );
    for _ in 0..100 {
        assert_eq!(b.record(&down()), BreakerState::Closed);
    }
    assert!(b.admits());
}
