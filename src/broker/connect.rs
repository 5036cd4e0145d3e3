//! Opening the connection, retried with backoff for a bounded time so that a worker
//! started just before its broker still comes up, and a wrong URL still fails clearly.

use std::time::{Duration, Instant};

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};

/// The frame size the worker asks for unless the URL sets one (`?frame_max=`). lapin
/// keeps a send and a receive buffer of 32 frames each, resident for the connection's
/// life: at RabbitMQ's default of 128 KiB that is 8 MiB, more than the rest of an idle
/// worker; at 16 KiB, 1 MiB. Jobs and results are far smaller than a frame; a larger
/// message still goes through, in several frames.
pub const DEFAULT_FRAME_MAX: u32 = 16 * 1024;

/// The URL with its password masked, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Connects, retrying for up to `give_up_after`.
pub async fn connect(url: &str, name: &str, give_up_after: Duration) -> anyhow::Result<Connection> {
    let started = Instant::now();
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let attempt = match url.parse::<AMQPUri>() {
            Ok(mut uri) => {
                uri.query.frame_max.get_or_insert(DEFAULT_FRAME_MAX);
                Connection::connect_uri(uri, properties).await
            }
            // lapin says what is wrong with it.
            Err(_) => Connection::connect(url, properties).await,
        };
        match attempt {
            Ok(connection) => return Ok(connection),
            Err(error) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                if started.elapsed() + delay > give_up_after {
                    return Err(error).with_context(|| {
                        format!(
                            "could not connect to RabbitMQ at {} within {} ms",
                            redact_url(url),
                            give_up_after.as_millis()
                        )
                    });
                }
                tracing::warn!(
                    broker = %redact_url(url),
                    error = %error,
                    retry_in_ms = delay.as_millis() as u64,
                    "RabbitMQ not reachable yet"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact_url("amqp://host"), "amqp://host");
    }
}
