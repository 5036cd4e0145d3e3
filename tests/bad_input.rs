//! Bad input gets a clear answer in a result event, never a crash, never a call, and
//! nothing is lost.

mod common;

use std::time::Duration;

use common::{TestApp, header_str, json_props, ok_answer};
use pushwoosh_worker::broker::publisher::headers;
use serde_json::json;
use wiremock::Mock;
use wiremock::matchers::method;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn an_unparseable_body_is_dead_lettered_and_the_next_job_still_succeeds() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["OK-1"]})))
        .mount(&app.mock)
        .await;
    app.publish_raw(
        b"{\"id\": \"broken\", oops",
        json_props().with_message_id("msg-77".into()),
    )
    .await;
    let result = app.next_result(WAIT).await;
    let r = &result.body;
    assert_eq!(r["outcome"], "rejected");
    assert_eq!(r["kind"], "unknown");
    assert_eq!(r["job_id"], "msg-77");
    assert_eq!(r["status_code"], 400);
    assert!(
        r["status_message"]
            .as_str()
            .unwrap()
            .contains("not valid UTF-8 JSON")
    );
    assert_eq!(result.routing_key, "unknown.rejected");
    assert_eq!(
        result
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("msg-77")
    );

    let dead = app.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].data, b"{\"id\": \"broken\", oops");
    assert_eq!(
        header_str(&dead[0].properties, headers::DEAD_REASON).as_deref(),
        Some("unparseable")
    );

    app.publish_job(&common::push_with(
        "after",
        json!({"content": "still alive"}),
    ))
    .await;
    assert_eq!(app.next_result(WAIT).await.body["outcome"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn json_that_is_not_an_object_is_unparseable_and_dead_lettered_as_sent() {
    let mut app = TestApp::spawn().await;
    let bodies: [(&[u8], &str); 4] = [
        (b"[1,2,3]", "not an array"),
        (b"\"push\"", "not a string"),
        (b"7", "not a number"),
        (b"null", "not null"),
    ];
    for (i, (body, _)) in bodies.iter().enumerate() {
        let id = format!("not-object-{i}");
        app.publish_raw(body, json_props().with_message_id(id.into()))
            .await;
    }
    let mut results = std::collections::BTreeMap::new();
    for _ in 0..bodies.len() {
        let result = app.next_result(WAIT).await;
        assert_eq!(result.routing_key, "unknown.rejected");
        let id = result.body["job_id"].as_str().unwrap().to_owned();
        assert!(results.insert(id, result.body).is_none(), "one result each");
    }
    for (i, (_, says)) in bodies.iter().enumerate() {
        let r = &results[&format!("not-object-{i}")];
        assert_eq!(r["outcome"], "rejected");
        assert_eq!(r["kind"], "unknown");
        assert_eq!(r["status_code"], 400);
        let message = r["status_message"].as_str().unwrap();
        assert!(message.contains("must be a JSON object"), "{message}");
        assert!(message.contains(says), "{message}");
    }
    let dead: std::collections::BTreeMap<String, (Vec<u8>, Option<String>)> = app
        .dead_letters()
        .await
        .into_iter()
        .map(|d| {
            let id = d.properties.message_id().as_ref().unwrap().to_string();
            let reason = header_str(&d.properties, headers::DEAD_REASON);
            (id, (d.data, reason))
        })
        .collect();
    let expected: std::collections::BTreeMap<String, (Vec<u8>, Option<String>)> = bodies
        .iter()
        .enumerate()
        .map(|(i, (body, _))| {
            let reason = Some("unparseable".to_owned());
            (format!("not-object-{i}"), (body.to_vec(), reason))
        })
        .collect();
    assert_eq!(dead, expected, "the raw bytes, each with its reason");
    assert_eq!(app.total_calls().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn invalid_jobs_are_rejected_with_a_clear_message_and_no_call() {
    let mut app = TestApp::spawn().await;
    let cases = [
        (
            json!({"id": "k1", "kind": "carrier-pigeon"}),
            "unknown",
            "unknown kind \"carrier-pigeon\"",
        ),
        (json!({"kind": "push", "application": "A"}), "push", "no id"),
        (
            json!({"id": "a1", "kind": "push", "auth": "leaked", "application": "A",
                   "notifications": [{"send_date": "now", "content": "x"}]}),
            "push",
            "carries \"auth\"",
        ),
        (
            json!({"id": "r1", "kind": "sms", "application": "A"}),
            "sms",
            "notifications",
        ),
        (json!({"id": "r2", "kind": "cancel"}), "cancel", "message"),
        (
            json!({"id": "v1", "kind": "push", "application": "A",
                   "notifications": [{"send_date": "tomorrow", "content": "x", "andriod_header": "h"}]}),
            "push",
            "notifications[0].send_date",
        ),
    ];
    for (job, kind, expected) in &cases {
        app.publish_job(job).await;
        let result = app.next_result(WAIT).await;
        let r = &result.body;
        assert_eq!(r["outcome"], "rejected", "{job}: {r}");
        assert_eq!(r["status_code"], 210, "{job}: {r}");
        assert_eq!(r["kind"], *kind, "{job}: {r}");
        assert_eq!(r["attempts"], 0);
        let message = r["status_message"].as_str().unwrap();
        assert!(message.contains(expected), "{job}: {message}");
        assert!(!message.contains("leaked") && !r.to_string().contains(common::TOKEN));
        assert_eq!(result.routing_key, format!("{kind}.rejected"));
    }
    // All errors of a job at once, each located.
    app.publish_job(&json!({"id": "v2", "kind": "push", "application": "A",
        "notifications": [{"send_date": "tomorrow", "andriod_header": "h", "send_rate": 5}]}))
        .await;
    let r = app.next_result(WAIT).await.body;
    let paths: Vec<&str> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"notifications[0].send_date"), "{r}");
    assert!(paths.contains(&"notifications[0].send_rate"), "{r}");
    assert!(
        r["status_message"]
            .as_str()
            .unwrap()
            .contains("did you mean"),
        "{r}"
    );
    assert!(
        r["status_message"]
            .as_str()
            .unwrap()
            .starts_with("job 'v2':"),
        "{r}"
    );

    assert_eq!(
        app.total_calls().await,
        0,
        "a rejected job makes no HTTP call"
    );
    assert!(
        app.dead_letters().await.is_empty(),
        "valid JSON is not dead-lettered"
    );
    app.stop().await;
}

#[tokio::test]
async fn reply_to_gets_the_result_too_with_the_correlation_id() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["R-1"]})))
        .mount(&app.mock)
        .await;
    let reply_queue = app
        .channel
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let job = common::push_job("rpc-1");
    app.publish_raw(
        &serde_json::to_vec(&job).unwrap(),
        json_props()
            .with_reply_to(reply_queue.name().clone())
            .with_correlation_id("corr-42".into()),
    )
    .await;
    let on_exchange = app.next_result(WAIT).await;
    assert_eq!(on_exchange.body["job_id"], "rpc-1");
    let cid = |p: &lapin::BasicProperties| p.correlation_id().as_ref().map(|c| c.to_string());
    assert_eq!(cid(&on_exchange.properties).as_deref(), Some("corr-42"));
    assert_eq!(on_exchange.properties.delivery_mode(), &Some(2));
    assert_eq!(
        on_exchange
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str()),
        Some("application/json")
    );
    let mut replies = common::drain(&app.channel, reply_queue.name().as_str()).await;
    for _ in 0..20 {
        if !replies.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        replies = common::drain(&app.channel, reply_queue.name().as_str()).await;
    }
    assert_eq!(replies.len(), 1);
    let reply: serde_json::Value = serde_json::from_slice(&replies[0].data).unwrap();
    assert_eq!(reply, on_exchange.body);
    assert_eq!(cid(&replies[0].properties).as_deref(), Some("corr-42"));

    // Without a correlation_id, the job id stands in.
    app.publish_job(&json!({"id": "no-corr", "kind": "cancel", "message": "M-1"}))
        .await;
    let r = app.next_result(WAIT).await;
    assert_eq!(cid(&r.properties).as_deref(), Some("no-corr"));
    app.stop().await;
}
