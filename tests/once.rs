//! Once per job id, against the real broker and the real Redis: a job published twice,
//! held by two workers at once, or redelivered after a worker was killed mid-call is
//! sent at most once, and every copy gets a result.

// The Send check of the worker's futures walks deep types (the redis crate's).
#![recursion_limit = "256"]

mod common;
#[path = "ledger/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestApp, json_props, ok_answer};
use pushwoosh_worker::settings::OnUnavailable;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

const WAIT: Duration = Duration::from_secs(30);

fn sms_job(id: &str) -> Value {
    json!({"id": id, "kind": "sms", "application": "A-B",
           "notifications": [{"send_date": "now", "content": format!("Your code, {id}"),
                              "devices": ["+1234567890"]}]})
}

fn whatsapp_job(id: &str) -> Value {
    json!({"id": id, "kind": "whatsapp", "application": "A-B",
           "notifications": [{"send_date": "now", "content": format!("Hello! {{{{1}}}} {id}"),
                              "content_id": "hello_world", "devices": ["whatsapp:+1234567890"],
                              "content_variables": {"1": "John"}, "language": "en_GB"}]})
}

fn targeted_job(id: &str) -> Value {
    json!({"id": id, "kind": "targeted", "devices_filter": "A(\"XXXXX-XXXXX\")",
           "send_date": "now", "content": {"en": id}})
}

/// A mock Pushwoosh that answers every method with a code of its own after `delay`.
async fn pushwoosh(delay: Duration) -> MockServer {
    let mock = MockServer::start().await;
    for (method_name, response) in [
        ("createMessage", json!({"Messages": ["PUSH-CODE"]})),
        ("createSMSMessage", json!({"Messages": ["SMS-CODE"]})),
        ("createWhatsAppMessage", json!({"Messages": ["WA-CODE"]})),
        (
            "createTargetedMessage",
            json!({"messageCode": "TARGETED-CODE"}),
        ),
    ] {
        Mock::given(method("POST"))
            .and(path(format!("/json/1.3/{method_name}")))
            .respond_with(ok_answer(response).set_delay(delay))
            .mount(&mock)
            .await;
    }
    mock
}

/// Calls the mock received that carry `needle` in their body: the job builders here put
/// the job's id in its content, since the request itself does not name the job.
async fn calls_with(mock: &MockServer, needle: &str) -> usize {
    mock.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        // The id ends its content: with the closing quote, "job-1" is not "job-10".
        .filter(|r| String::from_utf8_lossy(&r.body).contains(&format!("{needle}\"")))
        .count()
}

