//! End to end against the real broker and a mock Pushwoosh: every kind reaches its
//! method with the producer's fields intact, and each job gets exactly one result.

mod common;

use std::time::Duration;

use common::{TOKEN, TestApp, ok_answer};
use pushwoosh_worker::pushwoosh::request::transaction_id;
use serde_json::{Map, Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(10);

/// What Pushwoosh must receive for a job: its fields, `auth` first, in the same order.
fn expected_request(job: &Value, extra: &[(&str, Value)]) -> Value {
    let mut request = Map::new();
    request.insert("auth".into(), json!(TOKEN));
    for (k, v) in job.as_object().unwrap() {
        if k != "id" && k != "kind" {
            request.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in extra {
        request.insert((*k).to_owned(), v.clone());
    }
    json!({ "request": request })
}

fn kinds() -> Vec<(&'static str, &'static str, Value, Value)> {
    vec![
        (
            "push",
            "createMessage",
            json!({"application": "ABCDE-12345", "notifications": [
                {"send_date": "now", "content": {"en": "Your order shipped"}, "users": ["user-4711"],
                 "geozone": {"lat": 22.220, "lng": 33.33, "range": 110}}]}),
            json!({"Messages": ["C3F8-C3863ED4-334AD4F1"]}),
        ),
        (
            "sms",
            "createSMSMessage",
            json!({"application": "12345-67891", "notifications": [
                {"send_date": "now", "content": "Hello!", "devices": ["+1234567890"],
                 "preset": "XXXXX-XXXXX", "use_auto_registration": true}]}),
            json!({"Messages": ["9648-0B10ECB6-0D9F214D"]}),
        ),
        (
            "whatsapp",
            "createWhatsAppMessage",
            json!({"application": "12XXX-67XXX", "notifications": [
                {"send_date": "now", "content_id": "hello_world", "content_variables": {"1": "John"},
                 "devices": ["whatsapp:+1234567890"], "language": "en_GB"}]}),
            json!({"Messages": ["9648-0B10EXXX-0D9F2XXX"]}),
        ),
        (
            "targeted",
            "createTargetedMessage",
            json!({"devices_filter": "A(\"XXXXX-XXXXX\") * T(\"City\", EQ, \"Name\")",
                   "send_date": "now", "content": {"en": "English", "de": "Deutsch"}}),
            json!({"messageCode": "97B0-C7473871-2FBDFDC6"}),
        ),
        (
            "cancel",
            "cancelMessage",
            json!({"message": "C3F8-C3863ED4-334AD4F1"}),
            Value::Null,
        ),
        (
            "delete",
            "deleteMessage",
            json!({"message": "C3F8-C3863ED4-334AD4F1"}),
            Value::Null,
        ),
        (
            "details",
            "getMessageDetails",
            json!({"message": "XXXX-92B4C3C5-A7F5EF70"}),
            json!({"message": {"id": 2068991743, "code": "XXXX-92B4C3C5-A7F5EF70", "status": "done"}}),
        ),
        (
            "history",
            "getPushHistory",
            json!({"source": null, "searchBy": "applicationCode", "value": "C8717-703F2",
                   "lastNotificationID": 0, "limitMessages": 1000}),
            json!({"rows": []}),
        ),
    ]
}

#[tokio::test]
async fn every_kind_reaches_its_method_with_the_token_and_the_producers_fields() {
    let mut app = TestApp::spawn().await;
    for (_, api_method, _, response) in kinds() {
        Mock::given(method("POST"))
            .and(path(format!("/json/1.3/{api_method}")))
            .respond_with(ok_answer(response))
            .expect(1)
            .mount(&app.mock)
            .await;
    }
    for (kind, api_method, fields, response) in kinds() {
        let mut job = json!({"id": format!("job-{kind}"), "kind": kind});
        job.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        app.publish_job(&job).await;
        let result = app.next_result(WAIT).await;
        let r = &result.body;
        assert_eq!(r["job_id"], format!("job-{kind}"), "{r}");
        assert_eq!(r["kind"], kind, "{r}");
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(r["status_code"], 200);
        assert_eq!(r["attempts"], 1);
        assert_eq!(r["redelivered"], false);
        assert_eq!(r["response"], response, "{kind}");
        assert_eq!(result.routing_key, format!("{kind}.ok"));
        let expected_codes = match kind {
            "push" => json!(["C3F8-C3863ED4-334AD4F1"]),
            "sms" => json!(["9648-0B10ECB6-0D9F214D"]),
            "whatsapp" => json!(["9648-0B10EXXX-0D9F2XXX"]),
            "targeted" => json!(["97B0-C7473871-2FBDFDC6"]),
            _ => json!([]),
        };
        assert_eq!(r["message_codes"], expected_codes, "{kind}");

        let calls = app.calls_to(api_method).await;
        assert_eq!(calls.len(), 1, "{api_method}");
        let expected = match kind {
            "push" => {
                let mut e = expected_request(&job, &[]);
                e["request"]["notifications"][0]["transactionId"] =
                    json!(transaction_id("job-push", Some(0)));
                e
            }
            "targeted" => expected_request(
                &job,
                &[("transactionId", json!(transaction_id("job-targeted", None)))],
            ),
            _ => expected_request(&job, &[]),
        };
        // Compared as text: field order and number spelling (22.220) are kept too.
        assert_eq!(
            serde_json::to_string(&calls[0]).unwrap(),
            serde_json::to_string(&expected).unwrap(),
            "{kind}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_seeds_own_examples_go_through_as_jobs() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["C3F8-C3863ED4-334AD4F1"]})))
        .mount(&app.mock)
        .await;
    let examples = [
        // createMessage, the reference's main example (auth removed).
        json!({"kind": "push", "application": "XXXXX-XXXXX", "notifications": [{
            "send_date": "now", "content": {"en": "English", "fr": "French"},
            "title": {"en": "Title", "fr": "Titre"}, "subtitle": {"en": "Subtitle", "fr": "Sous-titre"},
            "ignore_user_timezone": true, "timezone": "America/New_York", "campaign": "CAMPAIGN_CODE",
            "geozone": {"lat": 22.22, "lng": 33.33, "range": 110}, "rich_media": "XXXXX-XXXXX",
            "link": "https://google.com", "minimize_link": 0, "data": {"key": "value"},
            "transactionId": "unique UUID", "platforms": [1, 3, 7, 8, 9, 10, 11, 12, 17],
            "preset": "XXXXX-XXXXX", "send_rate": 100, "send_rate_avoid": true,
            "template_bindings": {"TemplatePlaceholder": "Value"},
            "dynamic_content_placeholders": {"firstname": "John", "lastname": "Doe"},
            "capping_days": 30, "capping_count": 10, "capping_exclude": true, "capping_avoid": true,
            "inbox_date": "2017-02-02", "inbox_image": "Inbox image URL", "inbox_days": 5,
            "devices": ["hwid_XXXX"], "users": ["user_XXXX"], "filter": "FILTER_NAME",
            "conditions": [["Country", "EQ", "fr"], ["Language", "EQ", "en"]],
            "conditions_operator": "AND"}]}),
        // createMessage, the VoIP example for iOS.
        json!({"kind": "push", "application": "XXXXX-XXXXX", "notifications": [{
            "voip_push": true, "ios_root_params": {"aps": {"mutable-content": 1},
            "callerName": "CallerName", "video": true, "supportsHolding": true,
            "supportsDTMF": false, "callId": "42", "cancelCall": true}}]}),
        // createSMSMessage.
        json!({"kind": "sms", "application": "12345-67891", "notifications": [{
            "send_date": "now", "content": "Hello!", "devices": ["+1234567890"],
            "preset": "XXXXX-XXXXX", "use_auto_registration": true}]}),
        // createWhatsAppMessage, two-factor code.
        json!({"kind": "whatsapp", "application": "APP_CODE", "notifications": [{
            "send_date": "now", "content_id": "replace_with_your_meta_two_factor_template_name",
            "content_variables": {"1": "AUTH_CODE"}, "button_url_variables": {"0": "AUTH_CODE"},
            "devices": ["whatsapp:REPLACE_WITH_YOUR_PHONE_NO"]}]}),
    ];
    for (i, example) in examples.iter().enumerate() {
        let mut job = example.clone();
        job["id"] = json!(format!("seed-{i}"));
        app.publish_job(&job).await;
        let r = app.next_result(WAIT).await.body;
        assert_eq!(r["outcome"], "ok", "seed example {i}: {r}");
    }
    // The producer's own transactionId is kept as sent.
    let pushes = app.calls_to("createMessage").await;
    assert_eq!(
        pushes[0]["request"]["notifications"][0]["transactionId"],
        "unique UUID"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_210_is_rejected_after_exactly_one_call_in_pushwooshs_words() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .and(path("/json/1.3/createSMSMessage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status_code": 210,
            "status_message": "Invalid devices list. \"devices\" must be an array.",
            "response": {"Messages": []}})))
        .expect(1)
        .mount(&app.mock)
        .await;
    app.publish_job(
        &json!({"id": "sms-210", "kind": "sms", "application": "A-B",
        "notifications": [{"send_date": "now", "content": "x", "devices": ["+1"]}]}),
    )
    .await;
    let result = app.next_result(WAIT).await;
    let r = &result.body;
    assert_eq!(r["outcome"], "rejected");
    assert_eq!(r["status_code"], 210);
    assert_eq!(
        r["status_message"],
        "Invalid devices list. \"devices\" must be an array."
    );
    assert_eq!(r["attempts"], 1);
    assert_eq!(result.routing_key, "sms.rejected");
    // Not retried, not dead-lettered: the result says everything.
    app.assert_no_result(Duration::from_millis(500)).await;
    assert_eq!(app.calls_to("createSMSMessage").await.len(), 1);
    assert!(app.dead_letters().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn http_400_is_rejected_without_retry() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("Malformed request string"))
        .mount(&app.mock)
        .await;
    app.publish_job(&json!({"id": "c-400", "kind": "cancel", "message": "X-Y-Z"}))
        .await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "rejected");
    assert_eq!(r["status_code"], 400);
    assert!(
        r["status_message"]
            .as_str()
            .unwrap()
            .contains("Malformed request string")
    );
    assert_eq!(app.total_calls().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_classic_jobs_queue_works_the_same_when_configured() {
    let mut app = TestApp::spawn_with(|s| {
        s.amqp.queue_type = pushwoosh_worker::settings::QueueType::Classic;
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["CL-1"]})))
        .mount(&app.mock)
        .await;
    app.publish_job(&common::push_job("classic-1")).await;
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["message_codes"], json!(["CL-1"]));
    app.stop().await;
}

/// lapin keeps 32 frames of send and of receive buffer per connection: the worker asks
/// for 16 KiB frames (1 MiB in all, not RabbitMQ's 128 KiB and 8 MiB), unless the URL
/// says otherwise.
#[tokio::test]
async fn the_worker_asks_for_small_frames_unless_the_url_sets_them() {
    use pushwoosh_worker::broker::{self, DEFAULT_FRAME_MAX};
    use pushwoosh_worker::settings::AmqpSettings;
    let url = common::broker_url().await;
    let amqp = |url: &str| AmqpSettings {
        url: url.to_owned(),
        ..AmqpSettings::default()
    };
    let conn = broker::connect(&amqp(&url), "frame-test", Duration::from_secs(10))
        .await
        .unwrap()
        .connection;
    assert_eq!(conn.configuration().frame_max(), DEFAULT_FRAME_MAX);
    let _ = conn.close(200, "done".into()).await;

    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}frame_max=65536");
    let conn = broker::connect(&amqp(&url), "frame-test", Duration::from_secs(10))
        .await
        .unwrap()
        .connection;
    assert_eq!(conn.configuration().frame_max(), 65536);
    let _ = conn.close(200, "done".into()).await;
}
