//! The mock Pushwoosh the worker calls: the project's sandbox or a bare responder, served
//! by one thread of the bench with a runtime of its own, so its CPU can be read apart
//! (`/proc/self/task/<tid>/stat`) and it never waits behind the producer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use pushwoosh_worker::bench_support::{self, SandboxConfig, SandboxHandle};
use serde::Deserialize;

use super::MockKind;

pub struct Mock {
    server: Server,
    base_url: String,
    /// The serving thread's id, for its CPU time.
    tid: Option<u32>,
}

enum Server {
    Sandbox(SandboxHandle),
    Minimal(Arc<Minimal>),
}

impl Mock {
    pub fn start(kind: MockKind) -> anyhow::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("bench-mock".into())
            .spawn(move || {
                let tid = std::fs::read_link("/proc/thread-self")
                    .ok()
                    .and_then(|p| p.file_name()?.to_str()?.parse::<u32>().ok());
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                runtime.block_on(async move {
                    let started = match kind {
                        MockKind::Sandbox => start_sandbox().await,
                        MockKind::Minimal => start_minimal().await,
                    };
                    let _ = tx.send(started.map(|(server, base_url)| Mock {
                        server,
                        base_url,
                        tid,
                    }));
                    std::future::pending::<()>().await;
                });
            })?;
        rx.recv().context("the mock thread died")?
    }

    /// `PUSHWOOSH_API_URL` for the worker.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn set_latency(&self, latency: Duration) {
        match &self.server {
            Server::Sandbox(h) => h.set_latency(latency),
            Server::Minimal(m) => m
                .latency_us
                .store(latency.as_micros() as u64, Ordering::Relaxed),
        }
    }

    /// createMessage calls a sliding minute (HTTP 429 beyond); the sandbox only.
    pub fn set_create_message_limit(&self, per_minute: Option<u32>) -> anyhow::Result<()> {
        match &self.server {
            Server::Sandbox(h) => {
                h.set_rate_limit("createMessage", per_minute);
                Ok(())
            }
            Server::Minimal(_) if per_minute.is_none() => Ok(()),
            Server::Minimal(_) => {
                anyhow::bail!("the minimal mock has no rate limit: use --mock sandbox")
            }
        }
    }

    /// createMessage requests so far, answered or refused.
    pub fn create_message_calls(&self) -> u64 {
        match &self.server {
            Server::Sandbox(h) => h.requests("createMessage"),
            Server::Minimal(m) => m.calls.load(Ordering::Relaxed),
        }
    }

    /// Distinct messages the sandbox created (a repeated transactionId creates none);
    /// the minimal responder does not know.
    pub fn sends(&self) -> Option<u64> {
        match &self.server {
            Server::Sandbox(h) => Some(h.sends()),
            Server::Minimal(_) => None,
        }
    }

    /// The mock thread's CPU so far, ms.
    pub fn cpu_ms(&self) -> Option<f64> {
        super::procs::cpu_ms_of(&format!("/proc/self/task/{}/stat", self.tid?))
    }

    pub fn name(&self) -> &'static str {
        match self.server {
            Server::Sandbox(_) => "sandbox",
            Server::Minimal(_) => "minimal",
        }
    }
}

async fn start_sandbox() -> anyhow::Result<(Server, String)> {
    let config = SandboxConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..SandboxConfig::default()
    };
    let handle = bench_support::start_sandbox(config)
        .await
        .context("starting the sandbox")?;
    let base = handle.base_url();
    Ok((Server::Sandbox(handle), base))
}

/// Counts calls, waits the latency, answers 200 with one message code per notification.
#[derive(Default)]
pub struct Minimal {
    calls: AtomicU64,
    latency_us: AtomicU64,
}

async fn start_minimal() -> anyhow::Result<(Server, String)> {
    let state = Arc::new(Minimal::default());
    let app = Router::new()
        .route("/json/1.3/{method}", post(answer))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((Server::Minimal(state), format!("http://{addr}/json/1.3")))
}

#[derive(Deserialize)]
struct Envelope {
    request: Request,
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    notifications: Vec<serde::de::IgnoredAny>,
}

async fn answer(State(state): State<Arc<Minimal>>, body: Bytes) -> impl IntoResponse {
    let n = state.calls.fetch_add(1, Ordering::Relaxed);
    let latency = state.latency_us.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_micros(latency)).await;
    }
    let notifications = serde_json::from_slice::<Envelope>(&body)
        .map_or(1, |e| e.request.notifications.len().max(1));
    let codes: Vec<String> = (0..notifications)
        .map(|i| format!("\"BNCH-{n:08X}-{i:08X}\""))
        .collect();
    let body = format!(
        r#"{{"status_code":200,"status_message":"OK","response":{{"Messages":[{}]}}}}"#,
        codes.join(",")
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}
