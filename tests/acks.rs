//! Coalesced acks against the real broker: jobs that finish together are acked with one
//! multiple ack, yet a job still at work is never acked, a slow job does not hold the
//! prefetch credit of the jobs after it, and a worker killed right after its results
//! leaves nothing to be sent twice.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{TestApp, push_job, push_job_for, test_settings};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(15);

/// The value of a counter in /metrics text.
fn counter(metrics: &str, series: &str) -> u64 {
    common::metric(metrics, series) as u64
}

/// The single and the multiple acks sent, from /metrics text.
fn acks_sent(metrics: &str) -> (u64, u64) {
    (
        counter(
            metrics,
            r#"pushwoosh_worker_settle_commands_total{command="ack"}"#,
        ),
        counter(
            metrics,
            r#"pushwoosh_worker_settle_commands_total{command="ack_multiple"}"#,
        ),
    )
}

#[tokio::test]
async fn jobs_that_finish_together_are_acked_together() {
    // A filled queue: the worker takes 128 at a time, and they finish close together.
    let mock = common::answering_ok().await;
    let mut settings = test_settings(&mock.uri()).await;
    settings.amqp.prefetch = 128;
    common::declare_topology(&settings).await;
    let (_conn, channel, _) = common::observe(&settings).await;
    for i in 0..300 {
        common::publish_job(&channel, &settings, &push_job(&format!("t-{i}"))).await;
    }
    let mut app = TestApp::start(mock, settings).await;
    for _ in 0..300 {
        let r = app.next_result(WAIT).await.body;
        assert_eq!(r["outcome"], "ok", "{r}");
    }
    let metrics = app.metrics().await;
    let (single, multiple) = acks_sent(&metrics);
    println!("300 jobs settled with {single} single and {multiple} multiple acks");
    assert!(multiple > 0, "no multiple ack:\n{metrics}");
    assert!(
        single + multiple <= 100,
        "300 jobs took {} acks",
        single + multiple
    );
    assert_eq!(
        counter(
            &metrics,
            r#"pushwoosh_worker_settle_commands_total{command="requeue"}"#
        ),
        0
    );
    app.stop().await;
}

