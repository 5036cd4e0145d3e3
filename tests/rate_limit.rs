//! The client-side rate limiter end to end, against the sandbox: the worker configured to
//! the API's limit gets no 429 and shows the time jobs waited; 429s slow it down once
//! and every job still ends `ok` exactly once.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestApp, metric, metric_or_zero, push_job};
use pushwoosh_worker::sandbox::{self, SandboxConfig, SandboxHandle};
use pushwoosh_worker::settings::Settings;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn sandbox() -> SandboxHandle {
    sandbox::start(SandboxConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SandboxConfig::default()
    })
    .await
    .expect("the sandbox starts")
}

/// A worker calling `sandbox`, with its limiter configured by `configure`.
async fn worker(sandbox: &SandboxHandle, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let base = sandbox.base_url();
    TestApp::spawn_with(move |s| {
        s.pushwoosh.api_url = base;
        // The limiter alone: one call per job, so calls can be counted against jobs.
        s.rate_limit.enabled = true;
        s.batch.enabled = false;
        configure(s);
    })
    .await
}

/// Publishes `n` pushes and returns each job's results (job id -> results).
async fn run_pushes(app: &mut TestApp, n: usize) -> HashMap<String, Vec<serde_json::Value>> {
    for i in 0..n {
        app.publish_job(&push_job(&format!("rl-{i}"))).await;
    }
    let mut results: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for _ in 0..n {
        let r = app.next_result(WAIT).await.body;
        let id = r["job_id"].as_str().unwrap().to_owned();
        results.entry(id).or_default().push(r);
    }
    app.assert_no_result(Duration::from_millis(300)).await;
    assert_eq!(results.len(), n, "every job has a result");
    results
}

/// Calls refused with 429: a series born at the first one.
const PUSH_429: &str =
    r#"pushwoosh_worker_api_calls_total{method="createMessage",status="http_429"}"#;
const THROTTLED: &str = r#"pushwoosh_worker_rate_limit_throttled_total{method="createMessage"}"#;

#[tokio::test]
async fn configured_to_the_apis_limit_the_worker_gets_no_429_and_shows_the_wait() {
    // 600 a minute, sped up 60 times: the sandbox allows 10 createMessage calls in any
    // sliding second, and the worker keeps its 600 a minute (one call per 100 ms). Its
    // slack, which absorbs jitter between the worker and the API, scales with the
    // window: 100 ms on the sandbox's second is 6 s on a minute (calls 110 ms apart).
    let sandbox = sandbox().await;
    sandbox.set_rate_limit_per("createMessage", Some(10), Duration::from_secs(1));
    let mut app = worker(&sandbox, |s| {
        s.rate_limit.create_message_per_minute = 600;
        s.rate_limit.window_slack_ms = 6_000;
    })
    .await;
    let jobs = 30;
    let results = run_pushes(&mut app, jobs).await;
    for (id, rs) in &results {
        assert_eq!(rs.len(), 1, "{id}: one result");
        assert_eq!(rs[0]["outcome"], "ok", "{}", rs[0]);
        assert_eq!(rs[0]["attempts"], 1, "no call was refused: {}", rs[0]);
    }
    assert_eq!(
        sandbox.requests("createMessage"),
        jobs as u64,
        "no 429, no retry"
    );
    let metrics = app.metrics().await;
    assert_eq!(metric_or_zero(&metrics, PUSH_429), 0.0, "{metrics}");
    assert_eq!(metric(&metrics, THROTTLED), 0.0);
    // 30 jobs arriving together, one slot every 110 ms: they waited ~48 s in total.
    let waited = metric(
        &metrics,
        r#"pushwoosh_worker_rate_limit_wait_seconds_sum{method="createMessage"}"#,
    );
    assert!(waited > 10.0, "jobs waited {waited} s in all\n{metrics}");
    assert_eq!(
        metric(
            &metrics,
            r#"pushwoosh_worker_rate_limit_wait_seconds_count{method="createMessage"}"#
        ),
        jobs as f64
    );
    app.stop().await;
    sandbox.shutdown();
}

#[tokio::test]
async fn without_the_limiter_the_same_sandbox_answers_429() {
    // The control for the test above: its sandbox does refuse a worker that does not wait.
    let sandbox = sandbox().await;
    sandbox.set_rate_limit_per("createMessage", Some(10), Duration::from_secs(1));
    let mut app = worker(&sandbox, |s| s.rate_limit.enabled = false).await;
    let results = run_pushes(&mut app, 30).await;
    assert!(results.values().all(|rs| rs.len() == 1), "{results:?}");
    let metrics = app.metrics().await;
    assert!(metric(&metrics, PUSH_429) > 0.0, "{metrics}");
    assert!(sandbox.requests("createMessage") > 30);
    app.stop().await;
    sandbox.shutdown();
}

