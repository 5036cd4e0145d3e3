//! A replay with the worker running: only the retries-exhausted job moves, and it succeeds.

use std::time::Duration;

use pushwoosh_worker::broker::publisher::headers;
use serde_json::json;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, ResponseTemplate};

use crate::common::{self, TestApp, header_str, json_props, ok_answer, push_job_for};
use crate::support::{WAIT, run_replay};

#[tokio::test]
async fn replaying_retries_exhausted_moves_that_job_only_and_it_succeeds_with_a_fresh_budget() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .and(body_partial_json(
            json!({"request": {"application": "APP-OUTAGE"}}),
        ))
        .respond_with(ResponseTemplate::new(503).set_body_string("down"))
        .mount(&app.mock)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(
            json!({"request": {"application": "APP-FORBIDDEN"}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status_code": 403, "status_message": "Token restrictions forbid this operation"})))
        .mount(&app.mock)
        .await;
    app.publish_job(&push_job_for("APP-OUTAGE", "outage-1"))
        .await;
    app.publish_job(&push_job_for("APP-FORBIDDEN", "forbidden-1"))
        .await;
    app.publish_raw(
        b"{not json",
        json_props().with_message_id("garbled-1".into()),
    )
    .await;
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let r = app.next_result(WAIT).await.body;
        outcomes.push((r["job_id"].clone(), r["outcome"].clone()));
    }
    outcomes.sort_by_key(|(id, _)| id.to_string());
    assert_eq!(
        outcomes,
        [
            (json!("forbidden-1"), json!("failed")),
            (json!("garbled-1"), json!("rejected")),
            (json!("outage-1"), json!("failed")),
        ]
    );
    let dead_queue = app.settings.amqp.dead_letter_queue.clone();
    assert_eq!(common::queue_depth(&app.channel, &dead_queue).await, 3);

    // Pushwoosh is back.
    app.mock.reset().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["BACK-0001"]})))
        .mount(&app.mock)
        .await;

    let (_, out) = run_replay(&app.settings, &["--reason", "retries_exhausted"]).await;
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("moved job 'outage-1' (push, retries_exhausted, dead "),
        "{out}"
    );
    assert!(lines[0].ends_with("s ago)"), "{out}");
    assert_eq!(
        lines[1],
        "moved 1 of 3 dead letter(s) (2 skipped by filters)"
    );

    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["job_id"], "outage-1");
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["attempts"], 1, "a replayed job gets a fresh retry budget");
    assert_eq!(r["message_codes"], json!(["BACK-0001"]));
    app.assert_no_result(Duration::from_millis(300)).await;

    // Handed-back dead letters are back once the broker has applied the requeues.
    for _ in 0..100 {
        if common::queue_depth(&app.channel, &dead_queue).await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = app.dead_letters().await;
    let mut reasons: Vec<_> = left
        .iter()
        .map(|d| header_str(&d.properties, headers::DEAD_REASON).unwrap())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["failed", "unparseable"]);
    app.stop().await;
}