#[tokio::test]
async fn a_job_published_twice_is_sent_once_and_both_publishes_are_answered() {
    let mock = pushwoosh(Duration::ZERO).await;
    let settings = common::test_settings(&mock.uri()).await;
    let mut app = TestApp::start(mock, settings).await;
    let jobs = [
        ("twice-sms", sms_job("twice-sms"), vec!["SMS-CODE"]),
        ("twice-wa", whatsapp_job("twice-wa"), vec!["WA-CODE"]),
        (
            "twice-push",
            common::push_with("twice-push", json!({"content": "twice-push"})),
            vec!["PUSH-CODE"],
        ),
        (
            "twice-targeted",
            targeted_job("twice-targeted"),
            vec!["TARGETED-CODE"],
        ),
    ];
    for (_, job, _) in &jobs {
        app.publish_job(job).await;
    }
    let mut first = BTreeMap::new();
    for _ in 0..jobs.len() {
        let r = app.next_result(WAIT).await.body;
        first.insert(r["job_id"].as_str().unwrap().to_owned(), r);
    }
    // The producer publishes every one of them again.
    for (_, job, _) in &jobs {
        app.publish_job(job).await;
    }
    let mut second = BTreeMap::new();
    for _ in 0..jobs.len() {
        let r = app.next_result(WAIT).await.body;
        second.insert(r["job_id"].as_str().unwrap().to_owned(), r);
    }
    app.assert_no_result(Duration::from_millis(300)).await;
    for (id, _, codes) in &jobs {
        let (a, b) = (&first[*id], &second[*id]);
        assert_eq!(a["outcome"], "ok", "{a}");
        assert_eq!(a["message_codes"], json!(codes), "{a}");
        assert!(
            a.get("duplicate").is_none(),
            "the first is no duplicate: {a}"
        );
        assert_eq!(b["duplicate"], true, "{b}");
        assert_eq!(b["outcome"], a["outcome"]);
        assert_eq!(b["status_code"], a["status_code"]);
        assert_eq!(b["message_codes"], a["message_codes"]);
        assert_eq!(b["attempts"], 0, "no call for the duplicate: {b}");
        assert_eq!(calls_with(&app.mock, id).await, 1, "{id} was sent once");
    }
    let metrics = app.metrics().await;
    for kind in ["sms", "whatsapp", "push", "targeted"] {
        let series =
            format!(r#"pushwoosh_worker_ledger_duplicates_refused_total{{kind="{kind}"}}"#);
        assert_eq!(common::metric(&metrics, &series), 1.0, "{series}");
    }
    assert!(app.dead_letters().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_job_refused_before_anything_went_out_is_sent_when_published_again() {
    let mock = MockServer::start().await;
    // The first call is refused (nothing sent), the next one goes through.
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["LATER"]})))
        .with_priority(2)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_json(
                json!({"status_code": 210, "status_message": "Invalid devices list"}),
            ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&mock)
        .await;
    let settings = common::test_settings(&mock.uri()).await;
    let mut app = TestApp::start(mock, settings).await;
    app.publish_job(&sms_job("again-after-210")).await;
    let first = app.next_result(WAIT).await.body;
    assert_eq!(first["outcome"], "rejected", "{first}");
    app.publish_job(&sms_job("again-after-210")).await;
    let second = app.next_result(WAIT).await.body;
    assert_eq!(second["outcome"], "ok", "{second}");
    assert!(second.get("duplicate").is_none(), "{second}");
    assert_eq!(calls_with(&app.mock, "again-after-210").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn two_workers_holding_one_job_at_once_make_one_call() {
    const JOBS: usize = 20;
    // Slow enough that both copies of a job are in the workers' hands together.
    let mock = pushwoosh(Duration::from_millis(400)).await;
    let mut settings = common::test_settings(&mock.uri()).await;
    settings.amqp.prefetch = 64;
    let mut first = TestApp::start(mock, settings.clone()).await;
    // A second worker on the same queue, calling the same Pushwoosh (its settings say so).
    let second = TestApp::start(MockServer::start().await, settings).await;
    for i in 0..JOBS {
        let job = sms_job(&format!("both-{i}"));
        // Two copies, back to back: one reaches each worker.
        first.publish_job(&job).await;
        first.publish_job(&job).await;
    }
    let mut results: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for _ in 0..2 * JOBS {
        let r = first.next_result(WAIT).await.body;
        results
            .entry(r["job_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(r);
    }
    assert_eq!(results.len(), JOBS);
    for (id, copies) in &results {
        assert_eq!(copies.len(), 2, "{id}: a result for each copy");
        let duplicates = copies.iter().filter(|r| r["duplicate"] == true).count();
        assert_eq!(duplicates, 1, "{id}: one sent, one duplicate: {copies:?}");
        assert!(copies.iter().all(|r| r["outcome"] == "ok"), "{copies:?}");
        assert_eq!(calls_with(&first.mock, id).await, 1, "{id}: one call");
    }
    first.stop().await;
    drop(second);
}

#[tokio::test]
async fn a_worker_killed_mid_flight_leaves_no_sms_sent_twice_and_no_job_without_a_result() {
    const JOBS: usize = 200;
    let hanging = pushwoosh(Duration::from_millis(500)).await;
    let mut settings = common::test_settings(&hanging.uri()).await;
    settings.pushwoosh.timeout_ms = 5_000;
    common::declare_topology(&settings).await;
    let (_conn, channel, mut results) = common::observe(&settings).await;
    for i in 0..JOBS {
        common::publish(
            &channel,
            &settings.amqp.jobs_exchange,
            "jobs.test",
            &serde_json::to_vec(&sms_job(&format!("k9-{i:03}"))).unwrap(),
            json_props(),
        )
        .await;
    }
    let mut child = common::worker_command(&settings).spawn().unwrap();
    // Killed while calls are under way.
    for _ in 0..1_200 {
        if hanging.received_requests().await.unwrap_or_default().len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.kill().await.unwrap(); // SIGKILL
    child.wait().await.unwrap();

    // A new worker on the same queue and the same Pushwoosh.
    let mut child = common::worker_command(&settings).spawn().unwrap();
    let mut seen: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    while seen.len() < JOBS {
        let r = common::next_from(&mut results, Duration::from_secs(60))
            .await
            .body;
        seen.entry(r["job_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(r);
    }
    common::sigterm(&child).await;
    common::exit_status(&mut child, Duration::from_secs(30)).await;
    let requests = hanging.received_requests().await.unwrap_or_default();
    for i in 0..JOBS {
        let id = format!("k9-{i:03}");
        let sent = requests
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains(&format!("{id}\"")))
            .count();
        assert!(sent <= 1, "{id} sent {sent} times");
        let results = &seen[&id];
        for r in results {
            let ok = r["outcome"] == "ok";
            let unknown = r["outcome"] == "failed" && r["delivery"] == "unknown";
            assert!(ok || unknown, "{id}: ok or delivery unknown: {r}");
        }
    }
    common::cleanup(&settings);
}

/// A worker whose ledger is a Redis of the test's own, which the test stops and starts.
async fn worker_on_own_redis(redis: &support::OwnRedis, on_unavailable: OnUnavailable) -> TestApp {
    let mock = pushwoosh(Duration::ZERO).await;
    let mut settings = common::test_settings(&mock.uri()).await;
    settings.ledger.url = SecretString::from(redis.url());
    settings.ledger.on_unavailable = on_unavailable;
    settings.ledger.timeout_ms = 300;
    TestApp::start(mock, settings).await
}

#[tokio::test]
async fn redis_away_under_hold_stops_the_worker_and_every_job_goes_once_when_it_is_back() {
    const JOBS: usize = 10;
    let mut redis = support::OwnRedis::start();
    let mut app = worker_on_own_redis(&redis, OnUnavailable::Hold).await;
    app.publish_job(&sms_job("before")).await;
    assert_eq!(app.next_result(WAIT).await.body["outcome"], "ok");

    redis.stop();
    for i in 0..JOBS {
        app.publish_job(&sms_job(&format!("held-{i}"))).await;
    }
    let mut said = None;
    for _ in 0..600 {
        let (status, body) = common::http_get(app.http_addr, "/readyz").await;
        if status == 503 {
            said = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let said = said.expect("/readyz goes 503 while the ledger is away");
    assert!(said.contains("ledger"), "{said}");
    for i in 0..JOBS {
        let id = format!("held-{i}");
        assert_eq!(
            calls_with(&app.mock, &id).await,
            0,
            "{id}: nothing sent unrecorded"
        );
    }

    redis.restart();
    let mut results = BTreeMap::new();
    for _ in 0..JOBS {
        let r = app.next_result(Duration::from_secs(60)).await.body;
        let id = r["job_id"].as_str().unwrap().to_owned();
        assert!(results.insert(id, r).is_none(), "one result a job");
    }
    for i in 0..JOBS {
        let id = format!("held-{i}");
        assert_eq!(results[&id]["outcome"], "ok", "{}", results[&id]);
        assert_eq!(calls_with(&app.mock, &id).await, 1, "{id}: sent once");
    }
    assert!(common::wait_ready(app.http_addr, Duration::from_secs(30)).await);
    assert!(app.dead_letters().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn redis_away_under_send_goes_on_and_counts_what_went_unrecorded() {
    let mut redis = support::OwnRedis::start();
    let mut app = worker_on_own_redis(&redis, OnUnavailable::Send).await;
    redis.stop();
    app.publish_job(&sms_job("unrecorded")).await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(calls_with(&app.mock, "unrecorded").await, 1);
    let metrics = app.metrics().await;
    assert_eq!(
        common::metric(
            &metrics,
            r#"pushwoosh_worker_ledger_unrecorded_total{kind="sms"}"#
        ),
        1.0
    );
    assert_eq!(common::http_get(app.http_addr, "/readyz").await.0, 200);
    app.stop().await;
}

/// A Pushwoosh that remembers a push's transactionId for `window` only, as the real one
/// does for minutes: a call with a transactionId it still remembers is not a new send,
/// any other is. Counts the sends.
struct ForgetfulPushwoosh {
    window: Duration,
    seen: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    sends: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl wiremock::Respond for ForgetfulPushwoosh {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().unwrap();
        for n in body["request"]["notifications"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = n["transactionId"].as_str().unwrap_or_default().to_owned();
            let remembered = seen.get(&id).is_some_and(|at| now - *at < self.window);
            if !remembered {
                seen.insert(id, now);
                self.sends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        ok_answer(json!({"Messages": ["PUSH-CODE"]}))
    }
}

#[tokio::test]
async fn a_push_published_again_after_pushwoosh_forgot_its_transaction_id_is_not_sent_again() {
    let window = Duration::from_millis(200);
    let sends = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/json/1.3/createMessage"))
        .respond_with(ForgetfulPushwoosh {
            window,
            seen: Default::default(),
            sends: sends.clone(),
        })
        .mount(&mock)
        .await;
    let settings = common::test_settings(&mock.uri()).await;
    let mut app = TestApp::start(mock, settings).await;
    let job = common::push_with("forgotten", json!({"content": "forgotten"}));
    app.publish_job(&job).await;
    let first = app.next_result(WAIT).await.body;
    assert_eq!(first["outcome"], "ok", "{first}");
    assert_eq!(sends.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Pushwoosh forgets the transactionId; the producer publishes the job again.
    tokio::time::sleep(window * 2).await;
    app.publish_job(&job).await;
    let second = app.next_result(WAIT).await.body;
    assert_eq!(second["duplicate"], true, "{second}");
    assert_eq!(second["message_codes"], first["message_codes"], "{second}");
    assert_eq!(second["attempts"], 0, "no call for the duplicate: {second}");
    assert_eq!(calls_with(&app.mock, "forgotten").await, 1, "one call");
    assert_eq!(
        sends.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the customer got it once"
    );
    app.stop().await;
}

/// The broker holding two copies of one parked retry (given back to the queue, and the
/// ack of the retry queue's copy lost): both copies carry the same processing's owner
/// and attempts. An SMS is called once; the copy that comes while the call is under way
/// waits for its answer and repeats it, rather than calling it "delivery unknown".
#[tokio::test]
async fn two_copies_of_one_parked_sms_retry_make_one_call_and_two_ok_results() {
    let mock = pushwoosh(Duration::from_millis(300)).await;
    let settings = common::test_settings(&mock.uri()).await;
    let mut app = TestApp::start(mock, settings).await;
    let body = serde_json::to_vec(&sms_job("retried-twice")).unwrap();
    let mut headers = lapin::types::FieldTable::default();
    for (key, value) in [
        (pushwoosh_worker::broker::publisher::headers::ATTEMPTS, 1),
        (pushwoosh_worker::broker::publisher::headers::OWNER, 4242),
    ] {
        headers.insert(key.into(), lapin::types::AMQPValue::LongLongInt(value));
    }
    let parked = json_props().with_headers(headers);
    app.publish_raw(&body, parked.clone()).await;
    app.publish_raw(&body, parked).await;
    let a = app.next_result(WAIT).await.body;
    let b = app.next_result(WAIT).await.body;
    app.assert_no_result(Duration::from_millis(300)).await;
    for r in [&a, &b] {
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(r["message_codes"], json!(["SMS-CODE"]), "{r}");
    }
    assert_eq!(
        [&a, &b].iter().filter(|r| r["duplicate"] == true).count(),
        1,
        "{a} {b}"
    );
    assert_eq!(calls_with(&app.mock, "retried-twice").await, 1);
    assert!(app.dead_letters().await.is_empty());
    app.stop().await;
}

/// `retry.resend_unknown_sms`: an SMS whose call timed out (it may have gone out) is
/// retried, as configured, though the ledger still holds its first call's claim.
#[tokio::test]
async fn with_resend_unknown_sms_a_timed_out_sms_is_sent_again() {
    let mock = common::first_calls_then_ok(
        ok_answer(json!({"Messages": ["LATE"]})).set_delay(Duration::from_secs(5)),
        1,
        "SMS-CODE",
    )
    .await;
    let mut settings = common::test_settings(&mock.uri()).await;
    settings.pushwoosh.timeout_ms = 300;
    settings.retry.resend_unknown_sms = true;
    let mut app = TestApp::start(mock, settings).await;
    app.publish_job(&sms_job("resend-me")).await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["message_codes"], json!(["SMS-CODE"]), "{r}");
    assert_eq!(r["attempts"], 2, "{r}");
    assert_eq!(calls_with(&app.mock, "resend-me").await, 2);
    app.stop().await;
}
