//! Batching against the real broker: push jobs for one application share createMessage
//! calls, yet every job gets its own result, its own codes, and nothing is lost.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{TestApp, push_job, push_with};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(15);

/// A notification content only Pushwoosh can refuse (the worker's validation lets it by).
const REFUSED: &str = "refused by pushwoosh";

/// Whether Pushwoosh refuses a call with these notifications as a whole.
fn refused(notifications: &[Value]) -> bool {
    notifications.iter().any(|n| n["content"] == REFUSED)
}

/// A Pushwoosh that answers one fresh code per notification, and 210 for a whole request
/// when any notification's content is [`REFUSED`].
struct CodePerNotification {
    next: AtomicU64,
}

impl Respond for CodePerNotification {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let notifications = body["request"]["notifications"].as_array().unwrap();
        if refused(notifications) {
            return ResponseTemplate::new(200).set_body_json(json!({
                "status_code": 210,
                "status_message": "Invalid content",
                "response": {"Messages": []}
            }));
        }
        let codes: Vec<String> = notifications
            .iter()
            .map(|_| format!("C0DE-{:08X}", self.next.fetch_add(1, Ordering::Relaxed)))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "status_code": 200,
            "status_message": "OK",
            "response": {"Messages": codes}
        }))
    }
}

async fn app(configure: impl FnOnce(&mut pushwoosh_worker::settings::Settings)) -> TestApp {
    let app = TestApp::spawn_with(configure).await;
    Mock::given(method("POST"))
        .and(path("/json/1.3/createMessage"))
        .respond_with(CodePerNotification {
            next: AtomicU64::new(1),
        })
        .mount(&app.mock)
        .await;
    app
}

/// Every transactionId in the calls Pushwoosh accepted (answered 200), with its count.
fn accepted_transactions(calls: &[Value]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for call in calls {
        let notifications = call["request"]["notifications"].as_array().unwrap();
        if refused(notifications) {
            continue;
        }
        for n in notifications {
            *seen
                .entry(n["transactionId"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test]
async fn three_hundred_pushes_go_out_in_far_fewer_calls_each_with_its_own_code() {
    let mut app = app(|s| {
        s.amqp.prefetch = 128;
        s.batch.linger_ms = 50;
    })
    .await;
    for i in 0..300 {
        app.publish_job(&push_job(&format!("b-{i}"))).await;
    }
    let mut codes = HashSet::new();
    let mut jobs = HashSet::new();
    for _ in 0..300 {
        let r = app.next_result(WAIT).await.body;
        assert_eq!(r["outcome"], "ok", "{r}");
        // (no "batch" at all for a job that happened to be alone in its call)
        assert_ne!(r["batch"]["codes_mapped"], false, "{r}");
        let mine = r["message_codes"].as_array().unwrap();
        assert_eq!(mine.len(), 1, "one code for its one notification: {r}");
        assert_eq!(r["response"]["Messages"], json!(mine), "{r}");
        assert!(codes.insert(mine[0].as_str().unwrap().to_owned()), "{r}");
        assert!(jobs.insert(r["job_id"].as_str().unwrap().to_owned()), "{r}");
    }
    app.assert_no_result(Duration::from_millis(300)).await;
    let calls = app.calls_to("createMessage").await;
    println!("300 jobs in {} createMessage calls", calls.len());
    assert!(
        calls.len() <= 300 / 5,
        "300 jobs took {} calls: batching did not happen",
        calls.len()
    );
    let sent = accepted_transactions(&calls);
    assert_eq!(sent.len(), 300, "every job's notification went out");
    assert!(sent.values().all(|n| *n == 1), "and only once");
    let metrics = app.metrics().await;
    assert_eq!(
        common::metric(&metrics, "pushwoosh_worker_batch_jobs_count"),
        calls.len() as f64,
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_batch_refused_with_210_is_split_and_only_the_bad_job_is_rejected() {
    let mut app = app(|s| s.batch.linger_ms = 200).await;
    for i in 0..20 {
        let id = format!("s-{i}");
        let job = if i == 7 {
            push_with(&id, json!({"content": REFUSED}))
        } else {
            push_job(&id)
        };
        app.publish_job(&job).await;
    }
    let mut outcomes = HashMap::new();
    for _ in 0..20 {
        let r = app.next_result(WAIT).await.body;
        outcomes.insert(r["job_id"].as_str().unwrap().to_owned(), r);
    }
    assert_eq!(outcomes.len(), 20);
    for (id, r) in &outcomes {
        if id == "s-7" {
            assert_eq!(r["outcome"], "rejected", "{r}");
            assert_eq!(r["status_code"], 210, "{r}");
            assert_eq!(r["status_message"], "Invalid content", "{r}");
            assert!(r.get("batch").is_none(), "found alone: {r}");
        } else {
            assert_eq!(r["outcome"], "ok", "{r}");
            assert_eq!(r["message_codes"].as_array().unwrap().len(), 1, "{r}");
        }
    }
    assert!(
        app.dead_letters().await.is_empty(),
        "a rejection is not dead-lettered"
    );
    let calls = app.calls_to("createMessage").await;
    let sent = accepted_transactions(&calls);
    assert_eq!(sent.len(), 19, "the 19 good jobs went out");
    assert!(sent.values().all(|n| *n == 1), "each once: {sent:?}");
    // Every refused call of more than one job was split in two, and counted.
    let split = calls
        .iter()
        .filter(|call| {
            let notifications = call["request"]["notifications"].as_array().unwrap();
            notifications.len() > 1 && refused(notifications)
        })
        .count();
    let metrics = app.metrics().await;
    assert_eq!(
        common::metric(&metrics, "pushwoosh_worker_batch_splits_total"),
        split as f64,
        "splits are counted: {metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn with_batching_off_each_job_has_its_own_call() {
    let mut app = app(|s| {
        s.batch.enabled = false;
        s.batch.linger_ms = 200;
    })
    .await;
    for i in 0..10 {
        app.publish_job(&push_job(&format!("o-{i}"))).await;
    }
    for _ in 0..10 {
        let r = app.next_result(WAIT).await.body;
        assert_eq!(r["outcome"], "ok", "{r}");
        assert!(r.get("batch").is_none(), "{r}");
    }
    assert_eq!(app.calls_to("createMessage").await.len(), 10);
    app.stop().await;
}
