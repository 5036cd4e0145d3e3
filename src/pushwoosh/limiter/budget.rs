//! A method's budget of cells, and how a reserve for urgent calls is carved out of it.
//!
//! Without a reserve every call takes a cell of one stream, one per `period`, and an
//! urgent call is only first in line for the next one (`RateLimiter::acquire`).
//!
//! With a reserve of share `s`, the stream is split in two whose counts add up to the
//! unsplit one's, so that both lanes together never make more calls in a minute than the
//! limiter allowed before. Any 60-second span holds at most `n = ceil(60 s / period)`
//! cells of one stream, plus `burst - 1` (`period` already carries `window_slack_ms` and
//! the replicas' share). The reserve gets `r = floor(s * 60 s / period)` cells a minute
//! with a burst of 2, so at most `r + 1` in any minute; the main stream `n - r - 1`, with
//! the configured burst. Together: `n`, plus `burst - 1`, as without a reserve. (Each
//! stream's count rounds up on its own, so a span a little longer than a minute may hold
//! one call more than the unsplit stream would put in it; the slack is that margin.)
//!
//! The reserve's burst of 2 is its point: a bulk call borrows a reserve cell only when
//! both are free, so one is always left that an urgent call takes at once, however many
//! bulk calls wait. That kept cell is the whole price: with no urgent traffic, bulk calls
//! get the main stream and every other reserve cell, `n - 1` calls a minute where they
//! had `60 s / period` (less than one call fewer), which is never under `(1 - s)` of the
//! budget because a reserve exists only when `r >= 1`. Urgent calls that leave reserve
//! cells unused leave them to bulk the same way.

use std::time::Duration;

use super::Priority;
use super::cells::Cells;
use crate::job::JobKind;
use crate::settings::RateLimitSettings;

/// Pushwoosh's limits count calls per minute.
const MINUTE: Duration = Duration::from_secs(60);

/// A method's limit in this process, from `[rate_limit]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Quota {
    /// One call per `period`: `(60 s + window_slack) * replicas / per_minute`.
    pub(super) period: Duration,
    /// Calls at once after a quiet spell.
    pub(super) burst: u32,
}

impl Quota {
    /// The method's share of the account's limit in this process, or `None` for no limit.
    pub(super) fn of(settings: &RateLimitSettings, kind: JobKind) -> Option<Self> {
        let per_minute = settings.per_minute(kind);
        if per_minute == 0 {
            return None;
        }
        let minute = MINUTE + Duration::from_millis(settings.window_slack_ms);
        let period = minute.checked_mul(settings.replicas.max(1))? / per_minute;
        (!period.is_zero()).then_some(Self {
            period,
            burst: settings.burst.max(1),
        })
    }
}

/// The cells a method's calls take.
#[derive(Debug)]
pub(super) struct Budget {
    main: Cells,
    burst: u32,
    reserve: Option<Reserve>,
}

#[derive(Debug)]
struct Reserve {
    cells: Cells,
    /// Its cells a minute, `r` above.
    per_minute: u32,
}

/// The periods of a split budget.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    main: Duration,
    reserve: Duration,
    reserved: u32,
}

impl Budget {
    /// A full budget; with a reserve of `share` (in [0, 1)) when the method's limit is
    /// large enough to spare a whole reserve cell a minute.
    pub(super) fn new(quota: &Quota, share: f64, now: tokio::time::Instant) -> Self {
        match split(quota, share) {
            Some(split) => Self {
                main: Cells::new(split.main, now),
                burst: quota.burst,
                reserve: Some(Reserve {
                    cells: Cells::new(split.reserve, now),
                    per_minute: split.reserved,
                }),
            },
            None => Self {
                main: Cells::new(quota.period, now),
                burst: quota.burst,
                reserve: None,
            },
        }
    }

    /// Reserve cells a minute (0: no reserve).
    pub(super) fn reserved(&self) -> u32 {
        self.reserve.as_ref().map_or(0, |r| r.per_minute)
    }

