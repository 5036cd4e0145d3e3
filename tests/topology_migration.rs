//! `pushwoosh-worker topology` on a deployment an earlier version declared: what it
//! moves over, and that nothing parked is lost on the way.

mod common;

use common::{
    cleanup, confirm_channel, json_props, publish, queue_depth, run_topology as topology,
    test_settings,
};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use pushwoosh_worker::broker::Topology;

/// A deployment whose retry queues an earlier version made classic: declaring moves each
/// over to a quorum queue, and a job parked in one goes back to its queue, not lost.
#[tokio::test]
async fn classic_retry_queues_of_an_earlier_version_become_quorum_and_keep_their_jobs() {
    let mut settings = test_settings("http://127.0.0.1:9").await;
    // A retry tier long enough that the parked job is still there when declaring comes.
    settings.retry.initial_delay_ms = 20_000;
    settings.retry.max_delay_ms = 20_000;
    let t = Topology::new(&settings);
    let a = &settings.amqp;
    let (conn, channel) = confirm_channel(&settings).await;
    // What the earlier version declared: the jobs queue, and classic retry queues.
    let (ok, out) = topology(&settings, &[]).await;
    assert!(ok, "{out}");
    let tier = *t.retry_tiers.iter().max().unwrap();
    let retry = t.retry_queue(None, tier);
    for name in t.retry_queues() {
        channel
            .queue_delete(name.as_str().into(), Default::default())
            .await
            .unwrap();
    }
    let mut classic = FieldTable::default();
    classic.insert("x-queue-type".into(), long("classic"));
    classic.insert(
        "x-message-ttl".into(),
        lapin::types::AMQPValue::LongLongInt(tier.as_millis() as i64),
    );
    classic.insert("x-dead-letter-exchange".into(), long(""));
    classic.insert("x-dead-letter-routing-key".into(), long(&a.jobs_queue));
    channel
        .queue_declare(
            retry.as_str().into(),
            QueueDeclareOptions::durable(),
            classic,
        )
        .await
        .unwrap();
    publish(&channel, "", &retry, br#"{"id":"parked"}"#, json_props()).await;
    assert_eq!(queue_depth(&channel, &retry).await, 1);

    let (ok, out) = topology(&settings, &[]).await;
    assert!(ok, "{out}");
    // The parked job went back to the jobs queue; the retry queue is a quorum queue now
    // (declaring it classic is refused), with the other retry queues.
    assert_eq!(queue_depth(&channel, &a.jobs_queue).await, 1);
    assert_eq!(queue_depth(&channel, &retry).await, 0);
    let declarations = t.declarations();
    for name in t.retry_queues() {
        let Some(pushwoosh_worker::broker::topology::Declaration::Queue { arguments, .. }) =
            declarations.iter().find(|d| {
                matches!(d, pushwoosh_worker::broker::topology::Declaration::Queue { name: n, .. } if *n == name)
            })
        else {
            panic!("{name} is declared");
        };
        assert_eq!(
            arguments.inner().get("x-queue-type"),
            Some(&long("quorum")),
            "{name}"
        );
        let own = conn.create_channel().await.unwrap();
        own.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::durable(),
            arguments.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{name} is the quorum queue the worker declares: {e}"));
    }
    let (ok, out) = topology(&settings, &["--check"]).await;
    assert!(ok, "{out}");
    cleanup(&settings);
}

fn long(value: &str) -> lapin::types::AMQPValue {
    lapin::types::AMQPValue::LongString(value.into())
}