/// The worker's runtime (one thread by default) runs a task woken by another task's send
/// next, ahead of the tasks already queued: the ack task must still wait its turn for the
/// jobs finishing in the same burst, or it acks them a few at a time (3 to 13 acks for 40
/// jobs, seen without the wait). With it, a burst takes one ack, or two when the
/// runtime's periodic upkeep (every 61 polls) falls inside it: 1.6 to 1.8 a burst, seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_burst_of_jobs_finishing_in_one_turn_takes_one_ack() {
    use futures_util::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};
    use pushwoosh_worker::metrics::Metrics;
    use pushwoosh_worker::worker::acks::{Acks, Settlement};
    use std::sync::Arc;
    const BURST: u16 = 40;
    const BURSTS: u64 = 10;

    let settings = test_settings("http://127.0.0.1:9").await;
    common::declare_topology(&settings).await;
    let (conn, channel, _) = common::observe(&settings).await;
    let consume = conn.create_channel().await.unwrap();
    consume
        .basic_qos(BURST, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consume
        .basic_consume(
            settings.amqp.jobs_queue.as_str().into(),
            "burst".into(),
            BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let acks = Acks::start(consume.clone(), Duration::from_millis(5), metrics.clone());
    for burst in 0..BURSTS {
        for i in 0..BURST {
            common::publish_job(&channel, &settings, &push_job(&format!("b-{burst}-{i}"))).await;
        }
        let mut tags = Vec::new();
        while tags.len() < usize::from(BURST) {
            let delivery = tokio::time::timeout(WAIT, consumer.next())
                .await
                .expect("the jobs are delivered")
                .unwrap()
                .unwrap();
            tags.push(delivery.delivery_tag);
        }
        // As the jobs' tasks do: each settles its own delivery, all in one turn.
        let settled = tokio::spawn({
            let acks = acks.clone();
            async move {
                tags.into_iter()
                    .map(|tag| {
                        let acks = acks.clone();
                        tokio::spawn(async move { acks.settle(Settlement::Ack(tag)) })
                    })
                    .collect::<Vec<_>>()
            }
        });
        for task in settled.await.unwrap() {
            task.await.unwrap();
        }
        acks.flush().await;
    }
    let metrics = metrics.render();
    let (single, multiple) = acks_sent(&metrics);
    println!("{BURSTS} bursts of {BURST} jobs: {single} single and {multiple} multiple acks");
    assert_eq!(single, 0, "{metrics}");
    assert!(
        (BURSTS..=BURSTS * 5 / 2).contains(&multiple),
        "{BURSTS} bursts of {BURST} jobs took {multiple} acks"
    );
    // And the broker took them: nothing comes back when the channel closes.
    consume.close(200, "done".into()).await.unwrap();
    assert_eq!(
        common::queue_depth_reaches(
            &channel,
            &settings.amqp.jobs_queue,
            0,
            Duration::from_secs(2)
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_slow_job_does_not_hold_back_the_acks_of_the_jobs_after_it() {
    // Prefetch 4: one slow job, held by the API until the others are done, and forty
    // others. Were their acks held until the slow one finished, the window would stay
    // full and no more than three of them would ever come: all forty finishing while the
    // slow call is held is the proof.
    let mut api = common::HeldApi::start("SLOW0-00000").await;
    let api_url = api.api_url.clone();
    let mut app = TestApp::spawn_with(|s| {
        s.amqp.prefetch = 4;
        s.pushwoosh.api_url = api_url;
        // The held call ends when the test releases it, not with a time-out.
        s.pushwoosh.timeout_ms = 600_000;
    })
    .await;
    app.publish_job(&push_job_for("SLOW0-00000", "slow")).await;
    api.wait_held(1, WAIT).await;
    for i in 0..40 {
        app.publish_job(&push_job(&format!("fast-{i}"))).await;
    }
    let mut fast = HashSet::new();
    for _ in 0..40 {
        let r = app.next_result(WAIT).await.body;
        assert_ne!(
            r["job_id"], "slow",
            "the slow job finished before the others: they waited for it"
        );
        assert_eq!(r["outcome"], "ok", "{r}");
        fast.insert(r["job_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(fast.len(), 40);
    api.release();
    let r = app.next_result(WAIT).await.body;
    assert_eq!(r["job_id"], "slow");
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["message_codes"], json!(["HELD"]), "{r}");
    let metrics = app.metrics().await;
    assert!(
        counter(
            &metrics,
            r#"pushwoosh_worker_settle_commands_total{command="ack"}"#
        ) > 0,
        "jobs behind the slow one were acked on their own:\n{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_worker_killed_right_after_its_results_leaves_no_job_to_send_twice() {
    let mock = common::answering_ok().await;
    let settings = test_settings(&mock.uri()).await;
    common::declare_topology(&settings).await;
    let (_conn, channel, mut results) = common::observe(&settings).await;
    let mut child = common::worker_command(&settings)
        .env("PUSHWOOSH_WORKER__AMQP__PREFETCH", "128")
        .spawn()
        .unwrap();
    for i in 0..200 {
        common::publish_job(&channel, &settings, &push_job(&format!("k-{i}"))).await;
    }
    for _ in 0..200 {
        let r = common::next_from(&mut results, WAIT).await.body;
        assert_eq!(r["outcome"], "ok", "{r}");
    }
    // The last acks are owed for at most amqp.ack_coalesce_ms (5 ms) after the last
    // result; then the worker dies without a chance to flush anything.
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().await.unwrap(); // SIGKILL
    child.wait().await.unwrap();

    // Any job the broker still counted as unacked would now be redelivered to the next
    // worker and pushed again.
    let mut again = TestApp::start(MockServer::start().await, settings.clone()).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&again.mock)
        .await;
    again.assert_no_result(Duration::from_secs(1)).await;
    assert_eq!(again.total_calls().await, 0, "a job was sent twice");
    assert_eq!(
        common::queue_depth(&channel, &settings.amqp.jobs_queue).await,
        0
    );
    again.stop().await;
}
