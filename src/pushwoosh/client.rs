//! The one HTTP client of the process: pooled connections, rustls, a time-out per call.

use std::time::Duration;

use bytes::Bytes;

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

#[derive(Debug, Clone)]
pub struct PushwooshClient {
    http: reqwest::Client,
    base: String,
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
        Ok(Self {
            http,
            base: api_url.trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST <base>/<method>` with a ready `{"request": …}` body.
    pub async fn call(&self, method: &str, body: Bytes) -> Result<HttpAnswer, TransportError> {
        let url = format!("{}/{method}", self.base);
        let response = self
            .http
            .post(url)
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
