//! The lanes tests' shared helpers: a confirming channel, an SMS job, publish with a routing key.

use std::time::Duration;

use chrono::Utc;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use pushwoosh_worker::settings::Settings;
use serde_json::{Value, json};

use crate::common::{TestApp, json_props, publish};

pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn confirm_channel(settings: &Settings) -> (Connection, Channel) {
    let conn = Connection::connect(&settings.amqp.url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (conn, channel)
}

pub(crate) fn sms(id: &str) -> Value {
    json!({"id": id, "kind": "sms", "application": "A-B",
        "notifications": [{"send_date": "now", "content": "code 1234", "devices": ["+15550001"]}]})
}

pub(crate) async fn publish_to(app: &TestApp, routing_key: &str, job: &Value) {
    publish(
        &app.channel,
        &app.settings.amqp.jobs_exchange,
        routing_key,
        &serde_json::to_vec(job).unwrap(),
        json_props().with_timestamp(u64::try_from(Utc::now().timestamp()).unwrap()),
    )
    .await;
}
