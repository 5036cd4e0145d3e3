//! `pushwoosh-worker topology [--check]`, run as an operator would against the real
//! broker, on names of the test's own.

mod common;

use common::{
    amqp_connection, cleanup, confirm_channel, json_props, publish, queue_depth,
    run_topology as topology, test_settings,
};
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};
use pushwoosh_worker::broker::Topology;
use pushwoosh_worker::settings::Settings;
use serde_json::json;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The names of every exchange and queue the settings imply.
fn names(settings: &Settings) -> (Vec<String>, Vec<String>) {
    let topology = Topology::new(settings);
    (topology.exchanges(), topology.queues())
}

/// Whether a queue exists, by a passive declare (on a throw-away channel).
async fn queue_exists(conn: &Connection, name: &str) -> bool {
    let channel = conn.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), passive, FieldTable::default())
        .await
        .is_ok()
}

async fn exchange_exists(conn: &Connection, name: &str) -> bool {
    let channel = conn.create_channel().await.unwrap();
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            passive,
            FieldTable::default(),
        )
        .await
        .is_ok()
}

#[tokio::test]
async fn topology_creates_everything_and_check_then_passes() {
    let settings = test_settings("http://127.0.0.1:9").await;
    let (exchanges, queues) = names(&settings);

    let (ok, out) = topology(&settings, &[]).await;
    assert!(ok, "{out}");
    for name in &exchanges {
        assert!(
            out.contains(&format!("exchange {name}: created\n")),
            "{out}"
        );
    }
    for name in &queues {
        assert!(out.contains(&format!("queue {name}: created\n")), "{out}");
    }
    let t = Topology::new(&settings);
    for line in [
        format!(
            "binding {} -> {} (): bound\n",
            t.bulk_exchange, t.jobs_queue
        ),
        format!(
            "binding {} -> exchange {} (#): bound\n",
            t.jobs_exchange, t.lanes_exchange
        ),
        format!(
            "no binding {} -> {} (#): removed if it was there\n",
            t.jobs_exchange, t.jobs_queue
        ),
        format!(
            "binding {} -> {}.urgent (urgent.#): bound\n",
            t.lanes_exchange, t.jobs_queue
        ),
    ] {
        assert!(out.contains(&line), "{line}: {out}");
    }
    let conn = amqp_connection(&settings).await;
    for name in &queues {
        assert!(queue_exists(&conn, name).await, "{name} was declared");
    }
    for name in &exchanges {
        assert!(exchange_exists(&conn, name).await, "{name} was declared");
    }

    let (ok, out) = topology(&settings, &["--check"]).await;
    assert!(ok, "--check passes after topology: {out}");
    for name in exchanges
        .iter()
        .map(|e| format!("exchange {e}"))
        .chain(queues.iter().map(|q| format!("queue {q}")))
    {
        assert!(out.contains(&format!("{name}: ok")), "{name}: {out}");
    }
    assert!(out.contains(" 0 missing, 0 differ"), "{out}");
    cleanup(&settings);
}

#[tokio::test]
async fn check_on_nothing_declared_fails_names_what_is_missing_and_creates_nothing() {
    let settings = test_settings("http://127.0.0.1:9").await;
    let (exchanges, queues) = names(&settings);

    let (ok, out) = topology(&settings, &["--check"]).await;
    assert!(!ok, "--check must fail when nothing exists: {out}");
    for name in &exchanges {
        assert!(
            out.contains(&format!("exchange {name}: missing\n")),
            "{out}"
        );
    }
    for name in &queues {
        assert!(out.contains(&format!("queue {name}: missing\n")), "{out}");
    }
    let t = Topology::new(&settings);
    for line in [
        format!(
            "binding {} -> {} (): missing\n",
            t.bulk_exchange, t.jobs_queue
        ),
        format!(
            "binding {} -> exchange {} (#): missing\n",
            t.jobs_exchange, t.lanes_exchange
        ),
        format!(
            "binding {} -> {}.urgent (urgent.#): missing\n",
            t.lanes_exchange, t.jobs_queue
        ),
        // The binding an earlier version made is rightly not there.
        format!(
            "no binding {} -> {} (#): ok\n",
            t.jobs_exchange, t.jobs_queue
        ),
    ] {
        assert!(
            out.contains(&line),
            "a binding of missing objects is missing too: {line}: {out}"
        );
    }
    let total = exchanges.len() + queues.len() + 3;
    assert!(
        out.contains(&format!("1 ok, {total} missing, 0 differ")),
        "{out}"
    );

    let conn = amqp_connection(&settings).await;
    for name in &queues {
        assert!(!queue_exists(&conn, name).await, "--check created {name}");
    }
    for name in &exchanges {
        assert!(
            !exchange_exists(&conn, name).await,
            "--check created {name}"
        );
    }
    cleanup(&settings);
}

#[tokio::test]
async fn topology_twice_is_idempotent_and_keeps_what_the_queues_hold() {
    let settings = test_settings("http://127.0.0.1:9").await;
    let (_, queues) = names(&settings);
    let (ok, out) = topology(&settings, &[]).await;
    assert!(ok, "{out}");

    let (_conn, channel) = confirm_channel(&settings).await;
    let a = &settings.amqp;
    publish(&channel, &a.jobs_exchange, "job", b"{}", json_props()).await;

    let (ok, again) = topology(&settings, &[]).await;
    assert!(ok, "{again}");
    for name in &queues {
        assert!(
            again.contains(&format!("queue {name}: ok (already there)\n")),
            "{again}"
        );
    }
    assert!(!again.contains("created"), "{again}");
    assert_eq!(
        queue_depth(&channel, &a.jobs_queue).await,
        1,
        "declaring again keeps the jobs queue's messages"
    );
    let (ok, out) = topology(&settings, &["--check"]).await;
    assert!(ok, "{out}");
    cleanup(&settings);
}

