//! The circuit breaker against the real broker: Pushwoosh failing for everyone opens it,
//! jobs wait in the queue instead of burning their retries, and it closes when
//! Pushwoosh answers again.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestApp, http_get, ok_answer, push_job};
use serde_json::json;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

/// Answers `fail` until the test says the outage is `over`, then a Pushwoosh success;
/// counts the failures it gave. The test ends the outage on an event it waits for (the
/// breaker opened), not after a time a slow machine could overrun.
struct Outage {
    over: Arc<AtomicBool>,
    fail: ResponseTemplate,
    failures: Arc<AtomicUsize>,
}

impl Respond for Outage {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if self.over.load(Ordering::SeqCst) {
            ok_answer(json!({"Messages": ["CODE-1"]}))
        } else {
            self.failures.fetch_add(1, Ordering::SeqCst);
            self.fail.clone()
        }
    }
}

/// Waits (for at most a minute, against a hang) until `done` holds.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1_200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn an_outage_opens_the_breaker_the_queue_waits_and_drains_when_pushwoosh_recovers() {
    const JOBS: usize = 30;
    let mut app = TestApp::spawn_with(|s| {
        s.amqp.prefetch = 5;
        s.breaker.failure_threshold = 3;
        s.breaker.initial_open_ms = 300;
        s.breaker.max_open_ms = 1_000;
        s.retry.max_attempts = 3;
    })
    .await;
    let failures = Arc::new(AtomicUsize::new(0));
    let over = Arc::new(AtomicBool::new(false));
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Outage {
            over: over.clone(),
            fail: ResponseTemplate::new(500).set_body_string("everything is on fire"),
            failures: failures.clone(),
        })
        .mount(&app.mock)
        .await;

    // Watch /readyz until every result is in.
    let addr = app.http_addr;
    let watching = Arc::new(AtomicBool::new(true));
    let readyz = tokio::spawn({
        let watching = watching.clone();
        async move {
            let mut seen = Vec::new();
            while watching.load(Ordering::SeqCst) {
                seen.push(http_get(addr, "/readyz").await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }
    });

    for n in 0..JOBS {
        app.publish_job(&push_job(&format!("job-{n}"))).await;
    }
    // Pushwoosh recovers once the breaker has opened and held a job back.
    until("the breaker open, a job held", async || {
        let metrics = app.metrics().await;
        common::metric(
            &metrics,
            r#"pushwoosh_worker_breaker_transitions_total{to="open"}"#,
        ) >= 1.0
            && common::metric(&metrics, "pushwoosh_worker_breaker_held_jobs_total") >= 1.0
    })
    .await;
    over.store(true, Ordering::SeqCst);
    let mut outcomes: HashMap<String, Vec<String>> = HashMap::new();
    for _ in 0..JOBS {
        let r = app.next_result(Duration::from_secs(20)).await.body;
        outcomes
            .entry(r["job_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(r["outcome"].as_str().unwrap().to_owned());
    }
    watching.store(false, Ordering::SeqCst);
    app.assert_no_result(Duration::from_millis(500)).await;
    assert_eq!(outcomes.len(), JOBS, "every job has a result: {outcomes:?}");
    for (job, seen) in &outcomes {
        assert_eq!(seen, &["ok"], "{job}: exactly one result, ok");
    }
    assert!(app.dead_letters().await.is_empty(), "nothing dead-lettered");

    let calls_during_outage = failures.load(Ordering::SeqCst);
    // Without the breaker: every job's whole budget, 30 × 3 calls.
    assert!(
        calls_during_outage < JOBS / 2,
        "the breaker kept the outage from burning the queue: {calls_during_outage} failed calls"
    );

    let metrics = app.metrics().await;
    let opened = common::metric(
        &metrics,
        r#"pushwoosh_worker_breaker_transitions_total{to="open"}"#,
    );
    let closed = common::metric(
        &metrics,
        r#"pushwoosh_worker_breaker_transitions_total{to="closed"}"#,
    );
    assert!(opened >= 1.0, "{metrics}");
    assert!(closed >= 1.0, "{metrics}");
    assert_eq!(
        common::metric(&metrics, "pushwoosh_worker_breaker_open"),
        0.0
    );
    assert!(
        common::metric(&metrics, "pushwoosh_worker_breaker_held_jobs_total") >= 1.0,
        "{metrics}"
    );

    let seen = readyz.await.unwrap();
    assert!(
        seen.iter()
            .any(|(status, body)| *status == 503 && body.contains("circuit breaker open")),
        "/readyz said the breaker was open at some point: {seen:?}"
    );
    assert_eq!(http_get(app.http_addr, "/readyz").await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn an_auth_failure_for_everyone_holds_the_jobs_instead_of_failing_them() {
    let mut app = TestApp::spawn_with(|s| {
        s.breaker.failure_threshold = 1;
        s.breaker.initial_open_ms = 200;
        s.breaker.max_open_ms = 400;
    })
    .await;
    let failures = Arc::new(AtomicUsize::new(0));
    let over = Arc::new(AtomicBool::new(false));
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Outage {
            over: over.clone(),
            fail: ResponseTemplate::new(401),
            failures: failures.clone(),
        })
        .mount(&app.mock)
        .await;
    app.publish_job(&push_job("locked-out")).await;
    // The first call and at least one probe were refused, the job held all the while.
    until("two refused calls", async || {
        failures.load(Ordering::SeqCst) >= 2
    })
    .await;
    over.store(true, Ordering::SeqCst);
    let r = app.next_result(Duration::from_secs(15)).await.body;
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["attempts"], 1, "held calls do not use the retry budget");
    assert!(failures.load(Ordering::SeqCst) >= 2);
    app.stop().await;
}
