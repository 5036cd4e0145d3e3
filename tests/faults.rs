//! Faults injected for real: a worker killed with SIGKILL, a poison job, a stop with a
//! retry parked, a worker killed while it holds parked retries. Each counts that no job
//! is lost. (Malformed jobs: tests/fuzz.rs.)

mod common;

use std::time::Duration;

use common::{TestApp, header_str, ok_answer, push_job, test_settings};
use lapin::options::{BasicGetOptions, BasicNackOptions};
use pushwoosh_worker::broker::publisher::headers;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn kill_9_mid_flight_then_restart_loses_nothing_and_resends_no_push_twice() {
    let hanging = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["C"]})).set_delay(Duration::from_secs(30)))
        .mount(&hanging)
        .await;
    let mut settings = test_settings(&hanging.uri()).await;
    settings.pushwoosh.timeout_ms = 60_000;
    common::declare_topology(&settings).await;
    let (_conn, channel, mut results) = common::observe(&settings).await;
    for i in 0..15 {
        common::publish_job(&channel, &settings, &push_job(&format!("k9-{i}"))).await;
    }
    let mut child = common::worker_command(&settings).spawn().unwrap();
    for _ in 0..400 {
        if common::notifications_sent(&hanging).await >= 15 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(common::notifications_sent(&hanging).await, 15);
    child.kill().await.unwrap(); // SIGKILL
    child.wait().await.unwrap();

    let fine = common::answering_ok().await;
    settings.pushwoosh.api_url = format!("{}/json/1.3", fine.uri());
    let mut child = common::worker_command(&settings).spawn().unwrap();
    // The new worker first waits out the dead one's claims in the ledger (its calls could
    // still have been under way: HTTP time-out and a grace), then calls again with the
    // same transactionIds. The limit only guards against a hang.
    let results = common::one_ok_result_each(&mut results, 15, Duration::from_secs(120)).await;
    for r in results.values() {
        assert_eq!(r["redelivered"], true, "the broker redelivered it: {r}");
    }
    common::assert_resent_with_first_transaction_ids(&hanging, &fine).await;
    common::sigterm(&child).await;
    assert!(
        common::exit_status(&mut child, Duration::from_secs(30))
            .await
            .success()
    );
    common::cleanup(&settings);
}

#[tokio::test]
async fn a_poison_job_fails_with_a_result_after_the_delivery_limit() {
    let mock = common::answering_ok().await;
    let mut settings = test_settings(&mock.uri()).await;
    settings.amqp.delivery_limit = 3;
    common::declare_topology(&settings).await;
    // Three workers took it and died without settling it (simulated: returned unsettled).
    let (_conn, channel, _) = common::observe(&settings).await;
    common::publish_job(&channel, &settings, &push_job("poison-1")).await;
    for _ in 0..3 {
        let mut got = None;
        for _ in 0..50 {
            got = channel
                .basic_get(
                    settings.amqp.jobs_queue.as_str().into(),
                    BasicGetOptions::default(),
                )
                .await
                .unwrap();
            if got.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        got.expect("the job is in the queue")
            .delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
            .unwrap();
    }
    let mut app = TestApp::start(mock, settings).await;
    let r = app.next_result(Duration::from_secs(10)).await.body;
    assert_eq!(r["job_id"], "poison-1");
    assert_eq!(r["outcome"], "failed");
    assert!(
        r["status_message"]
            .as_str()
            .unwrap()
            .contains("poison job: delivered 3 times"),
        "{r}"
    );
    assert_eq!(
        app.total_calls().await,
        0,
        "a poison job is not tried again"
    );
    let dead = app.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        header_str(&dead[0].properties, headers::DEAD_REASON).as_deref(),
        Some("poison")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_stop_with_a_long_backoff_pending_is_quick_and_the_retry_survives() {
    let app = TestApp::spawn_with(|s| {
        s.retry.initial_delay_ms = 100;
        s.retry.max_delay_ms = 8_000;
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "5"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["LATER"]})))
        .with_priority(2)
        .mount(&app.mock)
        .await;
    // A connection of the test's own, to look at the queues after the worker is gone.
    let (_conn, channel, _) = common::observe(&app.settings).await;
    app.publish_job(&push_job("parked")).await;
    // Parked in a retry queue of the broker, then taken from it by the worker, which
    // holds it (unacknowledged) until it is due.
    let mut held = 0.0;
    for _ in 0..200 {
        held = common::metric(&app.metrics().await, "pushwoosh_worker_retries_held");
        if held == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(held, 1.0, "the worker holds the parked retry");
    assert_eq!(app.total_calls().await, 1);
    let (settings, mock) = app.stop_keeping_queues().await;
    // The backoff does not hold the stop: when the stop returns, the retry is back in
    // its retry queue (its 5 s are not over) and the stopped worker made no other call.
    assert_eq!(
        common::parked_retries(&channel, &settings).await,
        1,
        "the backoff does not hold the stop"
    );
    assert_eq!(
        common::queue_depth(&channel, &settings.amqp.jobs_queue).await,
        0
    );
    assert_eq!(mock.received_requests().await.unwrap().len(), 1);

    // The retry waits in the broker, not in the stopped worker; a new worker finishes it.
    let mut second = TestApp::start(mock, settings).await;
    // Watched on the test's own queue (the new worker's results go to both).
    let r = second.next_result(Duration::from_secs(15)).await.body;
    assert_eq!(r["job_id"], "parked");
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["attempts"], 2);
    second.stop().await;
}

