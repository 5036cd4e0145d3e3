//! The one HTTP client of the process: pooled connections, rustls, a time-out per call.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;

use crate::job::JobKind;

/// An HTTP answer, whatever its status.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// A call that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// No answer in time. `sent` is false when it timed out while connecting.
    Timeout { sent: bool, after: Duration },
    /// The connection could not be made: the request never left.
    Connect { message: String },
    /// Anything else (reset mid-request, broken body): the request may have arrived.
    Other { message: String },
}

impl TransportError {
    /// The word metrics use for it (`api_calls_total{status}`, `retries_total{reason}`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Connect { .. } => "connect",
            Self::Other { .. } => "transport",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PushwooshClient {
    http: reqwest::Client,
    base: String,
    /// `<base>/<method>` for every method, parsed once: a URL string would be parsed
    /// (host, IDNA, path) on every call.
    urls: Arc<[(&'static str, Url)]>,
    timeout: Duration,
}

impl PushwooshClient {
    pub fn new(api_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("pushwoosh-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base = api_url.trim_end_matches('/').to_owned();
        // A base that does not parse keeps failing per call, as before, with reqwest's error.
        let urls = JobKind::ALL
            .iter()
            .filter_map(|kind| {
                let method = kind.method();
                let url = Url::parse(&format!("{base}/{method}")).ok()?;
                Some((method, url))
            })
            .collect();
        Ok(Self {
            http,
            base,
            urls,
            timeout,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST <base>/<method>` with a ready `{"request": …}` body.
    pub async fn call(&self, method: &str, body: Bytes) -> Result<HttpAnswer, TransportError> {
        let request = match self.urls.iter().find(|(m, _)| *m == method) {
            Some((_, url)) => self.http.post(url.clone()),
            None => self.http.post(format!("{}/{method}", self.base)),
        };
        let response = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        Ok(HttpAnswer {
            status,
            retry_after,
            body,
        })
    }

    fn transport_error(&self, error: reqwest::Error) -> TransportError {
        if error.is_timeout() {
            TransportError::Timeout {
                sent: !error.is_connect(),
                after: self.timeout,
            }
        } else if error.is_connect() {
            TransportError::Connect {
                message: error_chain(&error),
            }
        } else {
            TransportError::Other {
                message: error_chain(&error),
            }
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` is either delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_its_parsed_url() {
        let client =
            PushwooshClient::new("http://127.0.0.1:8087/json/1.3/", Duration::from_secs(1))
                .unwrap();
        assert_eq!(client.urls.len(), JobKind::ALL.len());
        for kind in JobKind::ALL {
            let (_, url) = client
                .urls
                .iter()
                .find(|(m, _)| *m == kind.method())
                .unwrap();
            assert_eq!(
                url.as_str(),
                format!("http://127.0.0.1:8087/json/1.3/{}", kind.method())
            );
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let future = (chrono::Utc::now() + chrono::TimeDelta::seconds(120)).to_rfc2822();
        let wait = parse_retry_after(&future).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
