//! The urgent lane and deadlines against the real broker: routing by the first word of
//! the routing key (and the move from a deployment made before lanes), an urgent job
//! ahead of a bulk backlog, and `expires_at` / `retry.max_elapsed_ms` holding whatever
//! keeps a job waiting.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::{
    TestApp, cleanup, declare_topology, drain, header_str, json_props, ok_answer, publish,
    push_job, test_settings,
};
use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use pushwoosh_worker::broker::Topology;
use pushwoosh_worker::broker::publisher::headers;
use pushwoosh_worker::settings::{QueueType, Settings};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(30);

/// The routing keys of the contract's matrix, and whether each goes to the urgent lane.
const MATRIX: [(&str, bool); 6] = [
    ("urgent.otp", true),
    ("urgent", true),
    ("urgentx", false),
    ("job", false),
    ("", false),
    ("sms.urgent", false),
];

async fn confirm_channel(settings: &Settings) -> (Connection, Channel) {
    let conn = Connection::connect(&settings.amqp.url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (conn, channel)
}

/// Publishes one message per routing key of the matrix, its body the key, and returns
/// what each queue then holds (bodies, sorted).
async fn route_matrix(
    channel: &Channel,
    settings: &Settings,
    tag: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    for (key, _) in MATRIX {
        let body = format!("{tag}:{key}");
        publish(
            channel,
            &settings.amqp.jobs_exchange,
            key,
            body.as_bytes(),
            json_props(),
        )
        .await;
    }
    let topology = Topology::new(settings);
    let mut held = BTreeMap::new();
    for queue in [
        topology.jobs_queue.clone(),
        topology.lane_queue(Some("urgent")).to_owned(),
    ] {
        let bodies = drain(channel, &queue)
            .await
            .into_iter()
            .map(|d| String::from_utf8(d.data).unwrap())
            .collect();
        held.insert(queue, bodies);
    }
    held
}

fn expected(settings: &Settings, tag: &str) -> BTreeMap<String, BTreeSet<String>> {
    let topology = Topology::new(settings);
    let lane = |urgent: bool| {
        MATRIX
            .iter()
            .filter(|(_, u)| *u == urgent)
            .map(|(key, _)| format!("{tag}:{key}"))
            .collect::<BTreeSet<_>>()
    };
    BTreeMap::from([
        (topology.jobs_queue.clone(), lane(false)),
        (topology.lane_queue(Some("urgent")).to_owned(), lane(true)),
    ])
}

/// What the version before lanes declared: the jobs exchange, the jobs queue bound `#`.
async fn declare_previous_version(channel: &Channel, settings: &Settings) {
    let a = &settings.amqp;
    channel
        .exchange_declare(
            a.jobs_exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let topology = Topology::new(settings);
    // The jobs queue with the arguments it had then (the same as now).
    for declaration in topology.declarations() {
        if let pushwoosh_worker::broker::topology::Declaration::Queue { name, .. } = &declaration
            && (name == &a.jobs_queue || name == &a.dead_letter_queue)
        {
            declaration.declare(channel).await.unwrap();
        }
    }
    channel
        .queue_bind(
            a.jobs_queue.as_str().into(),
            a.jobs_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn every_routing_key_lands_in_exactly_one_queue_after_a_move_from_the_previous_version() {
    for queue_type in [QueueType::Quorum, QueueType::Classic] {
        let mut settings = test_settings("http://127.0.0.1:9").await;
        settings.amqp.queue_type = queue_type;
        let (conn, channel) = confirm_channel(&settings).await;

        declare_previous_version(&channel, &settings).await;
        // Before the move, a job published to the old layout waits in the jobs queue.
        publish(
            &channel,
            &settings.amqp.jobs_exchange,
            "urgent.otp",
            b"waiting",
            json_props(),
        )
        .await;

        // What `topology` and every worker's start run.
        Topology::new(&settings).declare(&conn).await.unwrap();
        let held = route_matrix(&channel, &settings, "moved").await;
        let mut want = expected(&settings, "moved");
        want.get_mut(&settings.amqp.jobs_queue)
            .unwrap()
            .insert("waiting".to_owned());
        assert_eq!(held, want, "{queue_type:?}: after the move");

        // Declaring again (another replica's start) changes nothing.
        Topology::new(&settings).declare(&conn).await.unwrap();
        let held = route_matrix(&channel, &settings, "again").await;
        assert_eq!(
            held,
            expected(&settings, "again"),
            "{queue_type:?}: declared twice"
        );

        let _ = conn.close(200, "done".into()).await;
        cleanup(&settings);
    }
}

#[tokio::test]
async fn a_lane_turned_off_gives_its_jobs_back_to_the_jobs_queue() {
    let mut settings = test_settings("http://127.0.0.1:9").await;
    let (conn, channel) = confirm_channel(&settings).await;
    Topology::new(&settings).declare(&conn).await.unwrap();
    settings.lanes.get_mut("urgent").unwrap().enabled = false;
    Topology::new(&settings).declare(&conn).await.unwrap();
    for (key, _) in MATRIX {
        publish(
            &channel,
            &settings.amqp.jobs_exchange,
            key,
            key.as_bytes(),
            json_props(),
        )
        .await;
    }
    let jobs = drain(&channel, &settings.amqp.jobs_queue).await;
    assert_eq!(jobs.len(), MATRIX.len(), "every job in the jobs queue");
    let urgent = drain(&channel, &format!("{}.urgent", settings.amqp.jobs_queue)).await;
    assert!(urgent.is_empty(), "the lane's queue gets nothing once off");
    // The test's own cleanup knows the lane's queue only while it is on.
    settings.lanes.get_mut("urgent").unwrap().enabled = true;
    let _ = conn.close(200, "done".into()).await;
    cleanup(&settings);
}

fn sms(id: &str) -> Value {
    json!({"id": id, "kind": "sms", "application": "A-B",
        "notifications": [{"send_date": "now", "content": "code 1234", "devices": ["+15550001"]}]})
}

fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn publish_to(app: &TestApp, routing_key: &str, job: &Value) {
    publish(
        &app.channel,
        &app.settings.amqp.jobs_exchange,
        routing_key,
        &serde_json::to_vec(job).unwrap(),
        json_props().with_timestamp(u64::try_from(Utc::now().timestamp()).unwrap()),
    )
    .await;
}

#[tokio::test]
async fn an_urgent_job_goes_through_its_lane_with_its_own_metrics() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["SMS-1"]})))
        .mount(&app.mock)
        .await;
    publish_to(&app, "urgent.otp", &sms("otp-1")).await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(
        (r["job_id"].as_str(), r["outcome"].as_str()),
        (Some("otp-1"), Some("ok"))
    );
    assert_eq!(
        r.get("expired"),
        None,
        "no `expired` on a job that went out"
    );
    app.publish_job(&push_job("bulk-1")).await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(
        (r["job_id"].as_str(), r["outcome"].as_str()),
        (Some("bulk-1"), Some("ok"))
    );
    app.assert_metrics(&[
        r#"pushwoosh_worker_queue_wait_seconds_count{lane="urgent"} 1"#,
        // Published without a timestamp: no queue wait known.
        r#"pushwoosh_worker_queue_wait_seconds_count{lane="bulk"} 0"#,
        r#"pushwoosh_worker_time_to_result_seconds_count{lane="urgent"} 1"#,
        r#"pushwoosh_worker_time_to_result_seconds_count{lane="bulk"} 1"#,
        r#"pushwoosh_worker_jobs_expired_total{lane="urgent"} 0"#,
    ])
    .await;
    app.stop().await;
}

