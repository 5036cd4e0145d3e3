//! `expires_at` and the retry budget holding through a retry, a rate-limit slot, an open breaker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use pushwoosh_worker::broker::publisher::headers;
use pushwoosh_worker::settings::Settings;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::common::{self, TestApp, header_str, ok_answer};
use crate::support::{WAIT, publish_to, sms};

fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[tokio::test]
async fn a_job_whose_expires_at_has_passed_is_not_sent() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["X"]})))
        .mount(&app.mock)
        .await;
    let mut job = sms("late-1");
    job["expires_at"] = json!(rfc3339(Utc::now() - chrono::Duration::seconds(5)));
    publish_to(&app, "urgent.otp", &job).await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["job_id"], "late-1");
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["expired"], true);
    assert_eq!(r["status_code"], Value::Null);
    assert!(
        r["status_message"].as_str().unwrap().contains("expires_at"),
        "{r}"
    );
    assert_eq!(app.total_calls().await, 0, "an expired job is not sent");
    let dead = app.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        header_str(&dead[0].properties, headers::DEAD_REASON).as_deref(),
        Some("expired")
    );
    app.assert_metrics(&[r#"pushwoosh_worker_jobs_expired_total{lane="urgent"} 1"#])
        .await;

    // A bad timestamp is a clear rejection, not a crash.
    let mut bad = sms("bad-time");
    bad["expires_at"] = json!("tomorrow at noon");
    publish_to(&app, "urgent.otp", &bad).await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "rejected", "{r}");
    assert!(
        r["status_message"].as_str().unwrap().contains("expires_at"),
        "{r}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retry_that_would_come_after_expires_at_fails_the_job_now() {
    let mut app = TestApp::spawn_with(|s| {
        s.retry.initial_delay_ms = 20_000;
        s.retry.max_delay_ms = 20_000;
        s.retry.max_elapsed_ms = 120_000;
    })
    .await;
    // Pushwoosh asks for 20 s; the job has 10.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "20"))
        .mount(&app.mock)
        .await;
    let mut job = sms("otp-retry");
    job["expires_at"] = json!(rfc3339(Utc::now() + chrono::Duration::seconds(10)));
    publish_to(&app, "urgent.otp", &job).await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["job_id"], "otp-retry");
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["expired"], true, "{r}");
    assert!(
        r["status_message"]
            .as_str()
            .unwrap()
            .contains("before its next call"),
        "{r}"
    );
    assert_eq!(
        app.total_calls().await,
        1,
        "one call, no retry past the deadline"
    );
    assert_eq!(
        header_str(
            &app.dead_letters().await[0].properties,
            headers::DEAD_REASON
        )
        .as_deref(),
        Some("expired")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_job_waiting_for_a_rate_limit_slot_expires_there_without_a_call() {
    let mut app = TestApp::spawn_with(|s| {
        s.rate_limit.enabled = true;
        s.rate_limit.burst = 1;
        s.rate_limit.create_sms_message_per_minute = 1;
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["X"]})))
        .mount(&app.mock)
        .await;
    // The first takes the minute's only slot.
    app.publish_job(&sms("first")).await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(
        (r["job_id"].as_str(), r["outcome"].as_str()),
        (Some("first"), Some("ok"))
    );
    let mut job = sms("slot-late");
    job["expires_at"] = json!(rfc3339(Utc::now() + chrono::Duration::seconds(2)));
    app.publish_job(&job).await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["job_id"], "slot-late");
    assert_eq!(r["expired"], true, "{r}");
    assert!(
        r["status_message"]
            .as_str()
            .unwrap()
            .contains("rate-limit slot"),
        "{r}"
    );
    assert_eq!(r["attempts"], 0, "{r}");
    assert_eq!(app.total_calls().await, 1, "only the first job was sent");
    app.assert_metrics(&[r#"pushwoosh_worker_jobs_expired_total{lane="bulk"} 1"#])
        .await;
    app.stop().await;
}

/// Fails every call until `over`, then answers a success; remembers which job ids got
/// a success.
struct Outage {
    over: Arc<AtomicBool>,
    sent: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Respond for Outage {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if !self.over.load(Ordering::SeqCst) {
            return ResponseTemplate::new(500);
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let content = body["request"]["notifications"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.sent.lock().unwrap().push(content);
        ok_answer(json!({"Messages": ["X"]}))
    }
}

fn sms_saying(id: &str, content: &str) -> Value {
    let mut job = sms(id);
    job["notifications"][0]["content"] = json!(content);
    job
}

/// The breaker opens on the first failure and is tried again soon.
fn quick_breaker(s: &mut Settings) {
    s.breaker.failure_threshold = 1;
    s.breaker.initial_open_ms = 200;
    s.breaker.max_open_ms = 400;
}

async fn outage_app(
    configure: impl FnOnce(&mut Settings),
) -> (TestApp, Arc<AtomicBool>, Arc<std::sync::Mutex<Vec<String>>>) {
    let app = TestApp::spawn_with(|s| {
        quick_breaker(s);
        configure(s);
    })
    .await;
    let over = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .respond_with(Outage {
            over: over.clone(),
            sent: sent.clone(),
        })
        .mount(&app.mock)
        .await;
    (app, over, sent)
}

async fn breaker_opened(app: &TestApp) {
    for _ in 0..600 {
        let m = app.metrics().await;
        if common::metric_or_zero(&m, "pushwoosh_worker_breaker_open") > 0.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the breaker never opened");
}

#[tokio::test]
async fn a_job_held_behind_an_open_breaker_past_its_expires_at_is_not_sent() {
    let (mut app, over, sent) = outage_app(|_| {}).await;
    app.publish_job(&sms_saying("opener", "opener")).await;
    breaker_opened(&app).await;
    let expires = Utc::now() + chrono::Duration::seconds(2);
    let mut job = sms_saying("held-otp", "held-otp");
    job["expires_at"] = json!(rfc3339(expires));
    publish_to(&app, "urgent.otp", &job).await;
    // The outage lasts past the job's deadline.
    while Utc::now() < expires + chrono::Duration::milliseconds(300) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    over.store(true, Ordering::SeqCst);

    let mut results = BTreeMap::new();
    while results.len() < 2 {
        let r = app.next_result(WAIT).await.body;
        results.insert(r["job_id"].as_str().unwrap().to_owned(), r);
    }
    assert_eq!(
        results["opener"]["outcome"], "ok",
        "the outage fails no job without a deadline"
    );
    let held = &results["held-otp"];
    assert_eq!(held["outcome"], "failed", "{held}");
    assert_eq!(held["expired"], true, "{held}");
    assert_eq!(
        *sent.lock().unwrap(),
        ["opener"],
        "the expired job never went out"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_retry_budget_holds_while_the_breaker_is_open() {
    let (mut app, over, sent) = outage_app(|s| s.retry.max_elapsed_ms = 2_000).await;
    let started = Utc::now();
    app.publish_job(&sms_saying("budget", "budget")).await;
    breaker_opened(&app).await;
    while Utc::now() < started + chrono::Duration::milliseconds(2_500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    over.store(true, Ordering::SeqCst);
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["job_id"], "budget");
    assert_eq!(r["outcome"], "failed", "{r}");
    assert_eq!(
        r.get("expired"),
        None,
        "a spent retry budget is not an expires_at"
    );
    assert!(
        r["status_message"]
            .as_str()
            .unwrap()
            .contains("retry budget"),
        "{r}"
    );
    assert!(
        sent.lock().unwrap().is_empty(),
        "nothing went out after the budget"
    );
    assert_eq!(
        header_str(
            &app.dead_letters().await[0].properties,
            headers::DEAD_REASON
        )
        .as_deref(),
        Some("retries_exhausted")
    );
    app.stop().await;
}
