//! `[lanes.<name>]`: queues of their own for jobs that must not wait behind the rest.
//! The `urgent` lane is on by default; more lanes may be added the same way.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One lane: the jobs published with a routing key matching `pattern` on the jobs
/// exchange go to its queue and only there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LaneSettings {
    pub enabled: bool,
    /// A topic pattern; empty: `<lane>.#`.
    pub pattern: String,
    /// The lane's queue; empty: `<amqp.jobs_queue>.<lane>`.
    pub queue: String,
    /// Jobs of this lane in flight per worker process, on a channel of their own.
    pub prefetch: u16,
    /// The share of every method's rate-limit budget kept for this lane's jobs (bulk
    /// jobs use it while the lane leaves it idle).
    pub share: f64,
}

impl Default for LaneSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            pattern: String::new(),
            queue: String::new(),
            prefetch: 16,
            share: 0.1,
        }
    }
}

/// The lanes by name.
pub type LanesSettings = BTreeMap<String, LaneSettings>;

pub const URGENT: &str = "urgent";

/// The built-in lanes: `urgent`, for `urgent.#`.
pub fn default_lanes() -> LanesSettings {
    BTreeMap::from([(
        URGENT.to_owned(),
        LaneSettings {
            pattern: "urgent.#".to_owned(),
            ..LaneSettings::default()
        },
    )])
}

/// A configuration that names other lanes keeps the urgent one unless it turns it off.
pub(super) fn with_urgent(mut lanes: LanesSettings) -> LanesSettings {
    for (name, lane) in default_lanes() {
        lanes.entry(name).or_insert(lane);
    }
    lanes
}

pub(super) fn check(lanes: &LanesSettings) -> anyhow::Result<()> {
    let mut share = 0.0;
    for (name, lane) in lanes.iter().filter(|(_, l)| l.enabled) {
        anyhow::ensure!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "lanes.{name}: a lane's name is letters, digits, '-' and '_'"
        );
        anyhow::ensure!(
            name != "bulk",
            "lanes.bulk: `bulk` names the jobs queue's own lane in metrics; pick another name"
        );
        anyhow::ensure!(
            lane.prefetch > 0,
            "lanes.{name}.prefetch must be at least 1"
        );
        anyhow::ensure!(
            (0.0..=0.9).contains(&lane.share),
            "lanes.{name}.share must be between 0 and 0.9 (bulk jobs keep at least a tenth of the budget)"
        );
        anyhow::ensure!(
            lane.pattern.is_empty() || lane.pattern != "#",
            "lanes.{name}.pattern \"#\" would take every job from the jobs queue"
        );
        share += lane.share;
    }
    anyhow::ensure!(
        share <= 0.9,
        "the lanes' shares add up to {share}: at most 0.9 (bulk jobs keep at least a tenth of the budget)"
    );
    Ok(())
}
