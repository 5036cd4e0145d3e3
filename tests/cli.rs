//! The CLI subcommands, run as a user would.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestApp, ok_answer};
use serde_json::json;
use wiremock::Mock;
use wiremock::matchers::method;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pushwoosh-worker"));
    cmd.env_remove("PUSHWOOSH_WORKER_CONFIG");
    cmd
}

/// `publish ARGS -` against the test's worker, `jobs` on its stdin.
async fn publish(app: &TestApp, args: &[&str], jobs: &str) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushwoosh-worker"));
    cmd.arg("publish").args(args).arg("-");
    common::point_at_test_names(&mut cmd, &app.settings);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(jobs.as_bytes()).await.unwrap();
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

#[test]
fn validate_prints_each_problem_with_its_location_and_fails() {
    let dir = std::env::temp_dir().join(format!("pww-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jobs.ndjson");
    std::fs::write(
        &file,
        concat!(
            r#"{"id":"good","kind":"sms","application":"A-B","notifications":[{"send_date":"now","content":"hi","devices":["+1555"]}]}"#, "\n",
            r#"{"id":"typo","kind":"push","application":"A-B","notifications":[{"send_date":"now","content":"x","andriod_header":"h"}]}"#, "\n",
            r#"{"id":"bad","kind":"whatsapp","application":"A-B","notifications":[{"send_date":"now","devices":["a","b"]}]}"#, "\n",
        ),
    )
    .unwrap();
    let out = bin().args(["validate"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(":1: job 'good': ok"), "{text}");
    assert!(
        text.contains(":2: job 'typo': error: notifications[0].andriod_header"),
        "{text}"
    );
    assert!(text.contains("did you mean \"android_header\""), "{text}");
    assert!(
        text.contains(":3: job 'bad': error: notifications[0]"),
        "{text}"
    );
    assert!(
        text.contains("3 job(s) checked, 1 valid, 2 invalid"),
        "{text}"
    );

    // From stdin, an array of valid jobs: exit 0.
    let mut child = bin()
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"[{"id":"c","kind":"cancel","message":"M"},{"id":"d","kind":"details","message":"M"}]"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn publish_wait_prints_each_result_and_exits_by_outcome() {
    let app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["P-1"]})))
        .mount(&app.mock)
        .await;
    let run = |jobs: &'static str| publish(&app, &["--wait", "--timeout-secs", "20"], jobs);
    let out = run(concat!(
        r#"{"id":"p1","kind":"push","application":"A-B","notifications":[{"send_date":"now","content":"1"}]}"#, "\n",
        r#"{"id":"p2","kind":"push","application":"A-B","notifications":[{"send_date":"now","content":"2"}]}"#, "\n",
    ))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<_> = lines
        .iter()
        .map(|r| r["job_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["p1", "p2"]);
    assert!(lines.iter().all(|r| r["outcome"] == "ok"));

    let out = run(r#"{"id":"p3","kind":"push"}"#).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a rejected job makes publish --wait fail"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"rejected\""));
}

#[test]
fn the_readmes_validate_example_is_the_real_output() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let prompt = "$ target/release/pushwoosh-worker validate examples/jobs.ndjson\n";
    let start = readme.find(prompt).expect("the README shows validate") + prompt.len();
    let shown = &readme[start..start + readme[start..].find("```").unwrap()];
    let out = bin()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["validate", "examples/jobs.ndjson"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), shown);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn publish_knows_the_urgent_lane_and_deadlines() {
    let app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["S-1"]})))
        .mount(&app.mock)
        .await;
    let run = |args: &'static [&'static str], jobs: &'static str| publish(&app, args, jobs);
    // A bad expires_at: nothing is published, and the message says where and why.
    let out = run(
        &["--wait", "--timeout-secs", "20"],
        concat!(
            r#"{"id":"ok-1","kind":"sms","application":"A-B","notifications":[{"send_date":"now","content":"1","devices":["+15550001"]}]}"#, "\n",
            r#"{"id":"bad-1","kind":"sms","expires_at":"soon","application":"A-B","notifications":[{"send_date":"now","content":"1","devices":["+15550001"]}]}"#, "\n",
        ),
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":2: \"expires_at\"") && stderr.contains("nothing was published"),
        "{stderr}"
    );
    assert_eq!(app.total_calls().await, 0, "nothing was published");

    let out = run(
        &["--wait", "--timeout-secs", "20", "--urgent", "--expires-in", "600"],
        r#"{"id":"otp-cli","kind":"sms","application":"A-B","notifications":[{"send_date":"now","content":"1","devices":["+15550001"]}]}"#,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(
        (result["job_id"].as_str(), result["outcome"].as_str()),
        (Some("otp-cli"), Some("ok"))
    );
    // Through the urgent lane, with its publish time known.
    app.assert_metrics(&[
        r#"pushwoosh_worker_time_to_result_seconds_count{lane="urgent"} 1"#,
        r#"pushwoosh_worker_queue_wait_seconds_count{lane="urgent"} 1"#,
    ])
    .await;
}
