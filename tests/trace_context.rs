//! W3C trace context end to end: a job's `traceparent` continues onto its result event
//! (header and JSON) and into the worker's JSON logs; a job without one, or with an
//! invalid one, gets a result without any.

mod common;

use std::time::Duration;

use common::{TestApp, header_str, json_props, ok_answer, push_job};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(10);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// The body of [`push_job`], to publish with headers of a test's choosing.
fn push_body(id: &str) -> Vec<u8> {
    serde_json::to_vec(&push_job(id)).unwrap()
}

fn with_headers(headers: &[(&str, &str)]) -> BasicProperties {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert((*k).into(), AMQPValue::LongString(LongString::from(*v)));
    }
    json_props().with_headers(table)
}

/// `00-<trace-id>-<parent-id>-<flags>` split into its four fields.
fn fields(traceparent: &str) -> Vec<String> {
    traceparent.split('-').map(str::to_owned).collect()
}

async fn ok_api(app: &TestApp) {
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["M-1"]})))
        .mount(&app.mock)
        .await;
}

#[tokio::test]
async fn a_jobs_traceparent_continues_onto_its_result() {
    let mut app = TestApp::spawn().await;
    ok_api(&app).await;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    app.publish_raw(
        &push_body("traced-1"),
        with_headers(&[
            ("traceparent", &traceparent),
            ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        ]),
    )
    .await;

    let result = app.next_result(WAIT).await;
    assert_eq!(result.body["outcome"], "ok", "{}", result.body);
    let header = header_str(&result.properties, "traceparent").expect("a traceparent header");
    let out = fields(&header);
    assert_eq!(out[0], "00");
    assert_eq!(out[1], TRACE_ID, "the same trace");
    assert_ne!(
        out[2], PARENT_ID,
        "the worker's own span is the result's parent"
    );
    assert_eq!(out[2].len(), 16);
    assert_eq!(out[3], "01", "the producer's sampling decision is kept");
    assert_eq!(
        header_str(&result.properties, "tracestate").as_deref(),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    assert_eq!(
        result.body["trace"],
        json!({"trace_id": TRACE_ID, "parent_id": PARENT_ID, "span_id": out[2]}),
    );
}

#[tokio::test]
async fn a_job_without_a_traceparent_gets_a_result_without_one() {
    let mut app = TestApp::spawn().await;
    ok_api(&app).await;
    app.publish_raw(&push_body("untraced-1"), json_props())
        .await;
    let result = app.next_result(WAIT).await;
    assert_eq!(result.body["outcome"], "ok");
    assert_eq!(header_str(&result.properties, "traceparent"), None);
    assert!(
        result.properties.headers().is_none(),
        "{:?}",
        result.properties
    );
    assert_eq!(result.body.get("trace"), None, "{}", result.body);
}

#[tokio::test]
async fn an_invalid_traceparent_is_ignored_and_the_job_goes_through() {
    let mut app = TestApp::spawn().await;
    ok_api(&app).await;
    for (i, bad) in [
        format!("00-{}-{PARENT_ID}-01", "0".repeat(32)),
        format!("00-{}-{PARENT_ID}-01", TRACE_ID.to_uppercase()),
        "not a traceparent".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        app.publish_raw(
            &push_body(&format!("bad-trace-{i}")),
            with_headers(&[("traceparent", bad), ("tracestate", "a=b")]),
        )
        .await;
        let result = app.next_result(WAIT).await;
        assert_eq!(result.body["outcome"], "ok", "{bad}: {}", result.body);
        assert_eq!(header_str(&result.properties, "traceparent"), None, "{bad}");
        assert_eq!(
            header_str(&result.properties, "tracestate"),
            None,
            "no tracestate without a valid traceparent"
        );
        assert_eq!(result.body.get("trace"), None, "{bad}");
    }
}

#[tokio::test]
async fn a_retried_job_keeps_its_trace_and_a_rejected_one_has_it_too() {
    let mut app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&app.mock)
        .await;
    ok_api(&app).await;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-00");
    app.publish_raw(
        &push_body("traced-retry"),
        with_headers(&[("traceparent", &traceparent)]),
    )
    .await;
    let result = app.next_result(WAIT).await;
    assert_eq!(result.body["outcome"], "ok");
    assert_eq!(result.body["attempts"], 2, "{}", result.body);
    let out = fields(&header_str(&result.properties, "traceparent").unwrap());
    assert_eq!((out[1].as_str(), out[3].as_str()), (TRACE_ID, "00"));
    assert_eq!(result.body["trace"]["parent_id"], PARENT_ID);

    // Refused before any call: the result still belongs to the trace.
    app.publish_raw(
        b"{\"id\": \"x\", \"kind\": \"push\"}",
        with_headers(&[("traceparent", &traceparent)]),
    )
    .await;
    let rejected = app.next_result(WAIT).await;
    assert_eq!(rejected.body["outcome"], "rejected");
    assert_eq!(rejected.body["trace"]["trace_id"], TRACE_ID);
}

/// The binary with `log.format = "json"`: every line about the job carries the trace in
/// its span, so logs, traces and results can be joined.
#[tokio::test]
async fn json_logs_carry_the_trace_of_the_job() {
    let app = TestApp::spawn().await;
    ok_api(&app).await;
    // The real binary on the same names and mock, alone on the queue.
    let (settings, mock) = app.stop_keeping_queues().await;
    let mut cmd = common::worker_command(&settings);
    cmd.env("PUSHWOOSH_WORKER__LOG__FORMAT", "json");
    // A success's "result published" line is at debug.
    cmd.env("RUST_LOG", "info,pushwoosh_worker::worker::settle=debug")
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (_conn, channel, mut results) = common::observe(&settings).await;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    common::publish(
        &channel,
        &settings.amqp.jobs_exchange,
        "job",
        &push_body("traced-log"),
        with_headers(&[("traceparent", &traceparent)]),
    )
    .await;
    let result = common::next_from(&mut results, Duration::from_secs(20)).await;
    assert_eq!(result.body["outcome"], "ok");
    let span_id = result.body["trace"]["span_id"].as_str().unwrap().to_owned();
    common::sigterm(&child).await;

    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut published = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if entry["message"] == "result published" {
            published = Some(entry);
        }
    }
    let _ = child.wait().await;
    let entry = published.expect("a JSON log line 'result published'");
    let span = &entry["span"];
    assert_eq!(span["name"], "job", "{entry}");
    assert_eq!(span["trace_id"], TRACE_ID, "{entry}");
    assert_eq!(span["parent_id"], PARENT_ID, "{entry}");
    assert_eq!(span["span_id"], span_id.as_str(), "{entry}");
    drop(mock);
    common::cleanup(&settings);
}
