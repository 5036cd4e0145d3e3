//! An urgent job through its lane, behind a bulk backlog, and next at the rate limiter.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::common::{
    TestApp, declare_topology, json_props, ok_answer, publish, push_job, push_with, test_settings,
};
use crate::support::{WAIT, confirm_channel, publish_to, sms};

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

/// A worker allowed one createMessage call a second, with `jobs` campaign pushes queued;
/// batches of `batch` pushes, or none.
async fn campaign(jobs: usize, batch: Option<usize>) -> TestApp {
    let app = TestApp::spawn_with(|s| {
        s.rate_limit.enabled = true;
        s.rate_limit.burst = 1;
        s.rate_limit.create_message_per_minute = 60;
        s.batch.enabled = batch.is_some();
        s.batch.max_size = batch.unwrap_or(s.batch.max_size);
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["P"]})))
        .mount(&app.mock)
        .await;
    for n in 0..jobs {
        app.publish_job(&push_job(&format!("campaign-{n}"))).await;
    }
    app
}

#[tokio::test]
async fn an_urgent_push_is_next_at_the_rate_limiter_behind_a_saturating_campaign() {
    const CAMPAIGN: usize = 20;
    // One call a second, and every campaign job a call of its own.
    let mut app = campaign(CAMPAIGN, None).await;
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

#[tokio::test]
async fn an_urgent_push_rides_in_the_campaigns_next_batch_instead_of_a_call_of_its_own() {
    const CAMPAIGN: usize = 50;
    // One call a second, ten pushes a call.
    let mut app = campaign(CAMPAIGN, Some(10)).await;
    let job = push_with("urgent-push", json!({"content": "urgent-push"}));
    publish_to(&app, "urgent.driver", &job).await;
    let mut before = 0;
    let mut rest = 0;
    let mut urgent = None;
    for _ in 0..=CAMPAIGN {
        let r = app.next_result(WAIT).await.body;
        assert_eq!(r["outcome"], "ok", "{r}");
        if r["job_id"] == "urgent-push" {
            urgent = Some(r);
        } else if urgent.is_none() {
            before += 1;
        } else {
            rest += 1;
        }
    }
    let urgent = urgent.expect("the urgent push's result");
    assert_eq!(before + rest, CAMPAIGN);
    // The campaign's calls already under way or granted when it came; never the line.
    assert!(
        before <= 2 * 10,
        "the urgent push waited for {before} of the campaign's {CAMPAIGN} pushes"
    );
    // It went in a call with campaign pushes: it took no call of the campaign's budget.
    assert!(
        urgent["batch"]["jobs"].as_u64().unwrap_or(0) > 1,
        "the urgent push called alone: {urgent}"
    );
    let calls = app.calls_to("createMessage").await;
    let with_urgent: Vec<_> = calls
        .iter()
        .filter(|c| c.to_string().contains("urgent-push"))
        .collect();
    assert_eq!(with_urgent.len(), 1, "one call carried it");
    assert!(
        with_urgent[0]["request"]["notifications"]
            .as_array()
            .is_some_and(|n| n.len() > 1),
        "{}",
        with_urgent[0]
    );
    app.stop().await;
}
