//! When and how long to wait before calling Pushwoosh again: capped exponential backoff
//! (backon's schedule) with full jitter, bounded by attempts and by total time, and the
//! broker-held delay tiers the waits are parked in.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::settings::RetrySettings;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_delay: Duration,
    max_delay: Duration,
    max_elapsed: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RetryDecision {
    /// Call again after this delay.
    RetryIn(Duration),
    /// Stop: the budget does not allow another call. The text says which bound.
    GiveUp(String),
}

impl RetryPolicy {
    pub fn new(settings: &RetrySettings) -> Self {
        Self {
            max_attempts: settings.max_attempts,
            initial_delay: Duration::from_millis(settings.initial_delay_ms),
            max_delay: Duration::from_millis(settings.max_delay_ms),
            max_elapsed: Duration::from_millis(settings.max_elapsed_ms),
        }
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff ceiling after `attempts_made` calls: initial × 2^(n-1), capped.
    pub fn ceiling(&self, attempts_made: u32) -> Duration {
        let nth = attempts_made.saturating_sub(1) as usize;
        ExponentialBuilder::default()
            .with_min_delay(self.initial_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .nth(nth)
            .unwrap_or(self.max_delay)
    }

    /// Decides after a transient failure. `attempts_made` counts every call so far,
    /// `elapsed` runs from the job's first receipt, `retry_after` is Pushwoosh's hint.
    pub fn decide(
        &self,
        attempts_made: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> RetryDecision {
        if attempts_made >= self.max_attempts {
            return RetryDecision::GiveUp(format!(
                "retry budget exhausted: {attempts_made} of retry.max_attempts={} calls made",
                self.max_attempts
            ));
        }
        let ceiling = self.ceiling(attempts_made);
        // Full jitter: uniform in [0, ceiling], so replicas retrying together spread out.
        let jittered = ceiling.mul_f64(rng.f64());
        let delay = retry_after
            .map_or(jittered, |hint| jittered.max(hint))
            .min(self.max_delay);
        let remaining = self.max_elapsed.saturating_sub(elapsed);
        if delay > remaining {
            return RetryDecision::GiveUp(format!(
                "retry budget exhausted: the next call would wait {} ms but only {} ms of retry.max_elapsed_ms={} remain",
                delay.as_millis(),
                remaining.as_millis(),
                self.max_elapsed.as_millis()
            ));
        }
        RetryDecision::RetryIn(delay)
    }

    /// The delay tiers, one broker queue each: initial × 2^k below max, then max.
    pub fn tiers(&self) -> Vec<Duration> {
        let mut tiers = Vec::new();
        let mut tier = self.initial_delay;
        while tier < self.max_delay {
            tiers.push(tier);
            tier = tier.saturating_mul(2);
        }
        tiers.push(self.max_delay);
        tiers
    }

    /// The tier a delay is parked in: the smallest one that is at least the delay.
    pub fn tier_for(&self, delay: Duration) -> Duration {
        self.tiers()
            .into_iter()
            .find(|tier| *tier >= delay)
            .unwrap_or(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32, initial: u64, max: u64, elapsed: u64) -> RetryPolicy {
        RetryPolicy::new(&RetrySettings {
            max_attempts,
            initial_delay_ms: initial,
            max_delay_ms: max,
            max_elapsed_ms: elapsed,
            ..RetrySettings::default()
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_ceiling_doubles_and_is_capped() {
        let p = policy(10, 100, 1_000, 60_000);
        let ceilings: Vec<_> = (1..=6).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn max_attempts_counts_the_first_call() {
        let p = policy(3, 100, 1_000, 60_000);
        let mut rng = fastrand::Rng::with_seed(1);
        assert!(matches!(
            p.decide(1, ms(0), None, &mut rng),
            RetryDecision::RetryIn(_)
        ));
        assert!(matches!(
            p.decide(2, ms(0), None, &mut rng),
            RetryDecision::RetryIn(_)
        ));
        let RetryDecision::GiveUp(why) = p.decide(3, ms(0), None, &mut rng) else {
            panic!()
        };
        assert!(why.contains("3 of retry.max_attempts=3"), "{why}");
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling_and_spreads() {
        let p = policy(10, 1_000, 60_000, 600_000);
        let mut rng = fastrand::Rng::with_seed(7);
        let delays: Vec<Duration> = (0..200)
            .map(|_| match p.decide(3, ms(0), None, &mut rng) {
                RetryDecision::RetryIn(d) => d,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(delays.iter().all(|d| *d <= ms(4_000)));
        assert!(delays.iter().any(|d| *d < ms(1_000)));
        assert!(delays.iter().any(|d| *d > ms(3_000)));
    }

    #[test]
    fn retry_after_wins_over_a_shorter_backoff_and_is_capped() {
        let p = policy(10, 100, 5_000, 600_000);
        let mut rng = fastrand::Rng::with_seed(3);
        assert_eq!(
            p.decide(1, ms(0), Some(ms(2_000)), &mut rng),
            RetryDecision::RetryIn(ms(2_000))
        );
        assert_eq!(
            p.decide(1, ms(0), Some(ms(60_000)), &mut rng),
            RetryDecision::RetryIn(ms(5_000))
        );
    }

    #[test]
    fn a_wait_the_elapsed_budget_cannot_cover_fails_now() {
        let p = policy(10, 100, 5_000, 10_000);
        let mut rng = fastrand::Rng::with_seed(3);
        let RetryDecision::GiveUp(why) = p.decide(1, ms(8_000), Some(ms(3_000)), &mut rng) else {
            panic!()
        };
        assert!(why.contains("retry.max_elapsed_ms=10000"), "{why}");
        assert_eq!(
            p.decide(1, ms(6_000), Some(ms(3_000)), &mut rng),
            RetryDecision::RetryIn(ms(3_000))
        );
    }

    #[test]
    fn tiers_cover_every_delay() {
        let p = policy(10, 1_000, 60_000, 600_000);
        let tiers: Vec<_> = p.tiers().iter().map(Duration::as_millis).collect();
        assert_eq!(tiers, [1000, 2000, 4000, 8000, 16000, 32000, 60000]);
        assert_eq!(p.tier_for(ms(0)), ms(1_000));
        assert_eq!(p.tier_for(ms(1_001)), ms(2_000));
        assert_eq!(p.tier_for(ms(33_000)), ms(60_000));
        assert_eq!(p.tier_for(ms(60_000)), ms(60_000));
    }
}
