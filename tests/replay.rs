//! `pushwoosh-worker replay`, run as an operator would: what moves, what stays, and that
//! nothing is lost or duplicated on the way.

mod common;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use common::{
    TestApp, cleanup, drain, header_str, json_props, ok_answer, publish, push_job_for,
    test_settings,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use pushwoosh_worker::broker::Topology;
use pushwoosh_worker::broker::publisher::{header_int, headers};
use pushwoosh_worker::settings::Settings;
use serde_json::json;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(15);

/// The binary with the test's names and fast retries in its environment.
fn replay(settings: &Settings, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushwoosh-worker"));
    cmd.arg("replay").args(args);
    common::point_at_test_names(&mut cmd, settings);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `replay ARGS` to its end; returns (exit code, stdout).
async fn run_replay(settings: &Settings, args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::time::timeout(Duration::from_secs(30), replay(settings, args).output())
        .await
        .expect("replay finishes within 30 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "replay {args:?} failed: {stdout}\n{stderr}"
    );
    (out.status.code(), stdout)
}

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

/// Broker-side fixture without a worker: replayed jobs stay in the jobs queue to be looked at.
struct Queues {
    settings: Settings,
    _conn: Connection,
    channel: Channel,
}

impl Queues {
    async fn new() -> Self {
        let settings = test_settings("http://127.0.0.1:9").await;
        let conn = Connection::connect(&settings.amqp.url, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        channel.confirm_select(Default::default()).await.unwrap();
        Topology::new(&settings).declare(&conn).await.unwrap();
        Self {
            settings,
            _conn: conn,
            channel,
        }
    }

    /// Puts a dead letter in the dead queue, with the headers the worker writes.
    async fn dead(&self, id: &str, kind: &str, reason: &str, dead_secs_ago: i64) {
        let mut h = FieldTable::default();
        let s = |v: &str| AMQPValue::LongString(LongString::from(v));
        h.insert("x-trace".into(), s(&format!("trace-{id}")));
        h.insert(headers::DEAD_REASON.into(), s(reason));
        h.insert(headers::LAST_ERROR.into(), s("HTTP 503"));
        h.insert(headers::KIND.into(), s(kind));
        h.insert(headers::JOB_ID.into(), s(id));
        h.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(3));
        h.insert(
            headers::RECEIVED_AT.into(),
            AMQPValue::LongLongInt(chrono::Utc::now().timestamp_millis() - 99_000),
        );
        h.insert(
            headers::DEAD_AT.into(),
            AMQPValue::LongLongInt(chrono::Utc::now().timestamp_millis() - dead_secs_ago * 1000),
        );
        h.insert(
            headers::ORIGINAL_EXCHANGE.into(),
            s(&self.settings.amqp.jobs_exchange),
        );
        h.insert(headers::ORIGINAL_ROUTING_KEY.into(), s("orders.shipped"));
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(id.into())
            .with_correlation_id(format!("corr-{id}").as_str().into())
            .with_reply_to("answers".into())
            .with_headers(h);
        let body = json!({"id": id, "kind": kind, "message": "M"}).to_string();
        publish(
            &self.channel,
            "",
            &self.settings.amqp.dead_letter_queue,
            body.as_bytes(),
            properties,
        )
        .await;
    }

    async fn dead_count(&self) -> u32 {
        common::queue_depth(&self.channel, &self.settings.amqp.dead_letter_queue).await
    }

    async fn jobs_count(&self) -> u32 {
        common::queue_depth(&self.channel, &self.settings.amqp.jobs_queue).await
    }

    /// (jobs, dead) once they add up to at least `total`, or as they are after a while:
    /// a quorum queue counts the requeued messages of a closed channel a moment later.
    async fn settle(&self, total: usize) -> (usize, usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let jobs = self.jobs_count().await as usize;
            let dead = self.dead_count().await as usize;
            if jobs + dead >= total || tokio::time::Instant::now() > deadline {
                return (jobs, dead);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the dead queue holds `n` (the handed-back ones are back).
    async fn wait_dead(&self, n: u32) {
        for _ in 0..300 {
            if self.dead_count().await == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the dead queue never held {n}");
    }

    async fn take_jobs(&self) -> Vec<lapin::message::Delivery> {
        drain(&self.channel, &self.settings.amqp.jobs_queue).await
    }

    async fn take_dead(&self) -> Vec<lapin::message::Delivery> {
        drain(&self.channel, &self.settings.amqp.dead_letter_queue).await
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        cleanup(&self.settings);
    }
}

fn ids(deliveries: &[lapin::message::Delivery]) -> Vec<String> {
    let mut ids: Vec<_> = deliveries
        .iter()
        .map(|d| d.properties.message_id().as_ref().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn dry_run_moves_nothing_and_limit_moves_one() {
    let q = Queues::new().await;
    q.dead("a", "push", "retries_exhausted", 7200).await;
    q.dead("b", "sms", "failed", 10).await;
    q.dead("c", "push", "delivery_unknown", 0).await;
    q.dead("u", "unknown", "unparseable", 0).await;

    let (_, out) = run_replay(&q.settings, &["--dry-run"]).await;
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[..3].iter().all(|l| l.starts_with("would move job '")),
        "{out}"
    );
    assert!(
        out.contains("would move job 'a' (push, retries_exhausted, dead 720"),
        "{out}"
    );
    assert!(
        !out.contains("'u'"),
        "unparseable is not replayed by default: {out}"
    );
    assert_eq!(
        lines[3],
        "would move 3 of 4 dead letter(s) (1 skipped by filters)"
    );
    assert_eq!(q.settle(4).await, (0, 4), "a dry run moves nothing");

    let (_, out) = run_replay(&q.settings, &["--limit", "1"]).await;
    assert!(out.contains("\nmoved 1 of 4 dead letter(s) ("), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("moved job")).count(),
        1
    );
    assert_eq!(q.settle(4).await, (1, 3));

    let moved = q.take_jobs().await;
    let left = q.take_dead().await;
    let mut all = ids(&moved);
    all.extend(ids(&left));
    all.sort();
    assert_eq!(all, ["a", "b", "c", "u"], "nothing lost, nothing doubled");
}

#[tokio::test]
async fn filters_pick_by_kind_reason_and_age_and_the_copy_is_the_job_with_a_fresh_budget() {
    let q = Queues::new().await;
    q.dead("a", "push", "retries_exhausted", 7200).await;
    q.dead("b", "sms", "failed", 10).await;
    q.dead("c", "push", "delivery_unknown", 0).await;
    q.dead("u", "unknown", "unparseable", 0).await;

    let (_, out) = run_replay(&q.settings, &["--kind", "sms", "--kind", "whatsapp"]).await;
    assert!(out.contains("moved job 'b' (sms, failed, dead 1"), "{out}");
    assert!(
        out.contains("moved 1 of 4 dead letter(s) (3 skipped by filters)"),
        "{out}"
    );
    let moved = q.take_jobs().await;
    assert_eq!(ids(&moved), ["b"]);
    let b = &moved[0];
    assert_eq!(
        b.routing_key.as_str(),
        "orders.shipped",
        "the original routing key"
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&b.data).unwrap(),
        json!({"id": "b", "kind": "sms", "message": "M"})
    );
    let p = &b.properties;
    assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), "corr-b");
    assert_eq!(p.reply_to().as_ref().unwrap().as_str(), "answers");
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(header_str(p, "x-trace").as_deref(), Some("trace-b"));
    for gone in [
        headers::DEAD_REASON,
        headers::DEAD_AT,
        headers::LAST_ERROR,
        headers::ATTEMPTS,
        headers::RECEIVED_AT,
    ] {
        assert!(
            header_int(p, gone).is_none() && header_str(p, gone).is_none(),
            "{gone}"
        );
    }
    assert_eq!(header_int(p, headers::REPLAY_COUNT), Some(1));
    let replayed_at = header_int(p, headers::REPLAYED_AT).unwrap();
    assert!((chrono::Utc::now().timestamp_millis() - replayed_at).abs() < 60_000);

    // By age, to a routing key of our choosing.
    q.wait_dead(3).await;
    let (_, out) = run_replay(
        &q.settings,
        &["--older-than", "3600", "--routing-key", "again"],
    )
    .await;
    assert!(
        out.contains("moved 1 of 3 dead letter(s) (2 skipped by filters)"),
        "{out}"
    );
    let moved = q.take_jobs().await;
    assert_eq!(ids(&moved), ["a"]);
    assert_eq!(moved[0].routing_key.as_str(), "again");

    // Unparseable only when named, and --newer-than bounds the other side.
    q.wait_dead(2).await;
    let (_, out) = run_replay(&q.settings, &["--newer-than", "60"]).await;
    assert!(out.contains("moved job 'c'"), "{out}");
    assert!(
        out.contains("moved 1 of 2 dead letter(s) (1 skipped by filters)"),
        "{out}"
    );
    q.wait_dead(1).await;
    let (_, out) = run_replay(&q.settings, &["--reason", "unparseable"]).await;
    assert!(
        out.contains("moved job 'u' (unknown, unparseable, dead "),
        "{out}"
    );
    assert_eq!(q.settle(2).await, (2, 0));
    assert_eq!(ids(&q.take_jobs().await), ["c", "u"]);
}

#[tokio::test]
async fn a_replayed_then_dead_again_job_counts_its_replays() {
    let q = Queues::new().await;
    q.dead("r", "push", "failed", 5).await;
    run_replay(&q.settings, &[]).await;
    // The worker would dead-letter it again, copying its headers: simulate that.
    let first = q.take_jobs().await.remove(0);
    let mut h = first.properties.headers().clone().unwrap();
    h.insert(
        headers::DEAD_REASON.into(),
        AMQPValue::LongString(LongString::from("failed")),
    );
    h.insert(
        headers::DEAD_AT.into(),
        AMQPValue::LongLongInt(chrono::Utc::now().timestamp_millis()),
    );
    publish(
        &q.channel,
        "",
        &q.settings.amqp.dead_letter_queue,
        &first.data,
        first.properties.clone().with_headers(h),
    )
    .await;
    run_replay(&q.settings, &[]).await;
    let second = q.take_jobs().await.remove(0);
    assert_eq!(
        header_int(&second.properties, headers::REPLAY_COUNT),
        Some(2)
    );
}

#[tokio::test]
async fn a_filtered_replay_conserves_every_dead_letter() {
    let q = Queues::new().await;
    let kinds = ["push", "sms", "whatsapp"];
    let total = 60;
    for i in 0..total {
        q.dead(&format!("j{i:03}"), kinds[i % 3], "retries_exhausted", 5)
            .await;
    }
    // Two replays at once over the same queue: each dead letter is taken by one of them.
    let (one, two) = tokio::join!(
        run_replay(&q.settings, &["--kind", "push", "--kind", "sms"]),
        run_replay(&q.settings, &["--kind", "push", "--kind", "sms"]),
    );
    let moved_lines = one
        .1
        .lines()
        .chain(two.1.lines())
        .filter(|l| l.starts_with("moved job"))
        .count();
    assert_eq!(moved_lines, 40, "{}\n{}", one.1, two.1);
    q.settle(total).await;
    let jobs = q.take_jobs().await;
    let dead = q.take_dead().await;
    assert_eq!(jobs.len() + dead.len(), total);
    assert_eq!(jobs.len(), 40);
    let mut all: Vec<_> = ids(&jobs);
    all.extend(ids(&dead));
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        total,
        "no duplicate"
    );
    assert!(
        dead.iter()
            .all(|d| header_str(&d.properties, headers::KIND).as_deref() == Some("whatsapp"))
    );
}

#[tokio::test]
async fn an_interrupted_replay_loses_nothing() {
    let q = Queues::new().await;
    let total = 300;
    for i in 0..total {
        q.dead(&format!("k{i:03}"), "push", "failed", 5).await;
    }
    // Ctrl-C as soon as it has moved one: it stops cleanly, nothing doubled.
    let mut child = replay(&q.settings, &[]).spawn().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    tokio::time::timeout(WAIT, stdout.read_line(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert!(first.starts_with("moved job 'k"), "{first}");
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    let summary = rest.lines().last().unwrap_or(&first).to_owned();
    let moved_lines = 1 + rest.lines().filter(|l| l.starts_with("moved job")).count();
    let (jobs, dead) = q.settle(total).await;
    assert_eq!(jobs, moved_lines, "{summary}");
    assert_eq!(jobs + dead, total, "{summary}");
    if jobs < total {
        assert_eq!(status.code(), Some(130), "{summary}");
        assert!(summary.ends_with("; interrupted"), "{summary}");
    }

    // Killed outright: what it had not acked goes back; at most the one in hand doubles.
    let mut child = replay(&q.settings, &[]).spawn().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    tokio::time::timeout(WAIT, stdout.read_line(&mut first))
        .await
        .unwrap()
        .unwrap();
    child.kill().await.unwrap();
    // The broker requeues the unacked once it sees the connection gone.
    q.settle(total).await;
    let jobs = q.take_jobs().await;
    let dead = q.take_dead().await;
    let mut all = ids(&jobs);
    all.extend(ids(&dead));
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), total, "nothing lost");
    assert!(
        all.len() <= total + 1,
        "at most the one in hand doubled: {}",
        all.len()
    );
}
