//! Fault injection over HTTP: fail_next, rate limit, throttle, error rate, latency, hang,
//! and graceful shutdown.

use std::time::{Duration, Instant};

use serde_json::json;

use super::super::SandboxConfig;
use super::{only_code, sandbox, sandbox_with};

fn push_body() -> String {
    json!({ "request": { "auth": "t", "application": "A", "notifications": [ { "content": "x" } ] } })
        .to_string()
}

#[tokio::test]
async fn fail_next_answers_the_status_n_times() {
    let s = sandbox().await;
    s.handle.fail_next(2, 503);
    for _ in 0..2 {
        let raw = s.post("createMessage", push_body()).await;
        assert_eq!(raw.status, 503);
        assert_eq!(raw.json()["status_code"], json!(503));
    }
    assert_eq!(s.post("createMessage", push_body()).await.status, 200);
    assert_eq!(s.handle.requests("createMessage"), 3);
    assert_eq!(s.handle.sends(), 1);

    s.handle.fail_next(1, 429);
    let raw = s.post("getPushHistory", "{}").await;
    assert_eq!((raw.status, raw.retry_after.as_deref()), (429, Some("1")));
    s.handle.fail_next(1, 0);
    assert_eq!(s.post("getPushHistory", "{}").await.status, 500);
    s.handle.fail_next(3, 502);
    s.handle.fail_next(0, 502);
    assert_eq!(s.post("createMessage", push_body()).await.status, 200);
}

#[tokio::test]
async fn create_message_rate_limit_answers_429_with_retry_after() {
    let config = SandboxConfig {
        create_message_per_minute: Some(2),
        ..Default::default()
    };
    let s = sandbox_with(config).await;
    for _ in 0..2 {
        assert_eq!(s.post("createMessage", push_body()).await.status, 200);
    }
    let raw = s.post("createMessage", push_body()).await;
    assert_eq!(raw.status, 429, "{}", raw.body);
    let retry: u64 = raw.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(raw.json()["status_code"], json!(429));
    // Other methods are not limited; the limit can be lifted at runtime.
    let sms = json!({ "request": { "auth": "t", "application": "A",
                                   "notifications": [ { "devices": ["+1"] } ] } });
    assert_eq!(
        s.post("createSMSMessage", sms.to_string()).await.status,
        200
    );
    assert!(s.handle.set_rate_limit("createMessage", None));
    assert!(!s.handle.set_rate_limit("nope", None));
    assert_eq!(s.post("createMessage", push_body()).await.status, 200);
    assert_eq!(s.handle.requests("createMessage"), 4);
    assert_eq!(s.handle.sends(), 4);
}

#[tokio::test]
async fn error_rate_and_throttle_rate() {
    let config = SandboxConfig {
        error_rate: 1.0,
        ..Default::default()
    };
    let s = sandbox_with(config).await;
    let raw = s.post("createMessage", push_body()).await;
    assert_eq!(raw.status, 500);
    assert_eq!(
        raw.json(),
        json!({ "status_code": 500, "status_message": "Internal error" })
    );
    s.handle.set_error_rate(0.0);
    s.handle.set_throttle_rate(1.0);
    let raw = s.post("createMessage", push_body()).await;
    assert_eq!((raw.status, raw.retry_after.as_deref()), (429, Some("1")));
    s.handle.set_throttle_rate(0.0);
    only_code(
        &s.call(
            "createMessage",
            json!({ "auth": "t", "application": "A",
                                               "notifications": [{}] }),
        )
        .await,
    );
    assert_eq!(s.handle.sends(), 1);
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let latency = Duration::from_millis(150);
    let s = sandbox_with(SandboxConfig {
        latency,
        ..Default::default()
    })
    .await;
    let t = Instant::now();
    assert_eq!(s.post("createMessage", push_body()).await.status, 200);
    assert!(t.elapsed() >= latency, "{:?}", t.elapsed());
    s.handle.fail_next(1, 503);
    let t = Instant::now();
    assert_eq!(s.post("createMessage", "garbage").await.status, 503);
    assert!(t.elapsed() >= latency);
    s.handle.set_latency(Duration::ZERO);
    let t = Instant::now();
    assert_eq!(s.post("createMessage", "garbage").await.status, 400);
    assert!(t.elapsed() < latency, "{:?}", t.elapsed());
}

#[tokio::test]
async fn hung_requests_time_out_and_end_at_shutdown() {
    let s = sandbox_with(SandboxConfig {
        hang_rate: 1.0,
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = format!("{}/createMessage", s.handle.base_url());
    let err = client
        .post(&url)
        .body(push_body())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(s.handle.requests("createMessage"), 1);
    assert_eq!(s.handle.sends(), 0);

    // A hung request still pending at shutdown is answered 503, and the server stops.
    let pending = tokio::spawn({
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(&url)
                .body(push_body())
                .send()
                .await
        }
    });
    // Shut down only once the request is there (a fixed sleep is too short on a busy machine).
    for _ in 0..500 {
        if s.handle.requests("createMessage") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.handle.requests("createMessage"), 2);
    let t = Instant::now();
    s.handle.shutdown();
    let answer = tokio::time::timeout(Duration::from_secs(5), pending).await;
    let status = answer.unwrap().unwrap().unwrap().status().as_u16();
    assert_eq!(status, 503);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let s = sandbox().await;
    assert_eq!(s.post("createMessage", push_body()).await.status, 200);
    s.handle.shutdown();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://{}/healthz", s.handle.local_addr());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if client.get(&url).send().await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "still serving after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
