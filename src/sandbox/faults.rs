//! Fault injection: fixed latency, random 500s, random 429s, hung requests, per-method
//! rate limits (a sliding minute, or a shorter window for quick tests) and `fail_next`,
//! all adjustable while the sandbox runs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::codes::Rng;
use super::methods::Method;

const MINUTE: Duration = Duration::from_secs(60);

/// A fault chosen for one request, instead of the normal answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    /// From `fail_next`: answer this HTTP status.
    Status(u16),
    /// Never answer (until the sandbox shuts down).
    Hang,
    /// HTTP 500 `Internal error`.
    Internal,
    /// HTTP 429 with `Retry-After: 1`.
    Throttle,
    /// HTTP 429 from the per-minute limit, with the seconds until a slot frees up.
    RateLimited { retry_after: u64 },
}

struct Window {
    limit: Option<u32>,
    /// How far back `limit` counts: a minute, like Pushwoosh.
    span: Duration,
    hits: VecDeque<Instant>,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            limit: None,
            span: MINUTE,
            hits: VecDeque::new(),
        }
    }
}

/// A probability stored as f64 bits, clamped into `[0, 1]` (NaN counts as 0).
struct Rate(AtomicU64);

impl Rate {
    fn new(p: f64) -> Self {
        Self(AtomicU64::new(clamp_rate(p).to_bits()))
    }
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    fn set(&self, p: f64) {
        self.0.store(clamp_rate(p).to_bits(), Ordering::Relaxed);
    }
}

fn clamp_rate(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

pub(super) struct Faults {
    latency_nanos: AtomicU64,
    error_rate: Rate,
    throttle_rate: Rate,
    hang_rate: Rate,
    fail_next: Mutex<(u32, u16)>,
    windows: Mutex<[Window; Method::ALL.len()]>,
    rng: Rng,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Faults {
    pub(super) fn new(
        latency: Duration,
        error_rate: f64,
        throttle_rate: f64,
        hang_rate: f64,
        create_message_per_minute: Option<u32>,
        seed: u64,
    ) -> Self {
        let faults = Self {
            latency_nanos: AtomicU64::new(0),
            error_rate: Rate::new(error_rate),
            throttle_rate: Rate::new(throttle_rate),
            hang_rate: Rate::new(hang_rate),
            fail_next: Mutex::new((0, 500)),
            windows: Mutex::new(std::array::from_fn(|_| Window::default())),
            rng: Rng::new(seed),
        };
        faults.set_latency(latency);
        faults.set_rate_limit(Method::CreateMessage, create_message_per_minute);
        faults
    }

    pub(super) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }

    pub(super) fn set_latency(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.latency_nanos.store(nanos, Ordering::Relaxed);
    }

    pub(super) fn set_error_rate(&self, p: f64) {
        self.error_rate.set(p);
    }

    pub(super) fn set_throttle_rate(&self, p: f64) {
        self.throttle_rate.set(p);
    }

    pub(super) fn set_hang_rate(&self, p: f64) {
        self.hang_rate.set(p);
    }

    /// The next `n` requests (any method) answer `status`; `n == 0` cancels.
    pub(super) fn fail_next(&self, n: u32, status: u16) {
        *lock(&self.fail_next) = (n, status);
    }

    /// Sets (or with `None` lifts) a method's limit of requests per sliding minute.
    pub(super) fn set_rate_limit(&self, method: Method, per_minute: Option<u32>) {
        self.set_rate_limit_per(method, per_minute, MINUTE);
    }

    /// Sets (or lifts) a method's limit of requests per sliding `span`.
    pub(super) fn set_rate_limit_per(&self, method: Method, limit: Option<u32>, span: Duration) {
        let mut windows = lock(&self.windows);
        let w = &mut windows[method.index()];
        w.limit = limit;
        w.span = span;
        w.hits.clear();
    }

    /// Decides whether this request gets a fault; the order is fail_next, hang, 500,
    /// throttle, rate limit. A request refused by the limit does not use up a slot.
    pub(super) fn decide(&self, method: Method) -> Option<Fault> {
        {
            let mut next = lock(&self.fail_next);
            if next.0 > 0 {
                next.0 -= 1;
                return Some(Fault::Status(next.1));
            }
        }
        if self.rng.chance(self.hang_rate.get()) {
            return Some(Fault::Hang);
        }
        if self.rng.chance(self.error_rate.get()) {
            return Some(Fault::Internal);
        }
        if self.rng.chance(self.throttle_rate.get()) {
            return Some(Fault::Throttle);
        }
        self.take_slot(method, Instant::now())
            .map(|retry_after| Fault::RateLimited { retry_after })
    }

    /// None when a slot was free (and is now taken), else the seconds to wait.
    fn take_slot(&self, method: Method, now: Instant) -> Option<u64> {
        let mut windows = lock(&self.windows);
        let w = &mut windows[method.index()];
        let limit = w.limit?;
        let span = w.span;
        while w
            .hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= span)
        {
            w.hits.pop_front();
        }
        if (w.hits.len() as u64) < u64::from(limit) {
            w.hits.push_back(now);
            return None;
        }
        let wait = w
            .hits
            .front()
            .map_or(span, |t| span.saturating_sub(now.duration_since(*t)));
        Some(wait.as_secs_f64().ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Faults {
        Faults::new(Duration::ZERO, 0.0, 0.0, 0.0, None, 7)
    }

    #[test]
    fn fail_next_counts_down_then_stops() {
        let f = quiet();
        f.fail_next(2, 503);
        assert_eq!(f.decide(Method::Cancel), Some(Fault::Status(503)));
        assert_eq!(f.decide(Method::CreateMessage), Some(Fault::Status(503)));
        assert_eq!(f.decide(Method::CreateMessage), None);
    }

    #[test]
    fn sliding_minute_limit_is_per_method() {
        let f = quiet();
        f.set_rate_limit(Method::CreateMessage, Some(2));
        let t0 = Instant::now();
        assert_eq!(f.take_slot(Method::CreateMessage, t0), None);
        assert_eq!(f.take_slot(Method::CreateMessage, t0), None);
        assert_eq!(f.take_slot(Method::CreateMessage, t0), Some(60));
        assert_eq!(f.take_slot(Method::CreateSms, t0), None);
        let later = t0 + Duration::from_secs(45);
        assert_eq!(f.take_slot(Method::CreateMessage, later), Some(15));
        assert_eq!(f.take_slot(Method::CreateMessage, t0 + MINUTE), None);
        f.set_rate_limit(Method::CreateMessage, Some(0));
        assert_eq!(f.take_slot(Method::CreateMessage, t0), Some(60));
    }

    #[test]
    fn a_shorter_window_counts_only_its_span() {
        let f = quiet();
        f.set_rate_limit_per(Method::CreateMessage, Some(2), Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(f.take_slot(Method::CreateMessage, t0), None);
        assert_eq!(f.take_slot(Method::CreateMessage, t0), None);
        assert_eq!(f.take_slot(Method::CreateMessage, t0), Some(1));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(f.take_slot(Method::CreateMessage, later), None);
    }

    #[test]
    fn rates_are_clamped() {
        let f = Faults::new(Duration::MAX, f64::NAN, 7.0, -1.0, None, 7);
        assert_eq!(f.error_rate.get(), 0.0);
        assert_eq!(f.throttle_rate.get(), 1.0);
        assert_eq!(f.hang_rate.get(), 0.0);
        assert_eq!(f.latency(), Duration::from_nanos(u64::MAX));
        assert_eq!(f.decide(Method::History), Some(Fault::Throttle));
    }
}
