//! Retries through the broker's delay queues: what is retried, how often, with which
//! transactionId, and what happens when the budget runs out.

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, header_str, ok_answer, push_with_notifications};
use pushwoosh_worker::broker::publisher::headers;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(15);

/// Every push here has two notifications: each must keep its own transactionId and get
/// its own message code.
const NOTIFICATIONS: usize = 2;

#[tokio::test]
async fn a_500_500_200_push_ends_ok_after_three_calls_with_one_transaction_id() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .and(path("/json/1.3/createMessage"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&app.mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/json/1.3/createMessage"))
        .respond_with(ok_answer(
            json!({"Messages": ["AAAA-00000000-00000001", "AAAA-00000000-00000002"]}),
        ))
        .with_priority(2)
        .mount(&app.mock)
        .await;
    app.publish_job(&push_with_notifications("retry-me", NOTIFICATIONS))
        .await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["attempts"], 3);
    assert_eq!(
        r["message_codes"],
        json!(["AAAA-00000000-00000001", "AAAA-00000000-00000002"])
    );
    let calls = app.calls_to("createMessage").await;
    assert_eq!(calls.len(), 3);
    for notification in 0..NOTIFICATIONS {
        let ids: Vec<_> = calls
            .iter()
            .map(|c| c["request"]["notifications"][notification]["transactionId"].clone())
            .collect();
        assert!(
            ids.iter().all(|id| *id == ids[0] && id.is_string()),
            "{ids:?}"
        );
    }
    assert_ne!(
        calls[0]["request"]["notifications"][0]["transactionId"],
        calls[0]["request"]["notifications"][1]["transactionId"]
    );
    // One result only, and the metrics saw the retries.
    app.assert_no_result(Duration::from_millis(300)).await;
    let metrics = app.metrics().await;
    assert_eq!(
        common::metric(
            &metrics,
            r#"pushwoosh_worker_retries_total{kind="push",reason="500"}"#
        ),
        2.0,
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn when_retries_run_out_the_job_fails_and_is_dead_lettered_with_reasons() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("down for maintenance"))
        .mount(&app.mock)
        .await;
    app.publish_job(&push_with_notifications("never-works", NOTIFICATIONS))
        .await;
    let result = app.next_result(WAIT).await;
    let r = &result.body;
    assert_eq!(r["outcome"], "failed", "{r}");
    assert_eq!(r["status_code"], 503);
    assert_eq!(r["attempts"], 3);
    let message = r["status_message"].as_str().unwrap();
    assert!(message.contains("down for maintenance"), "{message}");
    assert!(message.contains("retry.max_attempts=3"), "{message}");
    assert_eq!(result.routing_key, "push.failed");
    assert_eq!(app.total_calls().await, 3);

    let dead = app.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    let original: serde_json::Value = serde_json::from_slice(&letter.data).unwrap();
    assert_eq!(
        original,
        push_with_notifications("never-works", NOTIFICATIONS),
        "the dead letter holds the job as sent"
    );
    let h = |k| header_str(&letter.properties, k);
    assert_eq!(
        h(headers::DEAD_REASON).as_deref(),
        Some("retries_exhausted")
    );
    assert_eq!(h(headers::JOB_ID).as_deref(), Some("never-works"));
    assert!(h(headers::LAST_ERROR).unwrap().contains("HTTP 503"));
    app.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let mut app = TestApp::spawn_with(|s| {
        s.retry.max_delay_ms = 5_000;
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["A", "B"]})))
        .with_priority(2)
        .mount(&app.mock)
        .await;
    let started = Instant::now();
    app.publish_job(&push_with_notifications("slow-down", NOTIFICATIONS))
        .await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["attempts"], 2);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retry_after_beyond_the_elapsed_budget_fails_now() {
    let mut app = TestApp::spawn_with(|s| {
        s.retry.max_delay_ms = 60_000;
        s.retry.max_elapsed_ms = 2_000;
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
        .mount(&app.mock)
        .await;
    app.publish_job(&push_with_notifications("too-late", NOTIFICATIONS))
        .await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["status_code"], 429);
    assert_eq!(r["attempts"], 1);
    assert!(
        r["status_message"]
            .as_str()
            .unwrap()
            .contains("retry.max_elapsed_ms")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_403_inside_http_200_fails_without_retry_and_is_dead_lettered() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status_code": 403, "status_message": "Token restrictions forbid this operation"})))
        .mount(&app.mock)
        .await;
    app.publish_job(&push_with_notifications("forbidden", NOTIFICATIONS))
        .await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["status_code"], 403);
    assert_eq!(
        r["status_message"],
        "Token restrictions forbid this operation"
    );
    assert_eq!(app.total_calls().await, 1);
    let dead = app.dead_letters().await;
    assert_eq!(
        header_str(&dead[0].properties, headers::DEAD_REASON).as_deref(),
        Some("failed")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_timed_out_push_is_retried_with_the_same_transaction_id() {
    let mut app = TestApp::spawn_with(|s| s.pushwoosh.timeout_ms = 300).await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["X", "Y"]})).set_delay(Duration::from_secs(5)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["X", "Y"]})))
        .with_priority(2)
        .mount(&app.mock)
        .await;
    app.publish_job(&push_with_notifications("hang-once", NOTIFICATIONS))
        .await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["attempts"], 2);
    let calls = app.calls_to("createMessage").await;
    assert_eq!(
        calls[0]["request"]["notifications"][0]["transactionId"],
        calls[1]["request"]["notifications"][0]["transactionId"]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_timed_out_sms_is_not_sent_again_and_says_delivery_unknown() {
    let mut app = TestApp::spawn_with(|s| s.pushwoosh.timeout_ms = 300).await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["X"]})).set_delay(Duration::from_secs(5)))
        .mount(&app.mock)
        .await;
    app.publish_job(&json!({"id": "otp-1", "kind": "sms", "application": "A-B",
        "notifications": [{"send_date": "now", "content": "code 1234", "devices": ["+15550001"]}]}))
        .await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["delivery"], "unknown");
    assert_eq!(r["status_code"], serde_json::Value::Null);
    assert!(r["status_message"].as_str().unwrap().contains("time-out"));
    assert_eq!(
        app.total_calls().await,
        1,
        "an SMS that may have gone out is not repeated"
    );
    let dead = app.dead_letters().await;
    assert_eq!(
        header_str(&dead[0].properties, headers::DEAD_REASON).as_deref(),
        Some("delivery_unknown")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_sms_answered_500_did_not_go_out_and_is_retried() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["S"]})))
        .with_priority(2)
        .mount(&app.mock)
        .await;
    app.publish_job(&json!({"id": "otp-2", "kind": "sms", "application": "A-B",
        "notifications": [{"send_date": "now", "content": "code", "devices": ["+15550002"]}]}))
        .await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["attempts"], 2);
    app.stop().await;
}
