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
use pushwoosh_worker::broker::topology::Declaration;

/// A deployment whose retry queues were classic (`amqp.queue_type = "classic"`), now
/// configured quorum: declaring moves each over to a quorum queue, and a job parked in
/// one goes back to its queue, not lost, and without an expiration (which would
/// dead-letter it there unread).
#[tokio::test]
async fn classic_retry_queues_become_quorum_and_keep_their_jobs() {
    let settings = test_settings("http://127.0.0.1:9").await;
    let t = Topology::new(&settings);
    let a = &settings.amqp;
    let (conn, channel) = confirm_channel(&settings).await;
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
    channel
        .queue_declare(
            retry.as_str().into(),
            QueueDeclareOptions::durable(),
            classic,
        )
        .await
        .unwrap();
    let parked = json_props().with_expiration("60000".into());
    publish(&channel, "", &retry, br#"{"id":"parked"}"#, parked).await;
    assert_eq!(queue_depth(&channel, &retry).await, 1);

    let (ok, out) = topology(&settings, &[]).await;
    assert!(ok, "{out}");
    // The parked job went back to the jobs queue, without an expiration; the retry queue
    // is a quorum queue now (declaring it classic is refused), with the other ones.
    assert_eq!(queue_depth(&channel, &retry).await, 0);
    let moved = channel
        .basic_get(a.jobs_queue.as_str().into(), Default::default())
        .await
        .unwrap()
        .expect("the parked job is in the jobs queue");
    assert_eq!(moved.delivery.data, br#"{"id":"parked"}"#);
    assert_eq!(moved.delivery.properties.expiration(), &None);
    let declarations = t.declarations();
    for name in t.retry_queues() {
        let Some(Declaration::Queue { arguments, .. }) = declarations
            .iter()
            .find(|d| matches!(d, Declaration::Queue { name: n, .. } if *n == name))
        else {
            panic!("{name} is declared");
        };
        assert_eq!(arguments.inner().get("x-queue-type"), Some(&long("quorum")));
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

/// A deployment whose retry queues expired their jobs back by themselves (a TTL and
/// at-least-once dead-lettering, the names without `.held`): declaring leaves them and
/// what they hold alone (they still give it back), and says so, for an operator to delete
/// them once they are empty.
#[tokio::test]
async fn retry_queues_with_a_ttl_of_an_earlier_version_are_left_to_drain_and_reported() {
    let mut settings = test_settings("http://127.0.0.1:9").await;
    settings.retry.initial_delay_ms = 20_000;
    settings.retry.max_delay_ms = 20_000;
    let t = Topology::new(&settings);
    let (_conn, channel) = confirm_channel(&settings).await;
    let tier = *t.retry_tiers.iter().max().unwrap();
    let earlier = t.earlier_retry_queue(None, tier);
    assert_ne!(earlier, t.retry_queue(None, tier));
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long("quorum"));
    args.insert(
        "x-message-ttl".into(),
        lapin::types::AMQPValue::LongLongInt(tier.as_millis() as i64),
    );
    args.insert("x-dead-letter-exchange".into(), long(""));
    args.insert(
        "x-dead-letter-routing-key".into(),
        long(&settings.amqp.jobs_queue),
    );
    args.insert("x-dead-letter-strategy".into(), long("at-least-once"));
    args.insert("x-overflow".into(), long("reject-publish"));
    channel
        .queue_declare(
            earlier.as_str().into(),
            QueueDeclareOptions::durable(),
            args,
        )
        .await
        .unwrap();
    let parked = json_props().with_expiration("20000".into());
    publish(&channel, "", &earlier, br#"{"id":"parked"}"#, parked).await;

    let note = format!(
        "note: queue {earlier} is an earlier version's retry queue, holding 1 parked job(s)"
    );
    let (ok, out) = topology(&settings, &[]).await;
    assert!(ok, "{out}");
    assert!(out.contains(&note), "{out}");
    assert_eq!(queue_depth(&channel, &earlier).await, 1, "left alone");
    let (ok, out) = topology(&settings, &["--check"]).await;
    assert!(ok, "an earlier queue fails no check: {out}");
    assert!(out.contains(&note), "{out}");
    channel
        .queue_delete(earlier.as_str().into(), Default::default())
        .await
        .unwrap();
    cleanup(&settings);
}

fn long(value: &str) -> lapin::types::AMQPValue {
    lapin::types::AMQPValue::LongString(value.into())
}