#[tokio::test]
async fn a_few_429s_slow_the_worker_down_once_and_every_job_still_ends_ok_once() {
    // Three calls in flight together are refused (Retry-After: 1); the rest wait out the
    // pause, then go at half the rate; the three are retried through the retry queues.
    let sandbox = sandbox().await;
    sandbox.set_latency(Duration::from_millis(300));
    sandbox.fail_next(3, 429);
    let mut app = worker(&sandbox, |s| {
        s.rate_limit.window_slack_ms = 0;
        // So that the slow-down is still visible when the test looks.
        s.rate_limit.recovery_interval_ms = 600_000;
        s.retry.max_attempts = 5;
    })
    .await;
    let jobs = 20;
    let results = run_pushes(&mut app, jobs).await;
    let mut retried = 0;
    for (id, rs) in &results {
        assert_eq!(rs.len(), 1, "{id}: exactly one result");
        assert_eq!(rs[0]["outcome"], "ok", "{}", rs[0]);
        if rs[0]["attempts"] != 1 {
            assert_eq!(rs[0]["attempts"], 2, "{}", rs[0]);
            retried += 1;
        }
    }
    assert_eq!(retried, 3);
    assert_eq!(sandbox.requests("createMessage"), jobs as u64 + 3);
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, PUSH_429), 3.0, "{metrics}");
    assert_eq!(metric(&metrics, THROTTLED), 3.0);
    // Three 429s from calls made at the same rate: one slow-down step, not three.
    assert_eq!(
        metric(
            &metrics,
            r#"pushwoosh_worker_rate_limit_slowdown{method="createMessage"}"#
        ),
        2.0,
        "{metrics}"
    );
    app.stop().await;
    sandbox.shutdown();
}

#[tokio::test]
async fn jobs_waiting_for_a_slot_go_back_to_the_queue_when_the_worker_stops() {
    // One call a minute: the first job goes out, the two others wait a minute and two.
    // Should a waiting job not let go, the worker would send it when its slot comes, or
    // give up on it after pushwoosh.timeout_ms + 5 s (125 s here): either way long after
    // the half-minute in which `stop` must return.
    let mut app = TestApp::spawn_with(|s| {
        // Batching stays on: the two waiting jobs sit in one batch, which is not sent.
        s.rate_limit.enabled = true;
        s.rate_limit.create_message_per_minute = 1;
        s.shutdown.grace_period_ms = 300;
        s.pushwoosh.timeout_ms = 120_000;
    })
    .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(common::ok_answer(json!({"Messages": ["CODE"]})))
        .mount(&app.mock)
        .await;
    for i in 0..3 {
        app.publish_job(&push_job(&format!("held-{i}"))).await;
    }
    let first = app.next_result(WAIT).await.body;
    assert_eq!(first["outcome"], "ok", "{first}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.stop().await;
    app.assert_no_result(Duration::from_millis(300)).await;
    assert_eq!(
        app.calls_to("createMessage").await.len(),
        1,
        "the stop did not wait for a waiting job's slot"
    );
    // The broker puts handed-back jobs back asynchronously (after the worker's channel
    // closes, for any it had taken again meanwhile): give it a moment.
    let queue = app.settings.amqp.jobs_queue.clone();
    let depth = common::queue_depth_reaches(&app.channel, &queue, 2, Duration::from_secs(3)).await;
    assert_eq!(depth, 2, "both waiting jobs are back in the queue");
}

/// Two workers on one queue, each configured with the account's whole limit (600 a
/// minute, sped up 60 times as above), with the ledger on or off; `n` pushes published.
async fn two_replicas(ledger: bool, n: usize) -> (SandboxHandle, [String; 2], usize) {
    let sandbox = sandbox().await;
    sandbox.set_rate_limit_per("createMessage", Some(10), Duration::from_secs(1));
    let mut first = worker(&sandbox, |s| {
        s.rate_limit.create_message_per_minute = 600;
        s.rate_limit.window_slack_ms = 6_000;
        s.ledger.enabled = ledger;
    })
    .await;
    let second = TestApp::start(wiremock::MockServer::start().await, first.settings.clone()).await;
    let results = run_pushes(&mut first, n).await;
    let ok = results
        .values()
        .filter(|rs| rs.len() == 1 && rs[0]["outcome"] == "ok")
        .count();
    let metrics = [first.metrics().await, second.metrics().await];
    first.stop().await;
    let mut second = second;
    second.stop().await;
    (sandbox, metrics, ok)
}

const PUSH_200: &str = r#"pushwoosh_worker_api_calls_total{method="createMessage",status="200"}"#;

#[tokio::test]
async fn two_replicas_with_the_ledger_share_the_accounts_budget_and_get_no_429() {
    // Each replica alone would call at the whole limit: only the budget they share in
    // Redis keeps the two of them under it.
    let jobs = 40;
    let (sandbox, metrics, ok) = two_replicas(true, jobs).await;
    assert_eq!(ok, jobs, "every job one result, ok");
    assert_eq!(
        sandbox.requests("createMessage"),
        jobs as u64,
        "no 429, no retry"
    );
    for m in &metrics {
        assert_eq!(metric_or_zero(m, PUSH_429), 0.0, "{m}");
        assert!(metric(m, PUSH_200) > 0.0, "both replicas called: {m}");
    }
    assert_eq!(
        metric(&metrics[0], PUSH_200) + metric(&metrics[1], PUSH_200),
        jobs as f64
    );
    sandbox.shutdown();
}

#[tokio::test]
async fn two_replicas_without_the_ledger_each_take_their_whole_figure_and_get_429s() {
    // The control for the test above: per process, the same figure is each replica's.
    let (sandbox, metrics, ok) = two_replicas(false, 40).await;
    assert_eq!(ok, 40, "429s are retried: every job still ends ok");
    let refused: f64 = metrics.iter().map(|m| metric_or_zero(m, PUSH_429)).sum();
    assert!(refused > 0.0, "{metrics:?}");
    sandbox.shutdown();
}
