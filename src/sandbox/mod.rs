//! A local Pushwoosh-compatible Messages API ("the sandbox"): newcomers run the whole
//! pipeline without a Pushwoosh account, and tests and benchmarks get a realistic peer.
//!
//! It serves `POST {base}/json/1.3/<method>` (and `POST {base}/<method>`) for createMessage,
//! createSMSMessage, createWhatsAppMessage, createTargetedMessage, cancelMessage,
//! deleteMessage, getMessageDetails and getPushHistory, plus `GET /healthz`; it
//! de-duplicates `transactionId`s, counts requests and sends, and injects faults.

mod cli;
mod codes;
mod faults;
mod filter;
mod methods;
mod server;
mod state;
#[cfg(test)]
mod tests;
mod views;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use cli::SandboxArgs;

use methods::Method;
use server::Shared;

/// How the sandbox listens and which faults it injects.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to bind; port 0 picks a free port (see [`SandboxHandle::base_url`]).
    pub listen: SocketAddr,
    /// Added to every API answer.
    pub latency: Duration,
    /// Probability (0.0..=1.0) of HTTP 500 `{"status_code":500,"status_message":"Internal error"}`.
    pub error_rate: f64,
    /// Probability of HTTP 429 with `Retry-After: 1`.
    pub throttle_rate: f64,
    /// Probability that a request is never answered (until shutdown).
    pub hang_rate: f64,
    /// createMessage calls allowed per sliding minute; beyond it HTTP 429 with `Retry-After`.
    pub create_message_per_minute: Option<u32>,
    /// Accepted `auth` tokens; empty means any non-empty token.
    pub valid_tokens: Vec<String>,
    /// How long a (application, transactionId) pair keeps its message code.
    pub dedup_window: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8087)),
            latency: Duration::ZERO,
            error_rate: 0.0,
            throttle_rate: 0.0,
            hang_rate: 0.0,
            create_message_per_minute: None,
            valid_tokens: Vec::new(),
            dedup_window: Duration::from_secs(5 * 60),
        }
    }
}

/// A running sandbox: its address, its counters, and runtime fault controls.
/// Dropping every handle does not stop it; call [`SandboxHandle::shutdown`].
#[derive(Clone)]
pub struct SandboxHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for SandboxHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SandboxHandle {
    /// The API base the worker uses as `PUSHWOOSH_API_URL`, e.g. `http://127.0.0.1:8087/json/1.3`.
    pub fn base_url(&self) -> String {
        format!("http://{}/json/1.3", self.addr)
    }

    /// The address clients connect to (an unspecified listen address becomes loopback).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests seen for `method` (e.g. `"createMessage"`), whatever their outcome.
    pub fn requests(&self, method: &str) -> u64 {
        self.shared.counters.get(method)
    }

    /// Distinct messages created (one per notification; de-duplicated repeats excluded).
    pub fn sends(&self) -> u64 {
        self.shared.store.sends()
    }

    /// The next `n` API requests answer HTTP `http_status` (with `Retry-After: 1` for 429).
    pub fn fail_next(&self, n: u32, http_status: u16) {
        self.shared.faults.fail_next(n, http_status);
    }

    pub fn set_latency(&self, d: Duration) {
        self.shared.faults.set_latency(d);
    }

    pub fn set_error_rate(&self, r: f64) {
        self.shared.faults.set_error_rate(r);
    }

    pub fn set_throttle_rate(&self, r: f64) {
        self.shared.faults.set_throttle_rate(r);
    }

    pub fn set_hang_rate(&self, r: f64) {
        self.shared.faults.set_hang_rate(r);
    }

    /// Sets or lifts (`None`) a method's per-minute limit; false for an unknown method name.
    pub fn set_rate_limit(&self, method: &str, per_minute: Option<u32>) -> bool {
        Method::parse(method)
            .map(|m| self.shared.faults.set_rate_limit(m, per_minute))
            .is_some()
    }

    /// Like [`Self::set_rate_limit`] over a sliding `window` instead of a minute (quick
    /// tests: 10 a second stands for 600 a minute).
    pub fn set_rate_limit_per(&self, method: &str, limit: Option<u32>, window: Duration) -> bool {
        Method::parse(method)
            .map(|m| self.shared.faults.set_rate_limit_per(m, limit, window))
            .is_some()
    }

    /// Graceful stop: no new connections, in-flight answers finish (hung ones answer 503).
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }
}

/// Where clients should connect for a listen address.
fn connect_addr(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

async fn bind(
    config: &SandboxConfig,
    verbose: bool,
) -> std::io::Result<(SandboxHandle, tokio::net::TcpListener)> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = connect_addr(listener.local_addr()?);
    let shared = Arc::new(Shared::new(config, verbose));
    Ok((SandboxHandle { shared, addr }, listener))
}

/// Binds (port 0 allowed: base_url reports the real port) and serves in a spawned tokio task; returns once listening.
pub async fn start(config: SandboxConfig) -> std::io::Result<SandboxHandle> {
    let (handle, listener) = bind(&config, false).await?;
    let server = server::serve(listener, handle.shared.clone());
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "sandbox server stopped");
        }
    });
    Ok(handle)
}

/// For the CLI: serve until ctrl-c / SIGTERM, logging one line per request with tracing (never log `auth`).
pub async fn serve_forever(config: SandboxConfig) -> std::io::Result<()> {
    let (handle, listener) = bind(&config, true).await?;
    tracing::info!(
        base_url = %handle.base_url(),
        latency_ms = config.latency.as_millis() as u64,
        error_rate = config.error_rate,
        throttle_rate = config.throttle_rate,
        hang_rate = config.hang_rate,
        create_message_per_minute = config.create_message_per_minute,
        tokens = config.valid_tokens.len(),
        dedup_window_secs = config.dedup_window.as_secs(),
        "Pushwoosh sandbox listening"
    );
    let server = server::serve(listener, handle.shared.clone());
    let signals = handle.clone();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("Pushwoosh sandbox shutting down");
        signals.shutdown();
    });
    server.await
}

/// Resolves on ctrl-c (SIGINT) or, on Unix, SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; ctrl-c only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
