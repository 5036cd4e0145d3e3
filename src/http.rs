//! The operator's HTTP endpoints: `/metrics`, `/livez` (and `/healthz`), `/readyz`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::worker::Readiness;

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/livez", get(live))
        .route("/healthz", get(live))
        .route("/readyz", get(ready))
        .with_state(HttpState { metrics, readiness })
}

pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, readiness))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn render_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<HttpState>) -> (StatusCode, String) {
    let r = &state.readiness;
    let (status, text) = if r.breaker_open() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: circuit breaker open: Pushwoosh is failing",
        )
    } else if r.ledger_down() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the ledger (Redis, ledger.url) does not answer; jobs wait until it does",
        )
    } else if r.cannot_publish() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: cannot publish results (the publish channel is closed and could not be opened again)",
        )
    } else if r.is_ready() {
        (
            StatusCode::OK,
            "ready: connected to the broker and consuming",
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not connected to the broker or not consuming",
        )
    };
    // Which node (password masked): the one consumed from, or the last one reached.
    (status, format!("{text}\nbroker: {}\n", r.broker()))
}
