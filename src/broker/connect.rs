//! Opening the connection, retried with backoff for a bounded time so that a worker
//! started just before its broker still comes up, and a wrong URL still fails clearly.
//!
//! With several endpoints (`amqp.urls`, or `AMQP_URL` holding several URLs separated by
//! commas: the nodes of one cluster) each round tries them in order, one attempt each;
//! a reconnection starts after the node it lost (`after`), so that node is tried last,
//! and a first connection goes to the first URL that answers.

use std::time::{Duration, Instant};

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};

use crate::settings::AmqpSettings;

/// The frame size the worker asks for unless the URL sets one (`?frame_max=`). lapin
/// keeps a send and a receive buffer of 32 frames each, resident for the connection's
/// life: at RabbitMQ's default of 128 KiB that is 8 MiB, more than the rest of an idle
/// worker; at 16 KiB, 1 MiB. Jobs and results are far smaller than a frame; a larger
/// message still goes through, in several frames.
pub const DEFAULT_FRAME_MAX: u32 = 16 * 1024;

/// One attempt at one endpoint: a node that accepts TCP but does not answer (a paused
/// VM, a partitioned node) is left for the next one after this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A connection, and which endpoint it reached.
pub struct Connected {
    pub connection: Connection,
    /// The endpoint's URL, password masked.
    pub endpoint: String,
    /// Its place in `amqp.endpoints()`.
    pub index: usize,
}

/// Connects to one of `amqp`'s endpoints, retrying for up to `give_up_after`.
pub async fn connect(
    amqp: &AmqpSettings,
    name: &str,
    give_up_after: Duration,
) -> anyhow::Result<Connected> {
    connect_after(amqp, name, give_up_after, None).await
}

/// [`connect`], trying the endpoint at `after` (the one just lost) last.
pub async fn connect_after(
    amqp: &AmqpSettings,
    name: &str,
    give_up_after: Duration,
    after: Option<usize>,
) -> anyhow::Result<Connected> {
    let endpoints = amqp.endpoints();
    anyhow::ensure!(
        !endpoints.is_empty(),
        "no broker URL: set amqp.url, amqp.urls or AMQP_URL"
    );
    let tls = tls_config(amqp)?;
    let started = Instant::now();
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let first = after.map_or(0, |i| i + 1) % endpoints.len();
        let mut errors = Vec::new();
        for i in (0..endpoints.len()).map(|k| (first + k) % endpoints.len()) {
            let url = &endpoints[i];
            match attempt(url, name, &tls).await {
                Ok(connection) => {
                    let endpoint = redact_url(url);
                    tracing::info!(broker = %endpoint, "connected to RabbitMQ");
                    return Ok(Connected {
                        connection,
                        endpoint,
                        index: i,
                    });
                }
                Err(error) => {
                    if endpoints.len() > 1 {
                        tracing::warn!(broker = %redact_url(url), error = format!("{error:#}"), "RabbitMQ node not reachable: trying the next one");
                    }
                    errors.push(error);
                }
            }
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(5));
        let error = errors
            .pop()
            .unwrap_or_else(|| anyhow::anyhow!("no endpoint"));
        if started.elapsed() + delay > give_up_after {
            let tried: Vec<String> = endpoints.iter().map(|u| redact_url(u)).collect();
            return Err(error).with_context(|| {
                format!(
                    "could not connect to RabbitMQ at {} within {} ms",
                    tried.join(", "),
                    give_up_after.as_millis()
                )
            });
        }
        tracing::warn!(
            error = format!("{error:#}"),
            retry_in_ms = delay.as_millis() as u64,
            "RabbitMQ not reachable yet"
        );
        tokio::time::sleep(delay).await;
    }
}

async fn attempt(url: &str, name: &str, tls: &OwnedTLSConfig) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let runtime = lapin::runtime::default_runtime()?;
    let connect = async {
        match url.parse::<AMQPUri>() {
            Ok(mut uri) => {
                uri.query.frame_max.get_or_insert(DEFAULT_FRAME_MAX);
                Connection::connect_uri_with_config(uri, properties, tls.clone(), runtime).await
            }
            // lapin says what is wrong with it.
            Err(_) => Connection::connect_with_config(url, properties, tls.clone(), runtime).await,
        }
    };
    match tokio::time::timeout(ATTEMPT_TIMEOUT, connect).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(explain(error, url)),
        Err(_) => anyhow::bail!(
            "{} did not answer within {} s",
            redact_url(url),
            ATTEMPT_TIMEOUT.as_secs()
        ),
    }
}

/// lapin's error, with what a TLS failure most likely means.
fn explain(error: lapin::Error, url: &str) -> anyhow::Error {
    let text = format!("{error:#}");
    let tls = url.starts_with("amqps://");
    if tls && (text.contains("certificate") || text.contains("UnknownIssuer")) {
        anyhow::Error::new(error).context(format!(
            "TLS to {}: the broker's certificate is not trusted (set amqp.tls.ca_file to the CA that signed it)",
            redact_url(url)
        ))
    } else {
        anyhow::Error::new(error).context(format!("connecting to {}", redact_url(url)))
    }
}

/// `[amqp.tls]`: the CA to trust (PEM, added to the system's roots) and a client
/// certificate, read once per connection round.
fn tls_config(amqp: &AmqpSettings) -> anyhow::Result<OwnedTLSConfig> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).with_context(|| format!("reading amqp.tls.{what} {}", path.display()))
    };
    let cert_chain = match &amqp.tls.ca_file {
        Some(path) => Some(
            String::from_utf8(read(path, "ca_file")?)
                .with_context(|| format!("amqp.tls.ca_file {} is not PEM", path.display()))?,
        ),
        None => None,
    };
    let identity = match (&amqp.tls.cert_file, &amqp.tls.key_file) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read(cert, "cert_file")?,
            key: read(key, "key_file")?,
        }),
        (None, None) => None,
        _ => anyhow::bail!("amqp.tls.cert_file and amqp.tls.key_file go together"),
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
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
