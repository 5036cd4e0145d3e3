//! The broker stopped and started while jobs flow (`rabbitmqctl stop_app` / `start_app`):
//! the worker reconnects by itself, `/readyz` tells the truth meanwhile, and every job
//! ends with a result. Alone in its test binary: it restarts the shared broker.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{ok_answer, push_job, test_settings};
use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

fn rabbitmqctl(args: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!("this test restarts the broker with rabbitmqctl, which could not run: {e}")
        });
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

async fn connect(url: &str) -> (Connection, lapin::Channel) {
    for _ in 0..120 {
        if let Ok(conn) = Connection::connect(url, ConnectionProperties::default()).await {
            let channel = conn.create_channel().await.unwrap();
            channel
                .confirm_select(lapin::options::ConfirmSelectOptions::default())
                .await
                .unwrap();
            return (conn, channel);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the broker did not come back");
}

#[tokio::test]
async fn the_worker_rides_through_a_broker_restart_and_every_job_gets_a_result() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer(json!({"Messages": ["C"]})).set_delay(Duration::from_millis(300)))
        .mount(&mock)
        .await;
    let settings = test_settings(&mock.uri()).await;
    common::declare_topology(&settings).await;
    let observe_queue = format!("{}.observe", settings.amqp.jobs_queue);
    let (conn, channel) = connect(&settings.amqp.url).await;
    channel
        .queue_declare(
            observe_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            observe_queue.as_str().into(),
            settings.amqp.results_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let http = common::free_local_addr();
    let mut child = common::worker_command(&settings)
        .env("PUSHWOOSH_WORKER__HTTP__LISTEN", http.to_string())
        .spawn()
        .unwrap();
    common::wait_ready(http, Duration::from_secs(5)).await;
    assert_eq!(common::http_get(http, "/readyz").await.0, 200);

    for i in 0..20 {
        common::publish_job(&channel, &settings, &push_job(&format!("restart-{i}"))).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = conn.close(200, "restart".into()).await;
    rabbitmqctl(&["stop_app"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        common::http_get(http, "/readyz").await.0,
        503,
        "not ready without a broker"
    );
    assert_eq!(common::http_get(http, "/livez").await.0, 200, "but alive");
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);

    let (conn, channel) = connect(&settings.amqp.url).await;
    for i in 20..40 {
        common::publish_job(&channel, &settings, &push_job(&format!("restart-{i}"))).await;
    }
    let mut results: HashMap<String, Vec<bool>> = HashMap::new();
    for _ in 0..600 {
        while let Some(m) = channel
            .basic_get(
                observe_queue.as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            let r: serde_json::Value = serde_json::from_slice(&m.delivery.data).unwrap();
            assert_eq!(r["outcome"], "ok", "{r}");
            results
                .entry(r["job_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(r["redelivered"].as_bool().unwrap());
        }
        if results.len() == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        results.len(),
        40,
        "every job has a result: {:?}",
        results.keys()
    );
    for (id, flags) in &results {
        // A second result is only possible for a redelivered job, and says so.
        assert!(
            flags.len() == 1 || flags[1..].iter().all(|r| *r),
            "{id}: {flags:?}"
        );
    }
    assert_eq!(
        common::http_get(http, "/readyz").await.0,
        200,
        "ready again"
    );
    common::sigterm(&child).await;
    assert!(
        common::exit_status(&mut child, Duration::from_secs(30))
            .await
            .success()
    );
    let _ = channel
        .queue_delete(observe_queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
    common::cleanup(&settings);
}
