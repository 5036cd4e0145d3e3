//! A worker survives whatever a producer sends and whatever the broker refuses: results
//! and jobs have bounded sizes, a refused publish ends one job and not the worker, a
//! closed channel comes back, and `/readyz` says when the worker cannot do its job.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{IsolatedVhost, TestApp, header_str, json_props, ok_answer, push_job};
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use pushwoosh_worker::broker::publisher::headers;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

const WAIT: Duration = Duration::from_secs(20);

fn details_job(id: &str) -> Value {
    json!({"id": id, "kind": "details", "message": "C3F8-C3863ED4-334AD4F1"})
}

/// Results by job id, `n` of them; a second result for one id fails the test.
async fn results_by_id(app: &mut TestApp, n: usize) -> BTreeMap<String, Value> {
    let mut by_id = BTreeMap::new();
    for _ in 0..n {
        let r = app.next_result(WAIT).await.body;
        let id = r["job_id"].as_str().expect("a job id").to_owned();
        assert!(
            by_id.insert(id.clone(), r).is_none(),
            "two results for {id}"
        );
    }
    by_id
}

#[tokio::test]
async fn a_result_over_max_result_bytes_goes_out_without_its_response() {
    let mock = MockServer::start().await;
    let big = "x".repeat(20_000);
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"message": {"text": big}})))
        .mount(&mock)
        .await;
    let mut settings = common::test_settings(&mock.uri()).await;
    settings.amqp.max_result_bytes = 8_192;
    let mut app = TestApp::start(mock, settings).await;
    app.publish_job(&details_job("big-answer")).await;
    let result = app.next_result(WAIT).await;
    let r = &result.body;
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["status_code"], 200);
    assert_eq!(r["response"], Value::Null);
    assert_eq!(r["truncated"], json!(["response"]));
    let bytes = serde_json::to_vec(r).unwrap().len();
    assert!(bytes < 8_192, "{bytes} bytes");
    app.stop().await;
}