/// Ten SMS whose first call is answered 500 with a `Retry-After` of 5 s: each is parked,
/// and the worker holds the ten retries until they are due. Killed then (SIGKILL), it
/// acks none of them: the broker keeps them, and the next worker gives each back when it
/// is due and sends it, once.
#[tokio::test]
async fn kill_9_while_holding_parked_retries_loses_none_and_sends_each_once() {
    const JOBS: usize = 10;
    let mock = common::first_calls_then_ok(
        ResponseTemplate::new(500).insert_header("Retry-After", "5"),
        JOBS as u64,
        "SMS-CODE",
    )
    .await;
    let mut settings = test_settings(&mock.uri()).await;
    settings.retry.max_delay_ms = 8_000;
    // A port of its own, to read the killed worker's metrics.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    settings.http.listen = format!("127.0.0.1:{port}");
    let addr: std::net::SocketAddr = settings.http.listen.parse().unwrap();
    common::declare_topology(&settings).await;
    let (_conn, channel, mut results) = common::observe(&settings).await;
    for i in 0..JOBS {
        let job = json!({"id": format!("held-{i}"), "kind": "sms", "application": "A-B",
                         "notifications": [{"send_date": "now", "content": "code",
                                            "devices": ["+1234567890"]}]});
        common::publish_job(&channel, &settings, &job).await;
    }
    let mut child = common::worker_command(&settings)
        .env("PUSHWOOSH_WORKER__HTTP__LISTEN", &settings.http.listen)
        // Every first call failing is not Pushwoosh down here: the breaker stays out of it.
        .env("PUSHWOOSH_WORKER__BREAKER__ENABLED", "false")
        .spawn()
        .unwrap();
    let mut held = 0.0;
    for _ in 0..400 {
        let (status, text) = common::http_get(addr, "/metrics").await;
        if status == 200 {
            held = common::metric(&text, "pushwoosh_worker_retries_held");
            if held == JOBS as f64 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(held, JOBS as f64, "the worker holds every parked retry");
    child.kill().await.unwrap(); // SIGKILL
    child.wait().await.unwrap();
    assert_eq!(mock.received_requests().await.unwrap().len(), JOBS);

    let mut second = TestApp::start(mock, settings).await;
    // Watched on the test's own queue (the new worker's results go to both).
    let results = common::one_ok_result_each(&mut results, JOBS, Duration::from_secs(30)).await;
    for (id, r) in &results {
        assert_eq!(r["attempts"], 2, "{id}: {r}");
        assert_eq!(r["message_codes"], json!(["SMS-CODE"]), "{id}: {r}");
    }
    assert_eq!(
        second.mock.received_requests().await.unwrap().len(),
        2 * JOBS,
        "each job's failed call and one that went out"
    );
    second.stop().await;
}
