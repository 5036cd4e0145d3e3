//! The HTTP side: axum routes, the per-request pipeline (count, latency, faults, parse,
//! answer), the one-line request log, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::SandboxConfig;
use super::codes::time_seed;
use super::faults::{Fault, Faults};
use super::methods::{self, Method};
use super::state::{Counters, Store};

/// How long a hung request waits: far beyond any client time-out (cut short by shutdown).
const HANG: Duration = Duration::from_secs(6 * 3600);

/// Everything the handlers and the handle share.
pub(super) struct Shared {
    pub(super) store: Store,
    pub(super) counters: Counters,
    pub(super) faults: Faults,
    tokens: Vec<String>,
    shutdown: watch::Sender<bool>,
    /// Request lines at info level (the CLI) rather than debug (embedded use).
    verbose: bool,
}

impl Shared {
    pub(super) fn new(config: &SandboxConfig, verbose: bool) -> Self {
        let seed = time_seed();
        Self {
            store: Store::new(config.dedup_window, seed),
            counters: Counters::new(),
            faults: Faults::new(
                config.latency,
                config.error_rate,
                config.throttle_rate,
                config.hang_rate,
                config.create_message_per_minute,
                seed.rotate_left(32),
            ),
            tokens: config.valid_tokens.clone(),
            shutdown: watch::channel(false).0,
            verbose,
        }
    }

    pub(super) fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Sleeps for `d`; true if it was cut short by shutdown.
    async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.subscribe();
        tokio::select! {
            () = tokio::time::sleep(d) => false,
            _ = rx.wait_for(|stopping| *stopping) => true,
        }
    }
}

/// The server future for an already bound listener; it ends after `Shared::shutdown`.
pub(super) fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    let mut rx = shared.shutdown.subscribe();
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/json/1.3/{method}", post(api))
        .route("/{method}", post(api))
        .fallback(not_found)
        .with_state(shared);
    async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|stopping| *stopping).await;
            })
            .await
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    (status, content_type, body.to_string()).into_response()
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

fn error_body(status: StatusCode, message: &str) -> Value {
    json!({ "status_code": status.as_u16(), "status_message": message })
}

/// `POST /json/1.3/{method}` and `POST /{method}`.
async fn api(State(shared): State<Arc<Shared>>, Path(name): Path<String>, body: Bytes) -> Response {
    let started = Instant::now();
    let Some(method) = Method::parse(&name) else {
        log(
            &shared,
            "-",
            StatusCode::NOT_FOUND,
            None,
            "unknown method",
            started,
        );
        return (StatusCode::NOT_FOUND, "unknown method\n").into_response();
    };
    shared.counters.count(method);
    let latency = shared.faults.latency();
    if !latency.is_zero() && shared.sleep(latency).await {
        return stopping(&shared, method, started);
    }
    let (response, code, note) = match shared.faults.decide(method) {
        Some(Fault::Hang) => {
            shared.sleep(HANG).await;
            return stopping(&shared, method, started);
        }
        Some(fault) => fault_response(fault),
        None => normal_response(&shared, method, &body),
    };
    log(
        &shared,
        method.name(),
        response.status(),
        code,
        note,
        started,
    );
    response
}

/// The answer to a request cut short by shutdown (latency or hang).
fn stopping(shared: &Shared, method: Method, started: Instant) -> Response {
    let status = StatusCode::SERVICE_UNAVAILABLE;
    log(
        shared,
        method.name(),
        status,
        None,
        "shutting down",
        started,
    );
    json_response(status, &error_body(status, "Service shutting down"))
}

fn fault_response(fault: Fault) -> (Response, Option<u64>, &'static str) {
    match fault {
        Fault::Status(s) => {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = status.canonical_reason().unwrap_or("Injected failure");
            let mut response = json_response(status, &error_body(status, reason));
            if status == StatusCode::TOO_MANY_REQUESTS {
                response = with_retry_after(response, 1);
            }
            (response, None, "fault: fail_next")
        }
        Fault::Internal => {
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            let response = json_response(status, &error_body(status, "Internal error"));
            (response, None, "fault: error_rate")
        }
        Fault::Throttle => {
            let status = StatusCode::TOO_MANY_REQUESTS;
            let response = json_response(status, &error_body(status, "Too many requests"));
            (with_retry_after(response, 1), None, "fault: throttle_rate")
        }
        Fault::RateLimited { retry_after } => {
            let status = StatusCode::TOO_MANY_REQUESTS;
            let body = error_body(status, "Rate limit exceeded, retry later");
            let response = with_retry_after(json_response(status, &body), retry_after);
            (response, None, "fault: rate limit")
        }
        // Handled by the caller (it needs to wait); answer like an overloaded gateway.
        Fault::Hang => {
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let response = json_response(status, &error_body(status, "Service unavailable"));
            (response, None, "fault: hang")
        }
    }
}

fn normal_response(
    shared: &Shared,
    method: Method,
    body: &[u8],
) -> (Response, Option<u64>, &'static str) {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let text = "malformed request: the body is not valid JSON\n";
            return (
                (StatusCode::BAD_REQUEST, text).into_response(),
                None,
                "bad json",
            );
        }
    };
    let Some(Value::Object(request)) = parsed.get("request") else {
        let text = "malformed request: expected {\"request\": {...}}\n";
        return (
            (StatusCode::BAD_REQUEST, text).into_response(),
            None,
            "no request object",
        );
    };
    let answer = methods::answer(method, request, &shared.store, &shared.tokens);
    let code = answer.get("status_code").and_then(Value::as_u64);
    (json_response(StatusCode::OK, &answer), code, "")
}

/// One line per request; never the body (it carries `auth`).
fn log(
    shared: &Shared,
    method: &str,
    http: StatusCode,
    status_code: Option<u64>,
    note: &str,
    started: Instant,
) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let http = http.as_u16();
    if shared.verbose {
        tracing::info!(
            method,
            http,
            status_code,
            elapsed_ms,
            note,
            "sandbox request"
        );
    } else {
        tracing::debug!(
            method,
            http,
            status_code,
            elapsed_ms,
            note,
            "sandbox request"
        );
    }
}
