//! The process as operators see it: start-up failures are clear, SIGTERM loses nothing,
//! and the HTTP endpoints tell the truth.

mod common;

use std::time::Duration;

use common::{TOKEN, TestApp, ok_answer, push_job, test_settings};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

/// Waits until `n` notifications are under way, however they were batched into calls.
async fn wait_for_calls(mock: &MockServer, n: usize) {
    for _ in 0..200 {
        if common::notifications_sent(mock).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the worker never sent {n} notifications");
}

/// Starts the binary (as `configure` has it), publishes `n` jobs and waits until all `n`
/// calls are under way.
async fn worker_busy_with(
    settings: &pushwoosh_worker::settings::Settings,
    mock: &MockServer,
    n: usize,
    configure: impl FnOnce(&mut tokio::process::Command),
) -> (
    tokio::process::Child,
    lapin::Connection,
    lapin::Channel,
    lapin::Consumer,
) {
    common::declare_topology(settings).await;
    let (conn, channel, results) = common::observe(settings).await;
    let mut cmd = common::worker_command(settings);
    configure(&mut cmd);
    let child = cmd.spawn().unwrap();
    for i in 0..n {
        common::publish_job(&channel, settings, &push_job(&format!("inflight-{i}"))).await;
    }
    wait_for_calls(mock, n).await;
    (child, conn, channel, results)
}

/// How long the broker may take to requeue what a stopped worker gave back.
const WAIT_REQUEUE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn sigterm_finishes_the_jobs_in_flight_and_exits_0_without_duplicates() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["C"]})).set_delay(Duration::from_millis(1500)))
        .mount(&mock)
        .await;
    let settings = test_settings(&mock.uri()).await;
    let (mut child, _conn, channel, mut results) =
        worker_busy_with(&settings, &mock, 20, |_| {}).await;
    common::sigterm(&child).await;
    // Whether it finished the jobs in flight before it exited: their results, below.
    let status = common::exit_status(&mut child, Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status:?}");
    let log = common::worker_log(&settings);
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(
        !log.contains(" ERROR "),
        "a clean stop logs no error (an operator would be paged for it):\n{log}"
    );

    common::one_ok_result_each(&mut results, 20, Duration::from_secs(5)).await;
    assert!(
        tokio::time::timeout(
            Duration::from_millis(500),
            futures_util::StreamExt::next(&mut results)
        )
        .await
        .is_err(),
        "no duplicate result"
    );
    assert_eq!(
        common::queue_depth(&channel, &settings.amqp.jobs_queue).await,
        0
    );
    common::cleanup(&settings);
}

#[tokio::test]
async fn past_the_grace_period_unsent_jobs_go_back_to_the_queue_and_none_is_lost() {
    // Calls that neither end nor time out for two minutes: a worker that waited for them
    // past its grace period would not exit within the half-minute allowed below.
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["C"]})).set_delay(Duration::from_secs(120)))
        .mount(&slow)
        .await;
    let mut settings = test_settings(&slow.uri()).await;
    settings.shutdown.grace_period_ms = 300;
    let (mut child, _conn, channel, mut results) = worker_busy_with(&settings, &slow, 10, |cmd| {
        cmd.env("PUSHWOOSH_WORKER__PUSHWOOSH__TIMEOUT_MS", "120000");
    })
    .await;
    common::sigterm(&child).await;
    let status = common::exit_status(&mut child, Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        common::notifications_sent(&slow).await,
        10,
        "the stopping worker made no other call"
    );
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            futures_util::StreamExt::next(&mut results)
        )
        .await
        .is_err(),
        "a handed-back job has no result yet"
    );
    assert_eq!(
        common::queue_depth_reaches(&channel, &settings.amqp.jobs_queue, 10, WAIT_REQUEUE).await,
        10,
        "every handed-back job is back in the queue"
    );

    // Another worker picks them up: each ends with exactly one result.
    let fast = common::answering_ok().await;
    settings.pushwoosh.api_url = format!("{}/json/1.3", fast.uri());
    let mut child = common::worker_command(&settings).spawn().unwrap();
    common::one_ok_result_each(&mut results, 10, Duration::from_secs(10)).await;
    // A handed-back push is sent again with the transactionId of its first call.
    common::assert_resent_with_first_transaction_ids(&slow, &fast).await;
    common::sigterm(&child).await;
    assert!(
        common::exit_status(&mut child, Duration::from_secs(30))
            .await
            .success()
    );
    common::cleanup(&settings);
}

