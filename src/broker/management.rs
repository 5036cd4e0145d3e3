//! The RabbitMQ management HTTP API, read only: what `topology --check` cannot learn over
//! AMQP. A passive declare proves that an exchange or queue exists, but compares neither
//! type nor arguments, and bindings cannot be seen over AMQP 0-9-1 at all.

use std::time::Duration;

use anyhow::{Context, bail};
use lapin::types::{AMQPValue, FieldTable};
use reqwest::{StatusCode, Url};
use serde_json::Value;

/// A client of one broker's management API, for the vhost of the worker's AMQP URL.
pub struct Management {
    client: reqwest::Client,
    base: Url,
    username: String,
    password: String,
    vhost: String,
}

impl Management {
    /// The API at `base` (e.g. `http://rabbitmq:15672`), or by default on the AMQP URL's
    /// host at port 15672 (15671 for `amqps`). Credentials are the ones in `base`, else
    /// the AMQP URL's.
    pub fn new(amqp_url: &str, base: Option<&str>) -> anyhow::Result<Self> {
        let amqp: lapin::uri::AMQPUri = amqp_url
            .parse()
            .map_err(|e| anyhow::anyhow!("amqp.url is not an AMQP URL: {e}"))?;
        let mut base = match base {
            Some(base) => {
                Url::parse(base).with_context(|| format!("--management-url {base} is not a URL"))?
            }
            None => {
                let url = Url::parse(amqp_url).context("amqp.url is not a URL")?;
                let host = url.host_str().unwrap_or("localhost");
                let (scheme, port) = match amqp.scheme {
                    lapin::uri::AMQPScheme::AMQPS => ("https", 15671),
                    lapin::uri::AMQPScheme::AMQP => ("http", 15672),
                };
                Url::parse(&format!("{scheme}://{host}:{port}/"))
                    .context("deriving the management URL from amqp.url")?
            }
        };
        let (username, password) = if base.username().is_empty() {
            (
                amqp.authority.userinfo.username,
                amqp.authority.userinfo.password,
            )
        } else {
            (
                base.username().to_owned(),
                base.password().unwrap_or_default().to_owned(),
            )
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            client,
            base,
            username,
            password,
            vhost: amqp.vhost,
        })
    }

    /// Trusts the CA in `ca_file` (PEM; `amqp.tls.ca_file`) besides the system's roots,
    /// for a management API served over https with a certificate of a private CA.
    pub fn trusting(mut self, ca_file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let Some(path) = ca_file else {
            return Ok(self);
        };
        let pem = std::fs::read(path)
            .with_context(|| format!("reading amqp.tls.ca_file {}", path.display()))?;
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
        for certificate in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("amqp.tls.ca_file {} is not PEM", path.display()))?
        {
            builder = builder.add_root_certificate(certificate);
        }
        self.client = builder.build().context("building the HTTP client")?;
        Ok(self)
    }

    /// The API's address, without credentials.
    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    /// Whether the API answers these credentials (`GET /api/overview`).
    pub async fn probe(&self) -> anyhow::Result<()> {
        self.get(&["overview"]).await?.context("no /api/overview")?;
        Ok(())
    }

    /// `GET /api/exchanges/<vhost>/<name>`; `None` when there is no such exchange.
    pub async fn exchange(&self, name: &str) -> anyhow::Result<Option<Value>> {
        self.get(&["exchanges", &self.vhost, name]).await
    }

    /// `GET /api/queues/<vhost>/<name>`; `None` when there is no such queue.
    pub async fn queue(&self, name: &str) -> anyhow::Result<Option<Value>> {
        self.get(&["queues", &self.vhost, name]).await
    }

    /// The routing keys binding `exchange` to `queue`.
    pub async fn binding_keys(&self, exchange: &str, queue: &str) -> anyhow::Result<Vec<String>> {
        self.keys(&["bindings", &self.vhost, "e", exchange, "q", queue])
            .await
    }

    /// The routing keys `source` is bound to exchange `destination` with.
    pub async fn exchange_binding_keys(
        &self,
        source: &str,
        destination: &str,
    ) -> anyhow::Result<Vec<String>> {
        self.keys(&["bindings", &self.vhost, "e", source, "e", destination])
            .await
    }

    async fn keys(&self, segments: &[&str]) -> anyhow::Result<Vec<String>> {
        let list = self
            .get(segments)
            .await?
            .unwrap_or(Value::Array(Vec::new()));
        Ok(list
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|b| b["routing_key"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn get(&self, segments: &[&str]) -> anyhow::Result<Option<Value>> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("{} cannot be a base URL", self.base))?
            .pop_if_empty()
            .push("api")
            // push() percent-encodes each segment, so the default vhost `/` becomes %2F.
            .extend(segments);
        let response = self
            .client
            .get(url.clone())
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let body = response
                    .bytes()
                    .await
                    .with_context(|| format!("GET {url}"))?;
                Ok(Some(serde_json::from_slice(&body).with_context(|| {
                    format!("GET {url}: the answer is not JSON")
                })?))
            }
            StatusCode::UNAUTHORIZED => bail!(
                "GET {url}: 401, the management API refused user {:?} (it needs the \
                 `monitoring` or `management` tag)",
                self.username
            ),
            status => bail!("GET {url}: HTTP {status}"),
        }
    }
}