#[tokio::test]
async fn a_result_the_broker_refuses_ends_that_job_only_and_the_channel_comes_back() {
    let url = common::small_node_url().await;
    let mock = MockServer::start().await;
    // Under the worker's own bound, over the broker's 64 KiB.
    let big = "x".repeat(100_000);
    Mock::given(path("/json/1.3/getMessageDetails"))
        .respond_with(ok_answer(json!({"message": {"text": big}})))
        .mount(&mock)
        .await;
    Mock::given(path("/json/1.3/createMessage"))
        .respond_with(ok_answer(json!({"Messages": ["C"]})))
        .mount(&mock)
        .await;
    let mut settings = common::test_settings(&mock.uri()).await;
    settings.amqp.url = url;
    let mut app = TestApp::start(mock, settings).await;

    // The refused result closes the channel under the pushes in flight beside it.
    for i in 0..20 {
        app.publish_job(&push_job(&format!("before-{i}"))).await;
    }
    app.publish_job(&details_job("too-big-for-the-broker"))
        .await;
    for i in 0..20 {
        app.publish_job(&push_job(&format!("beside-{i}"))).await;
    }
    let mut results = results_by_id(&mut app, 41).await;
    let refused = results.remove("too-big-for-the-broker").unwrap();
    assert_eq!(
        refused["outcome"], "ok",
        "the job itself went well: {refused}"
    );
    assert_eq!(refused["status_code"], 200);
    assert_eq!(refused["response"], Value::Null);
    assert_eq!(refused["truncated"], json!(["response"]));
    let message = refused["status_message"].as_str().unwrap();
    assert!(
        message.contains("the broker refused this job's full result")
            && message.contains("larger than configured max size"),
        "says why, in the broker's words: {message}"
    );
    assert!(
        results.values().all(|r| r["outcome"] == "ok"),
        "{results:?}"
    );

    // The next 100 jobs all go through, on a channel opened again.
    for i in 0..100 {
        app.publish_job(&push_job(&format!("after-{i}"))).await;
    }
    let after = results_by_id(&mut app, 100).await;
    assert_eq!(after.len(), 100);
    assert!(after.values().all(|r| r["outcome"] == "ok"), "{after:?}");
    app.assert_no_result(Duration::from_millis(300)).await;

    let metrics = app.metrics().await;
    assert_eq!(
        common::metric(&metrics, "pushwoosh_worker_results_refused_total"),
        1.0
    );
    assert!(
        common::metric(
            &metrics,
            r#"pushwoosh_worker_channel_reopens_total{channel="publish"}"#
        ) >= 1.0
    );
    for reason in ["cannot_publish", "unsettled", "stopping"] {
        let series = format!(r#"pushwoosh_worker_hand_backs_total{{reason="{reason}"}}"#);
        assert_eq!(common::metric(&metrics, &series), 0.0, "{series}");
    }
    assert_eq!(
        common::metric(&metrics, "pushwoosh_worker_publisher_available"),
        1.0
    );
    assert!(app.dead_letters().await.is_empty());
    assert_eq!(common::http_get(app.http_addr, "/readyz").await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_job_none_of_whose_results_the_broker_takes_is_dead_lettered_not_handed_back() {
    let url = common::small_node_url().await;
    let mock = MockServer::start().await;
    // Even without its response the result holds every code: over 64 KiB.
    let codes: Vec<String> = (0..4_000).map(|i| format!("CODE-{i:08}-XYZ")).collect();
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": codes})))
        .mount(&mock)
        .await;
    let mut settings = common::test_settings(&mock.uri()).await;
    settings.amqp.url = url;
    // Alone in its call, the job owns every code of the answer.
    settings.batch.enabled = false;
    let mut app = TestApp::start(mock, settings).await;
    app.publish_job(&push_job("codes-galore")).await;
    app.assert_no_result(Duration::from_secs(2)).await;
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = app.dead_letters().await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(
        header_str(&dead[0].properties, headers::DEAD_REASON).as_deref(),
        Some("broker_refused")
    );
    assert_eq!(
        header_str(&dead[0].properties, headers::JOB_ID).as_deref(),
        Some("codes-galore")
    );
    let metrics = app.metrics().await;
    assert_eq!(
        common::metric(
            &metrics,
            r#"pushwoosh_worker_dead_letters_total{reason="broker_refused"}"#
        ),
        1.0
    );
    assert_eq!(
        common::metric(
            &metrics,
            r#"pushwoosh_worker_hand_backs_total{reason="cannot_publish"}"#
        ),
        0.0
    );
    // The worker goes on.
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["C"]})))
        .with_priority(1)
        .mount(&app.mock)
        .await;
    app.publish_job(&push_job("next")).await;
    assert_eq!(app.next_result(WAIT).await.body["outcome"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn while_no_result_can_be_published_readyz_is_503_and_no_job_is_handed_back() {
    let vhost = IsolatedVhost::create();
    let mock = common::answering_ok().await;
    let mut settings = common::test_settings(&mock.uri()).await;
    settings.amqp.url = vhost.url.clone();
    let results_exchange = settings.amqp.results_exchange.clone();
    let mut app = TestApp::start(mock, settings).await;

    // Results also go to a reply queue of the test's, which nothing here deletes.
    let admin = Connection::connect(
        &vhost
            .url
            .replace(&format!("{}:secret", vhost.user), "guest:guest"),
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = admin.create_channel().await.unwrap();
    let replies = channel
        .queue_declare(
            "replies".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut replies = common::consume_all(&channel, replies.name().as_str()).await;
    let reply_props = |id: &str| {
        json_props()
            .with_reply_to("replies".into())
            .with_message_id(id.into())
    };
    let publish = |id: String| {
        let app = &app;
        let props = reply_props(&id);
        async move {
            app.publish_raw(&serde_json::to_vec(&push_job(&id)).unwrap(), props)
                .await;
        }
    };
    publish("before".into()).await;
    let first = common::next_from(&mut replies, WAIT).await.body;
    assert_eq!(first["job_id"], "before");

    // The results exchange goes away, and the worker may not declare it again.
    let denied = format!("^(?!{}$).*", regex_escape(&results_exchange));
    vhost.set_permissions(&denied, ".*", ".*");
    channel
        .exchange_delete(
            results_exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await
        .unwrap();
    for i in 0..20 {
        publish(format!("held-{i}")).await;
    }
    let mut saw_503 = None;
    for _ in 0..600 {
        let (status, body) = common::http_get(app.http_addr, "/readyz").await;
        if status == 503 {
            saw_503 = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = saw_503.expect("/readyz goes 503 while no result can be published");
    assert!(body.contains("cannot publish results"), "{body}");
    let metrics = app.metrics().await;
    assert_eq!(
        common::metric(&metrics, "pushwoosh_worker_publisher_available"),
        0.0
    );
    assert_eq!(common::metric(&metrics, "pushwoosh_worker_consuming"), 0.0);

    // Mended: the worker declares the exchange again and publishes what it held.
    vhost.set_permissions(".*", ".*", ".*");
    assert!(
        common::wait_ready(app.http_addr, Duration::from_secs(60)).await,
        "/readyz is 200 again once the channel is back"
    );
    let mut held = BTreeMap::new();
    for _ in 0..20 {
        let r = common::next_from(&mut replies, WAIT).await.body;
        let id = r["job_id"].as_str().unwrap().to_owned();
        assert!(held.insert(id.clone(), r).is_none(), "two results for {id}");
    }
    let expected: Vec<String> = (0..20).map(|i| format!("held-{i}")).collect();
    let mut ids: Vec<String> = held.keys().cloned().collect();
    ids.sort_by_key(|id| id[5..].parse::<u32>().unwrap());
    assert_eq!(ids, expected, "every held job, once");
    assert!(held.values().all(|r| r["outcome"] == "ok"));

    let metrics = app.metrics().await;
    for reason in ["cannot_publish", "unsettled", "stopping"] {
        let series = format!(r#"pushwoosh_worker_hand_backs_total{{reason="{reason}"}}"#);
        assert_eq!(common::metric(&metrics, &series), 0.0, "{series}");
    }
    assert_eq!(
        common::metric(
            &metrics,
            r#"pushwoosh_worker_settle_commands_total{command="requeue"}"#
        ),
        0.0
    );
    assert!(app.dead_letters().await.is_empty(), "nothing dead-lettered");
    assert_eq!(
        common::queue_depth(&app.channel, &app.settings.amqp.jobs_queue).await,
        0
    );
    app.stop().await;
    let _ = admin.close(200, "done".into()).await;
}

fn regex_escape(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let escape = !c.is_ascii_alphanumeric() && c != '_' && c != '-';
            escape.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}
