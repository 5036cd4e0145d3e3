//! The metrics an operator watches, read from a running worker's /metrics: every outcome,
//! retries by a reason that says what happened, dead letters by reason, and the breaker;
//! and every worker metric the dashboard and the alerts use exists under that name.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestApp, json_props, ok_answer, push_job_for};
use serde_json::json;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(15);

fn for_application(application: &str) -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(body_partial_json(
        json!({"request": {"application": application}}),
    ))
}

/// One job of each fate, then the counters they leave.
#[tokio::test]
async fn outcomes_retry_reasons_and_dead_letters_are_counted() {
    let mut app = TestApp::spawn_with(|s| s.pushwoosh.timeout_ms = 300).await;
    for_application("APP-SLOW")
        .respond_with(ok_answer(json!({"Messages": ["S"]})).set_delay(Duration::from_secs(2)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.mock)
        .await;
    for_application("APP-DOWN")
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&app.mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["M"]})))
        .with_priority(2)
        .mount(&app.mock)
        .await;

    app.publish_job(&push_job_for("APP-OK", "fine")).await;
    app.publish_job(&push_job_for("APP-SLOW", "slow-then-fine"))
        .await;
    app.publish_job(&push_job_for("APP-DOWN", "never")).await;
    app.publish_job(&json!({"id": "typo", "kind": "push", "application": "APP-OK",
                            "notifications": [{"send_date": "now", "content": "x", "andriod_header": "h"}]}))
        .await;
    app.publish_raw(b"not json", json_props()).await;
    let mut outcomes = BTreeSet::new();
    for _ in 0..5 {
        let r = app.next_result(WAIT).await.body;
        outcomes.insert(format!("{}:{}", r["job_id"], r["outcome"]));
    }
    assert_eq!(
        outcomes,
        BTreeSet::from(
            [
                r#""fine":"ok""#,
                r#""slow-then-fine":"ok""#,
                r#""never":"failed""#,
                r#""typo":"rejected""#,
                r#"null:"rejected""#,
            ]
            .map(str::to_owned)
        )
    );

    let expected = [
        r#"pushwoosh_worker_jobs_total{kind="push",outcome="ok"} 2"#,
        r#"pushwoosh_worker_jobs_total{kind="push",outcome="rejected"} 1"#,
        r#"pushwoosh_worker_jobs_total{kind="push",outcome="failed"} 1"#,
        r#"pushwoosh_worker_jobs_total{kind="unknown",outcome="rejected"} 1"#,
        r#"pushwoosh_worker_jobs_total{kind="sms",outcome="failed"} 0"#,
        r#"pushwoosh_worker_retries_total{kind="push",reason="timeout"} 1"#,
        r#"pushwoosh_worker_retries_total{kind="push",reason="500"} 2"#,
        r#"pushwoosh_worker_api_calls_total{method="createMessage",status="timeout"} 1"#,
        r#"pushwoosh_worker_api_calls_total{method="createMessage",status="http_500"} 3"#,
        r#"pushwoosh_worker_dead_letters_total{reason="retries_exhausted"} 1"#,
        r#"pushwoosh_worker_dead_letters_total{reason="unparseable"} 1"#,
        r#"pushwoosh_worker_dead_letters_total{reason="poison"} 0"#,
        r#"pushwoosh_worker_breaker_transitions_total{to="open"} 0"#,
        "pushwoosh_worker_breaker_open 0",
        // 8 deliveries: the slow job's twice, the failing one's three times.
        "pushwoosh_worker_job_duration_seconds_count 8",
        "pushwoosh_worker_result_publish_seconds_count 5",
        r#"pushwoosh_worker_settle_commands_total{command="requeue"} 0"#,
    ];
    // The last result can arrive before its job is acked and counted.
    let metrics = app.assert_metrics(&expected).await;
    for kind in ["push", "unknown"] {
        let transport =
            format!(r#"pushwoosh_worker_retries_total{{kind="{kind}",reason="transport"}}"#);
        assert_eq!(
            common::metric_or_zero(&metrics, &transport),
            0.0,
            "{metrics}"
        );
    }

    // Every worker metric the dashboard and the alerts query is one the worker serves.
    let served = metric_names(&metrics);
    for file in [
        "deploy/alerts.yaml",
        "deploy/grafana/dashboards/pushwoosh-worker.json",
    ] {
        let text = std::fs::read_to_string(file).unwrap();
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} uses no worker metric?");
        let unknown: Vec<_> = used.difference(&served).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the worker does not serve: {unknown:?}"
        );
    }
    app.stop().await;
}

/// Every `pushwoosh_worker_…` name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    const PREFIX: &str = "pushwoosh_worker_";
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if end > PREFIX.len() {
            names.insert(tail[..end].to_owned()); // not `pushwoosh_worker_*` in prose
        }
        rest = &tail[end..];
    }
    names
}