/// How an existing exchange differs from a durable exchange of type `kind` with exactly
/// `expected` arguments.
pub fn exchange_differences(kind: &str, expected: &FieldTable, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if actual["type"] != kind {
        out.push(format!("type is {}, expected {kind}", actual["type"]));
    }
    if actual["durable"] != true {
        out.push("not durable".to_owned());
    }
    if actual["auto_delete"] == true {
        out.push("auto-delete".to_owned());
    }
    out.extend(argument_differences(expected, &actual["arguments"]));
    out
}

/// How an existing queue differs from a durable queue with exactly `expected` arguments.
pub fn queue_differences(expected: &FieldTable, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if actual["durable"] != true {
        out.push("not durable".to_owned());
    }
    if actual["auto_delete"] == true {
        out.push("auto-delete".to_owned());
    }
    if actual["exclusive"] == true {
        out.push("exclusive".to_owned());
    }
    out.extend(argument_differences(expected, &actual["arguments"]));
    out
}

fn argument_differences(expected: &FieldTable, actual: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let actual = actual.as_object().unwrap_or(&empty);
    let mut out = Vec::new();
    for (key, value) in expected.inner() {
        let want = json_of(value);
        match actual.get(key.as_str()) {
            None => out.push(format!("{key} is not set, expected {want}")),
            Some(got) if !same(got, &want) => out.push(format!("{key} is {got}, expected {want}")),
            Some(_) => {}
        }
    }
    for (key, got) in actual {
        if !expected.inner().contains_key(key.as_str()) {
            out.push(format!("{key} is {got}, expected not set"));
        }
    }
    out
}

/// Numbers compare by value: the API may spell 10 as 10 or 10.0.
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn json_of(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::LongString(s) => Value::from(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ShortString(s) => Value::from(s.as_str()),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::Boolean(b) => Value::from(*b),
        other => Value::from(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::topology::long_string;
    use serde_json::json;

    fn quorum_jobs_args() -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), long_string("quorum"));
        args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(10));
        args
    }

    #[test]
    fn the_same_queue_has_no_differences() {
        let actual = json!({"durable": true, "auto_delete": false, "exclusive": false,
                            "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 10}});
        assert!(queue_differences(&quorum_jobs_args(), &actual).is_empty());
    }

    #[test]
    fn every_difference_is_named() {
        let actual = json!({"durable": false, "auto_delete": false, "exclusive": false,
                            "arguments": {"x-queue-type": "classic", "x-max-length": 5}});
        assert_eq!(
            queue_differences(&quorum_jobs_args(), &actual),
            [
                "not durable",
                r#"x-delivery-limit is not set, expected 10"#,
                r#"x-queue-type is "classic", expected "quorum""#,
                "x-max-length is 5, expected not set",
            ]
        );
    }

    #[test]
    fn exchanges_must_have_their_type_and_arguments() {
        let none = FieldTable::default();
        let ok = json!({"type": "topic", "durable": true, "auto_delete": false, "arguments": {}});
        assert!(exchange_differences("topic", &none, &ok).is_empty());
        let fanout = json!({"type": "fanout", "durable": true, "auto_delete": false,
                            "arguments": {"alternate-exchange": "x"}});
        assert_eq!(
            exchange_differences("topic", &none, &fanout),
            [
                r#"type is "fanout", expected topic"#,
                r#"alternate-exchange is "x", expected not set"#
            ]
        );
        let mut lanes = FieldTable::default();
        lanes.insert(
            "alternate-exchange".into(),
            crate::broker::topology::long_string("x"),
        );
        assert!(exchange_differences("fanout", &lanes, &fanout).is_empty());
    }

    #[test]
    fn the_default_address_follows_the_amqp_url() {
        let m = Management::new("amqp://bob:pw@rabbit.internal:5672/%2f", None).unwrap();
        assert_eq!(m.base(), "http://rabbit.internal:15672/");
        assert_eq!((m.username.as_str(), m.vhost.as_str()), ("bob", "/"));
        let tls = Management::new("amqps://bob:pw@10.0.0.7/prod", None).unwrap();
        assert_eq!(tls.base(), "https://10.0.0.7:15671/");
        assert_eq!(tls.vhost, "prod");
        let given = Management::new(
            "amqp://bob:pw@rabbit/%2f",
            Some("http://admin:secret@mgmt:8080"),
        )
        .unwrap();
        assert_eq!(given.base(), "http://mgmt:8080/");
        assert_eq!(given.username, "admin");
    }

    #[test]
    fn a_private_ca_is_read_or_refused_clearly() {
        let m = || Management::new("amqps://bob:pw@10.0.0.7/prod", None).unwrap();
        let ca = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/broker/test-ca.pem"
        ));
        assert!(m().trusting(Some(ca)).is_ok());
        assert!(m().trusting(None).is_ok());
        let missing = m()
            .trusting(Some(std::path::Path::new("/nonexistent/ca.pem")))
            .err()
            .expect("a missing file is an error");
        assert!(
            format!("{missing:#}").contains("amqp.tls.ca_file"),
            "{missing:#}"
        );
    }
}