    /// Takes a cell for a call of `priority`, or says how long until one may be taken.
    /// A main cell comes first for both, which keeps the reserve for the next urgent call
    /// when the main stream has room; then an urgent call may take the reserve's last
    /// cell, a bulk call only a cell beyond it.
    pub(super) fn take(
        &mut self,
        priority: Priority,
        now: tokio::time::Instant,
    ) -> Result<(), Duration> {
        let main = self.main.wait(self.burst, now);
        if main.is_zero() {
            self.main.take(now);
            return Ok(());
        }
        let Some(reserve) = &mut self.reserve else {
            return Err(main);
        };
        let burst = match priority {
            Priority::Urgent => 2,
            Priority::Bulk => 1,
        };
        let spare = reserve.cells.wait(burst, now);
        if spare.is_zero() {
            reserve.cells.take(now);
            return Ok(());
        }
        Err(main.min(spare))
    }
}

/// The main and reserve periods of a stream of one call per `period` when `share` of it
/// is kept for urgent calls (the split of this module's doc), or `None` for no reserve.
/// The account-wide limiter in Redis splits its streams the same way.
pub(crate) fn reserve_periods(period: Duration, share: f64) -> Option<(Duration, Duration)> {
    let quota = Quota { period, burst: 1 };
    split(&quota, clamp_share(share)).map(|s| (s.main, s.reserve))
}

/// A reserve's share clamped to [0, 0.9] (NaN counts as 0): bulk calls always keep a
/// main stream of their own.
pub(super) fn clamp_share(share: f64) -> f64 {
    if share.is_nan() {
        0.0
    } else {
        share.clamp(0.0, MAX_RESERVE)
    }
}

/// The largest share kept for urgent calls.
const MAX_RESERVE: f64 = 0.9;

/// The main and reserve periods for `share`, or `None` when the reserve would get no
/// whole cell a minute or leave the main stream none. Periods round up, so that neither
/// stream fits more cells in a minute than it was given.
fn split(quota: &Quota, share: f64) -> Option<Split> {
    let minute = MINUTE.as_nanos();
    let period = quota.period.as_nanos();
    let cells = minute.div_ceil(period);
    // `as` saturates, and turns a NaN into 0.
    let reserved = (share * minute as f64 / period as f64).floor() as u128;
    let main = cells.checked_sub(reserved.checked_add(1)?)?;
    if reserved == 0 || main == 0 {
        return None;
    }
    Some(Split {
        main: nanos(minute.div_ceil(main))?,
        reserve: nanos(minute.div_ceil(reserved))?,
        reserved: u32::try_from(reserved).ok()?,
    })
}

fn nanos(n: u128) -> Option<Duration> {
    u64::try_from(n).ok().map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(per_minute: u32, slack_ms: u64) -> Quota {
        Quota {
            period: (MINUTE + Duration::from_millis(slack_ms)) / per_minute,
            burst: 1,
        }
    }

    #[test]
    fn the_split_keeps_the_count_of_a_minute_and_rounds_periods_up() {
        let ms = Duration::from_millis;
        // 400 a minute: 24 reserve cells, 400 - 24 - 1 = 375 main cells.
        assert_eq!(
            split(&quota(400, 0), 0.061),
            Some(Split {
                main: ms(160),
                reserve: ms(2_500),
                reserved: 24,
            })
        );
        // 600 in 60.5 s (100.833… ms): 596 cells fit a minute; 59 reserved, 536 main.
        let split = split(&quota(600, 500), 0.1).unwrap();
        assert_eq!(split.reserved, 59);
        assert_eq!(split.main, Duration::from_nanos(111_940_299));
        assert_eq!(split.reserve, Duration::from_nanos(1_016_949_153));
        let minute = MINUTE.as_nanos();
        assert_eq!(
            minute.div_ceil(split.main.as_nanos()) + minute.div_ceil(split.reserve.as_nanos()) + 1,
            596
        );
    }

    #[test]
    fn no_reserve_without_a_whole_cell_for_it_and_one_for_the_main_stream() {
        assert_eq!(split(&quota(600, 0), 0.0), None);
        assert_eq!(split(&quota(600, 0), 1.0 / 601.0), None);
        assert_eq!(split(&quota(600, 0), f64::NAN), None);
        // 2 a minute: a reserve cell would leave the main stream none.
        assert_eq!(split(&quota(2, 0), 0.5), None);
        assert_eq!(split(&quota(3, 0), 0.5).map(|s| s.reserved), Some(1));
    }
}
