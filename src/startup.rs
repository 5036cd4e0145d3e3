//! Wiring: builds the application from settings (so tests build the same thing) and
//! runs it until asked to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lapin::Connection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::{self, Topology};
use crate::ledger::CallLimiter;
use crate::metrics::Metrics;
use crate::pushwoosh::PushwooshClient;
use crate::retry::RetryPolicy;
use crate::settings::Settings;
use crate::worker::batcher::Batcher;
use crate::worker::consumer::{ConsumerSetup, connection_name};
use crate::worker::lane::Lane;
use crate::worker::{CircuitBreaker, Readiness, run_consumer};

pub struct Application {
    listener: TcpListener,
    connection: Connection,
    /// Which of `amqp.endpoints()` it reached.
    endpoint_index: usize,
    setup: ConsumerSetup,
}

impl Application {
    /// Checks the configuration, binds the HTTP endpoints, reaches the broker (retrying
    /// for `amqp.startup_timeout_ms`) and declares the topology.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            settings.pushwoosh.has_any_token(),
            "no Pushwoosh API token configured: set PUSHWOOSH_AUTH_TOKEN, pushwoosh.auth_token or [pushwoosh.tokens]"
        );
        let client =
            PushwooshClient::new(&settings.pushwoosh.api_url, settings.pushwoosh.timeout())
                .context("building the HTTP client")?;
        if !settings.pushwoosh.api_url.contains("api.pushwoosh.com") {
            warn!(
                api_url = %settings.pushwoosh.api_url,
                "NOT TALKING TO PUSHWOOSH: pushwoosh.api_url points elsewhere (a sandbox or a mock); no real message will be sent"
            );
        }
        let retry = RetryPolicy::new(&settings.retry);
        let topology = Topology::new(&settings);
        let lanes = Lane::all(&settings, &topology);
        let listener = TcpListener::bind(&settings.http.listen)
            .await
            .with_context(|| format!("binding http.listen {}", settings.http.listen))?;
        let broker::Connected {
            connection,
            endpoint,
            index: endpoint_index,
        } = broker::connect(
            &settings.amqp,
            &connection_name(),
            Duration::from_millis(settings.amqp.startup_timeout_ms),
        )
        .await?;
        topology.declare(&connection).await?;
        let metrics = Arc::new(Metrics::new());
        let ledger = if settings.ledger.enabled {
            let ledger = crate::ledger::Ledger::connect(&settings.ledger, &metrics)
                .await
                .context("setting up the ledger (ledger.url)")?;
            if ledger.ping().await.is_err() {
                warn!("the ledger's Redis does not answer yet: it is tried again as jobs come");
            }
            Some(ledger)
        } else {
            None
        };
        let threads = tokio::runtime::Handle::current().metrics().num_workers();
        metrics
            .runtime_worker_threads
            .set(i64::try_from(threads).unwrap_or(i64::MAX));
        let readiness = Arc::new(Readiness::default());
        readiness.set_broker(&endpoint);
        let breaker = Arc::new(CircuitBreaker::new(
            &settings.breaker,
            metrics.clone(),
            readiness.clone(),
        ));
        // The lanes' shares of every method's budget, kept for their jobs.
        let reserve: f64 = settings
            .lanes
            .values()
            .filter(|lane| lane.enabled)
            .map(|lane| lane.share)
            .sum();
        // Account-wide in Redis with the ledger, else this process's share.
        let limiter = Arc::new(CallLimiter::new(
            &settings.rate_limit,
            ledger.as_ref(),
            metrics.clone(),
            reserve,
        ));
        let batcher = Arc::new(Batcher::new(
            &settings.batch,
            Arc::new(client.clone()),
            limiter.clone(),
            metrics.clone(),
            breaker.clone(),
            ledger.clone(),
            settings.pushwoosh.timeout(),
        ));
        let settings = Arc::new(settings);
        Ok(Self {
            listener,
            connection,
            endpoint_index,
            setup: ConsumerSetup {
                settings,
                client,
                topology,
                retry,
                metrics,
                readiness,
                breaker,
                limiter,
                batcher,
                ledger,
                lanes,
            },
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.setup.metrics.clone()
    }

    /// Consumes until `shutdown` is cancelled, then stops gracefully.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let http_stop = CancellationToken::new();
        info!(http = %self.http_addr(), "serving /metrics, /livez, /readyz");
        let http = tokio::spawn(crate::http::serve(
            self.listener,
            self.setup.metrics.clone(),
            self.setup.readiness.clone(),
            http_stop.clone(),
        ));
        // On a runtime worker, not the thread that called `block_on`: a delivery then wakes
        // the thread that runs its job, and the job's task starts there, without waking
        // another thread to hand it over.
        let consumer = tokio::spawn(run_consumer(
            self.setup,
            self.connection,
            self.endpoint_index,
            shutdown,
        ));
        let result = match consumer.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(anyhow::anyhow!("the consumer task was cancelled: {e}")),
        };
        http_stop.cancel();
        // A scrape under way may finish; a client that holds its connection open does
        // not keep the worker from exiting.
        let _ = tokio::time::timeout(HTTP_STOP, http).await;
        result
    }
}

/// How long the HTTP endpoints may take to close once the worker has stopped.
const HTTP_STOP: Duration = Duration::from_secs(2);

/// Cancelled on SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => info!("SIGINT: stopping"),
                _ = term.recv() => info!("SIGTERM: stopping"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        cancel.cancel();
    });
    token
}
