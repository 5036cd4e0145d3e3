//! Routing by the routing key's first word: the matrix, the move from before lanes, a lane off.

use std::collections::{BTreeMap, BTreeSet};

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};
use pushwoosh_worker::broker::Topology;
use pushwoosh_worker::settings::{QueueType, Settings};

use crate::common::{cleanup, drain, json_props, publish, test_settings};
use crate::support::confirm_channel;

/// The routing keys of the contract's matrix, and whether each goes to the urgent lane.
const MATRIX: [(&str, bool); 6] = [
    ("urgent.otp", true),
    ("urgent", true),
    ("urgentx", false),
    ("job", false),
    ("", false),
    ("sms.urgent", false),
];

/// Publishes one message per routing key of the matrix, its body the key, and returns
/// what each queue then holds (bodies, sorted).
async fn route_matrix(
    channel: &Channel,
    settings: &Settings,
    tag: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    for (key, _) in MATRIX {
        let body = format!("{tag}:{key}");
        publish(
            channel,
            &settings.amqp.jobs_exchange,
            key,
            body.as_bytes(),
            json_props(),
        )
        .await;
    }
    let topology = Topology::new(settings);
    let mut held = BTreeMap::new();
    for queue in [
        topology.jobs_queue.clone(),
        topology.lane_queue(Some("urgent")).to_owned(),
    ] {
        let bodies = drain(channel, &queue)
            .await
            .into_iter()
            .map(|d| String::from_utf8(d.data).unwrap())
            .collect();
        held.insert(queue, bodies);
    }
    held
}

fn expected(settings: &Settings, tag: &str) -> BTreeMap<String, BTreeSet<String>> {
    let topology = Topology::new(settings);
    let lane = |urgent: bool| {
        MATRIX
            .iter()
            .filter(|(_, u)| *u == urgent)
            .map(|(key, _)| format!("{tag}:{key}"))
            .collect::<BTreeSet<_>>()
    };
    BTreeMap::from([
        (topology.jobs_queue.clone(), lane(false)),
        (topology.lane_queue(Some("urgent")).to_owned(), lane(true)),
    ])
}

/// What the version before lanes declared: the jobs exchange, the jobs queue bound `#`.
async fn declare_previous_version(channel: &Channel, settings: &Settings) {
    let a = &settings.amqp;
    channel
        .exchange_declare(
            a.jobs_exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let topology = Topology::new(settings);
    // The jobs queue with the arguments it had then (the same as now).
    for declaration in topology.declarations() {
        if let pushwoosh_worker::broker::topology::Declaration::Queue { name, .. } = &declaration
            && (name == &a.jobs_queue || name == &a.dead_letter_queue)
        {
            declaration.declare(channel).await.unwrap();
        }
    }
    channel
        .queue_bind(
            a.jobs_queue.as_str().into(),
            a.jobs_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn every_routing_key_lands_in_exactly_one_queue_after_a_move_from_the_previous_version() {
    for queue_type in [QueueType::Quorum, QueueType::Classic] {
        let mut settings = test_settings("http://127.0.0.1:9").await;
        settings.amqp.queue_type = queue_type;
        let (conn, channel) = confirm_channel(&settings).await;

        declare_previous_version(&channel, &settings).await;
        // Before the move, a job published to the old layout waits in the jobs queue.
        publish(
            &channel,
            &settings.amqp.jobs_exchange,
            "urgent.otp",
            b"waiting",
            json_props(),
        )
        .await;

        // What `topology` and every worker's start run.
        Topology::new(&settings).declare(&conn).await.unwrap();
        let held = route_matrix(&channel, &settings, "moved").await;
        let mut want = expected(&settings, "moved");
        want.get_mut(&settings.amqp.jobs_queue)
            .unwrap()
            .insert("waiting".to_owned());
        assert_eq!(held, want, "{queue_type:?}: after the move");

        // Declaring again (another replica's start) changes nothing.
        Topology::new(&settings).declare(&conn).await.unwrap();
        let held = route_matrix(&channel, &settings, "again").await;
        assert_eq!(
            held,
            expected(&settings, "again"),
            "{queue_type:?}: declared twice"
        );

        let _ = conn.close(200, "done".into()).await;
        cleanup(&settings);
    }
}

#[tokio::test]
async fn a_lane_turned_off_gives_its_jobs_back_to_the_jobs_queue() {
    let mut settings = test_settings("http://127.0.0.1:9").await;
    let (conn, channel) = confirm_channel(&settings).await;
    Topology::new(&settings).declare(&conn).await.unwrap();
    settings.lanes.get_mut("urgent").unwrap().enabled = false;
    Topology::new(&settings).declare(&conn).await.unwrap();
    for (key, _) in MATRIX {
        publish(
            &channel,
            &settings.amqp.jobs_exchange,
            key,
            key.as_bytes(),
            json_props(),
        )
        .await;
    }
    let jobs = drain(&channel, &settings.amqp.jobs_queue).await;
    assert_eq!(jobs.len(), MATRIX.len(), "every job in the jobs queue");
    let urgent = drain(&channel, &format!("{}.urgent", settings.amqp.jobs_queue)).await;
    assert!(urgent.is_empty(), "the lane's queue gets nothing once off");
    // The test's own cleanup knows the lane's queue only while it is on.
    settings.lanes.get_mut("urgent").unwrap().enabled = true;
    let _ = conn.close(200, "done".into()).await;
    cleanup(&settings);
}