#[tokio::test]
async fn an_unreachable_broker_is_a_clear_error_and_a_non_zero_exit() {
    let mut settings = test_settings("http://127.0.0.1:9").await;
    settings.amqp.url = "amqp://guest:secret-pw@127.0.0.1:1/%2f".into();
    settings.amqp.startup_timeout_ms = 1_000;
    let output = common::worker_command(&settings)
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("could not connect to RabbitMQ at amqp://guest:***@127.0.0.1:1"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret-pw"));
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn no_token_is_a_clear_error_at_start() {
    let settings = test_settings("http://127.0.0.1:9").await;
    let output = common::worker_command(&settings)
        .env_remove("PUSHWOOSH_AUTH_TOKEN")
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no Pushwoosh API token configured"),
        "{stderr}"
    );
}

#[tokio::test]
async fn endpoints_tell_the_truth() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["M"]})))
        .mount(&app.mock)
        .await;
    assert_eq!(common::http_get(app.http_addr, "/livez").await.0, 200);
    assert_eq!(common::http_get(app.http_addr, "/healthz").await.0, 200);
    assert_eq!(common::http_get(app.http_addr, "/readyz").await.0, 200);
    app.publish_job(&push_job("inflight-1")).await;
    app.next_result(Duration::from_secs(10)).await;
    // The result can arrive before the worker has seen its confirm and acked the job:
    // the metrics settle a moment later.
    let expected = [
        r#"pushwoosh_worker_jobs_total{kind="push",outcome="ok"} 1"#,
        r#"pushwoosh_worker_api_calls_total{method="createMessage",status="200"} 1"#,
        r#"pushwoosh_worker_api_call_duration_seconds_count{method="createMessage"} 1"#,
        "pushwoosh_worker_jobs_in_flight 0",
        "pushwoosh_worker_consuming 1",
        "pushwoosh_worker_broker_connected 1",
    ];
    let metrics = app.assert_metrics(&expected).await;
    assert!(!metrics.contains(TOKEN));
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_503_until_consuming() {
    use pushwoosh_worker::metrics::Metrics;
    use pushwoosh_worker::worker::Readiness;
    use std::sync::Arc;
    let readiness = Arc::new(Readiness::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(pushwoosh_worker::http::serve(
        listener,
        Arc::new(Metrics::new()),
        readiness.clone(),
        stop.clone(),
    ));
    assert_eq!(common::http_get(addr, "/readyz").await.0, 503);
    assert_eq!(common::http_get(addr, "/livez").await.0, 200);
    readiness.set_consuming(true);
    assert_eq!(common::http_get(addr, "/readyz").await.0, 200);
    stop.cancel();
}

/// `run` builds its runtime from `runtime.worker_threads` (default 1) and says so in
/// /metrics.
#[tokio::test]
async fn the_binary_runs_on_the_configured_number_of_runtime_threads() {
    let mock = common::answering_ok().await;
    let settings = test_settings(&mock.uri()).await;
    common::declare_topology(&settings).await;
    for (threads, expected) in [(None, 1.0), (Some("3"), 3.0)] {
        let addr = common::free_local_addr();
        let mut cmd = common::worker_command(&settings);
        cmd.env("PUSHWOOSH_WORKER__HTTP__LISTEN", addr.to_string());
        if let Some(threads) = threads {
            cmd.env("PUSHWOOSH_WORKER__RUNTIME__WORKER_THREADS", threads);
        }
        let mut child = cmd.spawn().unwrap();
        assert!(
            common::wait_ready(addr, Duration::from_secs(10)).await,
            "the worker never became ready: {}",
            common::worker_log(&settings)
        );
        let metrics = common::http_get(addr, "/metrics").await.1;
        assert_eq!(
            common::metric(&metrics, "pushwoosh_worker_runtime_worker_threads"),
            expected,
            "{metrics}"
        );
        common::sigterm(&child).await;
        let status = common::exit_status(&mut child, Duration::from_secs(20)).await;
        assert!(status.success(), "exit status {status:?}");
    }
    common::cleanup(&settings);
}
