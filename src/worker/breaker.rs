//! The circuit breaker: when Pushwoosh fails for everyone (5xx, time-outs, connection
//! errors, auth rejected), the worker stops taking jobs, lets them wait in the queue,
//! probes with one job after a backoff, and resumes once Pushwoosh answers again.
//!
//! Closed --(failure_threshold outages in a row)--> Open --(open period)--> HalfOpen;
//! HalfOpen --(Pushwoosh answers)--> Closed, HalfOpen --(outage)--> Open (period doubled).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::context::Readiness;
use crate::metrics::{Metrics, TransitionLabels};
use crate::pushwoosh::Verdict;
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

/// What one Pushwoosh answer says about Pushwoosh as a whole (not about the job).
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Pushwoosh answered about the job itself (success or rejection): it is up.
    Answered,
    /// Pushwoosh is failing for everyone: 5xx, time-out, connection error, auth
    /// rejected. Carries the error.
    Down(String),
    /// Says nothing either way: 429 (rate limiting, handled by `Retry-After`), a refused
    /// per-application token (that application's problem), other refusals.
    Neutral,
}

impl Signal {
    /// `shared_token`: the call used the default token, so an auth refusal hits every job.
    pub fn of(verdict: &Verdict, shared_token: bool) -> Self {
        match verdict {
            Verdict::Success { .. } | Verdict::Rejected { .. } => Signal::Answered,
            Verdict::Transient {
                status_code: Some(429),
                ..
            } => Signal::Neutral,
            Verdict::Transient { status_message, .. } => Signal::Down(status_message.clone()),
            Verdict::Failed {
                status_code: Some(401 | 403),
                status_message,
                ..
            } if shared_token => Signal::Down(status_message.clone()),
            Verdict::Failed { .. } => Signal::Neutral,
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
mod tests {
    use serde_json::Value;

    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(
            &BreakerSettings {
                enabled: true,
                failure_threshold: 3,
                initial_open_ms: 1_000,
                max_open_ms: 4_000,
            },
            Arc::new(Metrics::new()),
            Arc::new(Readiness::default()),
        )
    }

    fn down() -> Signal {
        Signal::Down("HTTP 500 internal error".into())
    }

    fn open(b: &CircuitBreaker) {
        for _ in 0..3 {
            b.record(&down());
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Waits for the probe and returns how long that took.
    async fn time_to_probe(b: &CircuitBreaker) -> Duration {
        let started = Instant::now();
        b.wait_for_probe().await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn the_threshold_opens_it() {
        let b = breaker();
        let mut watch = b.subscribe();
        assert_eq!(b.record(&down()), BreakerState::Closed);
        assert_eq!(b.record(&down()), BreakerState::Closed);
        assert!(b.admits());
        assert_eq!(b.record(&down()), BreakerState::Open);
        assert!(!b.admits());
        assert!(watch.has_changed().unwrap());
        assert_eq!(*watch.borrow_and_update(), BreakerState::Open);
        assert!(!b.readiness.is_ready());
        assert!(b.readiness.breaker_open());
        let text = b.metrics.render();
        assert!(
            text.contains(r#"pushwoosh_worker_breaker_transitions_total{to="open"} 1"#),
            "{text}"
        );
        assert!(text.contains("pushwoosh_worker_breaker_open 1"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_resets_the_count_and_neutral_answers_do_not() {
        let b = breaker();
        b.record(&down());
        b.record(&down());
        b.record(&Signal::Answered);
        b.record(&down());
        assert_eq!(b.record(&down()), BreakerState::Closed);
        assert_eq!(b.record(&Signal::Neutral), BreakerState::Closed);
        assert_eq!(b.record(&down()), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn it_turns_half_open_after_the_period_not_before() {
        let b = breaker();
        open(&b);
        assert!(
            tokio::time::timeout(ms(749), b.wait_for_probe())
                .await
                .is_err()
        );
        assert_eq!(b.state(), BreakerState::Open);
        // Stragglers' answers while open change nothing.
        assert_eq!(b.record(&Signal::Answered), BreakerState::Open);
        assert_eq!(b.record(&down()), BreakerState::Open);
        let waited = ms(749) + time_to_probe(&b).await;
        assert!(waited >= ms(750) && waited <= ms(1_000), "{waited:?}");
        assert!(b.admits(), "half-open lets the probe through");
        assert!(
            b.metrics
                .render()
                .contains(r#"pushwoosh_worker_breaker_transitions_total{to="half_open"} 1"#)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_doubles_the_period_up_to_the_max() {
        let b = breaker();
        open(&b);
        let first = time_to_probe(&b).await;
        assert!(first <= ms(1_000), "{first:?}");
        for nominal in [2_000, 4_000, 4_000, 4_000] {
            assert_eq!(b.record(&down()), BreakerState::Open);
            let waited = time_to_probe(&b).await;
            assert!(
                waited >= ms(nominal * 3 / 4) && waited <= ms(nominal),
                "nominal {nominal} ms, waited {waited:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_good_probe_closes_it_and_resets_the_period() {
        let b = breaker();
        open(&b);
        time_to_probe(&b).await;
        b.record(&down());
        time_to_probe(&b).await;
        assert_eq!(b.record(&Signal::Answered), BreakerState::Closed);
        assert!(b.admits());
        assert!(!b.readiness.breaker_open());
        let text = b.metrics.render();
        assert!(
            text.contains(r#"pushwoosh_worker_breaker_transitions_total{to="closed"} 1"#),
            "{text}"
        );
        assert!(text.contains("pushwoosh_worker_breaker_open 0"), "{text}");
        // Closed again: the count starts over and the period is the initial one.
        b.record(&down());
        b.record(&down());
        assert_eq!(b.state(), BreakerState::Closed);
        b.record(&down());
        assert!(time_to_probe(&b).await <= ms(1_000));
        // Rejected answers are answers too.
        let rejected = Verdict::Rejected {
            status_code: 210,
            status_message: "bad".into(),
            response: Value::Null,
        };
        assert_eq!(b.record(&Signal::of(&rejected, true)), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_breaker_never_opens() {
        let b = CircuitBreaker::new(
            &BreakerSettings {
                enabled: false,
                ..BreakerSettings::default()
            },
            Arc::new(Metrics::new()),
            Arc::new(Readiness::default()),
        );
        for _ in 0..100 {
            assert_eq!(b.record(&down()), BreakerState::Closed);
        }
        assert!(b.admits());
    }

    #[test]
    fn which_answers_mean_pushwoosh_is_down() {
        let transient = |code: Option<i64>| Verdict::Transient {
            status_code: code,
            status_message: "x".into(),
            retry_after: None,
            may_have_reached: false,
        };
        let failed = |code: i64| Verdict::Failed {
            status_code: Some(code),
            status_message: "x".into(),
            response: Value::Null,
        };
        let down = Signal::Down("x".into());
        let success = Verdict::Success {
            status_message: "OK".into(),
            response: Value::Null,
        };
        let cases = [
            (success, true, Signal::Answered),
            (transient(Some(500)), true, down.clone()),
            (transient(Some(502)), true, down.clone()),
            (transient(None), true, down.clone()),
            (transient(Some(429)), true, Signal::Neutral),
            (failed(401), true, down.clone()),
            (failed(403), true, down.clone()),
            (failed(403), false, Signal::Neutral),
            (failed(404), true, Signal::Neutral),
        ];
        for (verdict, shared, expected) in cases {
            assert_eq!(Signal::of(&verdict, shared), expected, "{verdict:?}");
        }
    }
}