/// Answers every call after `delay`, counting nothing: the backlog's pace.
struct Slow(Duration);

impl Respond for Slow {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ok_answer(json!({"Messages": ["M"]})).set_delay(self.0)
    }
}

#[tokio::test]
async fn an_urgent_job_behind_a_backlog_of_5000_bulk_jobs_is_answered_before_a_tenth_of_them() {
    const BACKLOG: usize = 5_000;
    let mock = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Slow(Duration::from_millis(5)))
        .mount(&mock)
        .await;
    let settings = test_settings(&mock.uri()).await;
    declare_topology(&settings).await;
    let (conn, channel) = confirm_channel(&settings).await;
    // The backlog first, then the urgent job: all waiting before the worker starts.
    let mut confirms = Vec::with_capacity(BACKLOG);
    for n in 0..BACKLOG {
        let body = serde_json::to_vec(&push_job(&format!("bulk-{n}"))).unwrap();
        confirms.push(
            channel
                .basic_publish(
                    settings.amqp.jobs_exchange.as_str().into(),
                    "campaign".into(),
                    Default::default(),
                    &body,
                    json_props(),
                )
                .await
                .unwrap(),
        );
    }
    for confirm in confirms {
        assert!(confirm.await.unwrap().is_ack());
    }
    publish(
        &channel,
        &settings.amqp.jobs_exchange,
        "urgent.login",
        &serde_json::to_vec(&sms("otp-behind")).unwrap(),
        json_props(),
    )
    .await;
    let _ = conn.close(200, "published".into()).await;

    let mut app = TestApp::start(mock, settings).await;
    let mut bulk_before = 0;
    loop {
        let r = app.next_result(WAIT).await.body;
        if r["job_id"] == "otp-behind" {
            assert_eq!(r["outcome"], "ok", "{r}");
            break;
        }
        bulk_before += 1;
    }
    assert!(
        bulk_before < BACKLOG / 10,
        "the urgent job came after {bulk_before} of {BACKLOG} bulk results"
    );
    app.stop().await;
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

#[tokio::test]
async fn an_urgent_push_is_next_at_the_rate_limiter_behind_a_saturating_campaign() {
    const CAMPAIGN: usize = 20;
    let mut app = TestApp::spawn_with(|s| {
        s.rate_limit.enabled = true;
        s.rate_limit.burst = 1;
        // One call a second, and every campaign job a call of its own.
        s.rate_limit.create_message_per_minute = 60;
        s.batch.enabled = false;
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["P"]})))
        .mount(&app.mock)
        .await;
    for n in 0..CAMPAIGN {
        app.publish_job(&push_job(&format!("campaign-{n}"))).await;
    }
    publish_to(&app, "urgent.driver", &push_job("urgent-push")).await;
    let mut before = 0;
    loop {
        let r = app.next_result(WAIT).await.body;
        if r["job_id"] == "urgent-push" {
            assert_eq!(r["outcome"], "ok", "{r}");
            break;
        }
        before += 1;
    }
    // The campaign's calls already under way or granted when it came; never the line.
    assert!(
        before <= 2,
        "the urgent push waited for {before} of the campaign's {CAMPAIGN} calls"
    );
    app.stop().await;
}