/// A management API that knows the test's objects, with the jobs queue of another type
/// and no binding: what an operator sees when a queue was created by hand.
#[tokio::test]
async fn check_with_the_management_api_reports_arguments_that_differ_and_missing_bindings() {
    let settings = test_settings("http://127.0.0.1:9").await;
    let (ok, out) = topology(&settings, &[]).await;
    assert!(ok, "{out}");

    let api = MockServer::start().await;
    let jobs_queue = settings.amqp.jobs_queue.clone();
    let dead_queue = settings.amqp.dead_letter_queue.clone();
    let retry_prefix = settings.amqp.retry_queue_prefix.clone();
    let t = Topology::new(&settings);
    let (bulk_exchange, lanes_exchange) = (t.bulk_exchange.clone(), t.lanes_exchange.clone());
    let urgent_queue = format!("{jobs_queue}.urgent");
    let urgent = urgent_queue.clone();
    Mock::given(wiremock::matchers::method("GET"))
        .respond_with(move |request: &Request| {
            let path = request.url.path();
            let name = path.rsplit('/').next().unwrap_or_default();
            if path == "/api/overview" {
                ResponseTemplate::new(200).set_body_json(json!({"rabbitmq_version": "fake"}))
            } else if path == format!("/api/exchanges/%2F/{bulk_exchange}") {
                ResponseTemplate::new(200).set_body_json(
                    json!({"type": "fanout", "durable": true, "auto_delete": false, "arguments": {}}),
                )
            } else if path == format!("/api/exchanges/%2F/{lanes_exchange}") {
                ResponseTemplate::new(200).set_body_json(json!({
                    "type": "topic", "durable": true, "auto_delete": false,
                    "arguments": {"alternate-exchange": bulk_exchange}}))
            } else if path.starts_with("/api/exchanges/%2F/") {
                ResponseTemplate::new(200).set_body_json(
                    json!({"type": "topic", "durable": true, "auto_delete": false, "arguments": {}}),
                )
            } else if path == format!("/api/queues/%2F/{jobs_queue}") {
                ResponseTemplate::new(200).set_body_json(json!({
                    "durable": true, "auto_delete": false, "exclusive": false,
                    "arguments": {"x-queue-type": "classic"}}))
            } else if path == format!("/api/queues/%2F/{dead_queue}") {
                ResponseTemplate::new(200).set_body_json(json!({
                    "durable": true, "auto_delete": false, "exclusive": false,
                    "arguments": {"x-queue-type": "quorum"}}))
            } else if path == format!("/api/queues/%2F/{urgent}") {
                ResponseTemplate::new(200).set_body_json(json!({
                    "durable": true, "auto_delete": false, "exclusive": false,
                    "arguments": {"x-queue-type": "quorum", "x-dead-letter-exchange": "",
                                  "x-dead-letter-routing-key": dead_queue,
                                  "x-delivery-limit": 10}}))
            } else if name.starts_with(&format!("{retry_prefix}.")) {
                let back_to = if name.starts_with(&format!("{retry_prefix}.urgent.")) {
                    urgent.clone()
                } else {
                    jobs_queue.clone()
                };
                ResponseTemplate::new(200).set_body_json(json!({
                    "durable": true, "auto_delete": false, "exclusive": false,
                    "arguments": {"x-queue-type": "quorum", "x-dead-letter-exchange": "",
                                  "x-dead-letter-routing-key": back_to}}))
            } else if path.starts_with("/api/bindings/%2F/e/") {
                ResponseTemplate::new(200).set_body_json(json!([]))
            } else {
                ResponseTemplate::new(404)
            }
        })
        .mount(&api)
        .await;

    let (ok, out) = topology(&settings, &["--check", "--management-url", &api.uri()]).await;
    assert!(!ok, "a queue that differs fails the check: {out}");
    let a = &settings.amqp;
    assert!(
        out.contains(&format!(
            "queue {}: differs: x-dead-letter-exchange is not set, expected \"\"; \
             x-dead-letter-routing-key is not set, expected \"{}\"; x-delivery-limit is not \
             set, expected 10; x-queue-type is \"classic\", expected \"quorum\"\n",
            a.jobs_queue, a.dead_letter_queue
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("queue {}: ok\n", a.dead_letter_queue)),
        "{out}"
    );
    assert!(
        out.contains(&format!("exchange {}: ok\n", a.jobs_exchange)),
        "{out}"
    );
    for line in [
        format!("exchange {}: ok\n", t.bulk_exchange),
        format!("exchange {}: ok\n", t.lanes_exchange),
        format!("queue {urgent_queue}: ok\n"),
        format!(
            "binding {} -> {} (): missing\n",
            t.bulk_exchange, t.jobs_queue
        ),
        format!(
            "binding {} -> exchange {} (#): missing\n",
            t.jobs_exchange, t.lanes_exchange
        ),
        format!(
            "binding {} -> {urgent_queue} (urgent.#): missing\n",
            t.lanes_exchange
        ),
        format!(
            "no binding {} -> {} (#): ok\n",
            t.jobs_exchange, t.jobs_queue
        ),
    ] {
        assert!(out.contains(&line), "{line}: {out}");
    }
    assert!(out.contains(" 3 missing, 1 differ, 0 not checked"), "{out}");
    let asked_with = api.received_requests().await.unwrap();
    let auth = asked_with[0].headers.get("authorization");
    assert!(
        auth.is_some_and(|a| a.to_str().unwrap().starts_with("Basic ")),
        "the AMQP URL's credentials go with every request"
    );
    cleanup(&settings);
}
