//! The circuit breaker: when Pushwoosh fails for everyone (5xx, time-outs, connection
//! errors, auth rejected), the worker stops taking jobs, lets them wait in the queue,
//! probes with one job after a backoff, and resumes once Pushwoosh answers again.
//!
//! Closed --(failure_threshold outages in a row)--> Open --(open period)--> HalfOpen;
//! HalfOpen --(Pushwoosh answers)--> Closed, HalfOpen --(outage)--> Open (period doubled).

mod signal;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

pub use signal::Signal;

use super::context::Readiness;
use crate::metrics::{Metrics, TransitionLabels};
use crate::settings::BreakerSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Pushwoosh answers: jobs flow.
    Closed,
    /// Pushwoosh is failing: no job is taken or sent until the open period is over.
    Open,
    /// The open period is over: one job at a time probes Pushwoosh.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Shared by every job's task; the lock is only held to update the state, never across
/// an await. The consumer watches the state through [`CircuitBreaker::subscribe`].
pub struct CircuitBreaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
    state_tx: watch::Sender<BreakerState>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

struct Inner {
    state: BreakerState,
    /// Outages in a row while closed.
    consecutive: u32,
    /// The nominal open period: `initial_open_ms`, doubled by each failed probe, capped.
    period: Duration,
    /// When an open breaker lets a probe through (the period, jittered).
    probe_at: Instant,
    last_error: String,
}

impl CircuitBreaker {
    pub fn new(
        settings: &BreakerSettings,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> Self {
        let (state_tx, _) = watch::channel(BreakerState::Closed);
        Self {
            settings: settings.clone(),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive: 0,
                period: settings.initial_open(),
                probe_at: Instant::now(),
                last_error: String::new(),
            }),
            state_tx,
            metrics,
            readiness,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.state_tx.subscribe()
    }

    /// Whether a job may be sent now: not while open (half-open lets the probe through).
    pub fn admits(&self) -> bool {
        self.state() != BreakerState::Open
    }

    /// Takes one answer into account and returns the state after it.
    pub fn record(&self, signal: &Signal) -> BreakerState {
        if !self.settings.enabled {
            return BreakerState::Closed;
        }
        let mut inner = self.lock();
        match (inner.state, signal) {
            (_, Signal::Neutral) => {}
            (BreakerState::Closed, Signal::Answered) => inner.consecutive = 0,
            (BreakerState::Closed, Signal::Down(error)) => {
                inner.consecutive += 1;
                inner.last_error.clone_from(error);
                if inner.consecutive >= self.settings.failure_threshold {
                    inner.period = self.settings.initial_open();
                    let open_for = self.open(&mut inner);
                    warn!(
                        failures_in_a_row = inner.consecutive,
                        last_error = %inner.last_error,
                        open_for_ms = open_for.as_millis() as u64,
                        "circuit breaker open: Pushwoosh is failing for every job; jobs wait in the queue"
                    );
                }
            }
            (BreakerState::Open, Signal::Down(error)) => inner.last_error.clone_from(error),
            // Calls sent before it opened: the probe decides, not a straggler.
            (BreakerState::Open, Signal::Answered) => {}
            (BreakerState::HalfOpen, Signal::Answered) => {
                inner.consecutive = 0;
                inner.period = self.settings.initial_open();
                self.transition(&mut inner, BreakerState::Closed);
                info!("circuit breaker closed: Pushwoosh answers again; consuming jobs");
            }
            (BreakerState::HalfOpen, Signal::Down(error)) => {
                inner.last_error.clone_from(error);
                inner.period = inner.period.saturating_mul(2).min(self.settings.max_open());
                let open_for = self.open(&mut inner);
                warn!(
                    last_error = %inner.last_error,
                    open_for_ms = open_for.as_millis() as u64,
                    "circuit breaker open again: the probe failed"
                );
            }
        }
        inner.state
    }

    /// Waits until an open breaker lets a probe through, and turns it half-open. Returns
    /// at once when it is not open.
    pub async fn wait_for_probe(&self) {
        loop {
            let probe_at = {
                let mut inner = self.lock();
                if inner.state != BreakerState::Open {
                    return;
                }
                if Instant::now() >= inner.probe_at {
                    self.transition(&mut inner, BreakerState::HalfOpen);
                    info!(
                        last_error = %inner.last_error,
                        "circuit breaker half-open: probing Pushwoosh with one job"
                    );
                    return;
                }
                inner.probe_at
            };
            tokio::time::sleep_until(probe_at).await;
        }
    }

    /// Opens for the current period, jittered down by up to a quarter so that replicas
    /// opened together probe apart. Returns the wait.
    fn open(&self, inner: &mut Inner) -> Duration {
        let open_for = inner.period.mul_f64(0.75 + 0.25 * fastrand::f64());
        inner.probe_at = Instant::now() + open_for;
        self.transition(inner, BreakerState::Open);
        open_for
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState) {
        inner.state = to;
        let open = to != BreakerState::Closed;
        self.metrics.breaker_open.set(i64::from(open));
        self.metrics
            .breaker_transitions
            .get_or_create(&TransitionLabels { to: to.as_str() })
            .inc();
        self.readiness.set_breaker_open(open);
        self.state_tx.send_replace(to);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
