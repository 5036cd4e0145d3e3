//! What moves and what stays: dry run, limit, filters, the replayed copy and its replay count.

use lapin::types::{AMQPValue, LongString};
use pushwoosh_worker::broker::publisher::{header_int, headers};
use serde_json::json;

use crate::common::{header_str, publish};
use crate::support::{Queues, ids, run_replay};

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
